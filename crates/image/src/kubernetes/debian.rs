//! The `debian` source: Kubernetes built here from Debian's `kubernetes`
//! source package with Debian's Go, reproducibly, so that its output can be
//! pinned by content hash.
//!
//! What makes the build reproducible, across runs and directories:
//! - `SOURCE_DATE_EPOCH` from `debian/changelog`, which `hack/lib/version.sh`
//!   uses for the binaries' `buildDate` instead of the clock;
//! - a `KUBE_GIT_VERSION_FILE` giving the version, commit (read from the
//!   source's `git archive` stamp) and tree state, so no `git` is consulted;
//! - `GOFLAGS=-trimpath`, and the source's own `-gcflags`/`-asmflags`
//!   `-trimpath=<source dir>` removed from `hack/lib/golang.sh`: Go records
//!   those flags in every binary's build information, and the source
//!   directory is a fresh temporary one each time;
//! - `-s -w -buildid=` (the source's default linker flags), `CGO_ENABLED=0`,
//!   and a cleared environment with `GOPATH`/`GOCACHE` inside the build tree.
//!
//! Checked: two builds in different directories gave the same bytes, and
//! so did two builds through this builder (different temporary
//! directories, at different times). Without the `-trimpath=${KUBE_ROOT}` removal
//! every binary differs, because `go version -m` shows the flag with the
//! directory in it.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kiln_graph::{BuildContext, BuildError, Builder, Params, format_elapsed};

use super::{KUBERNETES_BINARIES, install_binary, write_version};
use crate::error::ImageError;
use crate::lock::SourceLock;
use kiln_tools::Tool;

use crate::process::{Output, SYSTEM_PATH, require_tools, run_quiet, run_streaming};
use crate::resolve::{AptSources, Indices, Resolver};

/// What apt resolves for the build's Go toolchain.
pub const TOOLCHAIN_REQUEST: &str = "golang-go";

/// The packages of the resolved toolchain that `kiln.lock` pins: Debian's Go (the build runs
/// with `CGO_ENABLED=0`, so no C library reaches the binaries).
pub const TOOLCHAIN_PREFIX: &str = "golang-";

/// Installs exactly the toolchain versions `lock` pins where the machine has others (or none),
/// with `apt-get install NAME=VERSION ...` from the machine's configured sources (which needs
/// root). Does nothing when they are all installed.
///
/// # Errors
///
/// If `apt-get` fails, with its last lines of output.
pub fn ensure_toolchain(lock: &SourceLock) -> Result<(), ImageError> {
    let wrong = toolchain_mismatches(lock)?;
    if wrong.is_empty() {
        return Ok(());
    }
    let mut command = Command::new("apt-get");
    command
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args([
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "--allow-downgrades",
        ])
        .args(
            lock.toolchain
                .iter()
                .map(|package| format!("{}={}", package.name, package.version)),
        );
    run_quiet(command)
}

/// The toolchain packages whose installed version is not the locked one, as
/// `name: installed X, locked Y`.
fn toolchain_mismatches(lock: &SourceLock) -> Result<Vec<String>, ImageError> {
    let mut query = Command::new("dpkg-query");
    query
        .args(["-W", "-f", "${Package} ${Version} ${db:Status-Abbrev}\\n"])
        .args(lock.toolchain.iter().map(|package| package.name.as_str()));
    // dpkg-query exits 1 when a package is unknown; what it printed still counts.
    let output = query
        .output()
        .map_err(|error| ImageError::io("dpkg-query", error))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let installed: std::collections::BTreeMap<&str, &str> = text
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let (name, version, status) = (fields.next()?, fields.next()?, fields.next()?);
            status
                .starts_with("ii")
                .then_some((name.split(':').next()?, version))
        })
        .collect();
    Ok(lock
        .toolchain
        .iter()
        .filter(|package| installed.get(package.name.as_str()) != Some(&package.version.as_str()))
        .map(|package| {
            format!(
                "{}: installed {}, locked {}",
                package.name,
                installed.get(package.name.as_str()).unwrap_or(&"nothing"),
                package.version
            )
        })
        .collect())
}

