//! kiln's package set: every piece of software a node runs, declared once as data.
//!
//! Each package is one TOML file (`packages/<name>.toml` in kiln's repository, read by the
//! command line and handed to [`PackageSet::parse`]): what it is, how it is built, and the
//! versions kiln has of it. Adding a version is adding a `[[versions]]` entry; adding a package
//! is adding a file. A Go package looks like this:
//!
//! ```toml
//! description = "etcd, the key-value store"
//! install = "usr/local/bin"              # where node images put bin/ (the default)
//!
//! [go]
//! module = "go.etcd.io/etcd/server/v3"  # required at v{version}
//! tags = []
//! cgo = false
//! ldflags = ["-s", "-w", "-X go.etcd.io/etcd/api/v3/version.GitSHA=v{version}"]
//! data = []                              # the module's own files to ship in share/<package>/
//!
//! [go.binaries]                          # bin/<name> = the Go package that builds it
//! etcd = "./cmd/etcd"                    # ./ : a package of the wrapper module, from [go.files]
//!
//! [go.tests]                             # bin/<name> = `go test -c` of a wrapper package
//!                                        # (none here; kubernetes-e2e.toml has e2e.test)
//!
//! [go.files]
//! "cmd/etcd/main.go" = '''
//! package main
//!
//! import (
//!     "os"
//!
//!     "go.etcd.io/etcd/server/v3/etcdmain"
//! )
//!
//! func main() { etcdmain.Main(os.Args) }
//! '''
//!
//! [[versions]]
//! version = "3.6.16"
//! go = "1.26.8"                          # the Go toolchain, part of the pin
//! vendor-hash = "…"                      # the content hash of the module download
//! ```
//!
//! A Go version builds as two derivations ([`crate::go`]): the module download, fixed-output
//! and pinned by `vendor-hash`, then an offline compile. In `ldflags`, `{version}`, `{major}`,
//! `{minor}` and `{patch}` are the version's parts and `{date}` is the time the module proxy
//! gives for that module version (RFC 3339, UTC): an upstream fact, never the clock.
//!
//! A version may instead say `debian = true`: it comes from Debian's archive as `kiln.lock`
//! pins it. For `kubernetes` that is Debian's source package built here
//! ([`crate::kubernetes::KubernetesSource::Debian`]); for any other package, the binary package in the
//! base OS (`runc`, which needs cgo and so a C toolchain kiln does not pin yet).

use std::collections::BTreeMap;
use std::fmt;

use kiln_store::Digest;
use serde::Deserialize;

use crate::error::ImageError;

/// Every package kiln can build, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PackageSet {
    packages: BTreeMap<String, Package>,
}

/// One package: what it is and the versions kiln has of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Its name: the declaration's file name without `.toml`, such as `kubernetes`.
    pub name: String,
    /// One line on what it is.
    pub description: String,
    /// Where a node image installs its `bin/`, relative to the root (`install`; default
    /// `usr/local/bin`).
    pub install_dir: String,
    /// How it is built from Go modules, if it is.
    pub go: Option<GoRecipe>,
    /// The versions kiln has, in the declaration's order.
    pub versions: Vec<PackageVersion>,
}

/// How a package is built from a Go module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoRecipe {
    /// The module the wrapper module requires at `v{version}`, such as `k8s.io/kubernetes`.
    pub module: String,
    /// Further requirements of the wrapper module, each `path version` (templates allowed).
    pub require: Vec<String>,
    /// When set, every `replace` in the module's own `go.mod` that points into its own tree
    /// (`=> ./...`) is replaced in the wrapper by the published module at this version
    /// (a template, such as `v0.{minor}.{patch}` for Kubernetes' staging modules).
    pub local_replace_version: Option<String>,
    /// Build tags.
    pub tags: Vec<String>,
    /// Whether cgo is enabled (`CGO_ENABLED`).
    pub cgo: bool,
    /// Linker flags (templates), passed as one `-ldflags=all=...`.
    pub ldflags: Vec<String>,
    /// Output name in `bin/` to the Go package built for it: a full import path, or `./dir`
    /// for a package of the wrapper module.
    pub binaries: BTreeMap<String, String>,
    /// Output name in `bin/` to a package of the wrapper module (`./dir`) whose tests are
    /// compiled into one program with `go test -c`, as upstream builds `e2e.test`: only the
    /// wrapper's own packages, because a vendor tree holds no `_test.go` file of a dependency.
    pub tests: BTreeMap<String, String>,
    /// Files of the wrapper module (path relative to its root, content).
    pub files: BTreeMap<String, String>,
    /// Files or directories of the module's own tree (relative to its root) that the package
    /// ships beside its programs, under `share/<package>/`: data a program reads at run time,
    /// such as kube-bench's `cfg/` benchmarks, which no vendor tree holds. They come from the
    /// module download (whose content the checksum database and `vendor-hash` pin).
    pub data: Vec<String>,
}

