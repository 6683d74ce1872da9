//! Resolving `kiln.lock` against the apt sources as they are today.
//!
//! The one step of a build that sees the archive move, and a cheap one: `apt-get update` into
//! a private directory, then apt's own solver (`apt-get --simulate install`, with an empty
//! package database and the lock's versions pinned) says exactly which `.deb` files a package
//! set is made of. A set whose locked versions are all still to be had resolves to itself; a
//! package whose locked version is gone resolves to the archive's current one, and everything
//! its new version pulls in follows. What is built is then addressed by the resolved set
//! (see [`crate::os::base::base_os`]), so an unchanged archive costs no rebuild and a moved one rebuilds
//! only the inputs that moved.
//!
//! [`AptSources`] are the sources resolution and builds read: the machine's own (`/etc/apt`),
//! and any more a user gives, such as a mirror or a snapshot archive that still holds the
//! locked versions, so that a locked build can be repeated after the archive moved on.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::apt::{deb_src_lines, deb_src_sources};
use crate::error::ImageError;
use crate::lock::{Lock, LockChange, LockedPackage, PackageSetLock, SourceLock};
use crate::process::{run_output, run_quiet};

/// The apt sources a resolution or a build reads, as file name → content (`.list` one-line
/// or `.sources` deb822 format, told by the name's extension). Only `deb` entries; `deb-src`
/// entries for source packages are derived from them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AptSources {
    files: BTreeMap<String, String>,
}

impl AptSources {
    /// The `deb` entries of the machine's apt configuration in `etc_apt` (normally
    /// `/etc/apt`): `sources.list`, and `*.list` and `*.sources` in `sources.list.d`.
    ///
    /// # Errors
    ///
    /// If a file cannot be read, or no `deb` entry is found at all.
    pub fn machine(etc_apt: &Path) -> Result<AptSources, ImageError> {
        let mut files = BTreeMap::new();
        let mut candidates = vec![etc_apt.join("sources.list")];
        let parts = etc_apt.join("sources.list.d");
        match fs::read_dir(&parts) {
            Ok(entries) => {
                for entry in entries {
                    candidates.push(entry.map_err(|error| ImageError::io(&parts, error))?.path());
                }
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(ImageError::io(&parts, error)),
        }
        candidates.sort();
        for path in candidates {
            let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
                continue;
            };
            if !(name.ends_with(".list") || name.ends_with(".sources")) {
                continue;
            }
            let text = match fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                Err(error) => return Err(ImageError::io(&path, error)),
            };
            let deb = deb_entries(name, &text);
            if !deb.is_empty() {
                files.insert(format!("50-machine-{name}"), deb);
            }
        }
        if files.is_empty() {
            return Err(ImageError::NoAptSources {
                searched: format!(
                    "{} and {}",
                    etc_apt.join("sources.list").display(),
                    parts.display()
                ),
            });
        }
        Ok(AptSources { files })
    }

    /// Sources made of one-line `deb` entries only (`deb [trusted=yes] file:/repo ./`).
    pub fn from_lines(lines: &[String]) -> AptSources {
        AptSources::default().with_lines(lines)
    }

    /// These sources and the one-line `deb` entries `lines` (a mirror, a snapshot archive).
    #[must_use]
    pub fn with_lines(mut self, lines: &[String]) -> AptSources {
        if !lines.is_empty() {
            let mut text = String::new();
            for line in lines {
                text.push_str(line.trim());
                text.push('\n');
            }
            self.files.insert("10-kiln-extra.list".to_owned(), text);
        }
        self
    }

    /// Whether there are no sources at all.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The source files, name → content.
    pub fn files(&self) -> &BTreeMap<String, String> {
        &self.files
    }

    /// The same sources as `deb-src` entries, for fetching source packages.
    pub fn deb_src(&self) -> AptSources {
        let files = self
            .files
            .iter()
            .filter_map(|(name, text)| {
                let converted = if name.ends_with(".sources") {
                    deb_src_sources(text)
                } else {
                    deb_src_lines(text)
                };
                (!converted.is_empty()).then(|| (name.replace(".", "-src."), converted))
            })
            .collect();
        AptSources { files }
    }

    /// Writes the files into `dir` (created), returning their paths in name order.
    pub(crate) fn write_into(&self, dir: &Path) -> Result<Vec<PathBuf>, ImageError> {
        fs::create_dir_all(dir).map_err(|error| ImageError::io(dir, error))?;
        let mut paths = Vec::new();
        for (name, text) in &self.files {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|error| ImageError::io(&path, error))?;
            paths.push(path);
        }
        Ok(paths)
    }
}

