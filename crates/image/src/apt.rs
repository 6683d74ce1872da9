//! A private apt configuration for fetching source packages: `deb-src`
//! entries derived from the machine's own apt sources, so no registry host is
//! ever named here and the system's apt configuration is left untouched.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::ImageError;
use crate::process::run_quiet;

/// Derives `deb-src` sources from the machine's apt configuration in
/// `etc_apt` (normally `/etc/apt`): every `*.sources` file in
/// `sources.list.d` (deb822) and every `*.list` file there and
/// `sources.list` (one-line format).
///
/// Returns file names (for a private `sources.list.d`, `kiln-src-<name>`
/// with the original's extension) mapped to their contents, each holding only `deb-src` entries for the same URIs, suites,
/// components and signing keys as the machine's `deb` entries.
///
/// # Errors
///
/// If a file cannot be read, or if no `deb` entry is found at all.
pub fn deb_src_config(etc_apt: &Path) -> Result<BTreeMap<String, String>, ImageError> {
    let mut files = BTreeMap::new();
    let mut candidates: Vec<PathBuf> = vec![etc_apt.join("sources.list")];
    let parts = etc_apt.join("sources.list.d");
    match fs::read_dir(&parts) {
        Ok(entries) => {
            for entry in entries {
                let entry = entry.map_err(|error| ImageError::io(&parts, error))?;
                candidates.push(entry.path());
            }
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
        Err(error) => return Err(ImageError::io(&parts, error)),
    }
    candidates.sort();
    for path in candidates {
        let Some(file_name) = path.file_name().and_then(|name| name.to_str()) else {
            continue;
        };
        // Each keeps its format, which apt tells by the extension; apt
        // ignores other names (such as `*.disabled`), and so does this.
        let converted = if let Some(stem) = file_name.strip_suffix(".sources") {
            (
                format!("kiln-src-{stem}.sources"),
                deb_src_sources(&read_if_present(&path)?),
            )
        } else if let Some(stem) = file_name.strip_suffix(".list") {
            (
                format!("kiln-src-{stem}.list"),
                deb_src_lines(&read_if_present(&path)?),
            )
        } else {
            continue;
        };
        if !converted.1.is_empty() {
            files.insert(converted.0, converted.1);
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
    Ok(files)
}

/// Converts deb822 sources (the `*.sources` format) into `deb-src` stanzas:
/// each enabled stanza whose `Types` include `deb` is kept with
/// `Types: deb-src`; other stanzas and comments are dropped. Returns an
/// empty string when nothing qualifies.
///
/// ```
/// let system = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n";
/// assert_eq!(
///     kiln_image::deb_src_sources(system),
///     "Types: deb-src\nURIs: http://mirror.example/debian\nSuites: bookworm\nComponents: main\n",
/// );
/// ```
pub fn deb_src_sources(deb822: &str) -> String {
    // Stanzas are separated by blank lines; comment lines are not fields,
    // and a continuation line (leading space) belongs to the field before it.
    let mut grouped: Vec<Vec<&str>> = vec![Vec::new()];
    for line in deb822.lines() {
        if line.trim().is_empty() {
            grouped.push(Vec::new());
        } else if !line.trim_start().starts_with('#')
            && let Some(stanza) = grouped.last_mut()
        {
            stanza.push(line);
        }
    }
    let mut stanzas = Vec::new();
    for lines in grouped.into_iter().filter(|stanza| !stanza.is_empty()) {
        let field = |name: &str| {
            lines.iter().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
            })
        };
        let has_deb =
            field("Types").is_some_and(|types| types.split_whitespace().any(|t| t == "deb"));
        let enabled = field("Enabled").is_none_or(|value| !value.eq_ignore_ascii_case("no"));
        if !has_deb || !enabled {
            continue;
        }
        let mut out = String::new();
        for line in lines {
            let is_types = line
                .split_once(':')
                .is_some_and(|(key, _)| key.trim().eq_ignore_ascii_case("Types"));
            if is_types {
                out.push_str("Types: deb-src\n");
            } else {
                out.push_str(line);
                out.push('\n');
            }
        }
        stanzas.push(out);
    }
    stanzas.join("\n")
}

/// Converts one-line sources (the `sources.list` format): each `deb` line
/// becomes a `deb-src` line with the same options, URI, suite and
/// components; everything else is dropped.
///
/// ```
/// assert_eq!(
///     kiln_image::deb_src_lines("deb [arch=amd64] http://mirror.example/debian bookworm main\n"),
///     "deb-src [arch=amd64] http://mirror.example/debian bookworm main\n",
/// );
/// ```
pub fn deb_src_lines(sources_list: &str) -> String {
    let mut out = String::new();
    for line in sources_list.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("deb ") {
            out.push_str("deb-src ");
            out.push_str(rest.trim());
            out.push('\n');
        }
    }
    out
}

fn read_if_present(path: &Path) -> Result<String, ImageError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(error) => Err(ImageError::io(path, error)),
    }
}

/// An apt configuration of its own under one directory: its sources, lists
/// and cache, so fetching source packages touches nothing of the system's.
pub(crate) struct PrivateApt {
    root: PathBuf,
}

impl PrivateApt {
    /// Writes the `deb-src` configuration derived from `etc_apt` under `root`.
    pub(crate) fn create(root: &Path, etc_apt: &Path) -> Result<PrivateApt, ImageError> {
        let parts = root.join("sources.list.d");
        for dir in [
            parts.clone(),
            root.join("lists/partial"),
            root.join("cache/archives/partial"),
        ] {
            fs::create_dir_all(&dir).map_err(|error| ImageError::io(&dir, error))?;
        }
        for (name, content) in deb_src_config(etc_apt)? {
            let path = parts.join(name);
            fs::write(&path, content).map_err(|error| ImageError::io(&path, error))?;
        }
        Ok(PrivateApt {
            root: root.to_owned(),
        })
    }

    /// `apt-get` with this configuration in place of the system's sources,
    /// lists and cache.
    pub(crate) fn apt_get(&self) -> Command {
        let mut command = Command::new("apt-get");
        let option = |name: &str, value: &Path| format!("{name}={}", value.display());
        command
            .arg("-o")
            .arg(option("Dir::Etc::sourcelist", Path::new("/dev/null")))
            .arg("-o")
            .arg(option(
                "Dir::Etc::sourceparts",
                &self.root.join("sources.list.d"),
            ))
            .arg("-o")
            .arg(option("Dir::State::Lists", &self.root.join("lists")))
            .arg("-o")
            .arg(option("Dir::Cache", &self.root.join("cache")))
            .arg("-q");
        command
    }

    /// Downloads the source indices.
    pub(crate) fn update(&self) -> Result<(), ImageError> {
        let mut command = self.apt_get();
        command.arg("update");
        run_quiet(command)
    }

    /// Downloads and unpacks source package `name` at `version` into `dir`
    /// (with Debian's patches applied), verified against the signed indices.
    pub(crate) fn source(&self, name: &str, version: &str, dir: &Path) -> Result<(), ImageError> {
        let mut command = self.apt_get();
        command
            .arg("source")
            .arg("--only-source")
            .arg(format!("{name}={version}"))
            .current_dir(dir);
        run_quiet(command)
    }
}
