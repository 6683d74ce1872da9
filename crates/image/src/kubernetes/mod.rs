//! The Kubernetes binaries as one store output, from one of three sources:
//! Debian's source package built here, release downloads, or a local
//! directory. Every output has the same layout: `bin/<name>` (mode 0755) for
//! each of [`KUBERNETES_BINARIES`], and a `VERSION` file.

mod debian;
mod path;
mod release;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_graph::Derivation;
use kiln_store::Digest;
use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

pub use self::debian::{
    BUILD_TOOLS, DebianKubernetes, KubeVersion, TOOLCHAIN_PREFIX, TOOLCHAIN_REQUEST,
    build_environment, ensure_toolchain, source_date_epoch, upstream_version,
};
pub use self::path::PathKubernetes;
pub use self::release::{ReleaseBinary, ReleaseKubernetes};

/// The binaries every source provides, in the order they are listed to people.
pub const KUBERNETES_BINARIES: [&str; 7] = [
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
    "kubeadm",
];

/// The store name of the binaries' output.
pub const KUBERNETES_DERIVATION_NAME: &str = "kubernetes-binaries";

/// Where the Kubernetes binaries come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KubernetesSource {
    /// Built here from Debian's `kubernetes` source package, fetched with
    /// apt, with Debian's Go. The output is reproducible; `kiln.lock` pins the
    /// version and the content hash of its build.
    Debian {
        /// The source package, its version and (once built) its content hash.
        lock: crate::lock::SourceLock,
        /// The apt sources to fetch it from (`deb-src` entries are derived).
        sources: crate::resolve::AptSources,
    },
    /// Downloaded, one URL per binary, each checked against its SHA-256.
    Release {
        /// The Kubernetes version written to `VERSION`, such as `v1.20.2`.
        version: String,
        /// Each of [`KUBERNETES_BINARIES`] with its URL and SHA-256.
        binaries: BTreeMap<String, ReleaseBinary>,
    },
    /// Built here from Go modules, as kiln's package set declares it
    /// (`packages/kubernetes.toml`): see [`crate::go`](crate::go::go_derivations).
    Go {
        /// The package's declaration.
        package: Box<crate::packages::Package>,
        /// The version to build (a Go one).
        version: crate::packages::PackageVersion,
    },
    /// Copied from a local directory holding the binaries by name, pinned to
    /// the directory's content hash.
    Path {
        /// The Kubernetes version written to `VERSION`, such as `v1.20.2`.
        version: String,
        /// The directory.
        dir: PathBuf,
    },
}

/// The derivation (named [`KUBERNETES_DERIVATION_NAME`]) that produces the
/// binaries from `source`.
///
/// - `Debian`: a fixed-output derivation pinned to the content hash of that
///   version's reproducible build, where the lock records one, so its store
///   path depends on nothing else and a build that differs fails naming both
///   hashes; addressed by the package and version otherwise.
/// - `Release`: addressed by the version and the binaries' SHA-256s (not the
///   URLs: a mirror serves the same bytes), each checked as it downloads.
/// - `Path`: addressed by the directory's content hash, computed now (which
///   reads the directory once); the build fails if it has changed since.
///
/// A `Go` source needs two derivations: see [`kubernetes_derivations`].
///
/// # Errors
///
/// A release list that is not
/// exactly [`KUBERNETES_BINARIES`], or a directory that cannot be hashed or
/// lacks a binary, or a `Go` source.
pub fn kubernetes_binaries(source: &KubernetesSource) -> Result<Derivation, ImageError> {
    Ok(match source {
        KubernetesSource::Go { package, version } => {
            return Err(ImageError::Binaries {
                source_kind: "go",
                reason: format!(
                    "{} {} builds as two derivations: use kubernetes_derivations",
                    package.name, version.version
                ),
            });
        }
        KubernetesSource::Debian { lock, sources } => {
            let derivation = Derivation::new(
                KUBERNETES_DERIVATION_NAME,
                Arc::new(DebianKubernetes::new(lock, sources)),
            );
            match lock.content_hash {
                Some(content_hash) => derivation.fixed(content_hash),
                None => derivation,
            }
        }
        KubernetesSource::Release { version, binaries } => Derivation::new(
            KUBERNETES_DERIVATION_NAME,
            Arc::new(ReleaseKubernetes::new(version, binaries.clone())?),
        ),
        KubernetesSource::Path { version, dir } => Derivation::new(
            KUBERNETES_DERIVATION_NAME,
            Arc::new(PathKubernetes::new(version, dir)?),
        ),
    })
}

