//! Debian's `busybox-static`, fetched with apt as `kiln.lock` pins it (or as resolved when the
//! archive has moved), unpacked and listed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use kiln_graph::{BuildContext, BuildError, Builder, Params};
use kiln_store::Digest;

use crate::error::ImageError;
use crate::lock::{LockedPackage, PackageSetLock, SourceLock};
use crate::process::{run_output, run_quiet};
use crate::resolve::{AptSources, Indices, Resolver};
use crate::toolchain::Compiler;

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

        write_output(&root.join("bin/busybox"), &self.package.version, out).map(drop)
    }
}

/// Writes a busybox output into `out`: `bin/busybox` (a copy of `binary`, mode 0755), `applets`
/// (what it lists) and `VERSION` (`version` and a newline). Returns the binary's SHA-256.
fn write_output(binary: &Path, version: &str, out: &Path) -> Result<Digest, ImageError> {
    let bin = out.join("bin");
    fs::create_dir_all(&bin).map_err(|error| ImageError::io(&bin, error))?;
    let busybox = bin.join("busybox");
    fs::copy(binary, &busybox).map_err(|error| ImageError::io(binary, error))?;
    fs::set_permissions(&busybox, fs::Permissions::from_mode(0o755))
        .map_err(|error| ImageError::io(&busybox, error))?;
    let bytes = fs::read(&busybox).map_err(|error| ImageError::io(&busybox, error))?;
    let digest = Digest::from_bytes(<sha2::Sha256 as sha2::Digest>::digest(&bytes).into());

    let listed = run_output({
        let mut list = Command::new(&busybox);
        list.env_clear().arg("--list");
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
    fs::write(&version_path, format!("{version}\n"))
        .map_err(|error| ImageError::io(&version_path, error))?;
    Ok(digest)
}

/// Debian's source package of busybox, which [`SourceBusybox`] builds.
pub const BUSYBOX_SOURCE_PACKAGE: &str = "busybox";

/// The patches of Debian's series that [`SourceBusybox`] leaves out, each with why: the
/// conformance images' busybox must behave as upstream's, whose images the suite was written
/// against.
pub const DROPPED_PATCHES: [(&str, &str); 2] = [
    (
        "revert-9c143ce52da11ec3d21a3491c3749841d3dc10f0.patch",
        "reverts upstream's commit that makes ash keep environment variables whose names are \
         not shell names (`data-1`), which the suite's ConfigMap and Secret tests pass to `sh -c env`",
    ),
    (
        "temp-deb-installer-hack.patch",
        "is written against the tree the revert leaves (and only serves Debian's installer)",
    ),
];

/// Debian's build flags for busybox on bookworm (`dpkg-buildflags` with
/// `DEB_BUILD_MAINT_OPTIONS=hardening=+all`, less the `-O2` that `debian/rules` filters out so
/// busybox's own `-Os` applies, and less the build path's prefix map, which kiln writes for its
/// own paths): `CFLAGS CPPFLAGS`, as `debian/rules` passes them as `CONFIG_EXTRA_CFLAGS`.
pub const DEBIAN_CFLAGS: &str =
    "-g -fstack-protector-strong -Wformat -Werror=format-security -Wdate-time -D_FORTIFY_SOURCE=2";

/// Debian's `CFLAGS LDFLAGS` for busybox, as `debian/rules` passes them as
/// `CONFIG_EXTRA_LDFLAGS` (see [`DEBIAN_CFLAGS`]).
pub const DEBIAN_LDFLAGS: &str =
    "-g -fstack-protector-strong -Wformat -Werror=format-security -Wl,-z,relro -Wl,-z,now";

/// The programs the busybox source build runs from the machine (the compiler, `make` and
/// `patch` come from the C toolchain), each with its Debian package.
pub const BUSYBOX_BUILD_TOOLS: [kiln_tools::Tool; 4] = [
    kiln_tools::Tool::program("apt-get", "apt"),
    kiln_tools::Tool::program("dpkg-source", "dpkg-dev"),
    kiln_tools::Tool::program("bzip2", "bzip2"),
    kiln_tools::Tool::program("yes", "coreutils"),
];

/// busybox built from Debian's source package as `kiln.lock` pins it, with Debian's static
/// configuration and flags, by the C toolchain of input `toolchain` (a
/// [`crate::toolchain::CToolchain`] output), Debian's patches applied but
/// [`DROPPED_PATCHES`]: upstream's ash, Debian's build.
///
/// The source comes through a private apt configuration of the given sources' `deb-src`
/// entries; `dpkg-source` checks its files against the `.dsc`. The build's paths are mapped
/// away (`-ffile-prefix-map`) and `KCONFIG_NOTIMESTAMP` is set, so the binary is the same on
/// any machine; where the lock records its SHA-256 (`[busybox-source.binaries]`), a build that
/// differs fails. The output has [`DebianBusybox`]'s layout (`bin/busybox`, `applets`,
/// `VERSION`), so the images take either.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBusybox {
    lock: SourceLock,
    sources: AptSources,
}

impl SourceBusybox {
    /// The builder for the source package `lock` names, fetched from `sources`' `deb-src`
    /// counterparts.
    ///
    /// # Errors
    ///
    /// If `lock` is not of [`BUSYBOX_SOURCE_PACKAGE`] or names no version.
    pub fn new(lock: &SourceLock, sources: &AptSources) -> Result<SourceBusybox, ImageError> {
        if lock.package != BUSYBOX_SOURCE_PACKAGE || lock.version.is_empty() {
            return Err(ImageError::Assembly {
                what: "busybox's source".into(),
                reason: format!(
                    "the lock's [busybox-source] must name a version of the source package \
                     {BUSYBOX_SOURCE_PACKAGE}, not {:?} {:?} (`cargo xtask lock` resolves it)",
                    lock.package, lock.version
                ),
            });
        }
        Ok(SourceBusybox {
            lock: lock.clone(),
            sources: sources.clone(),
        })
    }

    /// Builds into `out` with the C toolchain tree at `toolchain`, reporting progress. The
    /// scratch directory is removed, or kept and named after a failure.
    ///
    /// # Errors
    ///
    /// If a step fails (its command's last lines), the series lacks a dropped patch, or the
    /// binary differs from the locked one.
    pub fn build_into(
        &self,
        toolchain: &Path,
        out: &Path,
        report: &dyn Fn(&str),
    ) -> Result<(), ImageError> {
        crate::process::require_tools(&BUSYBOX_BUILD_TOOLS)?;
        let compiler = Compiler::at(toolchain)?;
        crate::process::in_scratch("kiln-busybox-", report, |scratch| {
            self.build_in(&compiler, scratch, out, report)
        })
    }

    fn build_in(
        &self,
        compiler: &Compiler,
        scratch: &Path,
        out: &Path,
        report: &dyn Fn(&str),
    ) -> Result<(), ImageError> {
        report("fetching source indices with apt (deb-src derived from the apt sources)");
        let apt = Resolver::new(&self.sources, Indices::Source)?;
        report(&format!(
            "fetching source package {} {}",
            self.lock.package, self.lock.version
        ));
        let download = scratch.join("download");
        fs::create_dir_all(&download).map_err(|error| ImageError::io(&download, error))?;
        let _ = fs::set_permissions(&download, fs::Permissions::from_mode(0o777));
        let mut fetch = apt.apt("apt-get");
        fetch
            .current_dir(&download)
            .args(["source", "--only-source", "--download-only"])
            .arg(format!("{}={}", self.lock.package, self.lock.version));
        run_quiet(fetch)?;
        let dsc = download.join(format!(
            "{}_{}.dsc",
            self.lock.package,
            without_epoch(&self.lock.version)
        ));
        let tree = scratch.join("busybox");
        let mut unpack = Command::new("dpkg-source");
        unpack
            .env("LC_ALL", "C.UTF-8")
            .args(["--skip-patches", "-x"])
            .arg(&dsc)
            .arg(&tree);
        run_quiet(unpack)?;

        let series_path = tree.join("debian/patches/series");
        let series = fs::read_to_string(&series_path)
            .map_err(|error| ImageError::io(&series_path, error))?;
        let patches = series_patches(&series, &series_path)?;
        report(&format!(
            "applying {} of Debian's patches (leaving out {})",
            patches.len(),
            DROPPED_PATCHES.map(|(name, _)| name).join(", ")
        ));
        for patch in &patches {
            let mut apply = compiler.command("patch");
            apply
                .current_dir(&tree)
                .args(["-p1", "--forward", "--no-backup-if-mismatch", "-i"])
                .arg(tree.join("debian/patches").join(patch));
            run_quiet(apply)?;
        }

        // Debian's static flavour's configuration: the OS's part, then the flavour's, then
        // Kconfig's answers for anything they leave open (its defaults, as `yes ""` gives).
        let mut config = String::new();
        for part in ["debian/config/os/linux", "debian/config/pkg/static"] {
            let path = tree.join(part);
            config.push_str(
                &fs::read_to_string(&path).map_err(|error| ImageError::io(&path, error))?,
            );
        }
        let config_path = tree.join(".config");
        fs::write(&config_path, config).map_err(|error| ImageError::io(&config_path, error))?;
        let make = |target: &str| -> Command {
            let root = compiler.root().display();
            let cc = compiler.cc();
            let map = format!("-ffile-prefix-map={}=.", tree.display());
            let mut make = compiler.command("make");
            make.current_dir(&tree)
                .env("KCONFIG_NOTIMESTAMP", "1")
                .arg(target)
                .arg(format!("CC={cc} {map}"))
                .arg(format!("HOSTCC={cc} {map}"))
                .arg(format!("CONFIG_EXTRA_CFLAGS={DEBIAN_CFLAGS} {map}"))
                .arg(format!("CONFIG_EXTRA_LDFLAGS={DEBIAN_LDFLAGS} {map}"))
                .arg(format!(
                    "BB_EXTRA_VERSION=kiln, Debian {}",
                    self.lock.version
                ))
                .arg(format!("STRIP={root}/usr/bin/strip"))
                .arg("SKIP_STRIP=y")
                .arg("V=1");
            make
        };
        let mut configure = Command::new("sh");
        configure
            .env_clear()
            .envs(compiler.environment())
            .current_dir(&tree)
            .arg("-c")
            .arg(format!(
                "yes '' | {}",
                shell_words(&make("silentoldconfig"))
            ));
        run_quiet(configure)?;

        let jobs = std::thread::available_parallelism().map_or(1, usize::from);
        report(&format!(
            "compiling busybox with {jobs} jobs (two to five minutes)"
        ));
        let mut build = make("all");
        build.arg(format!("-j{jobs}"));
        let mut compiled = 0usize;
        let started = std::time::Instant::now();
        crate::process::run_streaming(
            build,
            &scratch.join("build.log"),
            std::time::Duration::from_secs(10),
            &mut |output| match output {
                crate::process::Output::Line(line) => {
                    if line.contains(" -c -o ") {
                        compiled += 1;
                        if compiled.is_multiple_of(100) {
                            report(&format!(
                                "compiled {compiled} files in {:.0} s",
                                started.elapsed().as_secs_f64()
                            ));
                        }
                    }
                }
                crate::process::Output::Quiet => {}
            },
        )?;
        report(&format!(
            "compiled {compiled} files in {:.0} s",
            started.elapsed().as_secs_f64()
        ));

        // As Debian's dh_strip does for an executable.
        let binary = tree.join("busybox");
        let mut strip = compiler.command("strip");
        strip
            .args(["--remove-section=.comment", "--remove-section=.note"])
            .arg(&binary);
        run_quiet(strip)?;
        let actual = write_output(&binary, &self.lock.version, out)?;
        match self.lock.binaries.get("busybox") {
            Some(expected) if *expected != actual => Err(ImageError::ChecksumMismatch {
                binary: "busybox".into(),
                origin: format!(
                    "Debian's {} {} built in {}",
                    self.lock.package,
                    self.lock.version,
                    tree.display()
                ),
                expected: *expected,
                actual,
            }),
            _ => {
                report(&format!("busybox: SHA-256 {actual}"));
                Ok(())
            }
        }
    }
}

/// A Debian version without its epoch (`1:1.35.0-4` → `1.35.0-4`), as file names carry it.
fn without_epoch(version: &str) -> &str {
    version.split_once(':').map_or(version, |(_, rest)| rest)
}

/// `command` as one line of `sh`: its program and arguments, each quoted.
fn shell_words(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| format!("'{}'", word.to_string_lossy().replace('\'', r"'\''")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The patches of a quilt `series` file to apply, in order: every entry (its first word;
/// comments and blank lines skipped) but [`DROPPED_PATCHES`]. `file` names it in errors.
///
/// # Errors
///
/// If a dropped patch is not in the series (Debian's source changed: what kiln leaves out
/// must be looked at again), or an entry has options (`-p0`), which kiln does not apply.
pub fn series_patches(series: &str, file: &Path) -> Result<Vec<String>, ImageError> {
    let mut patches = Vec::new();
    let mut dropped = Vec::new();
    for (index, line) in series.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        let mut words = line.split_whitespace();
        let Some(name) = words.next() else {
            continue;
        };
        if words.next().is_some() {
            return Err(ImageError::Source {
                file: file.to_owned(),
                line: index + 1,
                reason: format!("the entry {line:?} has options, which kiln does not apply"),
            });
        }
        if DROPPED_PATCHES.iter().any(|(dropped, _)| *dropped == name) {
            dropped.push(name);
        } else {
            patches.push(name.to_owned());
        }
    }
    for (name, why) in DROPPED_PATCHES {
        if !dropped.contains(&name) {
            return Err(ImageError::Source {
                file: file.to_owned(),
                line: 0,
                reason: format!(
                    "the series has no {name}, which kiln leaves out because it {why}: \
                     look at Debian's source again"
                ),
            });
        }
    }
    Ok(patches)
}

impl Builder for SourceBusybox {
    fn kind(&self) -> &str {
        "kiln-image.busybox.source"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        #[derive(serde::Serialize)]
        struct Encoded<'a> {
            package: &'a str,
            version: &'a str,
            dropped: Vec<&'a str>,
            cflags: &'a str,
            ldflags: &'a str,
        }
        // The toolchain is an input; the sources are not here (a mirror serves the same
        // files, which dpkg-source checks against the `.dsc`).
        Params::of(&Encoded {
            package: &self.lock.package,
            version: &self.lock.version,
            dropped: DROPPED_PATCHES.iter().map(|(name, _)| *name).collect(),
            cflags: DEBIAN_CFLAGS,
            ldflags: DEBIAN_LDFLAGS,
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let toolchain = ctx.input("toolchain")?;
        self.build_into(toolchain, ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
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

    /// Debian's series (bookworm's, as it is) less the dropped patches, in order; a series
    /// without one of them, or with an entry's options, is refused naming the file.
    #[test]
    fn the_series_is_applied_but_the_dropped_patches() {
        let series = "# The following patches need significant re-working\n\
            # u-mount-FreeBSD-support.patch\n\
            \n\
            # other patches\n\
            shell-ash-export-HOME.patch\n\
            version.patch\n\
            revert-9c143ce52da11ec3d21a3491c3749841d3dc10f0.patch\n\
            temp-deb-installer-hack.patch\n\
            CVE-2023-42363.patch\n";
        let file = Path::new("debian/patches/series");
        assert_eq!(
            series_patches(series, file).expect("applies"),
            [
                "shell-ash-export-HOME.patch",
                "version.patch",
                "CVE-2023-42363.patch"
            ]
        );
        let without = series.replace("temp-deb-installer-hack.patch\n", "");
        let error = series_patches(&without, file)
            .expect_err("a dropped patch missing")
            .to_string();
        assert!(
            error.contains("debian/patches/series") && error.contains("temp-deb-installer-hack"),
            "{error}"
        );
        let options = series.replace("version.patch", "version.patch -p0");
        let error = series_patches(&options, file)
            .expect_err("options")
            .to_string();
        assert!(error.contains("debian/patches/series:6:"), "{error}");
    }

    /// A lock naming another source package, or none, is refused.
    #[test]
    fn only_a_locked_busybox_source_builds() {
        let lock = SourceLock {
            package: BUSYBOX_SOURCE_PACKAGE.to_owned(),
            version: String::new(),
            content_hash: None,
            binaries: std::collections::BTreeMap::new(),
            toolchain: Vec::new(),
        };
        let error = SourceBusybox::new(&lock, &AptSources::default())
            .expect_err("no version")
            .to_string();
        assert!(error.contains("cargo xtask lock"), "{error}");
        let other = SourceLock {
            package: "dash".to_owned(),
            version: "0.5.12-2".to_owned(),
            ..lock.clone()
        };
        assert!(SourceBusybox::new(&other, &AptSources::default()).is_err());
        let right = SourceLock {
            version: "1:1.35.0-4+deb12u1".to_owned(),
            ..lock
        };
        assert!(SourceBusybox::new(&right, &AptSources::default()).is_ok());
        assert_eq!(without_epoch(&right.version), "1.35.0-4+deb12u1");
    }

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