/// One version of a package and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackageVersion {
    /// The version, `MAJOR.MINOR.PATCH` without a `v`, such as `1.37.2`.
    pub version: String,
    /// Where this version is built from.
    pub source: VersionSource,
    /// Other packages of the set, each at a version, that a node running this version runs
    /// with it (for Kubernetes: its container runtime, etcd, CNI plugins...). Empty when the
    /// node takes them from elsewhere (Kubernetes 1.20.2: Debian's base OS).
    pub with: BTreeMap<String, String>,
    /// Other packages of the set, each at a version, whose programs a cluster on this version
    /// runs in pods only, from an image kiln builds of them, so they are not installed on the
    /// node (for Kubernetes: CoreDNS, 1.7.0 for 1.20.2 and 1.15.0 for the versions built from
    /// Go modules). Empty when there are none to be had.
    pub pods: BTreeMap<String, String>,
}

/// Where one version of a package comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum VersionSource {
    /// The package's [`GoRecipe`] at this version.
    Go {
        /// The Go toolchain version that builds it, such as `1.26.8`.
        toolchain: String,
        /// The content hash of the module download (the wrapper's `go.mod`, `go.sum` and
        /// vendor tree).
        vendor_hash: Digest,
    },
    /// Debian's archive, as `kiln.lock` pins it: for `kubernetes` its source package, for
    /// another package the binary package in the base OS.
    Debian,
}

/// The parts of a `MAJOR.MINOR.PATCH` version that templates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parts<'a> {
    major: &'a str,
    minor: &'a str,
    patch: &'a str,
}

fn parts(version: &str) -> Option<Parts<'_>> {
    let mut fields = version.split('.');
    let (Some(major), Some(minor), Some(patch), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return None;
    };
    [major, minor, patch]
        .iter()
        .all(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
        .then_some(Parts {
            major,
            minor,
            patch,
        })
}

