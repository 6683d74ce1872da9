//! kiln-store: a content-addressed store of build outputs.
//!
//! Each output lives at `<root>/<digest>-<name>`, where the digest identifies
//! how it was made (see [`DigestBuilder`]) and the name is for people. A path
//! appears whole or not at all: [`Store::build`] lets a builder fill a private
//! temporary directory, hashes it with [`tree_hash`], seals it read-only,
//! flushes it to disk and renames it into place under a per-path lock, so a
//! build killed at any moment leaves nothing half-written, and two processes
//! building the same path at once build it once. The store's root is private
//! to its owner (mode 0700).
//!
//! Hashing streams file contents, so a gigabyte image costs no more memory
//! than a certificate.
//!
//! A store grows until garbage collection ([`Collector`]) removes what the
//! registered roots ([`Store::add_root`]) do not reach. Every open [`Store`]
//! holds a store-wide lock shared and a collector holds it exclusively, so a
//! collection never runs during a build.
//!
//! ```
//! use kiln_store::{DigestBuilder, Store};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("store"))?;
//!
//! // The digest names the recipe; here, a greeting and its text.
//! let digest = DigestBuilder::new("example-greeting-v1").str("hello").finish();
//! let object = store
//!     .build(&digest, "greeting", |out| {
//!         std::fs::write(out.join("hello.txt"), "hello\n")
//!     })
//!     .map_err(|failure| failure.to_string())?;
//!
//! assert_eq!(object.path, store.path_of(&digest, "greeting"));
//! assert_eq!(std::fs::read_to_string(object.path.join("hello.txt"))?, "hello\n");
//!
//! // A second lookup finds the finished path without rebuilding or re-hashing.
//! let found = store.get(&digest, "greeting")?.expect("built above");
//! assert_eq!(found.content_hash, object.content_hash);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod digest;
mod error;
mod gc;
mod store;
mod tree;

pub use crate::digest::{Digest, DigestBuilder};
pub use crate::error::{BuildFailure, StoreError};
pub use crate::gc::{Collector, Garbage, GarbageKind, Root};
pub use crate::store::{Durability, MAX_NAME_LEN, Store, StoreObject, base_name, validate_name};
pub use crate::tree::{
    Difference, DifferenceKind, EntryType, first_difference, tree_hash, tree_hash_with_links,
};
