//! The crate's one error type.

/// Why a node's units could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag cannot be written on a command line: an empty name, a name that is not made of
    /// letters, digits, `-`, `_` and `.`, or a value with a line break or control character.
    #[error(
        "{unit}: flag `--{name}` cannot be written: {reason}\n  help: flag names are letters, digits, '-', '_' and '.' without the leading dashes; values are one line"
    )]
    InvalidFlag {
        /// The unit being rendered.
        unit: String,
        /// The flag's name, without dashes.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A node that runs a kubelet has no pod subnet (a plan from `Spec::validate` always gives
    /// it one).
    #[error("node `{node}` runs a kubelet but has no pod subnet")]
    MissingPodSubnet {
        /// The node's name.
        node: String,
    },
    /// No configuration format kiln writes is read by this containerd release.
    #[error(
        "containerd {version}: kiln writes no configuration file this release reads\n  help: containerd 1.x reads version 2, containerd 2.1 and 2.2 version 3, 2.3 and later version 4"
    )]
    UnsupportedContainerd {
        /// The release asked for.
        version: crate::ContainerdVersion,
    },
    /// Serializing a typed document failed (a bug: the documents are plain data).
    #[error("could not encode {what}: {message}")]
    Encode {
        /// Which document.
        what: &'static str,
        /// The encoder's message.
        message: String,
    },
}
