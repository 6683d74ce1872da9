//! The store's error type and the result of a build whose builder may fail.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Everything that can go wrong in the store.
///
/// Every variant names the path (or, for parse errors, the input) involved.
/// Each message is complete on its own: the underlying `io::Error` is part of
/// the message rather than a separate `source`, so reporters that print a
/// chain never repeat it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file-system operation failed.
    #[error("cannot {operation} {path}: {error}")]
    Io {
        /// What the store was doing, as a verb phrase ("create directory").
        operation: &'static str,
        /// The path it was doing it to.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },
    /// A store name is not allowed.
    #[error(
        "invalid store name {name:?}: {reason} (names are 1 to 200 characters from A-Z a-z 0-9 + - . _ ? = and do not start with '.')"
    )]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A string is not a digest.
    #[error("invalid digest {input:?}: {reason}")]
    InvalidDigest {
        /// The rejected text.
        input: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A tree holds something other than a regular file, a directory or a symlink.
    #[error("cannot hash {path}: only regular files, directories and symlinks can be stored")]
    UnsupportedFileType {
        /// The offending entry.
        path: PathBuf,
    },
    /// A file changed size while it was being hashed.
    #[error("{path} changed while it was being hashed: expected {expected} bytes, read {actual}")]
    FileChanged {
        /// The file.
        path: PathBuf,
        /// Its size when hashing started.
        expected: u64,
        /// The number of bytes actually read.
        actual: u64,
    },
    /// Garbage collection was asked to remove something that is not a store
    /// path (or a leftover of one) of its store.
    #[error("refusing to remove {path}: it is not a store path or leftover of the store {root}")]
    NotInStore {
        /// What was to be removed.
        path: PathBuf,
        /// The store's root.
        root: PathBuf,
    },
    /// A fixed-output build produced different content than promised.
    #[error("content hash mismatch for {path}: expected {expected}, got {actual}")]
    ContentHashMismatch {
        /// The store path that was being built (and was not created).
        path: PathBuf,
        /// The content hash the caller promised.
        expected: Digest,
        /// The content hash the builder produced.
        actual: Digest,
    },
}

impl StoreError {
    pub(crate) fn io(operation: &'static str, path: impl Into<PathBuf>, error: io::Error) -> Self {
        StoreError::Io {
            operation,
            path: path.into(),
            error,
        }
    }
}

/// Why [`Store::build`](crate::Store::build) failed: either the caller's
/// builder returned an error, or the store itself did.
#[derive(Debug)]
pub enum BuildFailure<E> {
    /// The builder function returned this error; its temporary directory was removed.
    Builder(E),
    /// The store failed (locking, hashing, renaming, ...).
    Store(StoreError),
}

impl<E: std::fmt::Display> std::fmt::Display for BuildFailure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildFailure::Builder(error) => write!(f, "builder failed: {error}"),
            BuildFailure::Store(error) => write!(f, "{error}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for BuildFailure<E> {}

impl<E> From<StoreError> for BuildFailure<E> {
    fn from(error: StoreError) -> Self {
        BuildFailure::Store(error)
    }
}
