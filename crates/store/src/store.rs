//! The store itself: opening it, looking up complete paths, and building new
//! ones atomically under a per-path lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{BuildFailure, StoreError};
use crate::tree::{
    clear_write_bits, make_owner_writable, remove_tree, seal_contents, symlink_metadata, sync,
    tree_hash,
};

/// The longest store name accepted by [`validate_name`].
pub const MAX_NAME_LEN: usize = 200;

const TMP_DIR: &str = ".tmp";
const LOCKS_DIR: &str = ".locks";
const META_DIR: &str = ".meta";

/// Makes temporary names unique within this process; the process id makes
/// them unique across processes.
static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A content-addressed store: a private directory of immutable outputs, each
/// at `<root>/<hex digest>-<name>`.
///
/// A path in the store is complete or absent: builds happen in `<root>/.tmp/`
/// and are renamed into place only once hashed, sealed read-only and flushed
/// to disk. Each path's content hash is recorded in `<root>/.meta/` so that
/// [`Store::get`] never re-reads an output. Builds of the same path are
/// serialized by a lock file in `<root>/.locks/`, across threads and
/// processes alike.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    tmp_dir: PathBuf,
    locks_dir: PathBuf,
    meta_dir: PathBuf,
}

/// A complete path in the store.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StoreObject {
    /// Where it is: `<root>/<digest>-<name>`.
    pub path: PathBuf,
    /// The digest it is addressed by (its derivation's identity).
    pub digest: Digest,
    /// The name after the digest.
    pub name: String,
    /// The [`tree_hash`] of its contents.
    pub content_hash: Digest,
}

impl Store {
    /// Opens the store at `root`, creating it (and its parents) if missing.
    ///
    /// The root is made private (mode 0700) and its bookkeeping directories
    /// `.tmp/`, `.locks/` and `.meta/` are created. A relative `root` is made
    /// absolute against the current directory once, here.
    ///
    /// # Errors
    ///
    /// Fails if a directory cannot be created or its mode cannot be set (for
    /// example because another user owns it).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        let root =
            std::path::absolute(root).map_err(|error| StoreError::io("resolve", root, error))?;
        fs::create_dir_all(&root)
            .map_err(|error| StoreError::io("create directory", &root, error))?;
        set_private(&root)?;
        let store = Store {
            tmp_dir: root.join(TMP_DIR),
            locks_dir: root.join(LOCKS_DIR),
            meta_dir: root.join(META_DIR),
            root,
        };
        for dir in [&store.tmp_dir, &store.locks_dir, &store.meta_dir] {
            match fs::create_dir(dir) {
                Ok(()) => set_private(dir)?,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(StoreError::io("create directory", dir, error)),
            }
        }
        Ok(store)
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path `<root>/<hex digest>-<name>`, whether or not it exists.
    ///
    /// `name` is not validated here; [`Store::get`] and [`Store::build`] do.
    pub fn path_of(&self, digest: &Digest, name: &str) -> PathBuf {
        self.root.join(base_name(digest, name))
    }

    /// Looks up a complete path. Fast: reads the recorded content hash and
    /// checks the path exists, without reading the output itself.
    ///
    /// If the path exists but its record is missing or unreadable (someone
    /// deleted `.meta/`), the content hash is recomputed and recorded again.
    ///
    /// # Errors
    ///
    /// Fails on an invalid name or an I/O error other than "not found".
    pub fn get(&self, digest: &Digest, name: &str) -> Result<Option<StoreObject>, StoreError> {
        validate_name(name)?;
        let base = base_name(digest, name);
        let path = self.root.join(&base);
        let record = self.meta_dir.join(&base);
        let recorded = read_record(&record)?;
        if !exists(&path)? {
            return Ok(None);
        }
        let content_hash = match recorded {
            Some(content_hash) => content_hash,
            None => {
                let content_hash = tree_hash(&path)?;
                write_record(&record, &content_hash)?;
                content_hash
            }
        };
        Ok(Some(StoreObject {
            path,
            digest: *digest,
            name: name.to_owned(),
            content_hash,
        }))
    }

