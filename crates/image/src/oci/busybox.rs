//! Debian's `busybox-static`, fetched with apt from the machine's own
//! sources, as a fixed-output derivation.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_graph::{BuildContext, BuildError, Builder};
use kiln_store::Digest;

use crate::error::ImageError;
use crate::process::{describe, hex32, run_quiet};

/// The Debian package the test image's busybox comes from.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The pinned Debian version of [`BUSYBOX_PACKAGE`] (bookworm's, from
/// `apt-cache policy busybox-static`).
pub const BUSYBOX_DEBIAN_VERSION: &str = "1:1.35.0-4+deb12u1+b1";

/// The content hash ([`kiln_store::tree_hash`]) of the busybox derivation's
/// output for [`BUSYBOX_DEBIAN_VERSION`]: `bin/busybox`, `applets` and
/// `VERSION`.
pub const BUSYBOX_CONTENT_HASH: Digest = Digest::from_bytes(hex32(
    "2bc61e7d19d926fdd18230bf93d9d5436e36bf3f578da0a74c550ffb3b8330c4",
));

/// Fetches one version of [`BUSYBOX_PACKAGE`] with `apt-get download` (the
/// machine's configured apt sources, no host named) and unpacks it with
/// `dpkg-deb -x`.
///
/// Its output holds `bin/busybox` (mode 0755), `applets` (the applet names
/// `busybox --list` prints, sorted, one a line, without `busybox` itself)
/// and `VERSION` (the Debian version and a newline). The build fails if apt
/// hands over another version; used through [`busybox_static`](crate::busybox_static),
/// the graph then checks the output against its pinned content hash and a
/// mismatch fails naming both hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianBusybox {
    version: String,
}

impl DebianBusybox {
    /// The builder for Debian version `version` of [`BUSYBOX_PACKAGE`].
    pub fn new(version: &str) -> DebianBusybox {
        DebianBusybox {
            version: version.to_owned(),
        }
    }

    /// Fetches and unpacks into `out` (an empty directory).
    ///
    /// # Errors
    ///
    /// If apt or dpkg-deb fail, apt gives another version, or the package
    /// holds no `bin/busybox`.
    pub fn build_into(&self, out: &Path) -> Result<(), ImageError> {
        let scratch = tempfile::tempdir().map_err(|error| ImageError::io("(tempdir)", error))?;
        let download = scratch.path().join("download");
        fs::create_dir(&download).map_err(|error| ImageError::io(&download, error))?;
        // apt runs its download as the unprivileged `_apt` user when it can.
        let _ = fs::set_permissions(&download, fs::Permissions::from_mode(0o777));
        let mut command = Command::new("apt-get");
        command
            .current_dir(&download)
            .args(["download", "-q"])
            .arg(format!("{BUSYBOX_PACKAGE}={}", self.version));
        run_quiet(command)?;
        let deb = single_deb(&download)?;

        let actual = command_output(Command::new("dpkg-deb").arg("-f").arg(&deb).arg("Version"))?;
        if actual.trim() != self.version {
            return Err(ImageError::Source {
                file: deb,
                line: 0,
                reason: format!(
                    "expected {BUSYBOX_PACKAGE} version {}, apt fetched {}",
                    self.version,
                    actual.trim()
                ),
            });
        }
        let root = scratch.path().join("root");
        let mut extract = Command::new("dpkg-deb");
        extract.arg("-x").arg(&deb).arg(&root);
        run_quiet(extract)?;

        let source = root.join("bin/busybox");
        let bin = out.join("bin");
        fs::create_dir_all(&bin).map_err(|error| ImageError::io(&bin, error))?;
        let busybox = bin.join("busybox");
        fs::copy(&source, &busybox).map_err(|error| ImageError::io(&source, error))?;
        fs::set_permissions(&busybox, fs::Permissions::from_mode(0o755))
            .map_err(|error| ImageError::io(&busybox, error))?;

        let listed = command_output(Command::new(&busybox).arg("--list"))?;
        let mut applets: Vec<&str> = listed
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty() && *name != "busybox")
            .collect();
        applets.sort_unstable();
        applets.dedup();
        let applets_path = out.join("applets");
        let mut text = applets.join("\n");
        text.push('\n');
        fs::write(&applets_path, text).map_err(|error| ImageError::io(&applets_path, error))?;
        let version_path = out.join("VERSION");
        fs::write(&version_path, format!("{}\n", self.version))
            .map_err(|error| ImageError::io(&version_path, error))
    }
}

impl Builder for DebianBusybox {
    fn kind(&self) -> &str {
        "kiln-image.busybox.debian"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Vec<u8> {
        self.version.as_bytes().to_vec()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        ctx.report(&format!(
            "apt-get download {BUSYBOX_PACKAGE}={}",
            self.version
        ));
        self.build_into(ctx.out()).map_err(BuildError::from_error)
    }
}

fn single_deb(dir: &Path) -> Result<PathBuf, ImageError> {
    let mut debs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|error| ImageError::io(dir, error))? {
        let path = entry.map_err(|error| ImageError::io(dir, error))?.path();
        if path.extension().is_some_and(|extension| extension == "deb") {
            debs.push(path);
        }
    }
    match <[PathBuf; 1]>::try_from(debs) {
        Ok([deb]) => Ok(deb),
        Err(debs) => Err(ImageError::Source {
            file: dir.to_owned(),
            line: 0,
            reason: format!(
                "expected one .deb from apt-get download, found {}",
                debs.len()
            ),
        }),
    }
}

/// Runs `command` and returns its standard output.
fn command_output(command: &mut Command) -> Result<String, ImageError> {
    let description = describe(command);
    let output = command.output().map_err(|error| ImageError::Command {
        command: description.clone(),
        status: format!("could not run: {error}"),
        log_tail: Vec::new(),
    })?;
    if !output.status.success() {
        return Err(ImageError::Command {
            command: description,
            status: output.status.to_string(),
            log_tail: String::from_utf8_lossy(&output.stderr)
                .lines()
                .map(str::to_owned)
                .collect(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
