//! `kiln.lock`: every input kiln takes from Debian's archive, pinned as data.
//!
//! Debian's archive is a *moving* input: each suite keeps one version of a package, and a
//! security update removes the version it replaces. So the pins are not compiled into kiln;
//! they live in one file that the command line reads ([`Lock::parse`]) and rewrites
//! ([`Lock::render`], by `cargo xtask lock`), as `Cargo.lock` and `flake.lock` do:
//!
//! - `[busybox]` and `[base-os]`: package sets, each package with its version, architecture
//!   and the SHA-256 of its `.deb` (what apt verifies it against), and the content hash of the
//!   output built from exactly that set;
//! - `[kubernetes]`: the `kubernetes` source package's version, the content hash of its build
//!   and each binary's SHA-256.
//!
//! What a build does with a lock when the archive has moved is [`crate::resolve`]'s part.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use kiln_store::Digest;
use serde::Deserialize;

use crate::error::ImageError;

/// The 1-based line of byte `offset` in `text`.
pub(crate) fn line_at(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&byte| byte == b'\n')
        .count()
        + 1
}

/// One `.deb` of a package set: `name version architecture sha256`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockedPackage {
    /// The package name, such as `libc6`.
    pub name: String,
    /// The Debian version, such as `2.36-9+deb12u10`.
    pub version: String,
    /// The architecture, such as `amd64` or `all`.
    pub architecture: String,
    /// The SHA-256 of the `.deb`, lowercase hex, as the archive's index gives it.
    pub sha256: String,
}

impl LockedPackage {
    /// Parses `name version architecture sha256`.
    ///
    /// ```
    /// let package: kiln_image::lock::LockedPackage = "dash 0.5.12-2 amd64 33ea".parse().unwrap();
    /// assert_eq!(package.version, "0.5.12-2");
    /// assert_eq!(package.to_string(), "dash 0.5.12-2 amd64 33ea");
    /// ```
    ///
    /// # Errors
    ///
    /// Anything but four fields separated by single spaces, or a hash that is not hex.
    pub fn parse(line: &str) -> Result<LockedPackage, String> {
        let fields: Vec<&str> = line.split(' ').collect();
        let [name, version, architecture, sha256] = fields[..] else {
            return Err(format!(
                "`{line}` is not `name version architecture sha256`"
            ));
        };
        if [name, version, architecture, sha256]
            .iter()
            .any(|field| field.is_empty())
        {
            return Err(format!("`{line}` has an empty field"));
        }
        if !sha256.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            return Err(format!("`{sha256}` is not a hex SHA-256"));
        }
        Ok(LockedPackage {
            name: name.to_owned(),
            version: version.to_owned(),
            architecture: architecture.to_owned(),
            sha256: sha256.to_ascii_lowercase(),
        })
    }
}

impl std::str::FromStr for LockedPackage {
    type Err = String;

    fn from_str(line: &str) -> Result<LockedPackage, String> {
        LockedPackage::parse(line)
    }
}

impl fmt::Display for LockedPackage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.name, self.version, self.architecture, self.sha256
        )
    }
}

/// A set of `.deb` files and the content hash of what kiln builds from exactly them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackageSetLock {
    /// The packages, sorted by name, one version each.
    pub packages: Vec<LockedPackage>,
    /// The [`tree_hash`](kiln_store::tree_hash) of the output built from exactly
    /// [`packages`](Self::packages); `None` until such a build has been recorded. When set,
    /// the input is a fixed-output derivation addressed by it.
    pub content_hash: Option<Digest>,
}

impl PackageSetLock {
    /// The packages as `name → version`.
    pub fn versions(&self) -> BTreeMap<&str, &str> {
        self.packages
            .iter()
            .map(|package| (package.name.as_str(), package.version.as_str()))
            .collect()
    }

    /// The lock text's lines for the packages (what [`crate::os::base::BaseOs`] writes as its
    /// `packages.lock`, and what addresses a build of a set that has no content hash yet).
    pub fn package_lines(&self) -> String {
        self.packages
            .iter()
            .map(|package| format!("{package}\n"))
            .collect()
    }
}

