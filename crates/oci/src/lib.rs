//! kiln-oci: share kiln's store between machines through an OCI registry.
//!
//! Every organisation that runs Kubernetes runs an OCI registry; this crate makes one kiln's
//! shared cache. Each store path becomes an artifact ([`artifact`] says how), tagged with the
//! path's digest in a repository named `oci://HOST[:PORT]/REPOSITORY` ([`Repository`]).
//! [`push_path`] sends one, streaming its tree as it is archived; [`pull_path`] fetches one
//! into a [`kiln_store::Store`], verifying every blob against its digest and the unpacked tree
//! against its content hash before the path appears (atomically, as any build's).
//!
//! What may be pushed is the caller's decision (kiln's command line decides it from the
//! build graph: nothing that holds or derives from a private key ever is); [`KeyLines`] and
//! [`find_key_lines`] let it check, before sending, that a path holds no copy of a key.
//!
//! The distribution protocol is spoken with the blocking HTTP client kiln already uses
//! (ureq): the registry's basic or token authentication, with credentials read the way
//! container tools keep them ([`credential_files`], [`credentials_in`]); HTTPS, and plain
//! HTTP only to loopback addresses or to a registry marked insecure.
//!
//! ```
//! use kiln_oci::{Repository, artifact};
//! use kiln_store::DigestBuilder;
//!
//! let repository = Repository::parse("oci://127.0.0.1:5000/kiln").unwrap();
//! let digest = DigestBuilder::new("example").str("x").finish();
//! // The artifact of `<digest>-<name>` is tagged with the digest.
//! assert_eq!(artifact::tag(&digest), digest.to_hex());
//! assert_eq!(repository.url(&format!("manifests/{}", artifact::tag(&digest))),
//!            format!("http://127.0.0.1:5000/v2/kiln/manifests/{}", digest.to_hex()));
//! ```
#![forbid(unsafe_code)]

pub mod artifact;
mod auth;
mod client;
mod error;
mod reference;

pub use crate::artifact::{
    KeyLines, PathConfig, Pulled, Pushed, find_key_lines, pull_path, push_path,
};
pub use crate::auth::{Challenge, Credentials, credential_files, credentials_in};
pub use crate::client::{Blob, BlobReader, Client, MANIFEST_MEDIA_TYPE};
pub use crate::error::OciError;
pub use crate::reference::{Repository, SCHEME, is_loopback, split_substituters};