/// The programs the build of Debian's Kubernetes source runs, each with the Debian package
/// providing it. A build never installs them (that changes the machine): the xtask runs
/// `kiln_tools::install` on them first, and a build without them fails naming them.
pub const BUILD_TOOLS: [Tool; 10] = [
    Tool::program("apt-get", "apt"),
    Tool::program("dpkg-source", "dpkg-dev"),
    Tool::program("go", "golang-go"),
    Tool::program("make", "make"),
    Tool::program("rsync", "rsync"),
    Tool::program("jq", "jq"),
    Tool::program("bash", "bash"),
    Tool::program("find", "findutils"),
    Tool::program("sed", "sed"),
    Tool::program("date", "coreutils"),
];

/// The upstream Kubernetes version a Debian version carries:
/// `1.20.5+really1.20.2-1.1+deb12u1` carries `1.20.2` (Debian's `+really`
/// marks a version rolled back below the one in its name).
///
/// ```
/// assert_eq!(kiln_image::kubernetes::upstream_version("1.20.5+really1.20.2-1.1+deb12u1"), "1.20.2");
/// assert_eq!(kiln_image::kubernetes::upstream_version("1:1.28.1-2"), "1.28.1");
/// ```
pub fn upstream_version(debian_version: &str) -> &str {
    let without_epoch = debian_version
        .split_once(':')
        .map_or(debian_version, |(_, rest)| rest);
    let upstream = without_epoch
        .rsplit_once('-')
        .map_or(without_epoch, |(upstream, _revision)| upstream);
    upstream
        .split_once("+really")
        .map_or(upstream, |(_, really)| really)
}

/// The version stamp Kubernetes' build scripts embed in the binaries (what
/// `kubectl version` prints), written as a `KUBE_GIT_VERSION_FILE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVersion {
    /// The upstream commit, 40 hex digits.
    pub commit: String,
    /// `clean`: the upstream tree with Debian's patches (which the version
    /// does not describe).
    pub tree_state: String,
    /// Such as `v1.20.2`.
    pub version: String,
    /// Such as `1`.
    pub major: String,
    /// Such as `20`.
    pub minor: String,
}

impl KubeVersion {
    /// Reads the stamp that `git archive` left in a release tarball's
    /// `hack/lib/version.sh` (`KUBE_GIT_COMMIT='…'` and `'tag: v1.20.2'`).
    /// Returns `None` if the script carries no stamp.
    pub fn from_version_script(script: &str) -> Option<KubeVersion> {
        let commit = script.lines().find_map(|line| {
            let value = line.trim().strip_prefix("KUBE_GIT_COMMIT='")?;
            let value = value.strip_suffix('\'')?;
            (value.len() == 40 && value.bytes().all(|byte| byte.is_ascii_hexdigit()))
                .then(|| value.to_owned())
        })?;
        let (_, after_tag) = script.split_once("'tag: v")?;
        let number: String = after_tag
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == '.')
            .collect();
        let mut parts = number.split('.');
        let major = parts.next().filter(|part| !part.is_empty())?.to_owned();
        let minor = parts.next().filter(|part| !part.is_empty())?.to_owned();
        Some(KubeVersion {
            commit,
            tree_state: "clean".to_owned(),
            version: format!("v{number}"),
            major,
            minor,
        })
    }

    /// The contents of a `KUBE_GIT_VERSION_FILE`, which the build scripts
    /// `source` instead of asking `git`.
    pub fn version_file(&self) -> String {
        format!(
            "KUBE_GIT_COMMIT='{}'\nKUBE_GIT_TREE_STATE='{}'\nKUBE_GIT_VERSION='{}'\nKUBE_GIT_MAJOR='{}'\nKUBE_GIT_MINOR='{}'\n",
            self.commit, self.tree_state, self.version, self.major, self.minor
        )
    }
}