/// Expands `{version}`, `{major}`, `{minor}`, `{patch}` and `{date}` in `template`.
///
/// ```
/// let text = kiln_image::packages::expand_template("v0.{minor}.{patch} {date}", "1.37.2", "2026-10-27T12:01:04Z");
/// assert_eq!(text, "v0.37.2 2026-10-27T12:01:04Z");
/// ```
///
/// # Panics
///
/// If `version` is not `MAJOR.MINOR.PATCH` (a [`PackageSet`] holds only such versions).
pub fn expand_template(template: &str, version: &str, date: &str) -> String {
    let parts = parts(version).expect("package versions are MAJOR.MINOR.PATCH");
    template
        .replace("{version}", version)
        .replace("{major}", parts.major)
        .replace("{minor}", parts.minor)
        .replace("{patch}", parts.patch)
        .replace("{date}", date)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPackage {
    description: String,
    install: Option<String>,
    go: Option<RawGo>,
    versions: Vec<RawVersion>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawGo {
    module: String,
    #[serde(default)]
    require: Vec<String>,
    local_replace_version: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    cgo: bool,
    #[serde(default)]
    ldflags: Vec<String>,
    binaries: BTreeMap<String, String>,
    #[serde(default)]
    tests: BTreeMap<String, String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    data: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawVersion {
    version: String,
    go: Option<String>,
    vendor_hash: Option<String>,
    #[serde(default)]
    debian: bool,
    #[serde(default)]
    with: BTreeMap<String, String>,
    #[serde(default)]
    pods: BTreeMap<String, String>,
}

impl PackageSet {
    /// Parses package declarations, each `(file name, text)`; a package's name is its file
    /// name without `.toml`.
    ///
    /// ```
    /// let text = r#"
    /// description = "a tool"
    /// [go]
    /// module = "example.com/tool"
    /// cgo = false
    /// [go.binaries]
    /// tool = "example.com/tool/cmd/tool"
    /// [[versions]]
    /// version = "1.2.3"
    /// go = "1.26.8"
    /// vendor-hash = "0000000000000000000000000000000000000000000000000000000000000000"
    /// "#;
    /// let set = kiln_image::packages::PackageSet::parse([("tool.toml", text)])?;
    /// assert_eq!(set.version("tool", "1.2.3")?.version, "1.2.3");
    /// assert!(set.version("tool", "9.9.9").unwrap_err().to_string().contains("has 1.2.3"));
    /// # Ok::<(), kiln_image::ImageError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ImageError::Package`] naming the file, the line and what is wrong: not TOML, a
    /// missing or unknown field, a version that is not `MAJOR.MINOR.PATCH` or is listed twice,
    /// a Go version without `go` or `vendor-hash`, a hash that is not 64 hex digits, two
    /// binaries built from packages of the same last path element, a `./` binary without a
    /// file under its directory, a file name that is not a plain relative path.
    pub fn parse<'a>(
        files: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<PackageSet, ImageError> {
        let mut packages = BTreeMap::new();
        for (file, text) in files {
            let package = parse_package(file, text)?;
            if packages.contains_key(&package.name) {
                return Err(ImageError::Package {
                    file: file.to_owned(),
                    line: 0,
                    reason: format!("a package named {} is declared twice", package.name),
                });
            }
            packages.insert(package.name.clone(), package);
        }
        let set = PackageSet { packages };
        for package in set.packages.values() {
            for version in &package.versions {
                for (name, wanted) in version.with.iter().chain(&version.pods) {
                    set.version(name, wanted)
                        .map_err(|error| ImageError::Package {
                            file: format!("packages/{}.toml", package.name),
                            line: 0,
                            reason: format!(
                                "versions: {} runs with {name} {wanted}, but {error}",
                                version.version
                            ),
                        })?;
                }
            }
        }
        Ok(set)
    }

    /// Reads every `*.toml` in `dir` (kiln's `packages/`), in name order, and parses them as
    /// [`PackageSet::parse`] does, each named by its path.
    ///
    /// # Errors
    ///
    /// [`ImageError::Io`] if the directory or a file cannot be read; otherwise as
    /// [`PackageSet::parse`].
    pub fn load(dir: &std::path::Path) -> Result<PackageSet, ImageError> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|error| ImageError::io(dir, error))? {
            let path = entry.map_err(|error| ImageError::io(dir, error))?.path();
            if path
                .extension()
                .is_some_and(|extension| extension == "toml")
            {
                let text =
                    std::fs::read_to_string(&path).map_err(|error| ImageError::io(&path, error))?;
                files.push((path.display().to_string(), text));
            }
        }
        files.sort();
        PackageSet::parse(
            files
                .iter()
                .map(|(path, text)| (path.as_str(), text.as_str())),
        )
    }

    /// The packages, by name.
    pub fn packages(&self) -> impl Iterator<Item = &Package> {
        self.packages.values()
    }

    /// The package named `name`.
    ///
    /// # Errors
    ///
    /// [`ImageError::UnknownPackage`] naming the packages there are.
    pub fn package(&self, name: &str) -> Result<&Package, ImageError> {
        self.packages
            .get(name)
            .ok_or_else(|| ImageError::UnknownPackage {
                package: name.to_owned(),
                version: None,
                known: self.packages.keys().cloned().collect::<Vec<_>>().join(", "),
            })
    }

    /// Version `version` (`MAJOR.MINOR.PATCH`, without a `v`) of package `name`.
    ///
    /// # Errors
    ///
    /// [`ImageError::UnknownPackage`] naming the versions the package has (or the packages
    /// there are).
    pub fn version(&self, name: &str, version: &str) -> Result<&PackageVersion, ImageError> {
        let package = self.package(name)?;
        package
            .versions
            .iter()
            .find(|candidate| candidate.version == version)
            .ok_or_else(|| ImageError::UnknownPackage {
                package: name.to_owned(),
                version: Some(version.to_owned()),
                known: package.version_list(),
            })
    }
}

impl Package {
    /// Its versions, newest first, comma-separated: `1.37.2, 1.36.3, 1.20.2`.
    pub fn version_list(&self) -> String {
        let mut versions: Vec<&PackageVersion> = self.versions.iter().collect();
        versions.sort_by_key(|version| std::cmp::Reverse(version.numeric()));
        versions
            .iter()
            .map(|version| version.version.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl PackageVersion {
    /// `(major, minor, patch)` as numbers.
    pub fn numeric(&self) -> (u64, u64, u64) {
        let parts = parts(&self.version).expect("package versions are MAJOR.MINOR.PATCH");
        let number = |text: &str| text.parse().unwrap_or(u64::MAX);
        (
            number(parts.major),
            number(parts.minor),
            number(parts.patch),
        )
    }
}

impl fmt::Display for PackageVersion {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.version)
    }
}

/// The name a Go package's binary gets from `go build -o DIR/`: its last path element, or the
/// one before a major-version suffix (`.../v3`).
pub(crate) fn default_binary_name(import_path: &str) -> &str {
    let mut elements = import_path.rsplit('/');
    let last = elements.next().unwrap_or(import_path);
    let is_major = last.len() > 1
        && last.starts_with('v')
        && last[1..].bytes().all(|byte| byte.is_ascii_digit());
    if is_major {
        elements.next().unwrap_or(last)
    } else {
        last
    }
}

/// Whether `path` is relative, without empty, `.` or `..` elements.
fn plain_relative(path: &str) -> bool {
    !path.starts_with('/')
        && path
            .split('/')
            .all(|element| !element.is_empty() && element != "." && element != "..")
}

fn parse_package(file: &str, text: &str) -> Result<Package, ImageError> {
    let name = file
        .rsplit('/')
        .next()
        .and_then(|base| base.strip_suffix(".toml"))
        .unwrap_or(file)
        .to_owned();
    let raw: RawPackage = toml::from_str(text).map_err(|error| ImageError::Package {
        file: file.to_owned(),
        line: error
            .span()
            .map_or(0, |span| crate::lock::line_at(text, span.start)),
        reason: error.message().to_owned(),
    })?;
    let at = |needle: &str| -> usize {
        text.find(needle)
            .map_or(0, |offset| crate::lock::line_at(text, offset))
    };
    let error = |needle: &str, reason: String| ImageError::Package {
        file: file.to_owned(),
        line: at(needle),
        reason,
    };

    let go = match raw.go {
        None => None,
        Some(go) => {
            let mut built_as = BTreeMap::new();
            for (binary, package) in &go.binaries {
                if let Some(local) = package.strip_prefix("./") {
                    let dir = format!("{local}/");
                    if !go.files.keys().any(|path| path.starts_with(&dir)) {
                        return Err(error(
                            package,
                            format!(
                                "go.binaries.{binary}: {package} is a package of the wrapper module, but go.files has no file under {dir}"
                            ),
                        ));
                    }
                }
                if let Some(other) = built_as.insert(default_binary_name(package), binary) {
                    return Err(error(
                        package,
                        format!(
                            "go.binaries: {other} and {binary} are built from packages with the same last path element, which `go build -o` cannot tell apart"
                        ),
                    ));
                }
            }
            for (test, package) in &go.tests {
                let Some(local) = package.strip_prefix("./") else {
                    return Err(error(
                        package,
                        format!(
                            "go.tests.{test}: {package} is not a package of the wrapper module (`./dir`); a vendor tree holds no test files of other modules, so only the wrapper's own tests can be compiled"
                        ),
                    ));
                };
                let dir = format!("{local}/");
                if !go
                    .files
                    .keys()
                    .any(|path| path.starts_with(&dir) && path.ends_with("_test.go"))
                {
                    return Err(error(
                        package,
                        format!("go.tests.{test}: go.files has no `_test.go` file under {dir}"),
                    ));
                }
                if go.binaries.contains_key(test) {
                    return Err(error(
                        package,
                        format!("go.tests.{test}: go.binaries has a program of that name too"),
                    ));
                }
            }
            for path in &go.data {
                if !plain_relative(path) {
                    return Err(error(
                        path,
                        format!(
                            "go.data: `{path}` is not a plain relative path of a file or directory in {}'s module",
                            go.module
                        ),
                    ));
                }
            }
            for path in go.files.keys() {
                if !plain_relative(path)
                    || matches!(path.as_str(), "go.mod" | "go.sum")
                    || path.starts_with("vendor/")
                {
                    return Err(error(
                        path,
                        format!(
                            "go.files: `{path}` is not a plain relative path for a source file of the wrapper module"
                        ),
                    ));
                }
            }
            Some(GoRecipe {
                module: go.module,
                require: go.require,
                local_replace_version: go.local_replace_version,
                tags: go.tags,
                cgo: go.cgo,
                ldflags: go.ldflags,
                binaries: go.binaries,
                tests: go.tests,
                files: go.files,
                data: go.data,
            })
        }
    };

    let mut versions: Vec<PackageVersion> = Vec::new();
    for version in raw.versions {
        let needle = format!("\"{}\"", version.version);
        if parts(&version.version).is_none() {
            return Err(error(
                &needle,
                format!(
                    "versions: `{}` is not MAJOR.MINOR.PATCH (without a v)",
                    version.version
                ),
            ));
        }
        if versions.iter().any(|seen| seen.version == version.version) {
            return Err(error(
                &needle,
                format!("versions: {} is listed twice", version.version),
            ));
        }
        let source = if version.debian {
            if version.go.is_some() || version.vendor_hash.is_some() {
                return Err(error(
                    &needle,
                    format!(
                        "versions: {} says debian = true, so it takes neither go nor vendor-hash",
                        version.version
                    ),
                ));
            }
            VersionSource::Debian
        } else {
            if go.is_none() {
                return Err(error(
                    &needle,
                    format!(
                        "versions: {} needs a [go] recipe to build from, or debian = true",
                        version.version
                    ),
                ));
            }
            let (Some(toolchain), Some(vendor_hash)) = (version.go, version.vendor_hash) else {
                return Err(error(
                    &needle,
                    format!(
                        "versions: {} needs both go (the toolchain version) and vendor-hash (a build with a wrong one names the right one)",
                        version.version
                    ),
                ));
            };
            if parts(&toolchain).is_none() {
                return Err(error(
                    &toolchain,
                    format!("versions: go = `{toolchain}` is not MAJOR.MINOR.PATCH"),
                ));
            }
            let vendor_hash = vendor_hash.parse().map_err(|_| {
                error(
                    &vendor_hash,
                    format!(
                        "versions: vendor-hash `{vendor_hash}` is not a SHA-256 (64 hex digits)"
                    ),
                )
            })?;
            VersionSource::Go {
                toolchain,
                vendor_hash,
            }
        };
        versions.push(PackageVersion {
            version: version.version,
            source,
            with: version.with,
            pods: version.pods,
        });
    }
    if versions.is_empty() {
        return Err(error("versions", "no versions are declared".to_owned()));
    }
    let install_dir = raw.install.unwrap_or_else(|| "usr/local/bin".to_owned());
    if install_dir.starts_with('/')
        || install_dir
            .split('/')
            .any(|element| element.is_empty() || element == "." || element == "..")
    {
        return Err(error(
            "install",
            format!(
                "install: `{install_dir}` is not a plain relative directory such as usr/local/bin"
            ),
        ));
    }
    Ok(Package {
        name,
        description: raw.description,
        install_dir,
        go,
        versions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_names_follow_go_build() {
        assert_eq!(
            default_binary_name("k8s.io/kubernetes/cmd/kubelet"),
            "kubelet"
        );
        assert_eq!(default_binary_name("go.etcd.io/etcd/etcdctl/v3"), "etcdctl");
        assert_eq!(default_binary_name("./cmd/etcd"), "etcd");
    }

    #[test]
    fn versions_sort_numerically() {
        let version = |text: &str| PackageVersion {
            version: text.to_owned(),
            source: VersionSource::Debian,
            with: BTreeMap::new(),
            pods: BTreeMap::new(),
        };
        let package = Package {
            name: "kubernetes".to_owned(),
            description: String::new(),
            install_dir: "usr/local/bin".to_owned(),
            go: None,
            versions: vec![version("1.9.0"), version("1.37.2"), version("1.20.2")],
        };
        assert_eq!(package.version_list(), "1.37.2, 1.20.2, 1.9.0");
    }
}
