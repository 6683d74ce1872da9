//! A C toolchain made of Debian's packages, pinned by `kiln.lock` and unpacked into a tree of
//! its own: what kiln compiles C with (busybox from its source, [`crate::oci::busybox_source`]),
//! so that neither the machine's compiler nor its headers and libraries reach an output.
//!
//! [`CToolchain`] is the derivation's builder: every locked `.deb` (the packages apt installs
//! into an empty system for [`C_TOOLCHAIN_REQUEST`]) fetched through a private apt
//! configuration, each checked against its SHA-256, and unpacked with `dpkg-deb -x` into one
//! tree, nothing of their maintainer scripts run. [`Compiler`] runs that tree's `gcc` with the
//! tree as its system root.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, Params};

use crate::error::ImageError;
use crate::lock::LockedPackage;
use crate::process::{SYSTEM_PATH, run_output, run_quiet};
use crate::resolve::{AptSources, Indices, Resolver};

/// What apt resolves the C toolchain from: the compiler (with binutils), the C library's
/// headers and static archives, `make`, and `patch`. Every package of the result is locked.
pub const C_TOOLCHAIN_REQUEST: [&str; 4] = ["gcc", "libc6-dev", "make", "patch"];

/// The toolchain derivation's name.
pub const C_TOOLCHAIN_NAME: &str = "c-toolchain";

/// The programs unpacking the toolchain runs on the machine, each with its Debian package.
pub const UNPACK_TOOLS: [kiln_tools::Tool; 2] = [
    kiln_tools::Tool::program("apt-get", "apt"),
    kiln_tools::Tool::program("dpkg-deb", "dpkg"),
];

/// The builder of the C toolchain tree: see the [module](self) documentation.
///
/// Its output is the union of the packages' file trees (`usr/bin/gcc`, `usr/include`,
/// `usr/lib/<multiarch>/libc.a`, ...) and `packages.lock`, the locked package lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CToolchain {
    packages: Vec<LockedPackage>,
    sources: AptSources,
}

impl CToolchain {
    /// The builder for exactly `packages`, fetched from `sources`.
    ///
    /// # Errors
    ///
    /// If `packages` is empty, or lacks one of [`C_TOOLCHAIN_REQUEST`] (a lock that does not
    /// hold a toolchain).
    pub fn new(packages: &[LockedPackage], sources: &AptSources) -> Result<CToolchain, ImageError> {
        let missing: Vec<&str> = C_TOOLCHAIN_REQUEST
            .iter()
            .copied()
            .filter(|name| !packages.iter().any(|package| package.name == *name))
            .collect();
        if !missing.is_empty() {
            return Err(ImageError::Assembly {
                what: "the C toolchain".into(),
                reason: format!(
                    "its locked packages lack {} (`cargo xtask lock` resolves the toolchain)",
                    missing.join(", ")
                ),
            });
        }
        Ok(CToolchain {
            packages: packages.to_vec(),
            sources: sources.clone(),
        })
    }

    /// Fetches, checks and unpacks every package into `out` (an empty directory), reporting
    /// progress to `report`.
    ///
    /// # Errors
    ///
    /// If apt or `dpkg-deb` fail, a `.deb` differs from its locked SHA-256, or the tree holds
    /// no working compiler.
    pub fn build_into(&self, out: &Path, report: &dyn Fn(&str)) -> Result<(), ImageError> {
        crate::process::require_tools(&UNPACK_TOOLS)?;
        report(&format!(
            "fetching the C toolchain's {} packages",
            self.packages.len()
        ));
        let apt = Resolver::new(&self.sources, Indices::Binary)?;
        let scratch = tempfile::Builder::new()
            .prefix("kiln-c-toolchain-")
            .tempdir()
            .map_err(|error| ImageError::io(std::env::temp_dir(), error))?;
        let debs = apt.download_all(&self.packages, scratch.path())?;
        report(&format!("unpacking {} packages", debs.len()));
        for deb in &debs {
            let mut extract = Command::new("dpkg-deb");
            extract.arg("-x").arg(deb).arg(out);
            run_quiet(extract)?;
        }
        let lock = out.join("packages.lock");
        let lines: String = self
            .packages
            .iter()
            .map(|package| format!("{package}\n"))
            .collect();
        fs::write(&lock, lines).map_err(|error| ImageError::io(&lock, error))?;
        let version = Compiler::at(out)?.version()?;
        report(&format!("C toolchain: {version}"));
        Ok(())
    }
}

