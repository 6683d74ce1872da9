//! A node's own files as provisioning data for a stock distribution instead of a kiln image:
//! cloud-init user-data (Ubuntu and most clouds) and an Ignition config (Fedora CoreOS,
//! Flatcar). Both carry the same tree, entry for entry: every file with its bytes and mode,
//! every directory with its mode, every symbolic link with its target, all owned by root.
//!
//! The renderers ([`cloud_init`], [`ignition`]) are pure: entries in, text out, sorted, with
//! no clock. [`read_tree`] does the I/O of reading an assembled tree, and [`Provision`] is the
//! builder that assembles a [`LayerSpec`] and renders it ([`LayerSpec::provision_derivation`]).

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::os::layer::{LayerSpec, assemble};

/// The Ignition specification version [`ignition`] writes.
pub const IGNITION_VERSION: &str = "3.3.0";

/// The file a cloud-init provisioning output holds: `#cloud-config` user-data.
pub const CLOUD_INIT_USER_DATA: &str = "user-data";

/// The NoCloud meta-data beside the user-data: an instance id that changes with the user-data,
/// and the hostname.
pub const CLOUD_INIT_META_DATA: &str = "meta-data";

/// The file an Ignition provisioning output holds.
pub const IGNITION_CONFIG: &str = "config.ign";

/// One entry of a tree, its path relative to the tree's root (no leading `/`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum TreeEntry {
    /// A directory and its permission bits.
    Dir {
        /// The path.
        path: String,
        /// Permission bits (`0o755`).
        mode: u32,
    },
    /// A regular file, its permission bits and its content.
    File {
        /// The path.
        path: String,
        /// Permission bits (`0o600` for a private file).
        mode: u32,
        /// The content.
        bytes: Vec<u8>,
    },
    /// A symbolic link.
    Symlink {
        /// The path.
        path: String,
        /// What it points to, as written.
        target: String,
    },
}

impl TreeEntry {
    /// The entry's path, relative to the tree's root.
    pub fn path(&self) -> &str {
        match self {
            TreeEntry::Dir { path, .. }
            | TreeEntry::File { path, .. }
            | TreeEntry::Symlink { path, .. } => path,
        }
    }
}

/// The two provisioning formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProvisionFormat {
    /// `#cloud-config` user-data ([`CLOUD_INIT_USER_DATA`]) and its NoCloud meta-data.
    CloudInit,
    /// An Ignition config ([`IGNITION_CONFIG`]).
    Ignition,
}

/// Entries sorted by path, so that a parent comes before its children.
fn sorted(entries: &[TreeEntry]) -> Vec<&TreeEntry> {
    let mut sorted: Vec<&TreeEntry> = entries.iter().collect();
    sorted.sort_by(|a, b| a.path().cmp(b.path()));
    sorted
}

/// A YAML scalar: a JSON string, which YAML reads as a double-quoted scalar.
fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_owned()).to_string()
}

fn absolute(path: &str) -> String {
    format!("/{path}")
}

/// The units the tree enables: the names of the links in `etc/systemd/system/*.wants/` and
/// `*.requires/`, sorted and once each.
fn enabled_units(entries: &[&TreeEntry]) -> Vec<String> {
    let mut units = BTreeSet::new();
    for entry in entries {
        let TreeEntry::Symlink { path, .. } = entry else {
            continue;
        };
        let Some(rest) = path.strip_prefix("etc/systemd/system/") else {
            continue;
        };
        if let Some((dir, unit)) = rest.split_once('/')
            && (dir.ends_with(".wants") || dir.ends_with(".requires"))
            && !unit.contains('/')
        {
            units.insert(unit.to_owned());
        }
    }
    units.into_iter().collect()
}