/// A Debian source package (`kubernetes`, `busybox`), the toolchain it is built with, and what
/// its build gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceLock {
    /// The source package's name (`kubernetes`, `busybox`).
    pub package: String,
    /// Its Debian version, such as `1.20.5+really1.20.2-1.1+deb12u1`.
    pub version: String,
    /// The content hash of the build's output; `None` until a build has been recorded.
    pub content_hash: Option<Digest>,
    /// The SHA-256 of each binary the build gave, by name; a build that differs fails naming
    /// the binary. Empty until a build has been recorded.
    pub binaries: BTreeMap<String, Digest>,
    /// The toolchain the build compiles with: for `kubernetes`, Debian's Go (the `golang-*`
    /// packages `golang-go` resolves to, installed on the machine); for `busybox`, the C
    /// toolchain ([`crate::toolchain::C_TOOLCHAIN_REQUEST`]'s every package, unpacked into a
    /// tree of its own). Part of what the output depends on, so a moved toolchain is a moved
    /// input.
    pub toolchain: Vec<LockedPackage>,
}

/// The whole lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lock {
    /// Debian's `busybox-static`, for kiln's test container image.
    pub busybox: PackageSetLock,
    /// Debian's `busybox` source package and the C toolchain that builds it, for the
    /// conformance images' busybox ([`crate::oci::busybox_source`]); `None` in a lock written
    /// before it was an input (the next resolution adds it).
    pub busybox_source: Option<SourceLock>,
    /// The Kubernetes source package (when the binaries come from Debian's source).
    pub kubernetes: SourceLock,
    /// Every package of the base OS.
    pub base_os: PackageSetLock,
}

/// One input's change between two locks, one package a line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LockChange {
    /// The input: `base-os`, `busybox`, `busybox-source`, `kubernetes`, or a toolchain
    /// (`busybox-source-toolchain`, `kubernetes-toolchain`).
    pub input: String,
    /// The package (the source package for `kubernetes`).
    pub package: String,
    /// Its version in the old lock; `None` when it is new.
    pub old: Option<String>,
    /// Its version now; `None` when it is gone.
    pub new: Option<String>,
}

impl fmt::Display for LockChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = &self.input;
        let package = &self.package;
        match (&self.old, &self.new) {
            (Some(old), Some(new)) if old == new => {
                write!(f, "{input}: {package} {old}: rebuilt with another .deb")
            }
            (Some(old), Some(new)) => write!(f, "{input}: {package} {old} -> {new}"),
            (Some(old), None) => write!(f, "{input}: {package} {old} -> (removed)"),
            (None, Some(new)) => write!(f, "{input}: {package} (new) -> {new}"),
            (None, None) => write!(f, "{input}: {package}"),
        }
    }
}

/// The package-by-package differences between two package sets (a package whose version is
/// the same but whose `.deb` hash differs counts too).
pub fn package_changes(input: &str, old: &PackageSetLock, new: &PackageSetLock) -> Vec<LockChange> {
    let index = |set: &PackageSetLock| -> BTreeMap<String, LockedPackage> {
        set.packages
            .iter()
            .map(|package| (package.name.clone(), package.clone()))
            .collect()
    };
    let (old, new) = (index(old), index(new));
    let names: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    names
        .into_iter()
        .filter_map(|name| {
            let (before, after) = (old.get(name), new.get(name));
            if before == after {
                return None;
            }
            Some(LockChange {
                input: input.to_owned(),
                package: name.clone(),
                old: before.map(|package| package.version.clone()),
                new: after.map(|package| package.version.clone()),
            })
        })
        .collect()
}

