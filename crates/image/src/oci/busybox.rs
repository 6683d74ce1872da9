//! Debian's `busybox-static`, fetched with apt as `kiln.lock` pins it (or as resolved when the
//! archive has moved), unpacked and listed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kiln_graph::{BuildContext, BuildError, Builder, Params};

use crate::error::ImageError;
use crate::lock::{LockedPackage, PackageSetLock};
use crate::process::{run_output, run_quiet};
use crate::resolve::{AptSources, Indices, Resolver};

/// The Debian package the test image's busybox comes from.
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// Fetches exactly one locked `.deb` of [`BUSYBOX_PACKAGE`] through a private apt
/// configuration of the given sources (no host named here), checks its SHA-256 against the
/// lock, and unpacks it with `dpkg-deb -x`.
///
/// Its output holds `bin/busybox` (mode 0755), `applets` (the applet names
/// `busybox --list` prints, sorted, one a line, without `busybox` itself)
/// and `VERSION` (the Debian version and a newline). Through
/// [`busybox_static`](crate::oci::busybox_static), a lock that records the set's content hash
/// makes it a fixed-output derivation, checked against that hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianBusybox {
    package: LockedPackage,
    sources: AptSources,
}

impl DebianBusybox {
    /// The builder for the one package of `set`, fetched from `sources`.
    ///
    /// # Errors
    ///
    /// If `set` is not exactly one package named [`BUSYBOX_PACKAGE`].
    pub fn new(set: &PackageSetLock, sources: &AptSources) -> Result<DebianBusybox, ImageError> {
        match &set.packages[..] {
            [package] if package.name == BUSYBOX_PACKAGE => Ok(DebianBusybox {
                package: package.clone(),
                sources: sources.clone(),
            }),
            packages => Err(ImageError::Assembly {
                what: "busybox".into(),
                reason: format!(
                    "the busybox input must be exactly the package {BUSYBOX_PACKAGE}, not [{}]",
                    packages
                        .iter()
                        .map(|package| package.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }),
        }
    }

    /// Fetches and unpacks into `out` (an empty directory).
    ///
    /// # Errors
    ///
    /// If apt or dpkg-deb fail, no source has the locked version, its SHA-256 differs from the
    /// lock, or the package holds no `bin/busybox`.
    pub fn build_into(&self, out: &Path) -> Result<(), ImageError> {
        let scratch = tempfile::tempdir().map_err(|error| ImageError::io("(tempdir)", error))?;
        let apt = Resolver::new(&self.sources, Indices::Binary)?;
        let deb = apt.download(&self.package, &scratch.path().join("download"))?;
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

        let listed = run_output({
            let mut list = Command::new(&busybox);
            list.arg("--list");
            list
        })?;
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
        fs::write(&version_path, format!("{}\n", self.package.version))
            .map_err(|error| ImageError::io(&version_path, error))
    }
}

/// A [`DebianBusybox`] output read back: the binary and its applets, as the images built from
/// it take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Busybox {
    /// The contents of `bin/busybox`.
    pub binary: Vec<u8>,
    /// The applet names of `applets`, one a line there, `busybox` itself not among them.
    pub applets: Vec<String>,
}

impl Busybox {
    /// Reads `bin/busybox` and `applets` from `dir`, a [`DebianBusybox`] output.
    ///
    /// # Errors
    ///
    /// If either file cannot be read.
    pub fn read(dir: &Path) -> Result<Busybox, ImageError> {
        let binary_path = dir.join("bin/busybox");
        let binary = fs::read(&binary_path).map_err(|error| ImageError::io(&binary_path, error))?;
        let applets_path = dir.join("applets");
        let applets = fs::read_to_string(&applets_path)
            .map_err(|error| ImageError::io(&applets_path, error))?
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Busybox { binary, applets })
    }

    /// The applet names as string slices, as the image recipes take them.
    pub fn applet_names(&self) -> Vec<&str> {
        self.applets.iter().map(String::as_str).collect()
    }
}

impl Builder for DebianBusybox {
    fn kind(&self) -> &str {
        "kiln-image.busybox.debian"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self) -> Params {
        // The sources are not here: a mirror serves the same `.deb`, checked by hash.
        Params::of(&self.package.to_string())
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        ctx.report(&format!(
            "apt-get download {BUSYBOX_PACKAGE}={}",
            self.package.version
        ));
        self.build_into(ctx.out()).map_err(BuildError::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `DebianBusybox` writes reads back: the binary's bytes and every applet, in order,
    /// with no empty name; a missing file is an error naming it.
    #[test]
    fn a_busybox_output_reads_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir(dir.path().join("bin")).expect("bin");
        fs::write(dir.path().join("bin/busybox"), b"\x7fELF(busybox)").expect("binary");
        fs::write(dir.path().join("applets"), "nc\nsh\n\nwget\n").expect("applets");
        let busybox = Busybox::read(dir.path()).expect("read");
        assert_eq!(busybox.binary, b"\x7fELF(busybox)");
        assert_eq!(busybox.applet_names(), ["nc", "sh", "wget"]);

        fs::remove_file(dir.path().join("applets")).expect("remove");
        let error = Busybox::read(dir.path())
            .expect_err("no applets")
            .to_string();
        assert!(error.contains("applets"), "{error}");
    }
}