/// The tree as `#cloud-config` user-data for the node `node`.
///
/// - `bootcmd` creates every directory with its mode (`install -d -m`), before `write_files`
///   runs, so that a private directory is private before its keys are written into it;
/// - `write_files` holds every file, base64-encoded (`encoding: b64`), owned by `root:root`,
///   its mode as an octal string;
/// - `runcmd` makes every symbolic link (`ln -sfn`), reloads systemd and starts, without
///   waiting, every unit a `*.wants` or `*.requires` link names.
///
/// ```
/// use kiln_image::provision::{TreeEntry, cloud_init};
/// let user_data = cloud_init("node1", &[
///     TreeEntry::Dir { path: "etc".into(), mode: 0o755 },
///     TreeEntry::File { path: "etc/hostname".into(), mode: 0o644, bytes: b"node1\n".to_vec() },
/// ]);
/// assert!(user_data.starts_with("#cloud-config\n"));
/// assert!(user_data.contains("  permissions: \"0644\"\n"));
/// ```
pub fn cloud_init(node: &str, entries: &[TreeEntry]) -> String {
    let entries = sorted(entries);
    let count = |f: fn(&TreeEntry) -> bool| entries.iter().filter(|e| f(e)).count();
    let mut out = String::from("#cloud-config\n");
    out.push_str(&format!(
        "# kiln: node {node}: {} files, {} directories, {} links, all owned by root.\n",
        count(|e| matches!(e, TreeEntry::File { .. })),
        count(|e| matches!(e, TreeEntry::Dir { .. })),
        count(|e| matches!(e, TreeEntry::Symlink { .. })),
    ));
    out.push_str(&format!("hostname: {}\n", quoted(node)));
    out.push_str("preserve_hostname: false\n");

    let dirs: Vec<String> = entries
        .iter()
        .filter_map(|entry| match entry {
            TreeEntry::Dir { path, mode } => Some(format!(
                "- [\"install\", \"-d\", \"-m\", \"{mode:04o}\", {}]\n",
                quoted(&absolute(path))
            )),
            _ => None,
        })
        .collect();
    if !dirs.is_empty() {
        out.push_str("bootcmd:\n");
        out.extend(dirs);
    }

    let files: Vec<String> = entries
        .iter()
        .filter_map(|entry| match entry {
            TreeEntry::File { path, mode, bytes } => Some(format!(
                "- path: {}\n  owner: \"root:root\"\n  permissions: \"{mode:04o}\"\n  encoding: \"b64\"\n  content: \"{}\"\n",
                quoted(&absolute(path)),
                BASE64.encode(bytes)
            )),
            _ => None,
        })
        .collect();
    if !files.is_empty() {
        out.push_str("write_files:\n");
        out.extend(files);
    }

    let mut commands: Vec<String> = entries
        .iter()
        .filter_map(|entry| match entry {
            TreeEntry::Symlink { path, target } => Some(format!(
                "- [\"ln\", \"-sfn\", {}, {}]\n",
                quoted(target),
                quoted(&absolute(path))
            )),
            _ => None,
        })
        .collect();
    let units = enabled_units(&entries);
    if !units.is_empty() {
        commands.push("- [\"systemctl\", \"daemon-reload\"]\n".to_owned());
        let names: Vec<String> = units.iter().map(|unit| quoted(unit)).collect();
        commands.push(format!(
            "- [\"systemctl\", \"start\", \"--no-block\", {}]\n",
            names.join(", ")
        ));
    }
    if !commands.is_empty() {
        out.push_str("runcmd:\n");
        out.extend(commands);
    }
    out
}

/// The NoCloud `meta-data` for `user_data`: its instance id is the user-data's hash, so a
/// changed configuration is a new instance to cloud-init and applied again.
pub fn cloud_init_meta_data(node: &str, user_data: &str) -> String {
    let digest = Sha256::digest(user_data.as_bytes());
    let id: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
    format!(
        "instance-id: {}\nlocal-hostname: {}\n",
        quoted(&format!("kiln-{node}-{id}")),
        quoted(node)
    )
}

#[derive(Serialize)]
struct IgnitionConfig<'a> {
    ignition: IgnitionSection,
    storage: Storage<'a>,
}

#[derive(Serialize)]
struct IgnitionSection {
    version: &'static str,
}

