//! The graph's error types: building a graph, and evaluating one.

use std::fmt;
use std::path::PathBuf;

use kiln_store::{Digest, StoreError};

use crate::builder::BuildError;
use crate::derivation::DrvId;

/// Why a graph cannot be built or validated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GraphError {
    /// Two derivations were added with the same id.
    #[error("derivation {id} is added twice")]
    DuplicateId {
        /// The id.
        id: DrvId,
    },
    /// A derivation's name cannot be used in a store path.
    #[error("derivation {id} has an invalid name: {reason}")]
    InvalidName {
        /// The derivation.
        id: DrvId,
        /// The rejected name.
        name: String,
        /// Why, naming what would be valid.
        reason: String,
    },
    /// Inputs refer to derivations that are not in the graph; all of them are listed.
    #[error("{}", MissingList(missing))]
    MissingInputs {
        /// Every dangling input, sorted by derivation and input name.
        missing: Vec<MissingInput>,
    },
    /// The derivations depend on each other in a cycle.
    #[error("dependency cycle: {}", CyclePath(cycle))]
    Cycle {
        /// The ids along the cycle, each taking the next as an input; the
        /// first id is repeated at the end.
        cycle: Vec<DrvId>,
    },
}

/// An input that refers to a derivation the graph does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingInput {
    /// The derivation with the dangling input.
    pub id: DrvId,
    /// The input's name.
    pub input: String,
    /// The id it refers to.
    pub missing: DrvId,
}

impl fmt::Display for MissingInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: input {:?} refers to {}, which is not in the graph",
            self.id, self.input, self.missing
        )
    }
}

struct MissingList<'a>(&'a [MissingInput]);

impl fmt::Display for MissingList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "missing input: {one}"),
            all => {
                write!(f, "{} missing inputs:", all.len())?;
                for missing in all {
                    write!(f, "\n  {missing}")?;
                }
                Ok(())
            }
        }
    }
}

struct CyclePath<'a>(&'a [DrvId]);

impl fmt::Display for CyclePath<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, id) in self.0.iter().enumerate() {
            if position > 0 {
                f.write_str(" -> ")?;
            }
            write!(f, "{id}")?;
        }
        Ok(())
    }
}

/// Why an evaluation (or a check) stopped. Each names the derivation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// A builder failed (or panicked).
    #[error("building {id} failed: {error}")]
    Build {
        /// The derivation.
        id: DrvId,
        /// The builder's error.
        error: BuildError,
    },
    /// A fixed-output derivation produced something other than it promised;
    /// nothing was added to the store.
    #[error(
        "fixed-output derivation {id} produced content hash {actual}, but it promises {expected}"
    )]
    FixedOutputMismatch {
        /// The derivation.
        id: DrvId,
        /// The content hash in its [`Addressing::Fixed`](crate::Addressing::Fixed).
        expected: Digest,
        /// The content hash its builder produced.
        actual: Digest,
    },
    /// The store failed while handling a derivation.
    #[error("store error for {id}: {error}")]
    Store {
        /// The derivation.
        id: DrvId,
        /// The store's error.
        error: StoreError,
    },
    /// The store could not make the evaluation's outputs durable (see
    /// [`Store::commit`](kiln_store::Store::commit)); they stay usable until the machine
    /// restarts.
    #[error("flushing the store to disk: {error}")]
    Commit {
        /// The store's error.
        error: StoreError,
    },
    /// [`ValidatedGraph::check`](crate::ValidatedGraph::check) was given the
    /// checked store as its scratch store, where rebuilding would delete the
    /// outputs under test.
    #[error("the scratch store of a check must not be the store being checked ({root})")]
    ScratchIsStore {
        /// The root of both.
        root: PathBuf,
    },
}
