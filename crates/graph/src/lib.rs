//! kiln-graph: derivations, the DAG they form, and its evaluation into a
//! [`kiln_store::Store`].
//!
//! A [`Derivation`] pairs a [`Builder`] (a recipe with a stable kind,
//! version and canonical parameters) with named inputs. A [`Graph`] of them
//! must pass [`Graph::validate`] (no missing inputs, no cycles) to become a
//! [`ValidatedGraph`], which knows every derivation's digest and is the only
//! thing that can be evaluated. Evaluation skips what the store already has
//! and builds the rest in dependency order, in parallel.
//!
//! ```
//! use std::sync::Arc;
//! use kiln_graph::{
//!     BuildContext, BuildError, Builder, Derivation, DrvId, EvalOptions, Graph, NullObserver,
//!     Params,
//! };
//! use kiln_store::Store;
//!
//! /// Writes a fixed greeting.
//! struct Greeting;
//! impl Builder for Greeting {
//!     fn kind(&self) -> &str { "example.greeting" }
//!     fn version(&self) -> u32 { 1 }
//!     fn params(&self) -> Params { Params::of("hello") }
//!     fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
//!         std::fs::write(ctx.out().join("greeting"), "hello\n")?;
//!         Ok(())
//!     }
//! }
//!
//! /// Upper-cases its input called "text".
//! struct Shout;
//! impl Builder for Shout {
//!     fn kind(&self) -> &str { "example.shout" }
//!     fn version(&self) -> u32 { 1 }
//!     fn params(&self) -> Params { Params::none() }
//!     fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
//!         let text = std::fs::read_to_string(ctx.input("text")?.join("greeting"))?;
//!         std::fs::write(ctx.out().join("greeting"), text.to_uppercase())?;
//!         Ok(())
//!     }
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut graph = Graph::new();
//! graph.add("greeting", Derivation::new("greeting", Arc::new(Greeting)))?;
//! graph.add("shout", Derivation::new("shout", Arc::new(Shout)).input("text", "greeting"))?;
//! let graph = graph.validate()?;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(&dir.path().join("store"))?;
//! let evaluation = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
//! assert_eq!(evaluation.built, 2);
//!
//! let shout = &evaluation.outputs[&DrvId::from("shout")];
//! assert_eq!(std::fs::read_to_string(shout.path.join("greeting"))?, "HELLO\n");
//!
//! // Nothing changed, so nothing is rebuilt.
//! let again = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
//! assert_eq!((again.built, again.substituted), (0, 2));
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod builder;
mod canonical;
mod derivation;
mod error;
mod eval;
mod graph;
mod log_progress;
mod observer;
mod parallel;
mod params;

pub use crate::builder::{BuildContext, BuildError, Builder};
pub use crate::derivation::{Addressing, Derivation, DrvId};
pub use crate::error::{EvalError, GraphError, MissingInput};
pub use crate::eval::{EvalOptions, Evaluation, Mismatch};
pub use crate::graph::{Graph, ValidatedGraph};
pub use crate::log_progress::LogProgress;
pub use crate::observer::{Event, LineProgress, NullObserver, Observer, format_elapsed};
pub use crate::params::Params;