impl Builder for CToolchain {
    fn kind(&self) -> &str {
        "kiln-image.toolchain.c"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        // The sources are not here: a mirror serves the same `.deb`s, checked by hash.
        Params::of(
            &self
                .packages
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}

/// The derivation of the C toolchain of `packages` (see [`CToolchain`]), named
/// [`C_TOOLCHAIN_NAME`] and addressed by the packages (each version and `.deb` hash).
///
/// # Errors
///
/// As [`CToolchain::new`].
pub fn c_toolchain(
    packages: &[LockedPackage],
    sources: &AptSources,
) -> Result<Derivation, ImageError> {
    Ok(Derivation::new(
        C_TOOLCHAIN_NAME,
        Arc::new(CToolchain::new(packages, sources)?),
    ))
}

/// The compiler of a [`CToolchain`] tree: its `gcc`, with the tree as the system root (its
/// headers and libraries, not the machine's), its own binutils (`-B`), and the tree's path
/// mapped to `/` in everything it writes, so the tree's place in the store never reaches an
/// output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    root: PathBuf,
    multiarch: String,
}

impl Compiler {
    /// The compiler of the tree at `root`.
    ///
    /// # Errors
    ///
    /// If the tree has no `usr/bin/gcc` or no `usr/lib/<multiarch>` directory.
    pub fn at(root: &Path) -> Result<Compiler, ImageError> {
        let gcc = root.join("usr/bin/gcc");
        if !gcc.exists() {
            return Err(ImageError::Assembly {
                what: "the C toolchain".into(),
                reason: format!("{} has no usr/bin/gcc", root.display()),
            });
        }
        let lib = root.join("usr/lib");
        let mut multiarch = Vec::new();
        for entry in fs::read_dir(&lib).map_err(|error| ImageError::io(&lib, error))? {
            let name = entry
                .map_err(|error| ImageError::io(&lib, error))?
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with("-linux-gnu") {
                multiarch.push(name);
            }
        }
        multiarch.sort();
        let [multiarch] =
            <[String; 1]>::try_from(multiarch).map_err(|found| ImageError::Assembly {
                what: "the C toolchain".into(),
                reason: format!(
                    "{} should have one <arch>-linux-gnu directory, has {found:?}",
                    lib.display()
                ),
            })?;
        Ok(Compiler {
            root: root.to_owned(),
            multiarch,
        })
    }

    /// The tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The command line of the C compiler, as a `CC` for `make`: the tree's `gcc` with
    /// `--sysroot`, `-B` and the prefix map described on [`Compiler`].
    pub fn cc(&self) -> String {
        let root = self.root.display();
        format!("{root}/usr/bin/gcc --sysroot={root} -B{root}/usr/bin/ -ffile-prefix-map={root}=/")
    }

    /// The environment a build with this compiler runs in, and nothing else: the tree's
    /// programs first on `PATH` (then the system's), the tree's libraries on
    /// `LD_LIBRARY_PATH` (its compiler's and binutils' own), `LC_ALL=C`, `TZ=UTC`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let root = self.root.display();
        let multiarch = &self.multiarch;
        vec![
            ("PATH".into(), format!("{root}/usr/bin:{SYSTEM_PATH}")),
            (
                "LD_LIBRARY_PATH".into(),
                format!("{root}/usr/lib/{multiarch}:{root}/lib/{multiarch}"),
            ),
            ("LC_ALL".into(), "C".into()),
            ("TZ".into(), "UTC".into()),
        ]
    }

    /// A command running the tree's program `name` (`make`, `strip`) in
    /// [`environment`](Self::environment) only.
    pub fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.root.join("usr/bin").join(name));
        command.env_clear().envs(self.environment());
        command
    }

    /// The first line of `gcc --version`, having checked that the compiler runs.
    ///
    /// # Errors
    ///
    /// If it does not run.
    pub fn version(&self) -> Result<String, ImageError> {
        let mut gcc = self.command("gcc");
        gcc.arg("--version");
        let output = run_output(gcc)?;
        Ok(output.lines().next().unwrap_or_default().to_owned())
    }
}
