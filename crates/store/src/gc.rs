//! Garbage collection: the exclusive handle on a store, its registered roots,
//! the live closure of a set of paths, and the removal of everything else.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::digest::Digest;
use crate::error::StoreError;
use crate::store::{
    Access, Durability, PENDING_PREFIX, Store, StoreObject, base_name, read_record,
    remove_file_if_present, validate_name,
};
use crate::tree::{remove_tree, sorted_names, symlink_metadata, tree_hash};

/// A store opened for garbage collection: it holds the store-wide lock
/// exclusively, so no build runs and no [`Store`] is open on the same root,
/// in any process, until it is dropped.
///
/// Collection goes in steps the caller controls: read the [`roots`], decide
/// which are live and which store paths they keep, compute the
/// [`garbage`](Collector::garbage) (everything not reachable from those
/// paths, plus what killed builds and deletions left in `.tmp/`), then
/// [`remove`](Collector::remove) each piece and [`tidy`](Collector::tidy).
///
/// [`roots`]: Collector::roots
#[derive(Debug)]
pub struct Collector {
    store: Store,
    /// The root resolved physically, to recognize store paths spelled
    /// through a symlink.
    canonical_root: PathBuf,
}

/// A registered root (see [`Store::add_root`]): a link in `<root>/.roots/`
/// and the directory it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    /// The link itself, `<root>/.roots/<digest>`.
    pub link: PathBuf,
    /// The directory it points at, which may no longer exist.
    pub target: PathBuf,
}

/// Something garbage collection would remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Garbage {
    /// What it is.
    pub kind: GarbageKind,
    /// Where it is.
    pub path: PathBuf,
    /// The disk space it takes (allocated blocks, as `du` counts them).
    pub bytes: u64,
}

/// The kinds of [`Garbage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum GarbageKind {
    /// A complete store path that no live path reaches.
    Path,
    /// An entry of `.tmp/`: the remains of a killed build or deletion.
    Leftover,
}