/// The `deb` entries of one source file, in its own format.
fn deb_entries(name: &str, text: &str) -> String {
    // deb_src_* keep exactly the `deb` entries and retype them; typing them back as `deb`
    // keeps one parser for both directions.
    if name.ends_with(".sources") {
        deb_src_sources(text).replace("Types: deb-src\n", "Types: deb\n")
    } else {
        deb_src_lines(text)
            .lines()
            .map(|line| format!("deb {}\n", line.trim_start_matches("deb-src ")))
            .collect()
    }
}

/// apt pinned to versions: the preferences file that makes apt choose exactly `packages`'
/// versions, wherever they come from (priority 1001: even below an installed or a newer one).
pub(crate) fn pin_preferences(packages: &[LockedPackage]) -> String {
    packages
        .iter()
        .map(|package| {
            format!(
                "Package: {}\nPin: version {}\nPin-Priority: 1001\n\n",
                package.name, package.version
            )
        })
        .collect()
}

/// apt with a private state under one directory: its own sources, lists, cache, preferences
/// and an empty package database, so that nothing of the machine's apt state is read or
/// changed, and what the machine has installed does not steer the solver.
#[derive(Debug)]
pub struct Resolver {
    root: tempfile::TempDir,
}

/// Whether [`Resolver::new`] fetches source indices too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indices {
    /// Binary packages only.
    Binary,
    /// Source packages only (`deb-src`, derived from the `deb` entries).
    Source,
    /// Binary packages and source packages (`deb-src`, derived from the `deb` entries).
    BinaryAndSource,
}

impl Resolver {
    /// Fetches the indices of `sources` (`apt-get update`) into a private directory.
    ///
    /// # Errors
    ///
    /// If there are no sources, or `apt-get update` fails (with its output).
    pub fn new(sources: &AptSources, indices: Indices) -> Result<Resolver, ImageError> {
        if sources.is_empty() {
            return Err(ImageError::NoAptSources {
                searched: "the sources given".into(),
            });
        }
        let root = tempfile::Builder::new()
            .prefix("kiln-apt-")
            .tempdir()
            .map_err(|error| ImageError::io(std::env::temp_dir(), error))?;
        let dir = root.path();
        for sub in ["lists/partial", "cache/archives/partial", "preferences.d"] {
            let path = dir.join(sub);
            fs::create_dir_all(&path).map_err(|error| ImageError::io(&path, error))?;
        }
        // apt fetches as the unprivileged `_apt` user when it can.
        use std::os::unix::fs::PermissionsExt;
        for sub in [
            "",
            "lists",
            "lists/partial",
            "cache",
            "cache/archives",
            "cache/archives/partial",
        ] {
            let _ = fs::set_permissions(dir.join(sub), fs::Permissions::from_mode(0o755));
        }
        for file in ["status", "preferences", "extended_states"] {
            let path = dir.join(file);
            fs::write(&path, "").map_err(|error| ImageError::io(&path, error))?;
        }
        if indices != Indices::Source {
            sources.write_into(&dir.join("sources.list.d"))?;
        }
        if indices != Indices::Binary {
            sources.deb_src().write_into(&dir.join("sources.list.d"))?;
        }
        let resolver = Resolver { root };
        let mut update = resolver.apt("apt-get");
        update.arg("update");
        run_quiet(update)?;
        Ok(resolver)
    }

    fn option(&self, name: &str, relative: &str) -> String {
        format!("{name}={}", self.root.path().join(relative).display())
    }