/// The Unix time of the newest entry of a Debian changelog (its first
/// ` -- Maintainer <address>  <RFC 2822 date>` line): what
/// `dpkg-parsechangelog -S Timestamp` prints, and what Debian uses as
/// `SOURCE_DATE_EPOCH`. `file` only names the changelog in errors.
///
/// ```
/// let changelog = "kubernetes (1.0-1) bookworm; urgency=medium\n\n  * Release.\n\n -- A Maintainer <a@example.org>  Sun, 08 Jun 2025 23:40:27 +0100\n";
/// let epoch = kiln_image::kubernetes::source_date_epoch(changelog, "debian/changelog".as_ref()).unwrap();
/// assert_eq!(epoch, 1_749_422_427);
/// ```
///
/// # Errors
///
/// If there is no trailer line or its date is not `Day, DD Mon YYYY HH:MM:SS ±HHMM`.
pub fn source_date_epoch(changelog: &str, file: &Path) -> Result<i64, ImageError> {
    let error = |line: usize, reason: String| ImageError::Source {
        file: file.to_owned(),
        line,
        reason,
    };
    let (index, trailer) = changelog
        .lines()
        .enumerate()
        .find(|(_, line)| line.starts_with(" -- "))
        .ok_or_else(|| error(1, "no ` -- Maintainer <address>  date` line".to_owned()))?;
    let line = index + 1;
    let (_, date) = trailer.split_once(">  ").ok_or_else(|| {
        error(
            line,
            "expected two spaces between the maintainer's address and the date".to_owned(),
        )
    })?;
    parse_rfc2822(date.trim()).ok_or_else(|| {
        error(
            line,
            format!("{date:?} is not a date like \"Sun, 08 Jun 2025 23:40:27 +0100\""),
        )
    })
}

/// Builds the Kubernetes binaries from Debian's `kubernetes` source package.
///
/// Fetches the source with apt, using `deb-src` entries derived from the
/// given sources in a private apt configuration (see
/// [`AptSources::deb_src`](crate::resolve::AptSources::deb_src)), then runs the source's
/// `make` for [`KUBERNETES_BINARIES`] with [`BUILD_TOOLS`] (which
/// `kiln_tools::install` installs). Takes about ten minutes on two idle cores
/// (measured: 13m25s wall on two cores shared with other builds); progress
/// (the packages compiled and the time elapsed) goes to
/// [`BuildContext::report`] every few seconds.
///
/// Scratch space (about 3 GB) is a temporary directory, removed afterwards;
/// after a failure it is kept, with the build's whole log, and the error
/// says where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebianKubernetes {
    lock: SourceLock,
    sources: AptSources,
}

/// How often progress is reported while the build is compiling.
const PROGRESS_INTERVAL: Duration = Duration::from_secs(10);

impl DebianKubernetes {
    /// The builder for the source package `lock` names (its `package` at its `version`),
    /// fetched through `deb-src` entries derived from `sources`. Where the lock records each
    /// binary's SHA-256, a build that differs fails naming the binary.
    pub fn new(lock: &SourceLock, sources: &AptSources) -> DebianKubernetes {
        DebianKubernetes {
            lock: lock.clone(),
            sources: sources.clone(),
        }
    }

    fn build_into(&self, out: &Path, report: &dyn Fn(&str)) -> Result<(), ImageError> {
        require_tools(&BUILD_TOOLS)?;
        // The sources and the log are kept after a failure, for whoever debugs it.
        crate::process::in_scratch("kiln-kubernetes-", report, |scratch| {
            self.build_in(scratch, out, report)
        })
    }

