//! The crate's one error type.

/// Why a node's manifests could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The plan has no node with this name.
    #[error("the plan has no node `{node}`\n  help: use a name from the spec's [[nodes]]")]
    UnknownNode {
        /// The name asked for.
        node: String,
    },
    /// Serializing a typed document failed (a bug: the documents are plain data).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// Which document.
        what: String,
        /// The encoder's message.
        message: String,
    },
}