    /// `program` (`apt-get`, `apt-cache`) with the private configuration.
    pub(crate) fn apt(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .env("LC_ALL", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .arg("-q")
            .args(["-o", "Dir::Etc::sourcelist=/dev/null"])
            .args([
                "-o",
                &self.option("Dir::Etc::sourceparts", "sources.list.d"),
            ])
            .args(["-o", &self.option("Dir::Etc::preferences", "preferences")])
            .args([
                "-o",
                &self.option("Dir::Etc::preferencesparts", "preferences.d"),
            ])
            .args(["-o", &self.option("Dir::State::Lists", "lists")])
            .args(["-o", &self.option("Dir::State::status", "status")])
            .args([
                "-o",
                &self.option("Dir::State::extended_states", "extended_states"),
            ])
            .args(["-o", &self.option("Dir::Cache", "cache")])
            .args(["-o", "APT::Install-Recommends=false"])
            .args(["-o", "Debug::NoLocking=true"]);
        command
    }

    /// The exact set of packages apt would install into an empty system for `request` (package
    /// names or apt patterns), with `pins`' versions preferred wherever a source still has
    /// them. Each package comes with the SHA-256 of its `.deb` from the index.
    ///
    /// # Errors
    ///
    /// If apt cannot satisfy the request (its message names what is missing).
    pub fn resolve(
        &self,
        request: &[String],
        pins: &[LockedPackage],
    ) -> Result<Vec<LockedPackage>, ImageError> {
        let preferences = self.root.path().join("preferences");
        fs::write(&preferences, pin_preferences(pins))
            .map_err(|error| ImageError::io(&preferences, error))?;
        let mut simulate = self.apt("apt-get");
        simulate.args(["--simulate", "install"]).args(request);
        let plan = run_output(simulate)?;
        let installs = simulated_installs(&plan);
        if installs.is_empty() {
            return Err(ImageError::Assembly {
                what: format!("resolving {}", request.join(" ")),
                reason: "apt would install nothing".into(),
            });
        }
        let mut show = self.apt("apt-cache");
        show.args(["show", "--no-all-versions"]);
        for (name, version, _) in &installs {
            show.arg(format!("{name}={version}"));
        }
        let index = run_output(show)?;
        let hashes = crate::os::base::index_hashes(&index);
        installs
            .into_iter()
            .map(|(name, version, architecture)| {
                let sha256 = hashes
                    .get(&(name.clone(), version.clone()))
                    .cloned()
                    .ok_or_else(|| ImageError::Assembly {
                        what: format!("resolving {name} {version}"),
                        reason: "its index entry has no SHA256".into(),
                    })?;
                Ok(LockedPackage {
                    name,
                    version,
                    architecture,
                    sha256,
                })
            })
            .collect()
    }

    /// The versions of source package `name` the sources offer, newest first.
    ///
    /// # Errors
    ///
    /// If `apt-cache` fails (the resolver was made without source indices, for one).
    pub fn source_versions(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let mut showsrc = self.apt("apt-cache");
        showsrc.args(["showsrc", "--only-source", name]);
        let text = run_output(showsrc)?;
        let mut versions: Vec<String> = Vec::new();
        for stanza in text.split("\n\n") {
            let is_it = stanza
                .lines()
                .any(|line| line.strip_prefix("Package: ") == Some(name));
            let version = stanza
                .lines()
                .find_map(|line| line.strip_prefix("Version: "));
            if let (true, Some(version)) = (is_it, version)
                && !versions.iter().any(|known| known == version)
            {
                versions.push(version.to_owned());
            }
        }
        versions.sort_by(|a, b| compare_versions(b, a));
        Ok(versions)
    }

    /// Downloads `package`'s `.deb` into `dir` and checks it against the locked SHA-256.
    ///
    /// # Errors
    ///
    /// If no source has that version, or the file's SHA-256 is not the locked one.
    pub fn download(&self, package: &LockedPackage, dir: &Path) -> Result<PathBuf, ImageError> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).map_err(|error| ImageError::io(dir, error))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o777));
        let mut download = self.apt("apt-get");
        download
            .current_dir(dir)
            .arg("download")
            .arg(format!("{}={}", package.name, package.version));
        run_quiet(download)?;
        let mut debs = Vec::new();
        for entry in fs::read_dir(dir).map_err(|error| ImageError::io(dir, error))? {
            let path = entry.map_err(|error| ImageError::io(dir, error))?.path();
            if path.extension().is_some_and(|extension| extension == "deb") {
                debs.push(path);
            }
        }
        let [deb] = <[PathBuf; 1]>::try_from(debs).map_err(|debs| ImageError::Assembly {
            what: format!("downloading {}", package.name),
            reason: format!("expected one .deb, found {}", debs.len()),
        })?;
        check_deb(package, &deb)?;
        Ok(deb)
    }

    /// Downloads every one of `packages`' `.deb`s into `dir` with one `apt-get download`, and
    /// checks each against its locked SHA-256; returns their paths in `packages`' order.
    ///
    /// # Errors
    ///
    /// If no source has one of the versions, or a file's SHA-256 is not the locked one.
    pub fn download_all(
        &self,
        packages: &[LockedPackage],
        dir: &Path,
    ) -> Result<Vec<PathBuf>, ImageError> {
        use std::os::unix::fs::PermissionsExt;
        fs::create_dir_all(dir).map_err(|error| ImageError::io(dir, error))?;
        let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o777));
        let mut download = self.apt("apt-get");
        download.current_dir(dir).arg("download").args(
            packages
                .iter()
                .map(|package| format!("{}={}", package.name, package.version)),
        );
        run_quiet(download)?;
        packages
            .iter()
            .map(|package| {
                // apt's file name: the version's epoch colon written `%3a`.
                let deb = dir.join(format!(
                    "{}_{}_{}.deb",
                    package.name,
                    package.version.replace(':', "%3a"),
                    package.architecture
                ));
                check_deb(package, &deb)?;
                Ok(deb)
            })
            .collect()
    }
}

