//! The crate's one error type.

use std::path::PathBuf;

use kiln_store::{Digest, StoreError};

/// Why an image input could not be described, fetched or built.
///
/// Every variant names what it is about (the binary, the file and line, the
/// command) and, where it helps, what would be valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// A binary's bytes are not the ones it is pinned to.
    #[error("{binary} from {origin}: expected SHA-256 {expected}, got {actual}")]
    ChecksumMismatch {
        /// The binary, such as `kubelet`.
        binary: String,
        /// Where its bytes came from: a URL or a path.
        origin: String,
        /// The pinned SHA-256.
        expected: Digest,
        /// The SHA-256 of what arrived.
        actual: Digest,
    },
    /// Downloading a binary failed.
    #[error("downloading {binary} from {url}: {reason}")]
    Download {
        /// The binary.
        binary: String,
        /// The URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A source does not provide exactly the Kubernetes binaries.
    #[error("{source_kind} source: {reason}; the binaries are: {}", crate::kubernetes::KUBERNETES_BINARIES.join(", "))]
    Binaries {
        /// `release` or `path`.
        source_kind: &'static str,
        /// Which binaries are missing or unexpected.
        reason: String,
    },
    /// A `path` source's directory changed after it was hashed.
    #[error(
        "{dir} changed since it was pinned: its content hash was {expected}, it is now {actual}"
    )]
    DirectoryChanged {
        /// The directory.
        dir: PathBuf,
        /// The content hash it was pinned to.
        expected: Digest,
        /// Its content hash now.
        actual: Digest,
    },
    /// A file of a source package is not as the build expects (its
    /// changelog, its version stamp, the build script it adjusts).
    #[error("{file}:{line}: {reason}")]
    Source {
        /// The file.
        file: PathBuf,
        /// The 1-based line (0 when about the whole file or directory).
        line: usize,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// The machine's apt sources give nothing to fetch source packages from.
    #[error("no apt sources in {searched}: found no `Types: deb` stanza or `deb` line")]
    NoAptSources {
        /// The files and directories looked at.
        searched: String,
    },
    /// Build tools are missing; `kiln_tools::install` installs them (the xtask does, before a
    /// build).
    #[error(
        "missing build tools {}\n  help: `cargo xtask build-cluster` installs them, or run `apt-get install {}`",
        tools.join(", "), packages.join(" ")
    )]
    MissingBuildTools {
        /// The tools not found, as `program (package)`.
        tools: Vec<String>,
        /// The Debian packages that provide them, sorted, each once.
        packages: Vec<String>,
    },
    /// A command failed.
    #[error("`{command}` failed ({status}){}", tail_text(log_tail))]
    Command {
        /// The command, for people.
        command: String,
        /// Its exit status, as text.
        status: String,
        /// The last lines of its output.
        log_tail: Vec<String>,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Hashing a tree failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The packages `mmdebstrap` installed are not exactly the resolved set it was given
    /// (apt's sources changed between resolving and building, or kiln's resolution and
    /// mmdebstrap's disagree).
    #[error(
        "the base OS's installed packages differ from the resolved set ({} change(s)):\n  {}\nbuild again: resolution runs first, and sees the archive as it is now",
        changes.len(), changes.join("\n  ")
    )]
    LockMismatch {
        /// One line per changed package.
        changes: Vec<String>,
    },
    /// `--locked`: a locked version can no longer be had from any apt source.
    #[error(
        "kiln.lock's versions are no longer all in the apt sources ({} change(s)):\n  {}\nadd a source that still has them (--apt-source with a mirror or a snapshot archive of the locked day), or record the archive's current set with `cargo xtask lock`",
        changes.len(), changes.join("\n  ")
    )]
    Drift {
        /// One line per moved package: `input: package old -> new`.
        changes: Vec<String>,
    },
    /// A lock file is malformed.
    #[error("{file}:{line}: {reason}")]
    Lock {
        /// The lock file.
        file: String,
        /// The 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A package declaration (`packages/<name>.toml`) is malformed.
    #[error("{file}:{line}: {reason}")]
    Package {
        /// The declaration's file.
        file: String,
        /// The 1-based line (0 when unknown).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The package set has no such package, or no such version of it.
    #[error("{}", match version {
        Some(version) => format!("kiln has no {package} {version}; it has {known}"),
        None => format!("kiln has no package named {package}; it has {known}"),
    })]
    UnknownPackage {
        /// The package asked for.
        package: String,
        /// The version asked for, if one was.
        version: Option<String>,
        /// What there is instead: the package's versions, or the package names.
        known: String,
    },
    /// A Go build's toolchain is not the version its package pins.
    #[error("{package} {version} is pinned to Go {pinned}, but `{go} version` says {found}")]
    GoToolchain {
        /// The package.
        package: String,
        /// Its version.
        version: String,
        /// The pinned Go version.
        pinned: String,
        /// The `go` program used.
        go: String,
        /// What it reported.
        found: String,
    },
    /// An image could not be assembled from its inputs.
    #[error("{what}: {reason}")]
    Assembly {
        /// The image part being assembled.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

impl ImageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> ImageError {
        ImageError::Io {
            path: path.into(),
            source,
        }
    }
}

fn tail_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last output:\n  {}", lines.join("\n  "))
    }
}