    /// Builds the path `<digest>-<name>` with `f`, unless it already exists.
    ///
    /// `f` receives an empty directory inside `<root>/.tmp/` and fills it.
    /// Then the store hashes the tree, clears its write bits, records the
    /// content hash, flushes everything to disk and renames the directory
    /// into place, so the path appears whole or not at all, even if the
    /// process is killed at any point. If `f` fails, its directory is removed.
    ///
    /// The build holds an exclusive lock on `<root>/.locks/<digest>-<name>.lock`,
    /// so concurrent builds of one path (from threads or processes) run `f`
    /// once: the others wait, then return the finished path without running
    /// `f`. Whatever a killed build left in `.tmp/` is removed before `f` runs.
    ///
    /// # Errors
    ///
    /// [`BuildFailure::Builder`] with `f`'s error, or [`BuildFailure::Store`].
    pub fn build<E>(
        &self,
        digest: &Digest,
        name: &str,
        f: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<StoreObject, BuildFailure<E>> {
        self.build_inner(digest, name, None, f)
    }

    /// Like [`Store::build`], for a fixed-output path whose content hash is
    /// known in advance: if `f` produces anything else, nothing is added to
    /// the store and [`StoreError::ContentHashMismatch`] names both hashes.
    ///
    /// An existing path whose recorded content hash differs is reported the
    /// same way.
    ///
    /// # Errors
    ///
    /// As [`Store::build`], plus the mismatch above.
    pub fn build_fixed<E>(
        &self,
        digest: &Digest,
        name: &str,
        content_hash: &Digest,
        f: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<StoreObject, BuildFailure<E>> {
        self.build_inner(digest, name, Some(content_hash), f)
    }

    fn build_inner<E>(
        &self,
        digest: &Digest,
        name: &str,
        expected: Option<&Digest>,
        f: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<StoreObject, BuildFailure<E>> {
        if let Some(object) = self.get(digest, name)? {
            return Ok(check_expected(object, expected)?);
        }
        let base = base_name(digest, name);
        let _lock = self.lock(&base)?;
        // Another thread or process may have finished while we waited.
        if let Some(object) = self.get(digest, name)? {
            return Ok(check_expected(object, expected)?);
        }

        // Holding the lock, we are the only builder of this path, so the
        // temporary directory can have a fixed name, and anything found there
        // is the remains of a build that was killed.
        let tmp = self.tmp_dir.join(&base);
        remove_tree(&tmp)?;
        fs::create_dir(&tmp).map_err(|error| StoreError::io("create directory", &tmp, error))?;

        let finished = f(&tmp)
            .map_err(BuildFailure::Builder)
            .and_then(|()| Ok(self.finish(&tmp, &base, expected)?));
        let content_hash = match finished {
            Ok(content_hash) => content_hash,
            Err(failure) => {
                // The build already failed; a failure to clean up is less
                // interesting, and the next build of this path retries it.
                let _ = remove_tree(&tmp);
                return Err(failure);
            }
        };
        Ok(StoreObject {
            path: self.root.join(&base),
            digest: *digest,
            name: name.to_owned(),
            content_hash,
        })
    }

    /// Hashes, seals, records and renames a filled temporary directory.
    fn finish(
        &self,
        tmp: &Path,
        base: &str,
        expected: Option<&Digest>,
    ) -> Result<Digest, StoreError> {
        let content_hash = tree_hash(tmp)?;
        let path = self.root.join(base);
        if let Some(expected) = expected
            && *expected != content_hash
        {
            return Err(StoreError::ContentHashMismatch {
                path,
                expected: *expected,
                actual: content_hash,
            });
        }
        let metadata = symlink_metadata(tmp)?;
        if metadata.is_dir() {
            seal_contents(tmp)?;
        } else {
            // The builder replaced its directory with a file or symlink.
            if metadata.is_file() {
                clear_write_bits(tmp, &metadata)?;
            }
            sync(&self.tmp_dir)?;
        }
        write_record(&self.meta_dir.join(base), &content_hash)?;
        // Renaming a directory to a new parent needs write permission on the
        // directory itself (to update its `..`), so its own write bits are
        // cleared only once it is in place.
        fs::rename(tmp, &path).map_err(|error| StoreError::io("move into place", &path, error))?;
        if metadata.is_dir() {
            clear_write_bits(&path, &metadata)?;
        }
        sync(&self.root)?;
        Ok(content_hash)
    }

    /// Removes a path from the store (if present), with its record.
    ///
    /// The path is first renamed into `.tmp/` under the build lock, so it
    /// disappears at once even if the deletion itself is interrupted.
    ///
    /// # Errors
    ///
    /// Fails on an invalid name or an I/O error.
    pub fn remove_path(&self, digest: &Digest, name: &str) -> Result<(), StoreError> {
        validate_name(name)?;
        let base = base_name(digest, name);
        let _lock = self.lock(&base)?;
        let path = self.root.join(&base);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return remove_file_if_present(&self.meta_dir.join(&base));
            }
            Err(error) => return Err(StoreError::io("inspect", &path, error)),
        };
        if metadata.is_dir() {
            make_owner_writable(&path, &metadata)?;
        }
        let doomed = self.tmp_dir.join(unique_name(&base, "removing"));
        fs::rename(&path, &doomed).map_err(|error| StoreError::io("move away", &path, error))?;
        remove_file_if_present(&self.meta_dir.join(&base))?;
        remove_tree(&doomed)
    }

    fn lock(&self, base: &str) -> Result<File, StoreError> {
        let path = self.locks_dir.join(format!("{base}.lock"));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|error| StoreError::io("open lock file", &path, error))?;
        // The lock is released when the file is closed, including when the
        // process dies, so a killed build never blocks the next one.
        file.lock()
            .map_err(|error| StoreError::io("lock", &path, error))?;
        Ok(file)
    }
}

