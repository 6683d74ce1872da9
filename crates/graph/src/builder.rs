//! The recipe side of a derivation: the `Builder` trait, the context a
//! builder runs in, and the error it returns.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use kiln_store::{StoreError, StoreObject};

use crate::derivation::DrvId;
use crate::observer::{Event, Observer};
use crate::params::Params;

/// A recipe that fills a derivation's output directory.
///
/// Its identity is `kind`, `version` and `params`: together with the
/// derivation's name and inputs they make the derivation's digest, so two
/// builders with equal identities must produce equal outputs from equal
/// inputs, and anything that changes the output must change the identity.
/// A builder must not read the clock, randomness, the host or anything
/// outside its inputs.
pub trait Builder: Send + Sync {
    /// A stable name for the recipe, such as `"kiln-pki.leaf"`.
    fn kind(&self) -> &str;
    /// Bumped whenever the recipe's output changes for the same parameters.
    fn version(&self) -> u32;
    /// The recipe's parameters, in the one encoding all builders share (see [`Params`]).
    /// Never a secret: put a hash of the secret here and read the secret itself from an input.
    fn params(&self) -> Params;
    /// Fills `ctx.out()` from `ctx.input(..)`s.
    ///
    /// # Errors
    ///
    /// Any failure; the partial output is discarded.
    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError>;

    /// Whether the output holds secret material: a private key, a token, a symmetric key, or
    /// anything else derived from a root secret or read from a private file. Such an output,
    /// and everything built from it ([`ValidatedGraph::secret_ids`](crate::ValidatedGraph::secret_ids)),
    /// must never leave the machine. Not part of the builder's identity.
    fn holds_secrets(&self) -> bool {
        false
    }
}

/// What a running [`Builder`] sees: its output directory, its inputs, and a
/// way to report progress.
pub struct BuildContext<'a> {
    id: &'a DrvId,
    out: &'a Path,
    inputs: Inputs<'a>,
    observer: &'a dyn Observer,
}

enum Inputs<'a> {
    /// Inside an evaluation: input names with the indices of the outputs
    /// that provide them, sorted by name.
    Graph {
        inputs: &'a [(String, usize)],
        outputs: &'a [OnceLock<StoreObject>],
    },
    /// Outside a graph, for testing a builder on its own.
    Paths(&'a BTreeMap<String, PathBuf>),
}

