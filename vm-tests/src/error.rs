//! The one error type of the VM test harness.

use std::path::PathBuf;
use std::time::Duration;

/// What went wrong while booting guests or checking the cluster.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or socket operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A node image's `manifest.json` is missing, unreadable or breaks the contract.
    #[error("node image {path}: {reason}")]
    Image {
        /// The image directory or its `manifest.json`.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A program the harness needs is not installed.
    #[error("`{program}` is not installed: apt-get install -y {package}")]
    MissingProgram {
        /// The program looked for.
        program: String,
        /// The Debian package that provides it.
        package: String,
    },
    /// A host command exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard error, or standard output when that is empty.
        output: String,
    },
    /// A QEMU process exited while it was expected to run.
    #[error("QEMU for {node} exited ({status}); last console lines:\n{console}")]
    QemuExited {
        /// The guest's name.
        node: String,
        /// QEMU's exit status and standard error.
        status: String,
        /// The tail of the guest's serial console.
        console: String,
    },
    /// A condition did not hold within its time limit.
    #[error("timed out after {waited:?} waiting for {what}; last seen:\n{last_seen}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// How long the harness waited.
        waited: Duration,
        /// The last observation: a command's output, serial lines.
        last_seen: String,
    },
    /// A check of the cluster failed: the cluster misbehaves.
    #[error("{step}: {message}")]
    Check {
        /// The scenario step.
        step: String,
        /// What was expected and what was seen.
        message: String,
    },
    /// The user pressed Ctrl-C (or the harness got SIGTERM).
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// An [`Error::Io`] with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }

    /// An [`Error::Check`] for `step`.
    pub(crate) fn check(step: &str, message: impl Into<String>) -> Self {
        Self::Check {
            step: step.to_owned(),
            message: message.into(),
        }
    }

    /// Whether this is QEMU exiting because it could not bind a forwarded host port (another
    /// process took it between [`crate::free_tcp_port`] and QEMU's start).
    pub fn is_port_clash(&self) -> bool {
        matches!(self, Self::QemuExited { status, .. } if status.contains(QEMU_HOSTFWD_FAILED))
    }
}

/// What QEMU prints when it cannot bind a `hostfwd` port.
const QEMU_HOSTFWD_FAILED: &str = "Could not set up host forwarding rule";
