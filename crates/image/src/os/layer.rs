//! A filesystem layer: a tree assembled from other derivations' outputs and generated files,
//! packed into one read-only squashfs image (`layer.squashfs`). A node image stacks several.
//!
//! A layer build copies no input byte before mksquashfs reads it: the scratch tree holds hard
//! links to the inputs' files ([`assemble_linked`]), and the modes the layer gives them reach
//! mksquashfs as pseudo definitions, never as a `chmod` of a file the store shares.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::io::ErrorKind;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};
use serde::{Deserialize, Serialize};

use super::base::{IMAGE_EPOCH, clean_command};
use crate::process::run_quiet;

/// The file every layer output holds.
pub const LAYER_FILE: &str = "layer.squashfs";

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
        // 2: packed from a tree of hard links, in blocks of 1 MiB, with `-no-xattrs` (the
        // files are the inputs' own, with whatever attributes the host gave them).
        2
    }

    fn params(&self) -> Params {
        Params::of(&self.spec)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        // The scratch tree lives inside the output directory: on the store's file system, so
        // its files can be hard links to the inputs', and removed by the store with the rest
        // of the output if the build fails or is killed.
        let scratch = ctx.out().join("scratch");
        fs::create_dir(&scratch).map_err(|error| BuildError::io(&scratch, error))?;
        let tree = assemble_linked(&self.spec, &scratch.join("tree"), &|name| {
            ctx.input(name).map(Path::to_path_buf)
        })?;
        tree.pack(&ctx.out().join(LAYER_FILE))?;
        fs::remove_dir_all(&scratch).map_err(|error| BuildError::io(&scratch, error))
    }
}

/// Assembles `spec` into the directory `tree` (created), resolving inputs with `input`. Input
/// files are copied and given the layer's modes, so the tree reads as the layer does (what
/// provisioning data needs); a layer build uses [`assemble_linked`] instead.
///
/// # Errors
///
/// If a path is not a plain relative path, an input is missing, two entries claim one path,
/// or the file system fails.
pub fn assemble(
    spec: &LayerSpec,
    tree: &Path,
    input: &dyn Fn(&str) -> Result<PathBuf, BuildError>,
) -> Result<(), BuildError> {
    assemble_with(spec, tree, input, Placement::Copy).map(drop)
}

/// Assembles `spec` into the directory `tree` (created) as [`assemble`] does, except that each
/// regular file from an input is a hard link to the input's file wherever one can be made
/// (`tree` on the inputs' file system), so assembling copies no bytes. Such a file keeps the
/// input's mode in the tree; the mode the layer gives it is kept in the returned
/// [`LinkedTree`], which hands it to mksquashfs. Nothing here writes to or changes the mode
/// of an input's file. Where no link can be made (another file system, a name a pseudo
/// definition cannot spell), the file is copied as [`assemble`] copies it.
///
/// # Errors
///
/// As [`assemble`].
pub fn assemble_linked(
    spec: &LayerSpec,
    tree: &Path,
    input: &dyn Fn(&str) -> Result<PathBuf, BuildError>,
) -> Result<LinkedTree, BuildError> {
    let linked = assemble_with(spec, tree, input, Placement::Link)?;
    Ok(LinkedTree {
        root: tree.to_path_buf(),
        linked,
    })
}

/// A layer's tree from [`assemble_linked`]: some files are hard links to inputs' files, and
/// their layer modes are kept here rather than on the files.
#[derive(Debug)]
pub struct LinkedTree {
    root: PathBuf,
    /// Each hard-linked file's path below `root`, as a pseudo definition spells it, and its
    /// mode in the layer.
    linked: Vec<(Vec<u8>, u32)>,
}

impl LinkedTree {
    /// How many of the tree's files are hard links to inputs' files (the others were copied).
    pub fn linked_files(&self) -> usize {
        self.linked.len()
    }

    /// Packs the tree into `image` as a layer: an uncompressed squashfs of 1 MiB blocks, every
    /// entry owned by root and dated [`IMAGE_EPOCH`], each hard-linked file with its layer
    /// mode (from a pseudo definition file written beside the tree, `<root>.pseudo`). The
    /// image holds no hard links and no extended attributes, so its bytes are those of a tree
    /// of copies, whatever links or attributes the inputs' files have.
    ///
    /// # Errors
    ///
    /// If the pseudo definitions cannot be written or `mksquashfs` fails.
    pub fn pack(&self, image: &Path) -> Result<(), BuildError> {
        let mut definitions = Vec::new();
        for (name, mode) in &self.linked {
            definitions.extend(name);
            definitions.extend(format!(" m {mode:o} 0 0\n").bytes());
        }
        let mut pseudo = OsString::from(self.root.as_os_str());
        pseudo.push(".pseudo");
        let pseudo = PathBuf::from(pseudo);
        fs::write(&pseudo, &definitions).map_err(|error| BuildError::io(&pseudo, error))?;

        let epoch = IMAGE_EPOCH.to_string();
        let mut command = clean_command("mksquashfs");
        // mksquashfs refuses SOURCE_DATE_EPOCH together with the explicit times below.
        command.env_remove("SOURCE_DATE_EPOCH");
        command
            .arg(&self.root)
            .arg(image)
            .args(["-noappend", "-quiet", "-no-progress"])
            .args(["-mkfs-time", &epoch, "-all-time", &epoch, "-all-root"])
            .args(["-noI", "-noD", "-noF", "-noX"])
            // Blocks of 1 MiB rather than 128 KiB: a fifth less of mksquashfs's time per byte
            // (each block is read, copied and written on its own), for a few MiB of the
            // kernel's block caches per mounted layer.
            .args(["-b", "1M"])
            // A small cache whose buffers are reused, and glibc keeping freed buffers rather
            // than unmapping them: otherwise every block is a fresh mapping, faulted in page
            // by page (a fifth of mksquashfs's time on the Kubernetes binaries).
            .args(["-mem", "32M"])
            .env(
                "GLIBC_TUNABLES",
                "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=1073741824",
            )
            // Two entries that link one input file are two files, as two copies would be
            // (their data is stored once all the same, as a duplicate).
            .arg("-no-hardlinks")
            .arg("-no-xattrs")
            .arg("-pf")
            .arg(&pseudo);
        run_quiet(command).map_err(BuildError::from_error)
    }
}