/// The changes of one source input (`input`): its toolchain's packages (as
/// `<input>-toolchain`), then its version. An input only one side has is new or removed.
fn source_changes(
    input: &str,
    old: Option<&SourceLock>,
    new: Option<&SourceLock>,
) -> Vec<LockChange> {
    let toolchain = |lock: Option<&SourceLock>| PackageSetLock {
        packages: lock.map(|lock| lock.toolchain.clone()).unwrap_or_default(),
        content_hash: None,
    };
    let mut changes = package_changes(
        &format!("{input}-toolchain"),
        &toolchain(old),
        &toolchain(new),
    );
    let version =
        |lock: Option<&SourceLock>| lock.map(|lock| (lock.package.clone(), lock.version.clone()));
    if version(old) != version(new) {
        changes.push(LockChange {
            input: input.to_owned(),
            package: new
                .or(old)
                .map(|lock| lock.package.clone())
                .unwrap_or_default(),
            old: old.map(|lock| lock.version.clone()),
            new: new.map(|lock| lock.version.clone()),
        });
    }
    changes
}

impl Lock {
    /// Whether every input has a recorded build (a content hash), so that each is a
    /// fixed-output derivation.
    pub fn is_complete(&self) -> bool {
        self.base_os.content_hash.is_some()
            && self.busybox.content_hash.is_some()
            && self.kubernetes.content_hash.is_some()
            && self
                .busybox_source
                .as_ref()
                .is_none_or(|source| source.content_hash.is_some())
    }

    /// Every change from `self` to `new`: packages of the package sets and of the toolchains,
    /// and the source packages' versions.
    pub fn changes(&self, new: &Lock) -> Vec<LockChange> {
        let mut changes = package_changes("busybox", &self.busybox, &new.busybox);
        changes.extend(source_changes(
            "busybox-source",
            self.busybox_source.as_ref(),
            new.busybox_source.as_ref(),
        ));
        changes.extend(source_changes(
            "kubernetes",
            Some(&self.kubernetes),
            Some(&new.kubernetes),
        ));
        changes.extend(package_changes("base-os", &self.base_os, &new.base_os));
        changes
    }

    /// Parses a lock file's text. `file` names it in errors.
    ///
    /// # Errors
    ///
    /// [`ImageError::Lock`] naming the file, the line and what is wrong: not TOML, a missing
    /// or unknown field, a package line that is not `name version architecture sha256`, a
    /// package listed twice, a hash that is not 64 hex digits.
    pub fn parse(text: &str, file: &str) -> Result<Lock, ImageError> {
        let raw: RawLock = toml::from_str(text).map_err(|error| {
            let line = error.span().map_or(0, |span| line_at(text, span.start));
            ImageError::Lock {
                file: file.to_owned(),
                line,
                reason: error.message().to_owned(),
            }
        })?;
        let at =
            |needle: &str| -> usize { text.find(needle).map_or(0, |offset| line_at(text, offset)) };
        let error = |needle: &str, reason: String| ImageError::Lock {
            file: file.to_owned(),
            line: at(needle),
            reason,
        };
        if raw.version != 1 {
            return Err(error(
                "version",
                format!(
                    "lock format version {} is not one this kiln reads (1)",
                    raw.version
                ),
            ));
        }
        let digest = |field: &str, value: &str| -> Result<Digest, ImageError> {
            value.parse().map_err(|_| {
                error(
                    value,
                    format!("{field}: `{value}` is not a SHA-256 (64 hex digits)"),
                )
            })
        };
        let set = |name: &str, raw: RawSet| -> Result<PackageSetLock, ImageError> {
            let mut packages = Vec::new();
            let mut seen = BTreeSet::new();
            for line in &raw.packages {
                let package = LockedPackage::parse(line)
                    .map_err(|reason| error(line, format!("{name}.packages: {reason}")))?;
                if !seen.insert(package.name.clone()) {
                    return Err(error(
                        line,
                        format!("{name}.packages: {} is listed twice", package.name),
                    ));
                }
                packages.push(package);
            }
            packages.sort();
            let content_hash = raw
                .content_hash
                .map(|value| digest(&format!("{name}.content-hash"), &value))
                .transpose()?;
            Ok(PackageSetLock {
                packages,
                content_hash,
            })
        };
        let source = |name: &str, raw: RawSource| -> Result<SourceLock, ImageError> {
            Ok(SourceLock {
                package: raw.package,
                version: raw.version,
                content_hash: raw
                    .content_hash
                    .map(|value| digest(&format!("{name}.content-hash"), &value))
                    .transpose()?,
                binaries: raw
                    .binaries
                    .into_iter()
                    .map(|(binary, value)| {
                        digest(&format!("{name}.binaries.{binary}"), &value).map(|d| (binary, d))
                    })
                    .collect::<Result<_, _>>()?,
                toolchain: set(
                    &format!("{name}.toolchain"),
                    RawSet {
                        content_hash: None,
                        packages: raw.toolchain,
                    },
                )?
                .packages,
            })
        };
        Ok(Lock {
            busybox: set("busybox", raw.busybox)?,
            busybox_source: raw
                .busybox_source
                .map(|raw| source("busybox-source", raw))
                .transpose()?,
            kubernetes: source("kubernetes", raw.kubernetes)?,
            base_os: set("base-os", raw.base_os)?,
        })
    }

