//! A filesystem layer: a tree assembled from other derivations' outputs and generated files,
//! packed into one read-only squashfs image (`layer.squashfs`). A node image stacks several.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path};
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId};
use serde::{Deserialize, Serialize};

use super::base::squashfs;

/// The file every layer output holds.
pub const LAYER_FILE: &str = "layer.squashfs";

/// The time every file of a layer carries.
pub const LAYER_EPOCH: i64 = super::base::BASE_OS_EPOCH;

/// Copies an input's tree (or part of it) into the layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerCopy {
    /// The input's name, as given to [`LayerSpec::derivation`].
    pub input: String,
    /// The part of the input to copy, relative to its root (`""` for all of it).
    pub from: String,
    /// Where it goes in the layer, relative to the layer's root (`""` for the root).
    pub to: String,
}

/// A file the layer holds that no input provides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerFile {
    /// The path, relative to the layer's root.
    pub path: String,
    /// Permission bits.
    pub mode: u32,
    /// The content.
    pub contents: String,
}

/// Everything a layer holds. Modes follow one rule: a copied file that its source keeps from
/// group and others (as renderers do for keys and kubeconfigs) is `0600`, an executable one
/// `0755`, any other `0644`; directories are `0755` unless `dirs` says otherwise. Every entry
/// is owned by root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerSpec {
    /// Trees copied from inputs, in order (a later copy may not overwrite an earlier file).
    pub copies: Vec<LayerCopy>,
    /// Generated files.
    pub files: Vec<LayerFile>,
    /// Symbolic links: path → target.
    pub symlinks: BTreeMap<String, String>,
    /// Directories with other modes than `0755`: path → mode.
    pub dirs: BTreeMap<String, u32>,
    /// Enable every unit in `etc/systemd/system` as `systemctl enable` would: a link in
    /// `<target>.wants/` for each `WantedBy=` of its `[Install]` section (and `.requires/` for
    /// `RequiredBy=`).
    pub enable_units: bool,
}

impl LayerSpec {
    /// A derivation named `name` building this layer, with `inputs` (name → derivation) that
    /// the copies refer to.
    pub fn derivation(
        self,
        name: impl Into<String>,
        inputs: impl IntoIterator<Item = (String, DrvId)>,
    ) -> Derivation {
        let mut derivation = Derivation::new(name, Arc::new(Layer { spec: self }));
        for (input, id) in inputs {
            derivation = derivation.input(input, id);
        }
        derivation
    }
}

/// The builder of a [`LayerSpec`].
#[derive(Debug)]
pub struct Layer {
    spec: LayerSpec,
}

impl Builder for Layer {
    fn kind(&self) -> &str {
        "kiln-image.layer"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Vec<u8> {
        // Field order is fixed by the struct; maps are BTreeMaps.
        serde_json::to_vec(&self.spec).unwrap_or_default()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let scratch = tempfile::Builder::new()
            .prefix("kiln-layer-")
            .tempdir()
            .map_err(|error| BuildError::io(&std::env::temp_dir(), error))?;
        let tree = scratch.path().join("tree");
        assemble(&self.spec, &tree, &|name| {
            ctx.input(name).map(Path::to_path_buf)
        })?;
        squashfs(&tree, &ctx.out().join(LAYER_FILE), LAYER_EPOCH, false, true)
            .map_err(BuildError::from_error)
    }
}

/// Assembles `spec` into the directory `tree` (created), resolving inputs with `input`.
///
/// # Errors
///
/// If a path is not a plain relative path, an input is missing, two entries claim one path,
/// or the file system fails.
pub fn assemble(
    spec: &LayerSpec,
    tree: &Path,
    input: &dyn Fn(&str) -> Result<std::path::PathBuf, BuildError>,
) -> Result<(), BuildError> {
    make_dir(tree)?;
    for copy in &spec.copies {
        let source = input(&copy.input)?.join(checked(&copy.from)?);
        let to = checked(&copy.to)?;
        if let Some(parent) = to.parent() {
            make_dirs(tree, &tree.join(parent))?;
        }
        copy_tree(&source, &tree.join(to))?;
    }
    for file in &spec.files {
        let path = tree.join(checked(&file.path)?);
        if let Some(parent) = path.parent() {
            make_dirs(tree, parent)?;
        }
        refuse_existing(&path)?;
        fs::write(&path, &file.contents).map_err(|error| BuildError::io(&path, error))?;
        set_mode(&path, file.mode)?;
    }
    for (link, target) in &spec.symlinks {
        let path = tree.join(checked(link)?);
        if let Some(parent) = path.parent() {
            make_dirs(tree, parent)?;
        }
        refuse_existing(&path)?;
        std::os::unix::fs::symlink(target, &path).map_err(|error| BuildError::io(&path, error))?;
    }
    if spec.enable_units {
        enable_units(tree)?;
    }
    for (dir, mode) in &spec.dirs {
        let path = tree.join(checked(dir)?);
        make_dirs(tree, &path)?;
        set_mode(&path, *mode)?;
    }
    Ok(())
}

/// The `(directory suffix, unit)` links `[Install]` asks for in a unit file's text:
/// `("multi-user.target.wants", ...)` for `WantedBy=multi-user.target`.
///
/// ```
/// let unit = "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\nRequiredBy=a.service b.service\n";
/// assert_eq!(
///     kiln_image::install_links(unit),
///     [
///         "multi-user.target.wants".to_owned(),
///         "a.service.requires".to_owned(),
///         "b.service.requires".to_owned(),
///     ],
/// );
/// ```
pub fn install_links(unit: &str) -> Vec<String> {
    let mut section = "";
    let mut links = Vec::new();
    for line in unit.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Install]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let suffix = match key.trim() {
            "WantedBy" => "wants",
            "RequiredBy" => "requires",
            _ => continue,
        };
        for target in value.split_whitespace() {
            links.push(format!("{target}.{suffix}"));
        }
    }
    links
}