impl<'a> BuildContext<'a> {
    pub(crate) fn in_graph(
        id: &'a DrvId,
        out: &'a Path,
        inputs: &'a [(String, usize)],
        outputs: &'a [OnceLock<StoreObject>],
        observer: &'a dyn Observer,
    ) -> BuildContext<'a> {
        BuildContext {
            id,
            out,
            inputs: Inputs::Graph { inputs, outputs },
            observer,
        }
    }

    /// A context outside any graph or store, for running a builder on its
    /// own (in its crate's tests, say): the output goes to `out` and each
    /// input is the given path.
    pub fn standalone(
        id: &'a DrvId,
        out: &'a Path,
        inputs: &'a BTreeMap<String, PathBuf>,
        observer: &'a dyn Observer,
    ) -> BuildContext<'a> {
        BuildContext {
            id,
            out,
            inputs: Inputs::Paths(inputs),
            observer,
        }
    }

    /// The derivation being built.
    pub fn id(&self) -> &DrvId {
        self.id
    }

    /// The empty directory to fill.
    pub fn out(&self) -> &Path {
        self.out
    }

    /// The store path of the input called `name`.
    ///
    /// # Errors
    ///
    /// If the derivation has no such input; the error lists the ones it has.
    pub fn input(&self, name: &str) -> Result<&Path, BuildError> {
        let found = match &self.inputs {
            Inputs::Graph { inputs, outputs } => inputs
                .binary_search_by(|(input, _)| input.as_str().cmp(name))
                .ok()
                .and_then(|position| outputs[inputs[position].1].get())
                .map(|object| object.path.as_path()),
            Inputs::Paths(paths) => paths.get(name).map(PathBuf::as_path),
        };
        found.ok_or_else(|| {
            let names: Vec<&str> = self.input_names().collect();
            BuildError::new(format!(
                "{} has no input named {name:?}; its inputs are: {}",
                self.id,
                if names.is_empty() {
                    "(none)".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        })
    }

    /// The names of all inputs, sorted.
    pub fn input_names(&self) -> impl Iterator<Item = &str> {
        let (graph, paths) = match &self.inputs {
            Inputs::Graph { inputs, .. } => {
                (Some(inputs.iter().map(|(name, _)| name.as_str())), None)
            }
            Inputs::Paths(paths) => (None, Some(paths.keys().map(String::as_str))),
        };
        graph
            .into_iter()
            .flatten()
            .chain(paths.into_iter().flatten())
    }

    /// Reports a progress message (for builds that take a while), passed to
    /// the observer as [`Event::Message`].
    pub fn report(&self, message: &str) {
        self.observer.event(&Event::Message {
            id: self.id,
            message,
        });
    }
}

/// Why a builder failed: a message, and the error that caused it, if any.
///
/// Its `Display` shows the whole chain (`message: cause: cause's cause`), so
/// it reports no separate [`Error::source`]; [`BuildError::cause`] gives the
/// cause for inspection.
pub struct BuildError {
    message: Option<String>,
    cause: Option<Box<dyn Error + Send + Sync + 'static>>,
}

impl BuildError {
    /// An error with a message and no cause.
    pub fn new(message: impl Into<String>) -> BuildError {
        BuildError {
            message: Some(message.into()),
            cause: None,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: &Path, error: io::Error) -> BuildError {
        BuildError::with_source(path.display().to_string(), error)
    }

    /// An error with a message and a cause.
    pub fn with_source(
        message: impl Into<String>,
        cause: impl Error + Send + Sync + 'static,
    ) -> BuildError {
        BuildError {
            message: Some(message.into()),
            cause: Some(Box::new(cause)),
        }
    }

    /// Wraps any error, showing just its own message (and its causes).
    pub fn from_error(cause: impl Error + Send + Sync + 'static) -> BuildError {
        BuildError {
            message: None,
            cause: Some(Box::new(cause)),
        }
    }

    /// Puts `message` in front of this error, as its context.
    #[must_use]
    pub fn context(self, message: impl Into<String>) -> BuildError {
        BuildError::with_source(message, self)
    }

    /// The cause, if any, for inspection or downcasting.
    pub fn cause(&self) -> Option<&(dyn Error + Send + Sync + 'static)> {
        self.cause.as_deref()
    }
}

impl fmt::Display for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        if let Some(message) = &self.message {
            f.write_str(message)?;
            separator = ": ";
        }
        let mut next: Option<&(dyn Error + 'static)> = match &self.cause {
            Some(cause) => Some(cause.as_ref()),
            None => None,
        };
        while let Some(error) = next {
            write!(f, "{separator}{error}")?;
            separator = ": ";
            next = error.source();
        }
        Ok(())
    }
}

impl fmt::Debug for BuildError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BuildError({:?})", self.to_string())
    }
}

impl Error for BuildError {}

impl From<io::Error> for BuildError {
    fn from(error: io::Error) -> BuildError {
        BuildError::from_error(error)
    }
}

impl From<StoreError> for BuildError {
    fn from(error: StoreError) -> BuildError {
        BuildError::from_error(error)
    }
}

impl From<String> for BuildError {
    fn from(message: String) -> BuildError {
        BuildError::new(message)
    }
}

impl From<&str> for BuildError {
    fn from(message: &str) -> BuildError {
        BuildError::new(message)
    }
}

impl From<fmt::Error> for BuildError {
    fn from(error: fmt::Error) -> BuildError {
        BuildError::from_error(error)
    }
}

impl From<Box<dyn Error + Send + Sync + 'static>> for BuildError {
    fn from(error: Box<dyn Error + Send + Sync + 'static>) -> BuildError {
        BuildError {
            message: None,
            cause: Some(error),
        }
    }
}