/// An error unless the `.deb` at `deb` has `package`'s locked SHA-256.
fn check_deb(package: &LockedPackage, deb: &Path) -> Result<(), ImageError> {
    let bytes = fs::read(deb).map_err(|error| ImageError::io(deb, error))?;
    let actual = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&bytes));
    if actual != package.sha256 {
        return Err(ImageError::Assembly {
            what: format!("{} {}", package.name, package.version),
            reason: format!(
                "the .deb's SHA-256 is {actual}, the lock says {}",
                package.sha256
            ),
        });
    }
    Ok(())
}

/// `(name, version, architecture)` of every `Inst` line of `apt-get --simulate`'s output,
/// sorted by name: `Inst libc6 (2.36-9+deb12u10 Debian:12.12/oldstable [amd64])`.
fn simulated_installs(plan: &str) -> Vec<(String, String, String)> {
    let mut installs: Vec<(String, String, String)> = plan
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("Inst ")?;
            let (name, rest) = rest.split_once(' ')?;
            // An upgrade shows the installed version in brackets first; nothing is installed.
            let rest = rest.strip_prefix('(')?;
            // A trailing `[]` lists packages this one breaks; the architecture is inside the
            // parentheses.
            let (inside, _) = rest.split_once(')')?;
            let version = inside.split_whitespace().next()?;
            let architecture = inside.rsplit_once('[')?.1.split(']').next()?;
            let name = name.split(':').next()?;
            Some((name.to_owned(), version.to_owned(), architecture.to_owned()))
        })
        .collect();
    installs.sort();
    installs.dedup();
    installs
}

/// Debian's version order, as `dpkg --compare-versions` applies it.
fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let (a_epoch, a_rest) = split_epoch(a);
    let (b_epoch, b_rest) = split_epoch(b);
    a_epoch.cmp(&b_epoch).then_with(|| {
        let (a_upstream, a_revision) = a_rest.rsplit_once('-').unwrap_or((a_rest, ""));
        let (b_upstream, b_revision) = b_rest.rsplit_once('-').unwrap_or((b_rest, ""));
        compare_part(a_upstream, b_upstream).then_with(|| compare_part(a_revision, b_revision))
    })
}

fn split_epoch(version: &str) -> (u64, &str) {
    match version.split_once(':') {
        Some((epoch, rest)) => (epoch.parse().unwrap_or(0), rest),
        None => (0, version),
    }
}