impl Collector {
    /// Opens the store at `root` for collection, waiting until every build
    /// and every other [`Store`] on it has finished.
    ///
    /// A [`Store`] on the same root open in this very process would make this
    /// wait forever; use [`Collector::try_open`] to find out first.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open(root: &Path) -> Result<Collector, StoreError> {
        match Collector::open_inner(root, true)? {
            Some(collector) => Ok(collector),
            None => unreachable!("a blocking lock is always taken"),
        }
    }

    /// Like [`Collector::open`], but returns `None` at once if the store is in
    /// use.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn try_open(root: &Path) -> Result<Option<Collector>, StoreError> {
        Collector::open_inner(root, false)
    }

    fn open_inner(root: &Path, wait: bool) -> Result<Option<Collector>, StoreError> {
        let Some(store) = Store::open_locked(root, Durability::Full, Access::Exclusive, wait)?
        else {
            return Ok(None);
        };
        // Nothing builds now, so every pending record of this boot is of a finished path:
        // commit them, and the collection sees every record in `.meta/`.
        store.commit()?;
        let canonical_root = fs::canonicalize(store.root())
            .map_err(|error| StoreError::io("resolve", store.root(), error))?;
        Ok(Some(Collector {
            store,
            canonical_root,
        }))
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        self.store.root()
    }

    /// Every registered root, sorted by link.
    ///
    /// # Errors
    ///
    /// Fails if `.roots/` cannot be read.
    pub fn roots(&self) -> Result<Vec<Root>, StoreError> {
        let dir = &self.store.roots_dir;
        let mut roots = Vec::new();
        for name in read_names(dir)? {
            if name.parse::<Digest>().is_err() {
                // A temporary link of an interrupted registration.
                continue;
            }
            let link = dir.join(&name);
            match fs::read_link(&link) {
                Ok(target) => roots.push(Root { link, target }),
                Err(error) if error.kind() == io::ErrorKind::InvalidInput => {}
                Err(error) => return Err(StoreError::io("read root", &link, error)),
            }
        }
        roots.sort_by(|a, b| a.link.cmp(&b.link));
        Ok(roots)
    }

    /// Unregisters a root; its directory is left alone.
    ///
    /// # Errors
    ///
    /// Fails if the link exists but cannot be removed.
    pub fn remove_root(&self, root: &Root) -> Result<(), StoreError> {
        remove_file_if_present(&root.link)
    }

    /// Whether `path` is a store path of this store, or inside one, however
    /// the store's root is spelled (through symlinks or `..`), and that path
    /// exists.
    pub fn contains(&self, path: &Path) -> bool {
        self.base_of(path)
            .is_some_and(|base| self.store.root.join(base).exists())
    }

    /// Every complete path in the store, sorted by its location. Entries of
    /// the root that are not named `<digest>-<name>` are not store paths and
    /// are never listed (nor removed).
    ///
    /// A path whose content-hash record is missing is hashed (without
    /// recording it, so that a dry run changes nothing).
    ///
    /// # Errors
    ///
    /// Fails if the root cannot be read or a path without a record cannot be
    /// hashed.
    pub fn paths(&self) -> Result<Vec<StoreObject>, StoreError> {
        let mut objects = Vec::new();
        for base in self.bases()? {
            let Some((digest, name)) = parse_base(&base) else {
                continue;
            };
            let path = self.store.root.join(&base);
            let content_hash = match self.store.record(&base)? {
                Some(content_hash) => content_hash,
                None => tree_hash(&path)?,
            };
            objects.push(StoreObject {
                path,
                digest,
                name: name.to_owned(),
                content_hash,
            });
        }
        Ok(objects)
    }

    /// Everything to remove when `live` (store paths, or paths inside them)
    /// must be kept: every store path not reachable from them, and every
    /// leftover in `.tmp/`, sorted by location.
    ///
    /// A store path reaches another through a symlink inside it that points
    /// into the other (as a node image links to its layers); that is the only
    /// way store paths refer to each other. Entries of `live` outside this
    /// store are ignored.
    ///
    /// # Errors
    ///
    /// Fails if a directory cannot be read.
    pub fn garbage(&self, live: &[PathBuf]) -> Result<Vec<Garbage>, StoreError> {
        let reachable = self.closure(live)?;
        let mut garbage = Vec::new();
        for base in self.bases()? {
            if parse_base(&base).is_none() || reachable.contains(&base) {
                continue;
            }
            let path = self.store.root.join(&base);
            garbage.push(Garbage {
                kind: GarbageKind::Path,
                bytes: disk_usage(&path)?,
                path,
            });
        }
        for name in read_names(&self.store.tmp_dir)? {
            let path = self.store.tmp_dir.join(name);
            garbage.push(Garbage {
                kind: GarbageKind::Leftover,
                bytes: disk_usage(&path)?,
                path,
            });
        }
        Ok(garbage)
    }

    /// Removes one piece of [`Collector::garbage`].
    ///
    /// A store path loses its record first, then is renamed into `.tmp/` and
    /// only then deleted, so a collection killed at any moment leaves the
    /// path whole, or gone with at most a leftover in `.tmp/` that the next
    /// collection removes; never a half-deleted path in place.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotInStore`] if `garbage` does not name a store path or
    /// leftover of this store, or an I/O error.
    pub fn remove(&self, garbage: &Garbage) -> Result<(), StoreError> {
        let not_in_store = || StoreError::NotInStore {
            path: garbage.path.clone(),
            root: self.store.root.clone(),
        };
        let name = garbage
            .path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(not_in_store)?;
        match garbage.kind {
            GarbageKind::Path => {
                if garbage.path.parent() != Some(&self.store.root) || parse_base(name).is_none() {
                    return Err(not_in_store());
                }
                self.store.remove_base(name)
            }
            GarbageKind::Leftover => {
                if garbage.path.parent() != Some(&self.store.tmp_dir) {
                    return Err(not_in_store());
                }
                remove_tree(&garbage.path)
            }
        }
    }

    /// Removes the bookkeeping of paths that are gone (content-hash records),
    /// the lock files of single paths and the temporary links of interrupted root
    /// registrations. Returns how many entries it removed.
    ///
    /// # Errors
    ///
    /// Fails if a bookkeeping directory cannot be read or an entry removed.
    pub fn tidy(&self) -> Result<usize, StoreError> {
        let mut removed = 0;
        let gone = |base: &str| !self.store.root.join(base).exists();
        for name in read_names(&self.store.meta_dir)? {
            if name.starts_with(PENDING_PREFIX) {
                removed += self.tidy_pending(&name)?;
                continue;
            }
            // Anything but a record of a present path: records of removed
            // paths, and the temporaries of interrupted record writes.
            if parse_base(&name).is_none() || gone(&name) {
                remove_file_if_present(&self.store.meta_dir.join(&name))?;
                removed += 1;
            }
        }
        // Lock files of single paths (`<base>.lock`), which kiln wrote before a byte of
        // `paths.lock` was each path's lock (and still writes where there are no open file
        // description locks): no build runs while the collector holds the store, so none
        // is held, and a build that needs one again creates it.
        for name in read_names(&self.store.locks_dir)? {
            if name
                .strip_suffix(".lock")
                .is_some_and(|base| parse_base(base).is_some())
            {
                remove_file_if_present(&self.store.locks_dir.join(&name))?;
                removed += 1;
            }
        }
        for name in read_names(&self.store.roots_dir)? {
            if name.parse::<Digest>().is_err() {
                remove_file_if_present(&self.store.roots_dir.join(&name))?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// The base names of every store path reachable from `live`.
    fn closure(&self, live: &[PathBuf]) -> Result<BTreeSet<String>, StoreError> {
        let mut reachable = BTreeSet::new();
        let mut pending: Vec<String> = live.iter().filter_map(|path| self.base_of(path)).collect();
        while let Some(base) = pending.pop() {
            let path = self.store.root.join(&base);
            if reachable.contains(&base) || !path.exists() {
                continue;
            }
            reachable.insert(base);
            self.references(&path, &mut pending)?;
        }
        Ok(reachable)
    }

    /// Pushes the base name of every store path that a symlink below `path`
    /// points into.
    fn references(&self, path: &Path, found: &mut Vec<String>) -> Result<(), StoreError> {
        let metadata = symlink_metadata(path)?;
        if metadata.is_symlink() {
            let target =
                fs::read_link(path).map_err(|error| StoreError::io("read symlink", path, error))?;
            let resolved = match path.parent() {
                Some(dir) => dir.join(target),
                None => target,
            };
            found.extend(self.base_of(&resolved));
        } else if metadata.is_dir() {
            for name in sorted_names(path)? {
                self.references(&path.join(name), found)?;
            }
        }
        Ok(())
    }

    /// The base name of the store path that `path` is or lies inside, if any.
    fn base_of(&self, path: &Path) -> Option<String> {
        let path = normalize(path);
        let first = [&self.store.root, &self.canonical_root]
            .into_iter()
            .find_map(|root| path.strip_prefix(root).ok())
            .and_then(|rest| rest.components().next())
            .or_else(|| {
                // The root spelled some other way: resolve the parent.
                let parent = fs::canonicalize(path.parent()?).ok()?;
                (parent == self.canonical_root)
                    .then(|| path.components().next_back())
                    .flatten()
            });
        match first {
            Some(Component::Normal(name)) => {
                let name = name.to_str()?;
                parse_base(name).map(|_| name.to_owned())
            }
            _ => None,
        }
    }

    /// The names in the root that may be store paths (not bookkeeping).
    /// Removes `.meta/<name>`, a directory of pending records, if it is another boot's: its
    /// records were never committed, so the paths they name (unless a committed record
    /// vouches for them) may be torn by the power loss that ended that boot, and go too.
    /// Returns how many entries it removed.
    fn tidy_pending(&self, name: &str) -> Result<usize, StoreError> {
        let dir = self.store.meta_dir.join(name);
        if self.store.pending_dir() == Some(dir.as_path()) {
            return Ok(0);
        }
        let mut removed = 0;
        for base in read_names(&dir)? {
            if parse_base(&base).is_some()
                && read_record(&self.store.meta_dir.join(&base))?.is_none()
            {
                self.store.remove_base(&base)?;
            }
            remove_file_if_present(&dir.join(&base))?;
            removed += 1;
        }
        fs::remove_dir(&dir).map_err(|error| StoreError::io("remove directory", &dir, error))?;
        Ok(removed + 1)
    }

    fn bases(&self) -> Result<Vec<String>, StoreError> {
        let mut names = read_names(&self.store.root)?;
        names.retain(|name| !name.starts_with('.'));
        Ok(names)
    }
}

/// Splits a store path's base name into its digest and name.
fn parse_base(base: &str) -> Option<(Digest, &str)> {
    let (hex, name) = (base.get(..64)?, base.get(64..)?.strip_prefix('-')?);
    let digest = hex.parse().ok()?;
    validate_name(name).ok()?;
    debug_assert_eq!(base_name(&digest, name), base);
    Some((digest, name))
}

/// The names in a directory, sorted; names that are not UTF-8 are skipped
/// (the store never creates them, so they are nobody's to remove).
fn read_names(dir: &Path) -> Result<Vec<String>, StoreError> {
    let entries =
        fs::read_dir(dir).map_err(|error| StoreError::io("read directory", dir, error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("read directory", dir, error))?;
        if let Ok(name) = entry.file_name().into_string() {
            names.push(name);
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Removes `.` and `..` components without touching the file system; the
/// store's own directories are real, so `..` inside a store path means its
/// parent.
fn normalize(path: &Path) -> PathBuf {
    let mut normal = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                normal.pop();
            }
            other => normal.push(other),
        }
    }
    normal
}

/// The allocated size of a tree, as `du` counts it; symlinks are not followed.
fn disk_usage(path: &Path) -> Result<u64, StoreError> {
    let metadata = symlink_metadata(path)?;
    let mut bytes = metadata.blocks() * 512;
    if metadata.is_dir() {
        for name in sorted_names(path)? {
            bytes += disk_usage(&path.join(name))?;
        }
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_removes_dots_lexically() {
        assert_eq!(
            normalize(Path::new("/s/aaa/./layer/../../bbb/file")),
            Path::new("/s/bbb/file")
        );
        assert_eq!(normalize(Path::new("/../s")), Path::new("/s"));
    }

    #[test]
    fn parse_base_accepts_only_store_path_names() {
        let digest = Digest::of(b"x");
        let base = base_name(&digest, "plan");
        assert_eq!(parse_base(&base), Some((digest, "plan")));
        for bad in [
            "plan".to_owned(),
            format!("{digest}"),
            format!("{digest}-"),
            format!("{digest}_plan"),
            format!("{}-plan", digest.to_hex().to_uppercase()),
            format!("{base}.removing-1-2 x"),
        ] {
            assert_eq!(parse_base(&bad), None, "{bad}");
        }
    }
}
