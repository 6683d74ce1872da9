//! The crate's one error type.

/// Why a node's manifests could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Serializing a typed document failed (a bug: the documents are plain data).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// Which document.
        what: String,
        /// The encoder's message.
        message: String,
    },
    /// The plan asks for CoreDNS (`options.cluster_dns = "coredns"`) and the releases it is
    /// rendered with have none.
    #[error(
        "options.cluster_dns is \"coredns\", but kiln's package set pairs no CoreDNS with Kubernetes {kubernetes}\n  help: set options.cluster_dns = \"none\", or add `pods = {{ coredns = ... }}` to that version in packages/kubernetes.toml"
    )]
    NoCoredns {
        /// The plan's Kubernetes version.
        kubernetes: String,
    },
}