/// The derivations that produce the Kubernetes binaries from `source`: the binaries (named
/// [`KUBERNETES_DERIVATION_NAME`], or `kubernetes-<version>` when built from Go modules) and,
/// for a `Go` source, the module download that the binaries' input `modules` must find at
/// `modules_id`.
///
/// # Errors
///
/// As [`kubernetes_binaries`]; for a `Go` source, a package whose binaries are not exactly
/// [`KUBERNETES_BINARIES`] or a version that is not a Go one.
pub fn kubernetes_derivations(
    source: &KubernetesSource,
    modules_id: &kiln_graph::DrvId,
) -> Result<KubernetesDerivations, ImageError> {
    match source {
        KubernetesSource::Go { package, version } => {
            let recipe = package.go.as_ref().ok_or_else(|| ImageError::Binaries {
                source_kind: "go",
                reason: format!("package {} has no [go] recipe", package.name),
            })?;
            check_binary_names("go", recipe.binaries.keys().map(String::as_str))?;
            let derivations = crate::go::go_derivations(package, version, modules_id.clone())?;
            Ok(KubernetesDerivations {
                binaries: derivations.build,
                modules: Some(derivations.modules),
            })
        }
        other => Ok(KubernetesDerivations {
            binaries: kubernetes_binaries(other)?,
            modules: None,
        }),
    }
}

/// What [`kubernetes_derivations`] gives.
pub struct KubernetesDerivations {
    /// The derivation whose output is `bin/<name>` for each of [`KUBERNETES_BINARIES`] and
    /// `VERSION`.
    pub binaries: Derivation,
    /// For a build from Go modules, the module download (fixed-output).
    pub modules: Option<Derivation>,
}

/// Checks that `names` are exactly [`KUBERNETES_BINARIES`].
fn check_binary_names<'a>(
    source_kind: &'static str,
    names: impl Iterator<Item = &'a str>,
) -> Result<(), ImageError> {
    let given: Vec<&str> = names.collect();
    let missing: Vec<&str> = KUBERNETES_BINARIES
        .iter()
        .copied()
        .filter(|name| !given.contains(name))
        .collect();
    let unexpected: Vec<&str> = given
        .iter()
        .copied()
        .filter(|name| !KUBERNETES_BINARIES.contains(name))
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    if !unexpected.is_empty() {
        problems.push(format!("unexpected {}", unexpected.join(", ")));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ImageError::Binaries {
            source_kind,
            reason: problems.join("; "),
        })
    }
}

/// Copies `reader` to `out/bin/<name>` (mode 0755) and returns its SHA-256.
fn install_binary(out: &Path, name: &str, reader: &mut dyn Read) -> Result<Digest, ImageError> {
    let bin = out.join("bin");
    fs::create_dir_all(&bin).map_err(|error| ImageError::io(&bin, error))?;
    let path = bin.join(name);
    let mut file = File::create(&path).map_err(|error| ImageError::io(&path, error))?;
    let mut hashing = HashingWriter {
        inner: &mut file,
        hasher: Sha256::new(),
    };
    io::copy(reader, &mut hashing).map_err(|error| ImageError::io(&path, error))?;
    let digest = Digest::from_bytes(hashing.hasher.finalize().into());
    file.set_permissions(fs::Permissions::from_mode(0o755))
        .map_err(|error| ImageError::io(&path, error))?;
    Ok(digest)
}

/// Writes `out/VERSION`.
fn write_version(out: &Path, version: &str) -> Result<(), ImageError> {
    let path = out.join("VERSION");
    fs::write(&path, format!("{version}\n")).map_err(|error| ImageError::io(&path, error))
}

struct HashingWriter<'a> {
    inner: &'a mut dyn Write,
    hasher: Sha256,
}

impl Write for HashingWriter<'_> {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buffer)?;
        self.hasher.update(&buffer[..written]);
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}