    /// The lock file's text: deterministic, one package a line, so that its diff reads
    /// package by package.
    pub fn render(&self) -> String {
        let mut out = String::from(
            "# kiln.lock: every input kiln takes from Debian's archive, pinned. Written by\n\
             # `cargo xtask lock` (review its diff); read by `cargo xtask build-cluster`, which\n\
             # builds these exact versions while the archive (or an --apt-source) has them, and\n\
             # otherwise reports each package that moved (or, with --locked, refuses).\n\
             version = 1\n",
        );
        let hash = |out: &mut String, hash: &Option<Digest>| {
            if let Some(hash) = hash {
                out.push_str(&format!("content-hash = \"{}\"\n", hash.to_hex()));
            }
        };
        let packages = |out: &mut String, set: &PackageSetLock| {
            out.push_str("packages = [\n");
            for package in &set.packages {
                out.push_str(&format!("    \"{package}\",\n"));
            }
            out.push_str("]\n");
        };
        let source = |out: &mut String, name: &str, lock: &SourceLock| {
            out.push_str(&format!("\n[{name}]\n"));
            out.push_str(&format!(
                "package = \"{}\"\nversion = \"{}\"\n",
                lock.package, lock.version
            ));
            hash(out, &lock.content_hash);
            out.push_str("toolchain = [\n");
            for package in &lock.toolchain {
                out.push_str(&format!("    \"{package}\",\n"));
            }
            out.push_str("]\n");
            if !lock.binaries.is_empty() {
                out.push_str(&format!("\n[{name}.binaries]\n"));
                for (binary, digest) in &lock.binaries {
                    out.push_str(&format!("{binary} = \"{}\"\n", digest.to_hex()));
                }
            }
        };
        out.push_str("\n[busybox]\n");
        hash(&mut out, &self.busybox.content_hash);
        packages(&mut out, &self.busybox);
        if let Some(busybox_source) = &self.busybox_source {
            source(&mut out, "busybox-source", busybox_source);
        }
        source(&mut out, "kubernetes", &self.kubernetes);
        out.push_str("\n[base-os]\n");
        hash(&mut out, &self.base_os.content_hash);
        packages(&mut out, &self.base_os);
        out
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    version: u32,
    busybox: RawSet,
    #[serde(rename = "busybox-source", default)]
    busybox_source: Option<RawSource>,
    kubernetes: RawSource,
    #[serde(rename = "base-os")]
    base_os: RawSet,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSet {
    #[serde(rename = "content-hash")]
    content_hash: Option<String>,
    packages: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    package: String,
    version: String,
    #[serde(rename = "content-hash")]
    content_hash: Option<String>,
    #[serde(default)]
    binaries: BTreeMap<String, String>,
    #[serde(default)]
    toolchain: Vec<String>,
}