#[derive(Serialize)]
struct Storage<'a> {
    directories: Vec<IgnitionDir>,
    files: Vec<IgnitionFile>,
    links: Vec<IgnitionLink<'a>>,
}

#[derive(Serialize)]
struct Owner {
    id: u32,
}

#[derive(Serialize)]
struct IgnitionDir {
    path: String,
    overwrite: bool,
    user: Owner,
    group: Owner,
    mode: u32,
}

#[derive(Serialize)]
struct IgnitionFile {
    path: String,
    overwrite: bool,
    user: Owner,
    group: Owner,
    mode: u32,
    contents: Contents,
}

#[derive(Serialize)]
struct Contents {
    source: String,
}

#[derive(Serialize)]
struct IgnitionLink<'a> {
    path: String,
    overwrite: bool,
    user: Owner,
    group: Owner,
    target: &'a str,
    hard: bool,
}

/// The tree as an Ignition config (spec [`IGNITION_VERSION`]) for the node `node`:
///
/// - `storage.directories` with their modes; an existing directory keeps its content and
///   takes the mode (`overwrite: false`);
/// - `storage.files` with their modes (decimal integers: JSON has no octal) and their bytes as
///   `data:;base64,` URLs, replacing what the image has (`overwrite: true`);
/// - `storage.links`, replacing what the image has.
///
/// Every entry is owned by uid and gid 0. Ignition creates parents before children, so a
/// private directory is private before its keys land in it, and as the enable links are in the
/// tree systemd starts the units on the first boot. The hostname is the tree's `etc/hostname`,
/// or `node` when the tree has none.
///
/// ```
/// use kiln_image::provision::{TreeEntry, ignition};
/// let config = ignition("node1", &[
///     TreeEntry::File { path: "etc/motd".into(), mode: 0o644, bytes: b"hi\n".to_vec() },
/// ]);
/// assert!(config.contains("\"version\": \"3.3.0\""));
/// assert!(config.contains("\"mode\": 420"));
/// assert!(config.contains("\"path\": \"/etc/hostname\""));
/// ```
pub fn ignition(node: &str, entries: &[TreeEntry]) -> String {
    let mut entries = sorted(entries);
    let hostname = TreeEntry::File {
        path: "etc/hostname".into(),
        mode: 0o644,
        bytes: format!("{node}\n").into_bytes(),
    };
    if !entries.iter().any(|entry| entry.path() == hostname.path()) {
        entries.push(&hostname);
        entries.sort_by(|a, b| a.path().cmp(b.path()));
    }
    let root = || Owner { id: 0 };
    let mut storage = Storage {
        directories: Vec::new(),
        files: Vec::new(),
        links: Vec::new(),
    };
    for entry in entries {
        match entry {
            TreeEntry::Dir { path, mode } => storage.directories.push(IgnitionDir {
                path: absolute(path),
                overwrite: false,
                user: root(),
                group: root(),
                mode: *mode,
            }),
            TreeEntry::File { path, mode, bytes } => storage.files.push(IgnitionFile {
                path: absolute(path),
                overwrite: true,
                user: root(),
                group: root(),
                mode: *mode,
                contents: Contents {
                    source: format!("data:;base64,{}", BASE64.encode(bytes)),
                },
            }),
            TreeEntry::Symlink { path, target } => storage.links.push(IgnitionLink {
                path: absolute(path),
                overwrite: true,
                user: root(),
                group: root(),
                target,
                hard: false,
            }),
        }
    }
    let config = IgnitionConfig {
        ignition: IgnitionSection {
            version: IGNITION_VERSION,
        },
        storage,
    };
    // Plain structs of strings and integers always serialize.
    let mut text = serde_json::to_string_pretty(&config).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads the tree below `root` (not `root` itself): every directory, regular file and
/// symbolic link, sorted by path, with its permission bits.
///
/// # Errors
///
/// If the file system fails, or the tree holds a path or link target that is not UTF-8 or an
/// entry of another kind (a socket, a device), naming the path.
pub fn read_tree(root: &Path) -> io::Result<Vec<TreeEntry>> {
    let mut entries = Vec::new();
    read_dir(root, "", &mut entries)?;
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    Ok(entries)
}

fn read_dir(dir: &Path, relative: &str, entries: &mut Vec<TreeEntry>) -> io::Result<()> {
    let named = |path: &Path, error: io::Error| {
        io::Error::new(error.kind(), format!("{}: {error}", path.display()))
    };
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|error| named(dir, error))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|error| named(dir, error))?;
    names.sort();
    for name in names {
        let full = dir.join(&name);
        let Some(name) = name.to_str() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: the name is not UTF-8", full.display()),
            ));
        };
        let path = if relative.is_empty() {
            name.to_owned()
        } else {
            format!("{relative}/{name}")
        };
        let metadata = full
            .symlink_metadata()
            .map_err(|error| named(&full, error))?;
        let mode = metadata.permissions().mode() & 0o7777;
        let kind = metadata.file_type();
        if kind.is_symlink() {
            let target = fs::read_link(&full).map_err(|error| named(&full, error))?;
            let Some(target) = target.to_str() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: the link's target is not UTF-8", full.display()),
                ));
            };
            entries.push(TreeEntry::Symlink {
                path,
                target: target.to_owned(),
            });
        } else if kind.is_dir() {
            entries.push(TreeEntry::Dir {
                path: path.clone(),
                mode,
            });
            read_dir(&full, &path, entries)?;
        } else if kind.is_file() {
            let bytes = fs::read(&full).map_err(|error| named(&full, error))?;
            entries.push(TreeEntry::File { path, mode, bytes });
        } else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: neither a directory, a file nor a symbolic link",
                    full.display()
                ),
            ));
        }
    }
    Ok(())
}

