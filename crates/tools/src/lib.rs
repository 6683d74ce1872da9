//! kiln-tools: the system programs kiln runs and checks its outputs with, in one model.
//!
//! Each [`Tool`] is a [`Probe`] (a program, or a file for packages without one, such as an
//! nginx module) and the Debian package that provides it. Every crate names its tools this way:
//! kiln-image the programs its builds run (`kiln_image::kubernetes::BUILD_TOOLS`,
//! `kiln_image::os::base::IMAGE_TOOLS`), the xtask the independent verifiers the test suite
//! runs, and kiln-testkit finds a test's program through [`Tool::find`].
//!
//! Programs are looked for in [`SYSTEM_PATH`] only, whatever the caller's `PATH`: those are
//! the directories apt installs into and the only ones kiln's builds run with, so a tool that
//! is found is one a build can run. [`install`] installs the missing ones' packages with the
//! machine's own `apt-get` (as root, or through `sudo`), from its configured sources; nothing
//! else in kiln changes the machine, and no build calls it.
//!
//! ```
//! use kiln_tools::{Tool, missing};
//!
//! const TOOLS: &[Tool] = &[Tool::program("sh", "dash"), Tool::file("/", "base-files")];
//! assert!(missing(TOOLS).is_empty());
//! let sh = TOOLS[0].find().expect("every system has sh");
//! assert!(sh.starts_with("/usr") || sh.starts_with("/bin") || sh.starts_with("/sbin"));
//! assert_eq!(Tool::program("no-such-program-kiln", "none").find(), None);
//! ```
#![forbid(unsafe_code)]

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The directories programs are looked for in, in order, as a `PATH`: the system's own.
/// kiln's builds run with exactly this `PATH`.
pub const SYSTEM_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// How to tell that a tool is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Probe {
    /// A program in one of [`SYSTEM_PATH`]'s directories.
    Program(&'static str),
    /// An absolute path the package installs (for packages with no program).
    File(&'static str),
}

/// Something kiln runs or reads, and the Debian package that provides it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tool {
    /// How to see that it is there.
    pub probe: Probe,
    /// The Debian package that installs it.
    pub package: &'static str,
}

impl Tool {
    /// The program `name`, from the Debian package `package`.
    pub const fn program(name: &'static str, package: &'static str) -> Tool {
        Tool {
            probe: Probe::Program(name),
            package,
        }
    }

    /// The file at the absolute path `path`, from the Debian package `package`.
    pub const fn file(path: &'static str, package: &'static str) -> Tool {
        Tool {
            probe: Probe::File(path),
            package,
        }
    }

    /// Where the tool is: the program's path in the first of [`SYSTEM_PATH`]'s directories
    /// that has it, or the file's path if it exists.
    pub fn find(&self) -> Option<PathBuf> {
        match self.probe {
            Probe::Program(name) => std::env::split_paths(SYSTEM_PATH)
                .map(|dir| dir.join(name))
                .find(|path| path.is_file()),
            Probe::File(path) => Path::new(path).exists().then(|| PathBuf::from(path)),
        }
    }

    /// Whether [`Tool::find`] finds it.
    pub fn is_present(&self) -> bool {
        self.find().is_some()
    }
}

impl fmt::Display for Tool {
    /// `program (package)` or `/path (package)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.probe {
            Probe::Program(name) => write!(f, "{name} ({})", self.package),
            Probe::File(path) => write!(f, "{path} ({})", self.package),
        }
    }
}

/// The tools of `tools` that are not installed, in order.
pub fn missing(tools: &[Tool]) -> Vec<Tool> {
    tools
        .iter()
        .copied()
        .filter(|tool| !tool.is_present())
        .collect()
}

/// The Debian packages of `tools`, sorted, each once.
pub fn packages(tools: &[Tool]) -> Vec<&'static str> {
    let mut packages: Vec<&'static str> = tools.iter().map(|tool| tool.package).collect();
    packages.sort_unstable();
    packages.dedup();
    packages
}