/// How input files reach the assembled tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Copies with the layer's modes.
    Copy,
    /// Hard links where possible, their layer modes returned.
    Link,
}

/// The tree of [`assemble`] and [`assemble_linked`]; returns the hard-linked files' pseudo
/// definition names and layer modes.
fn assemble_with(
    spec: &LayerSpec,
    tree: &Path,
    input: &dyn Fn(&str) -> Result<PathBuf, BuildError>,
    placement: Placement,
) -> Result<Vec<(Vec<u8>, u32)>, BuildError> {
    let mut linked = Vec::new();
    make_dir(tree)?;
    for copy in &spec.copies {
        let source = input(&copy.input)?.join(checked(&copy.from)?);
        let to = checked(&copy.to)?;
        if let Some(parent) = to.parent() {
            make_dirs(tree, &tree.join(parent))?;
        }
        let mut place = Place {
            tree,
            placement,
            linked: &mut linked,
        };
        place.tree_from(&source, to)?;
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
        // The path may name an input's file (hard-linked, so the input's own) or a link out
        // of the tree: only a directory of the tree's own may change its mode.
        if !path
            .symlink_metadata()
            .is_ok_and(|metadata| metadata.is_dir())
        {
            return Err(BuildError::new(format!(
                "layer directory {dir:?} is not a directory: an entry put something else there"
            )));
        }
        set_mode(&path, *mode)?;
    }
    Ok(linked)
}

/// The `(directory suffix, unit)` links `[Install]` asks for in a unit file's text:
/// `("multi-user.target.wants", ...)` for `WantedBy=multi-user.target`.
///
/// ```
/// let unit = "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\nRequiredBy=a.service b.service\n";
/// assert_eq!(
///     kiln_image::os::layer::install_links(unit),
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
        Err(error) if error.kind() == ErrorKind::AlreadyExists => Ok(()),
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

/// Puts input trees into the assembled tree.
struct Place<'a> {
    tree: &'a Path,
    placement: Placement,
    linked: &'a mut Vec<(Vec<u8>, u32)>,
}

impl Place<'_> {
    /// Places `source` (an input's file, link or directory) at `relative` below the tree.
    fn tree_from(&mut self, source: &Path, relative: &Path) -> Result<(), BuildError> {
        let target = self.tree.join(relative);
        let metadata = source
            .symlink_metadata()
            .map_err(|error| BuildError::io(source, error))?;
        if metadata.file_type().is_symlink() {
            refuse_existing(&target)?;
            let link = fs::read_link(source).map_err(|error| BuildError::io(source, error))?;
            return std::os::unix::fs::symlink(link, &target)
                .map_err(|error| BuildError::io(&target, error));
        }
        if metadata.is_dir() {
            make_dir(&target)?;
            let mut entries: Vec<_> = fs::read_dir(source)
                .map_err(|error| BuildError::io(source, error))?
                .filter_map(Result::ok)
                .map(|entry| entry.file_name())
                .collect();
            entries.sort();
            for name in entries {
                self.tree_from(&source.join(&name), &relative.join(&name))?;
            }
            return Ok(());
        }
        refuse_existing(&target)?;
        let mode = layer_mode(metadata.permissions().mode());
        let name = pseudo_name(relative).filter(|_| metadata.is_file());
        if let (Placement::Link, Some(name)) = (self.placement, name) {
            match fs::hard_link(source, &target) {
                Ok(()) => {
                    self.linked.push((name, mode));
                    return Ok(());
                }
                // Another file system, a file of another owner under
                // `fs.protected_hardlinks`, or a file with all the links it may have: copy it.
                Err(error)
                    if matches!(
                        error.kind(),
                        ErrorKind::CrossesDevices
                            | ErrorKind::PermissionDenied
                            | ErrorKind::TooManyLinks
                    ) => {}
                Err(error) => return Err(BuildError::io(&target, error)),
            }
        }
        fs::copy(source, &target).map_err(|error| BuildError::io(source, error))?;
        set_mode(&target, mode)
    }
}

/// A copied file's mode in the layer, from its source's: kept from group and others (a key, a
/// kubeconfig) `0600`, executable `0755`, anything else `0644`.
fn layer_mode(source_mode: u32) -> u32 {
    if source_mode & 0o044 == 0 {
        0o600
    } else if source_mode & 0o111 != 0 {
        0o755
    } else {
        0o644
    }
}

/// `path` as the name of a mksquashfs pseudo definition: every ASCII byte other than a letter,
/// a digit, `.`, `_`, `-` and `/` escaped with a backslash (spaces, quotes, a leading `#` that
/// would make the line a comment), other bytes as they are. `None` for a name with a newline,
/// which a line of a pseudo file cannot hold.
fn pseudo_name(path: &Path) -> Option<Vec<u8>> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.contains(&b'\n') {
        return None;
    }
    let mut name = Vec::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii() && !(byte.is_ascii_alphanumeric() || b"._-/".contains(&byte)) {
            name.push(b'\\');
        }
        name.push(byte);
    }
    Some(name)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| BuildError::io(path, error))
}