fn enable_units(tree: &Path) -> Result<(), BuildError> {
    let dir = tree.join("etc/systemd/system");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Ok(());
    };
    let mut units: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    units.sort();
    for unit in units {
        let path = dir.join(&unit);
        let text = fs::read_to_string(&path).map_err(|error| BuildError::io(&path, error))?;
        for wants in install_links(&text) {
            let link_dir = dir.join(&wants);
            make_dirs(tree, &link_dir)?;
            let link = link_dir.join(&unit);
            if link.symlink_metadata().is_err() {
                std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), &link)
                    .map_err(|error| BuildError::io(&link, error))?;
            }
        }
    }
    Ok(())
}

fn checked(relative: &str) -> Result<&Path, BuildError> {
    let path = Path::new(relative);
    if path.components().all(|c| matches!(c, Component::Normal(_))) {
        Ok(path)
    } else {
        Err(BuildError::new(format!(
            "layer path {relative:?} must be relative, without `.` or `..`"
        )))
    }
}

fn refuse_existing(path: &Path) -> Result<(), BuildError> {
    if path.symlink_metadata().is_ok() {
        return Err(BuildError::new(format!(
            "two layer entries claim {}",
            path.display()
        )));
    }
    Ok(())
}

fn make_dir(path: &Path) -> Result<(), BuildError> {
    match fs::create_dir(path) {
        Ok(()) => set_mode(path, 0o755),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(error) => Err(BuildError::io(path, error)),
    }
}

/// Creates `path` and its missing parents below `tree`, each 0755.
fn make_dirs(tree: &Path, path: &Path) -> Result<(), BuildError> {
    let relative = path.strip_prefix(tree).unwrap_or(path);
    let mut current = tree.to_path_buf();
    for component in relative.components() {
        current.push(component);
        make_dir(&current)?;
    }
    Ok(())
}

fn copy_tree(source: &Path, target: &Path) -> Result<(), BuildError> {
    let metadata = source
        .symlink_metadata()
        .map_err(|error| BuildError::io(source, error))?;
    if metadata.file_type().is_symlink() {
        refuse_existing(target)?;
        let link = fs::read_link(source).map_err(|error| BuildError::io(source, error))?;
        return std::os::unix::fs::symlink(link, target)
            .map_err(|error| BuildError::io(target, error));
    }
    if metadata.is_dir() {
        make_dir(target)?;
        let mut entries: Vec<_> = fs::read_dir(source)
            .map_err(|error| BuildError::io(source, error))?
            .filter_map(Result::ok)
            .map(|entry| entry.file_name())
            .collect();
        entries.sort();
        for name in entries {
            copy_tree(&source.join(&name), &target.join(&name))?;
        }
        return Ok(());
    }
    refuse_existing(target)?;
    fs::copy(source, target).map_err(|error| BuildError::io(source, error))?;
    let source_mode = metadata.permissions().mode();
    let mode = if source_mode & 0o044 == 0 {
        0o600
    } else if source_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    };
    set_mode(target, mode)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| BuildError::io(path, error))
}