fn compare_part(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    // `~` sorts before everything, even the end; letters before other characters.
    let order = |c: Option<char>| -> i32 {
        match c {
            Some('~') => -1,
            None => 0,
            Some(c) if c.is_ascii_alphabetic() => c as i32,
            Some(c) => c as i32 + 256,
        }
    };
    let (mut a, mut b) = (a, b);
    loop {
        if a.is_empty() && b.is_empty() {
            return Ordering::Equal;
        }
        let a_text: &str = &a[..a.find(|c: char| c.is_ascii_digit()).unwrap_or(a.len())];
        let b_text: &str = &b[..b.find(|c: char| c.is_ascii_digit()).unwrap_or(b.len())];
        let (mut x, mut y) = (a_text.chars(), b_text.chars());
        loop {
            let (cx, cy) = (x.next(), y.next());
            if cx.is_none() && cy.is_none() {
                break;
            }
            let ordering = order(cx).cmp(&order(cy));
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        a = &a[a_text.len()..];
        b = &b[b_text.len()..];
        let a_digits = &a[..a.find(|c: char| !c.is_ascii_digit()).unwrap_or(a.len())];
        let b_digits = &b[..b.find(|c: char| !c.is_ascii_digit()).unwrap_or(b.len())];
        let number = |digits: &str| digits.parse::<u128>().unwrap_or(0);
        let ordering = number(a_digits).cmp(&number(b_digits));
        if ordering != Ordering::Equal {
            return ordering;
        }
        a = &a[a_digits.len()..];
        b = &b[b_digits.len()..];
    }
}

/// How a resolution treats the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Build the locked versions where a source still has them; a package whose version is gone
    /// moves to the archive's current one, and the move is reported.
    PreferLocked,
    /// Like [`PreferLocked`](Self::PreferLocked), but any move is an error naming each package
    /// (`--locked`: the exact bytes or nothing).
    Locked,
    /// Ignore the lock's versions: the archive's current ones (`cargo xtask lock`).
    Latest,
}

/// What a resolution gave: the lock to build (content hashes kept only for the inputs that did
/// not move) and what moved, one package a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The lock as resolved today.
    pub lock: Lock,
    /// Every package that differs from the lock.
    pub changes: Vec<LockChange>,
}

/// The packages kiln asks for, per package-set input: the request apt resolves. An empty
/// request resolves to the empty set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requests {
    /// The busybox input's request.
    pub busybox: Vec<String>,
    /// The base OS's request (apt patterns for what `mmdebstrap --variant=minbase` selects,
    /// and the packages a node needs).
    pub base_os: Vec<String>,
    /// The Kubernetes build's toolchain request; of what it resolves to, the
    /// [`TOOLCHAIN_PREFIX`](crate::kubernetes::TOOLCHAIN_PREFIX) packages are locked.
    pub kubernetes_toolchain: Vec<String>,
    /// The busybox source build's C toolchain request
    /// ([`C_TOOLCHAIN_REQUEST`](crate::toolchain::C_TOOLCHAIN_REQUEST)); every package it
    /// resolves to is locked. Empty: the busybox source input is not resolved (kept as the lock
    /// has it).
    pub busybox_toolchain: Vec<String>,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            busybox: vec![crate::oci::BUSYBOX_PACKAGE.to_owned()],
            base_os: crate::os::base::base_os_request(),
            kubernetes_toolchain: vec![crate::kubernetes::TOOLCHAIN_REQUEST.to_owned()],
            busybox_toolchain: crate::toolchain::C_TOOLCHAIN_REQUEST
                .iter()
                .map(|name| (*name).to_owned())
                .collect(),
        }
    }
}