/// Why [`install`] did not leave every tool installed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InstallError {
    /// `apt-get` (or `sudo`) could not be started.
    #[error("could not run {command}: {source}\n  help: install {packages} by hand")]
    Spawn {
        /// The command line.
        command: String,
        /// The packages that were to be installed, space-separated.
        packages: String,
        /// Why it could not start.
        source: std::io::Error,
    },
    /// `apt-get` failed; its own output went to standard error.
    #[error("{command} failed ({status})\n  help: install {packages} by hand")]
    Failed {
        /// The command line.
        command: String,
        /// The packages that were to be installed, space-separated.
        packages: String,
        /// Its exit status.
        status: std::process::ExitStatus,
    },
    /// apt succeeded, but these tools are still not where kiln looks.
    #[error(
        "apt-get installed {packages}, but these are still missing: {missing}\n  help: kiln looks for programs in {SYSTEM_PATH} only"
    )]
    StillMissing {
        /// The packages installed, space-separated.
        packages: String,
        /// The tools still missing.
        missing: String,
    },
}

/// Installs the packages of the tools of `tools` that are missing: `apt-get update`, then
/// `apt-get install --no-install-recommends`, with the machine's own sources, as root or
/// through `sudo`. apt's output goes to the caller's standard output and error. Returns the
/// packages it installed (none when every tool was present, without running apt at all).
///
/// # Errors
///
/// If apt cannot be run or fails, or a tool is still missing afterwards.
pub fn install(tools: &[Tool]) -> Result<Vec<&'static str>, InstallError> {
    let wanted = packages(&missing(tools));
    if wanted.is_empty() {
        return Ok(wanted);
    }
    let listed = wanted.join(" ");
    let as_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout == b"0\n");
    let apt = |args: &[&str]| -> Result<(), InstallError> {
        let mut command = if as_root {
            Command::new("apt-get")
        } else {
            let mut sudo = Command::new("sudo");
            sudo.arg("apt-get");
            sudo
        };
        command.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        let line = format!(
            "{}apt-get {}",
            if as_root { "" } else { "sudo " },
            args.join(" ")
        );
        let status = command.status().map_err(|source| InstallError::Spawn {
            command: line.clone(),
            packages: listed.clone(),
            source,
        })?;
        if status.success() {
            Ok(())
        } else {
            Err(InstallError::Failed {
                command: line,
                packages: listed.clone(),
                status,
            })
        }
    };
    apt(&["update", "-qq"])?;
    let mut arguments = vec!["install", "-y", "-qq", "--no-install-recommends"];
    arguments.extend(wanted.iter().copied());
    apt(&arguments)?;
    let still = missing(tools);
    if !still.is_empty() {
        return Err(InstallError::StillMissing {
            packages: listed,
            missing: still
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        });
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_found_in_the_system_directories_only() {
        let sh = Tool::program("sh", "dash")
            .find()
            .expect("every system has sh");
        assert!(
            std::env::split_paths(SYSTEM_PATH).any(|dir| sh.parent() == Some(dir.as_path())),
            "{}",
            sh.display()
        );
        // A program outside the system's directories (here, a scratch directory) is not found:
        // builds, which run with SYSTEM_PATH, could not run it.
        let dir = tempfile::tempdir().expect("a scratch directory");
        let name = "kiln-tools-test-program";
        std::fs::write(dir.path().join(name), "#!/bin/sh\n").expect("write");
        let tool = Tool::program(name, "nothing");
        assert_eq!(tool.find(), None);
        assert_eq!(missing(&[tool]), [tool]);
    }

    #[test]
    fn files_are_found_by_their_path() {
        let dir = tempfile::tempdir().expect("a scratch directory");
        let path: &'static str = Box::leak(
            dir.path()
                .join("module.so")
                .to_string_lossy()
                .into_owned()
                .into_boxed_str(),
        );
        let tool = Tool::file(path, "a-package");
        assert!(!tool.is_present());
        std::fs::write(path, b"").expect("write");
        assert_eq!(tool.find().as_deref(), Some(Path::new(path)));
        assert_eq!(tool.to_string(), format!("{path} (a-package)"));
    }

    #[test]
    fn packages_are_sorted_and_listed_once() {
        let tools = [
            Tool::program("unsquashfs", "squashfs-tools"),
            Tool::program("cpio", "cpio"),
            Tool::program("mksquashfs", "squashfs-tools"),
        ];
        assert_eq!(packages(&tools), ["cpio", "squashfs-tools"]);
    }

    #[test]
    fn nothing_missing_installs_nothing() {
        // Does not run apt: every tool is present.
        let installed = install(&[Tool::program("sh", "dash")]).expect("nothing to do");
        assert!(installed.is_empty());
    }
}
