//! What can go wrong between kiln and a registry.

use std::io;
use std::path::PathBuf;

use kiln_store::StoreError;

/// An error from parsing a registry reference, reading credentials, talking to a registry, or
/// turning an artifact back into a store path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OciError {
    /// The text is not `oci://HOST[:PORT]/REPOSITORY`.
    #[error("{input:?} is not a registry: {reason} (expected oci://HOST[:PORT]/REPOSITORY)")]
    Reference {
        /// What was given.
        input: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The request never got an answer (connection refused, reset, timed out, TLS).
    #[error("{method} {url}: {reason}")]
    Transport {
        /// The HTTP method.
        method: String,
        /// The URL asked.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// The registry answered with an unexpected status.
    #[error("{method} {url}: the registry answered {status}{message}")]
    Status {
        /// The HTTP method.
        method: String,
        /// The URL asked.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's own words (`: ...`), if it sent any.
        message: String,
    },
    /// The registry wants credentials and none were found for it.
    #[error(
        "{registry} asks for credentials and none were found for it (looked in {searched}); \
         log in with a container tool or write them to one of those files"
    )]
    NoCredentials {
        /// `HOST[:PORT]`.
        registry: String,
        /// The credential files looked in.
        searched: String,
    },
    /// The registry refused the credentials it was given.
    #[error("{registry} refused the credentials for {user:?} from {file} ({status})")]
    Refused {
        /// `HOST[:PORT]`.
        registry: String,
        /// The user name sent.
        user: String,
        /// Where the credentials came from.
        file: String,
        /// The HTTP status code of the refusal.
        status: u16,
    },
    /// The registry's authentication challenge cannot be answered.
    #[error("{registry}: cannot answer its authentication challenge {challenge:?}: {reason}")]
    Challenge {
        /// `HOST[:PORT]`.
        registry: String,
        /// The `WWW-Authenticate` header.
        challenge: String,
        /// Why not.
        reason: String,
    },
    /// A credentials file could not be read or parsed.
    #[error("reading credentials from {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A blob's bytes do not have the digest they were asked for by.
    #[error("blob {expected} from {url} has the digest {actual}: the registry's copy is corrupt")]
    BlobDigest {
        /// Where it came from.
        url: String,
        /// The digest asked for.
        expected: String,
        /// The digest of what came.
        actual: String,
    },
    /// The tag exists but does not hold the store path asked for.
    #[error("{repository}:{tag} is not kiln's store path {name}: {reason}")]
    Artifact {
        /// `oci://HOST[:PORT]/REPOSITORY`.
        repository: String,
        /// The tag (the path's digest).
        tag: String,
        /// The store name asked for.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A store path cannot be written as an artifact, or an artifact's archive cannot be
    /// unpacked into a store path.
    #[error("{path}: {reason}")]
    Archive {
        /// The entry (or the tree) concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A store path holds what must never leave the machine.
    #[error(
        "{path} holds a private key ({file}) but the graph calls it public: refusing to push it"
    )]
    HoldsKey {
        /// The store path.
        path: PathBuf,
        /// The file in it.
        file: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Reading or writing a local file failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

impl OciError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> OciError {
        OciError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn archive(path: impl Into<String>, reason: impl Into<String>) -> OciError {
        OciError::Archive {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