    fn build_in(
        &self,
        scratch: &Path,
        out: &Path,
        report: &dyn Fn(&str),
    ) -> Result<(), ImageError> {
        let wrong = toolchain_mismatches(&self.lock)?;
        if !wrong.is_empty() {
            return Err(ImageError::Assembly {
                what: "the Go toolchain".into(),
                reason: format!(
                    "not the one kiln.lock pins ({}); kiln_image::kubernetes::ensure_toolchain installs it",
                    wrong.join("; ")
                ),
            });
        }
        report("fetching source indices with apt (deb-src derived from the apt sources)");
        let apt = Resolver::new(&self.sources, Indices::Source)?;
        report(&format!(
            "fetching source package {} {}",
            self.lock.package, self.lock.version
        ));
        let sources = scratch.join("src");
        fs::create_dir_all(&sources).map_err(|error| ImageError::io(&sources, error))?;
        let mut fetch = apt.apt("apt-get");
        fetch
            .current_dir(&sources)
            .args(["source", "--only-source"])
            .arg(format!("{}={}", self.lock.package, self.lock.version));
        run_quiet(fetch)?;
        let tree = unpacked_tree(&sources)?;

        let changelog_path = tree.join("debian/changelog");
        let changelog = fs::read_to_string(&changelog_path)
            .map_err(|error| ImageError::io(&changelog_path, error))?;
        let epoch = source_date_epoch(&changelog, &changelog_path)?;

        let version_script = tree.join("hack/lib/version.sh");
        let script = fs::read_to_string(&version_script)
            .map_err(|error| ImageError::io(&version_script, error))?;
        let version =
            KubeVersion::from_version_script(&script).ok_or_else(|| ImageError::Source {
                file: version_script.clone(),
                line: 1,
                reason: "no `git archive` stamp (KUBE_GIT_COMMIT='<40 hex digits>' and 'tag: v…')"
                    .to_owned(),
            })?;
        let expected = format!("v{}", upstream_version(&self.lock.version));
        if version.version != expected {
            return Err(ImageError::Source {
                file: version_script,
                line: 1,
                reason: format!(
                    "the source is stamped {}, but Debian's version {} says {expected}",
                    version.version, self.lock.version
                ),
            });
        }
        let version_file = scratch.join("kube-version");
        fs::write(&version_file, version.version_file())
            .map_err(|error| ImageError::io(&version_file, error))?;
        remove_source_dir_flags(&tree.join("hack/lib/golang.sh"))?;

        let home = scratch.join("home");
        fs::create_dir_all(&home).map_err(|error| ImageError::io(&home, error))?;
        let mut make = Command::new("make");
        make.current_dir(&tree)
            .env_clear()
            .envs(build_environment(epoch, &version_file, &home))
            .arg(format!(
                "WHAT={}",
                KUBERNETES_BINARIES
                    .map(|name| format!("cmd/{name}"))
                    .join(" ")
            ));
        report(&format!(
            "building {} {} with Go (ten to fifteen minutes on two cores)",
            version.version,
            KUBERNETES_BINARIES.join(" ")
        ));
        let mut progress = Progress::new(report);
        run_streaming(
            make,
            &scratch.join("build.log"),
            PROGRESS_INTERVAL,
            &mut |output| {
                progress.observe(&output);
            },
        )?;
        report(&format!(
            "compiled {} packages in {}",
            progress.packages,
            format_elapsed(progress.started.elapsed())
        ));

        // Every binary is checked before failing, so the report says all
        // that changed, not just the first.
        let bin = tree.join("_output/bin");
        let mut mismatches = Vec::new();
        for name in KUBERNETES_BINARIES {
            let path = bin.join(name);
            let mut file = File::open(&path).map_err(|error| ImageError::io(&path, error))?;
            let actual = install_binary(out, name, &mut file)?;
            if let Some(expected) = self.lock.binaries.get(name)
                && *expected != actual
            {
                report(&format!(
                    "{name}: expected SHA-256 {expected}, built {actual}"
                ));
                mismatches.push(ImageError::ChecksumMismatch {
                    binary: name.to_owned(),
                    origin: format!(
                        "Debian's {} {} built in {}",
                        self.lock.package,
                        self.lock.version,
                        tree.display()
                    ),
                    expected: *expected,
                    actual,
                });
            }
        }
        if !mismatches.is_empty() {
            return Err(mismatches.swap_remove(0));
        }
        write_version(out, &version.version)
    }
}