/// Resolves `lock` against the sources `resolver` read. With [`Policy::Locked`], any move is
/// [`ImageError::Drift`]. The source packages (Kubernetes' when `kubernetes_source`, busybox's
/// when [`Requests::busybox_toolchain`] is not empty) need a resolver with source indices.
///
/// # Errors
///
/// If apt cannot satisfy a request, no source has a source package asked for at all, or
/// (with [`Policy::Locked`]) anything moved.
pub fn resolve(
    resolver: &Resolver,
    lock: &Lock,
    requests: &Requests,
    policy: Policy,
    kubernetes_source: bool,
) -> Result<Resolution, ImageError> {
    let set = |request: &[String], locked: &PackageSetLock| -> Result<PackageSetLock, ImageError> {
        let pins: &[LockedPackage] = if policy == Policy::Latest {
            &[]
        } else {
            &locked.packages
        };
        // Nothing asked for is nothing to resolve (an input a caller does not use).
        let packages = if request.is_empty() {
            Vec::new()
        } else {
            resolver.resolve(request, pins)?
        };
        let content_hash = if packages == locked.packages {
            locked.content_hash
        } else {
            None
        };
        Ok(PackageSetLock {
            packages,
            content_hash,
        })
    };
    // A source package at the locked version while a source still has it (the newest
    // otherwise), with its toolchain: `keep_toolchain` picks the locked packages of what the
    // request resolves to. A moved version or toolchain drops the recorded build.
    let source = |locked: &SourceLock,
                  request: &[String],
                  keep_toolchain: &dyn Fn(&LockedPackage) -> bool|
     -> Result<SourceLock, ImageError> {
        let versions = resolver.source_versions(&locked.package)?;
        let toolchain: Vec<LockedPackage> = set(
            request,
            &PackageSetLock {
                packages: locked.toolchain.clone(),
                content_hash: None,
            },
        )?
        .packages
        .into_iter()
        .filter(|package| keep_toolchain(package))
        .collect();
        let keep = policy != Policy::Latest && versions.contains(&locked.version);
        let version = if keep {
            locked.version.clone()
        } else {
            versions
                .first()
                .ok_or_else(|| ImageError::Assembly {
                    what: format!("resolving source package {}", locked.package),
                    reason: "no apt source offers it (is there a deb-src-able Debian source?)"
                        .into(),
                })?
                .clone()
        };
        if version == locked.version && toolchain == locked.toolchain {
            Ok(locked.clone())
        } else {
            Ok(SourceLock {
                package: locked.package.clone(),
                version,
                content_hash: None,
                binaries: BTreeMap::new(),
                toolchain,
            })
        }
    };
    let busybox = set(&requests.busybox, &lock.busybox)?;
    let base_os = set(&requests.base_os, &lock.base_os)?;
    let busybox_source = if requests.busybox_toolchain.is_empty() {
        lock.busybox_source.clone()
    } else {
        let locked = lock.busybox_source.clone().unwrap_or_else(|| SourceLock {
            package: crate::oci::BUSYBOX_SOURCE_PACKAGE.to_owned(),
            version: String::new(),
            content_hash: None,
            binaries: BTreeMap::new(),
            toolchain: Vec::new(),
        });
        Some(source(&locked, &requests.busybox_toolchain, &|_| true)?)
    };
    let kubernetes = if kubernetes_source {
        source(
            &lock.kubernetes,
            &requests.kubernetes_toolchain,
            &|package| {
                package
                    .name
                    .starts_with(crate::kubernetes::TOOLCHAIN_PREFIX)
            },
        )?
    } else {
        lock.kubernetes.clone()
    };
    let resolved = Lock {
        busybox,
        busybox_source,
        kubernetes,
        base_os,
    };
    let changes = lock.changes(&resolved);
    if policy == Policy::Locked && !changes.is_empty() {
        return Err(ImageError::Drift {
            changes: changes.iter().map(ToString::to_string).collect(),
        });
    }
    Ok(Resolution {
        lock: resolved,
        changes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debian_version_order() {
        use std::cmp::Ordering::*;
        for (a, b, expected) in [
            ("1.0", "1.0", Equal),
            ("1.0~rc1", "1.0", Less),
            ("1:0.1", "2.0", Greater),
            ("1.5.2-6+deb12u2", "1.5.2-6+deb12u3", Less),
            (
                "1.20.5+really1.20.2-1.1+deb12u1",
                "1.20.5+really1.20.2-1.1+deb12u2",
                Less,
            ),
            ("2.36-9+deb12u10", "2.36-9+deb12u9", Greater),
            ("1.0a", "1.0+", Less),
        ] {
            assert_eq!(compare_versions(a, b), expected, "{a} vs {b}");
        }
    }

    #[test]
    fn inst_lines() {
        let plan = "NOTE: This is only a simulation!\n\
            Inst libc6 (2.36-9+deb12u10 Debian:12.12/oldstable [amd64]) []\n\
            Inst tzdata (2025b-0+deb12u1 Debian:12.12/oldstable, Debian-Security:12/oldstable-security [all])\n\
            Conf libc6 (2.36-9+deb12u10 Debian:12.12/oldstable [amd64])\n";
        assert_eq!(
            simulated_installs(plan),
            [
                ("libc6".into(), "2.36-9+deb12u10".into(), "amd64".into()),
                ("tzdata".into(), "2025b-0+deb12u1".into(), "all".into()),
            ]
        );
    }
}