impl LayerSpec {
    /// A derivation named `name` rendering this layer for the node `node` as provisioning data
    /// in `format`, with `inputs` (name → derivation) that the copies refer to, as in
    /// [`LayerSpec::derivation`]. Its output holds [`CLOUD_INIT_USER_DATA`] and
    /// [`CLOUD_INIT_META_DATA`], or [`IGNITION_CONFIG`].
    pub fn provision_derivation(
        self,
        node: impl Into<String>,
        format: ProvisionFormat,
        name: impl Into<String>,
        inputs: impl IntoIterator<Item = (String, DrvId)>,
    ) -> Derivation {
        let builder = Provision {
            node: node.into(),
            format,
            spec: self,
        };
        let mut derivation = Derivation::new(name, Arc::new(builder));
        for (input, id) in inputs {
            derivation = derivation.input(input, id);
        }
        derivation
    }
}

/// The builder of [`LayerSpec::provision_derivation`]: assembles the layer's tree in a
/// scratch directory, reads it back and renders it.
#[derive(Debug, Serialize)]
pub struct Provision {
    node: String,
    format: ProvisionFormat,
    spec: LayerSpec,
}

impl Builder for Provision {
    fn kind(&self) -> &str {
        "kiln-image.provision"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(self)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let scratch = tempfile::Builder::new()
            .prefix("kiln-provision-")
            .tempdir()
            .map_err(|error| BuildError::io(&std::env::temp_dir(), error))?;
        let tree = scratch.path().join("tree");
        assemble(&self.spec, &tree, &|name| {
            ctx.input(name).map(Path::to_path_buf)
        })?;
        let entries = read_tree(&tree).map_err(|error| BuildError::io(&tree, error))?;
        let write = |file: &str, text: &str| {
            let path = ctx.out().join(file);
            fs::write(&path, text).map_err(|error| BuildError::io(&path, error))
        };
        match self.format {
            ProvisionFormat::CloudInit => {
                let user_data = cloud_init(&self.node, &entries);
                write(CLOUD_INIT_USER_DATA, &user_data)?;
                write(
                    CLOUD_INIT_META_DATA,
                    &cloud_init_meta_data(&self.node, &user_data),
                )
            }
            ProvisionFormat::Ignition => write(IGNITION_CONFIG, &ignition(&self.node, &entries)),
        }
    }
}