impl Builder for DebianKubernetes {
    fn kind(&self) -> &str {
        "kiln-image.kubernetes.debian"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        #[derive(serde::Serialize)]
        struct Encoded<'a> {
            package: &'a str,
            version: &'a str,
            toolchain: Vec<String>,
        }
        Params::of(&Encoded {
            package: &self.lock.package,
            version: &self.lock.version,
            toolchain: self
                .lock
                .toolchain
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}

/// The whole environment `make` runs with: nothing from the caller's, so
/// the same source builds the same bytes anywhere.
///
/// `GOFLAGS` ends with `-tags=notest` because the build scripts take
/// whatever follows `-tags=` in it as extra tags (and all of it when there
/// is none); `-v` lists packages as they compile, for progress.
pub fn build_environment(
    source_date_epoch: i64,
    version_file: &Path,
    home: &Path,
) -> Vec<(String, String)> {
    [
        ("PATH", SYSTEM_PATH.to_owned()),
        ("HOME", home.display().to_string()),
        ("LANG", "C.UTF-8".to_owned()),
        ("LC_ALL", "C.UTF-8".to_owned()),
        ("TZ", "UTC".to_owned()),
        ("SOURCE_DATE_EPOCH", source_date_epoch.to_string()),
        ("KUBE_GIT_VERSION_FILE", version_file.display().to_string()),
        ("CGO_ENABLED", "0".to_owned()),
        (
            "GOFLAGS",
            "-trimpath -buildvcs=false -v -tags=notest".to_owned(),
        ),
        ("GOPROXY", "off".to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect()
}

/// Removes `-trimpath=${KUBE_ROOT}` from the compiler and assembler flags in
/// `hack/lib/golang.sh`: Go records `-gcflags` in each binary's build
/// information, so the absolute source path would make every build
/// directory give different bytes. `GOFLAGS=-trimpath` trims paths instead.
fn remove_source_dir_flags(golang_sh: &Path) -> Result<(), ImageError> {
    const REPLACEMENTS: [(&str, &str); 2] = [
        (
            "    goasmflags=\"-trimpath=${KUBE_ROOT}\"\n",
            "    goasmflags=\"\"\n",
        ),
        (
            "    gogcflags=\"${GOGCFLAGS:-} -trimpath=${KUBE_ROOT}\"\n",
            "    gogcflags=\"${GOGCFLAGS:-}\"\n",
        ),
    ];
    let mut script =
        fs::read_to_string(golang_sh).map_err(|error| ImageError::io(golang_sh, error))?;
    for (from, to) in REPLACEMENTS {
        if script.matches(from).count() != 1 {
            return Err(ImageError::Source {
                file: golang_sh.to_owned(),
                line: 1,
                reason: format!(
                    "expected exactly one line {:?} to make reproducible",
                    from.trim()
                ),
            });
        }
        script = script.replace(from, to);
    }
    fs::write(golang_sh, script).map_err(|error| ImageError::io(golang_sh, error))
}

/// The one directory `apt-get source` unpacked into `sources`.
fn unpacked_tree(sources: &Path) -> Result<PathBuf, ImageError> {
    let entries = fs::read_dir(sources).map_err(|error| ImageError::io(sources, error))?;
    let mut trees = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| ImageError::io(sources, error))?;
        if entry.path().is_dir()
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with("kubernetes-")
        {
            trees.push(entry.path());
        }
    }
    match <[PathBuf; 1]>::try_from(trees) {
        Ok([tree]) => Ok(tree),
        Err(trees) => Err(ImageError::Source {
            file: sources.to_owned(),
            line: 0,
            reason: format!(
                "expected apt-get source to unpack one kubernetes-* directory, found {}",
                trees.len()
            ),
        }),
    }
}

/// Turns the build's output into occasional progress lines: the build
/// script's own status lines as they come, and while Go compiles (printing
/// one package per line, with `-v`), the count and latest package every
/// [`PROGRESS_INTERVAL`].
struct Progress<'a> {
    report: &'a dyn Fn(&str),
    started: Instant,
    last_report: Instant,
    packages: usize,
    latest: String,
}

impl<'a> Progress<'a> {
    fn new(report: &'a dyn Fn(&str)) -> Progress<'a> {
        let now = Instant::now();
        Progress {
            report,
            started: now,
            last_report: now,
            packages: 0,
            latest: String::new(),
        }
    }

    fn observe(&mut self, output: &Output<'_>) {
        match output {
            Output::Line(line) => {
                if let Some(status) = line.strip_prefix("+++ ") {
                    // "+++ [1122 11:45:01] Building go targets for linux/amd64:"
                    let status = status.split_once("] ").map_or(status, |(_, text)| text);
                    (self.report)(&format!(
                        "[{}] {status}",
                        format_elapsed(self.started.elapsed())
                    ));
                    self.last_report = Instant::now();
                } else if is_package_line(line) {
                    self.packages += 1;
                    (*line).clone_into(&mut self.latest);
                }
            }
            Output::Quiet => {}
        }
        if self.last_report.elapsed() >= PROGRESS_INTERVAL {
            let latest = if self.latest.is_empty() {
                String::new()
            } else {
                format!(", latest {}", self.latest)
            };
            (self.report)(&format!(
                "[{}] compiled {} packages{latest}",
                format_elapsed(self.started.elapsed()),
                self.packages
            ));
            self.last_report = Instant::now();
        }
    }
}

/// A line `go build -v` prints for a package: one import path, alone.
fn is_package_line(line: &str) -> bool {
    !line.is_empty()
        && !line.starts_with(' ')
        && line
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"/._-~".contains(&byte))
}

/// Parses `Sun, 08 Jun 2025 23:40:27 +0100` (RFC 2822, as Debian's changelogs write dates)
/// into Unix time. The day of the week is not checked against the date: dpkg only warns about
/// a wrong one, and a changelog's date is what it is.
fn parse_rfc2822(date: &str) -> Option<i64> {
    use time::format_description::well_known::Rfc2822;
    let date = date.split_once(", ").map_or(date, |(_, rest)| rest);
    time::OffsetDateTime::parse(date, &Rfc2822)
        .ok()
        .map(time::OffsetDateTime::unix_timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_lines_are_import_paths() {
        assert!(is_package_line(
            "k8s.io/kubernetes/vendor/k8s.io/api/core/v1"
        ));
        assert!(is_package_line("internal/goarch"));
        assert!(!is_package_line(
            "+++ [1122 11:45:01] Building go targets for linux/amd64:"
        ));
        assert!(!is_package_line("    cmd/kubelet"));
        assert!(!is_package_line(""));
    }

    #[test]
    fn progress_reports_status_lines_and_counts_packages() {
        let reports = std::cell::RefCell::new(Vec::new());
        let report = |message: &str| reports.borrow_mut().push(message.to_owned());
        let mut progress = Progress::new(&report);
        progress.observe(&Output::Line(
            "+++ [1122 11:45:01] Building go targets for linux/amd64:",
        ));
        progress.observe(&Output::Line(
            "    ./vendor/k8s.io/code-generator/cmd/deepcopy-gen",
        ));
        progress.observe(&Output::Line("internal/goarch"));
        progress.observe(&Output::Line("k8s.io/kubernetes/pkg/kubelet"));
        // Pretend the interval has passed.
        progress.last_report -= PROGRESS_INTERVAL;
        progress.observe(&Output::Quiet);
        assert_eq!(progress.packages, 2);
        let reports = reports.borrow();
        assert_eq!(reports.len(), 2, "{reports:?}");
        assert!(
            reports[0].ends_with("] Building go targets for linux/amd64:"),
            "{reports:?}"
        );
        assert!(
            reports[1].ends_with("] compiled 2 packages, latest k8s.io/kubernetes/pkg/kubelet"),
            "{reports:?}"
        );
    }

    #[test]
    fn rfc2822_rejects_what_is_not_a_date() {
        assert_eq!(
            parse_rfc2822("Sun, 08 Jun 2025 23:40:27 +0100"),
            Some(1_749_422_427)
        );
        assert_eq!(
            parse_rfc2822("Sun, 08 Jun 2025 23:40:27 -0000"),
            Some(1_749_426_027)
        );
        assert_eq!(parse_rfc2822("08 Jun 2025 23:40:27"), None);
        assert_eq!(parse_rfc2822("Sun, 08 Juni 2025 23:40:27 +0100"), None);
        assert_eq!(parse_rfc2822("Sun, 08 Jun 2025 24:40:27 +0100"), None);
        assert_eq!(parse_rfc2822("Sun, 31 Jun 2025 12:00:00 +0100"), None);
        // A wrong day of the week (8 June 2025 was a Sunday) is Debian's to warn about.
        assert_eq!(
            parse_rfc2822("Mon, 08 Jun 2025 23:40:27 +0100"),
            Some(1_749_422_427)
        );
    }
}