fn check_expected(
    object: StoreObject,
    expected: Option<&Digest>,
) -> Result<StoreObject, StoreError> {
    match expected {
        Some(expected) if *expected != object.content_hash => {
            Err(StoreError::ContentHashMismatch {
                path: object.path,
                expected: *expected,
                actual: object.content_hash,
            })
        }
        _ => Ok(object),
    }
}

/// Checks that `name` may follow a digest in a store path: 1 to 200
/// characters from `A-Z a-z 0-9 + - . _ ? =`, not starting with `.`.
///
/// # Errors
///
/// [`StoreError::InvalidName`] saying what is wrong.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let invalid = |reason: String| {
        Err(StoreError::InvalidName {
            name: name.to_owned(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("it is empty".to_owned());
    }
    if name.len() > MAX_NAME_LEN {
        return invalid(format!("it is {} bytes long", name.len()));
    }
    if name.starts_with('.') {
        return invalid("it starts with '.'".to_owned());
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-._?=".contains(*c)))
    {
        return invalid(format!("it contains {bad:?}"));
    }
    Ok(())
}

fn base_name(digest: &Digest, name: &str) -> String {
    let mut buffer = [0u8; 64];
    let hex = digest.write_hex(&mut buffer);
    let mut base = String::with_capacity(hex.len() + 1 + name.len());
    base.push_str(hex);
    base.push('-');
    base.push_str(name);
    base
}

fn unique_name(base: &str, purpose: &str) -> String {
    format!(
        "{base}.{purpose}-{}-{}",
        std::process::id(),
        UNIQUE.fetch_add(1, Ordering::Relaxed)
    )
}

fn set_private(dir: &Path) -> Result<(), StoreError> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|error| StoreError::io("make private (mode 0700)", dir, error))
}

fn exists(path: &Path) -> Result<bool, StoreError> {
    match fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(StoreError::io("inspect", path, error)),
    }
}

/// Reads a content-hash record; `None` if it is missing or unreadable, in
/// which case the caller recomputes it from the output.
fn read_record(path: &Path) -> Result<Option<Digest>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StoreError::io("open", path, error)),
    };
    // A record is 64 hex digits and a newline; anything longer is corrupt.
    let mut buffer = [0u8; 66];
    let mut filled = 0;
    loop {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(count) => {
                filled += count;
                if filled == buffer.len() {
                    return Ok(None);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(StoreError::io("read", path, error)),
        }
    }
    let text = std::str::from_utf8(&buffer[..filled]).unwrap_or("");
    Ok(text.trim_end_matches('\n').parse().ok())
}

/// Writes a record through a temporary file and a rename, so readers see the
/// old record, the new one, or none, never a torn one.
fn write_record(path: &Path, content_hash: &Digest) -> Result<(), StoreError> {
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("record");
    let tmp = path.with_file_name(unique_name(file_name, "tmp"));
    let written = (|| {
        let mut file = File::create(&tmp)?;
        writeln!(file, "{content_hash}")?;
        file.sync_all()
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(StoreError::io("write", &tmp, error));
    }
    fs::rename(&tmp, path).map_err(|error| StoreError::io("move into place", path, error))
}

fn remove_file_if_present(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StoreError::io("remove", path, error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_name_cases() {
        let long = "a".repeat(MAX_NAME_LEN);
        let too_long = "a".repeat(MAX_NAME_LEN + 1);
        let cases: &[(&str, Option<&str>)] = &[
            ("etcd-ca", None),
            ("a", None),
            ("Node_1.plan+x?y=z", None),
            (&long, None),
            ("", Some("it is empty")),
            (".hidden", Some("it starts with '.'")),
            ("a/b", Some("it contains '/'")),
            ("space name", Some("it contains ' '")),
            ("caf\u{e9}", Some("it contains '\u{e9}'")),
            (&too_long, Some("it is 201 bytes long")),
        ];
        for (name, expected) in cases {
            let actual = match validate_name(name) {
                Ok(()) => None,
                Err(StoreError::InvalidName { reason, .. }) => Some(reason),
                Err(other) => panic!("unexpected error {other}"),
            };
            assert_eq!(actual.as_deref(), *expected, "name {name:?}");
        }
    }

    #[test]
    fn records_round_trip_and_reject_garbage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("record");
        let digest = Digest::of(b"x");
        assert_eq!(read_record(&path).expect("read"), None);
        write_record(&path, &digest).expect("write");
        assert_eq!(read_record(&path).expect("read"), Some(digest));
        fs::write(&path, "not a digest\n").expect("write garbage");
        assert_eq!(read_record(&path).expect("read"), None);
        fs::write(&path, "a".repeat(200)).expect("write garbage");
        assert_eq!(read_record(&path).expect("read"), None);
    }
}
