//! The store itself: opening it, looking up complete paths, and building new
//! ones atomically under a per-path lock.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::digest::{Digest, DigestBuilder};
use crate::error::{BuildFailure, StoreError};
use crate::tree::{Seal, clear_write_bits, hash_and_seal, make_owner_writable, remove_tree, sync};

/// The longest store name accepted by [`validate_name`].
pub const MAX_NAME_LEN: usize = 200;

const TMP_DIR: &str = ".tmp";
const LOCKS_DIR: &str = ".locks";
const META_DIR: &str = ".meta";
const ROOTS_DIR: &str = ".roots";
/// The prefix of `.meta/`'s directory of records not yet flushed to disk, one per boot.
pub(crate) const PENDING_PREFIX: &str = "pending-";
/// Where Linux keeps the current boot's random id.
const BOOT_ID: &str = "/proc/sys/kernel/random/boot_id";
/// The store-wide lock, inside `.locks/`.
const STORE_LOCK: &str = "store.lock";
/// The file, inside `.locks/`, one byte of which is each path's build lock (see `PathLock`).
/// Neither name starts with a digest, as lock files of single paths did.
const PATHS_LOCK: &str = "paths.lock";

/// Makes temporary names unique within this process; the process id makes
/// them unique across processes.
static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A content-addressed store: a private directory of immutable outputs, each
/// at `<root>/<hex digest>-<name>`.
///
/// A path in the store is complete or absent: builds happen in `<root>/.tmp/`
/// and are renamed into place only once hashed and sealed read-only. Each
/// path's content hash is recorded in `<root>/.meta/` so that [`Store::get`]
/// never re-reads an output, and a path is trusted only with its record: one
/// without (a build killed between its rename and its record) is removed
/// and built again. Builds of the same path are serialized by a lock on one
/// byte of `<root>/.locks/paths.lock`, across threads and processes alike.
///
/// How records survive a power loss is [`Durability`]'s business: with
/// [`Durability::Full`], a new record goes to `<root>/.meta/pending-<boot id>/`
/// and is trusted only during the boot that wrote it (the kernel's page cache
/// still holds the path's data, even if its builder died); [`Store::commit`]
/// flushes the whole file system once and moves the records it covered into
/// `.meta/`, where they are trusted for good.
///
/// While any `Store` (or a clone of it) is open, it holds the store-wide lock
/// `<root>/.locks/store.lock` shared, so that garbage collection, which holds
/// it exclusively (see [`Collector`](crate::Collector)), never removes a path
/// between its build and the registration of the root that keeps it.
#[derive(Debug, Clone)]
pub struct Store {
    durability: Durability,
    pub(crate) root: PathBuf,
    pub(crate) tmp_dir: PathBuf,
    pub(crate) locks_dir: PathBuf,
    pub(crate) meta_dir: PathBuf,
    pub(crate) roots_dir: PathBuf,
    /// Where this boot's uncommitted records go (`Durability::Full` on Linux);
    /// committed when the last clone is dropped, before the store-wide lock is.
    pending: Option<Arc<Pending>>,
    /// The open store-wide lock file, released when the last clone is dropped.
    _store_lock: Arc<File>,
}

/// The records this boot wrote but no `syncfs` has covered yet.
#[derive(Debug)]
pub(crate) struct Pending {
    /// `<root>/.meta/pending-<boot id>`, created by the first build.
    pub(crate) dir: PathBuf,
    root: PathBuf,
    meta_dir: PathBuf,
    /// Whether this process made sure `dir` exists (only another boot's `tidy` removes it).
    created: AtomicBool,
}

impl Pending {
    /// Creates `dir` if no build of this process did yet.
    fn ensure_dir(&self) -> Result<(), StoreError> {
        if self.created.load(Ordering::Acquire) {
            return Ok(());
        }
        match fs::create_dir(&self.dir) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(StoreError::io("create directory", &self.dir, error)),
        }
        self.created.store(true, Ordering::Release);
        Ok(())
    }

    /// Flushes the file system holding the store, then moves every record that was in the
    /// pending directory before the flush into `.meta/`. Records written meanwhile (by other
    /// threads or processes) stay pending for the next commit.
    fn commit(&self) -> Result<usize, StoreError> {
        let names = match fs::read_dir(&self.dir) {
            Ok(entries) => entries
                .map(|entry| entry.map(|entry| entry.file_name()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|error| StoreError::io("read", &self.dir, error))?,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(error) => return Err(StoreError::io("read", &self.dir, error)),
        };
        if names.is_empty() {
            return Ok(0);
        }
        // Every listed record was written after its path was complete, so this one flush
        // makes every listed path durable, whoever built it.
        let root =
            File::open(&self.root).map_err(|error| StoreError::io("open", &self.root, error))?;
        rustix::fs::syncfs(&root)
            .map_err(|error| StoreError::io("flush to disk", &self.root, error.into()))?;
        let mut moved = 0;
        for name in names {
            let from = self.dir.join(&name);
            match fs::rename(&from, self.meta_dir.join(&name)) {
                Ok(()) => moved += 1,
                // Another commit moved it first.
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(StoreError::io("move into place", &from, error)),
            }
        }
        // The moves themselves: one lost to a power loss only costs a rebuild.
        sync(&self.meta_dir)?;
        Ok(moved)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Best effort: an uncommitted record is still trusted for the rest of this boot, and
        // the next commit on this store (by any process) covers it.
        let _ = self.commit();
    }
}

/// The current boot's id, if this is Linux: a record written under it is trusted until the
/// machine restarts.
fn boot_id() -> Option<String> {
    let text = fs::read_to_string(BOOT_ID).ok()?;
    let id = text.trim();
    (!id.is_empty()
        && id
            .bytes()
            .all(|byte| byte.is_ascii_hexdigit() || byte == b'-'))
    .then(|| id.to_owned())
}

/// How a handle holds the store-wide lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Builds and lookups: any number at once.
    Shared,
    /// Garbage collection: alone.
    Exclusive,
}

/// How hard the store works to keep finished paths across a power loss.
///
/// Either way, a killed *process* never leaves a half-written path: outputs
/// appear by an atomic rename, and the kernel keeps what a dead process
/// wrote. The difference is what survives a power loss or kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// A path trusted after a power loss is complete: its record is trusted
    /// across boots only once a [`Store::commit`] has flushed the file system
    /// (one `syncfs` for everything built since the last), and a path whose
    /// record was not committed before the power loss is built again. Where
    /// the boot id cannot be read (not Linux), every output is flushed file
    /// by file before its rename instead.
    #[default]
    Full,
    /// Never call `fsync`: after a power loss a path may be present but
    /// truncated. For scratch stores (such as the one a reproducibility
    /// check rebuilds into), tests and throwaway builds.
    ProcessCrashOnly,
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
    /// The [`tree_hash`](crate::tree_hash) of its contents.
    pub content_hash: Digest,
}

impl Store {
    /// Opens the store at `root`, creating it (and its parents) if missing.
    ///
    /// The root is made private (mode 0700) and its bookkeeping directories
    /// `.tmp/`, `.locks/`, `.meta/` and `.roots/` are created. A relative
    /// `root` is made absolute against the current directory once, here.
    ///
    /// The store-wide lock is taken shared, so this waits while a garbage
    /// collection runs, and a collection waits until every `Store` on this
    /// root, in any process, is dropped.
    ///
    /// # Errors
    ///
    /// Fails if a directory cannot be created or its mode cannot be set (for
    /// example because another user owns it).
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Store::open_with(root, Durability::Full)
    }

    /// Like [`Store::open`], choosing how builds are flushed to disk.
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn open_with(root: &Path, durability: Durability) -> Result<Store, StoreError> {
        match Store::open_locked(root, durability, Access::Shared, true)? {
            Some(store) => Ok(store),
            None => unreachable!("a blocking lock is always taken"),
        }
    }

    /// Opens the store holding the store-wide lock as `access` asks; `None`
    /// if `wait` is false and another handle holds it in a conflicting way.
    pub(crate) fn open_locked(
        root: &Path,
        durability: Durability,
        access: Access,
        wait: bool,
    ) -> Result<Option<Store>, StoreError> {
        let root =
            std::path::absolute(root).map_err(|error| StoreError::io("resolve", root, error))?;
        fs::create_dir_all(&root)
            .map_err(|error| StoreError::io("create directory", &root, error))?;
        set_private(&root)?;
        let (tmp_dir, locks_dir, meta_dir, roots_dir) = (
            root.join(TMP_DIR),
            root.join(LOCKS_DIR),
            root.join(META_DIR),
            root.join(ROOTS_DIR),
        );
        for dir in [&tmp_dir, &locks_dir, &meta_dir, &roots_dir] {
            match fs::create_dir(dir) {
                Ok(()) => set_private(dir)?,
                Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
                Err(error) => return Err(StoreError::io("create directory", dir, error)),
            }
        }
        let lock_path = locks_dir.join(STORE_LOCK);
        let Some(store_lock) = lock_store(&lock_path, access, wait)? else {
            return Ok(None);
        };
        let pending = match durability {
            Durability::Full => boot_id().map(|boot| {
                Arc::new(Pending {
                    dir: meta_dir.join(format!("{PENDING_PREFIX}{boot}")),
                    root: root.clone(),
                    meta_dir: meta_dir.clone(),
                    created: AtomicBool::new(false),
                })
            }),
            Durability::ProcessCrashOnly => None,
        };
        Ok(Some(Store {
            durability,
            root,
            tmp_dir,
            locks_dir,
            meta_dir,
            roots_dir,
            pending,
            _store_lock: Arc::new(store_lock),
        }))
    }

    /// How builds are flushed to disk.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Makes every path built so far durable: one `syncfs` of the file system holding the
    /// store, then the records it covered move from this boot's pending directory into
    /// `.meta/`. Returns how many records moved. A no-op for
    /// [`Durability::ProcessCrashOnly`], and cheap when nothing is pending; dropping the last
    /// clone of a store commits too. Call it when a batch of builds is done (kiln-graph does
    /// after every evaluation).
    ///
    /// # Errors
    ///
    /// If the file system cannot be flushed or a record moved. The paths stay usable for
    /// the rest of this boot either way.
    pub fn commit(&self) -> Result<usize, StoreError> {
        match &self.pending {
            Some(pending) => pending.commit(),
            None => Ok(0),
        }
    }

    /// This boot's directory of pending records, if the store keeps one.
    pub(crate) fn pending_dir(&self) -> Option<&Path> {
        self.pending.as_ref().map(|pending| pending.dir.as_path())
    }

    /// The record of `base`: committed in `.meta/`, else pending from this boot.
    pub(crate) fn record(&self, base: &str) -> Result<Option<Digest>, StoreError> {
        if let Some(content_hash) = read_record(&self.meta_dir.join(base))? {
            return Ok(Some(content_hash));
        }
        match &self.pending {
            Some(pending) => read_record(&pending.dir.join(base)),
            None => Ok(None),
        }
    }

    /// The store's root directory (absolute).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Registers the directory `dir`, outside the store, as a root for
    /// garbage collection, and returns the root's link.
    ///
    /// The link is `<root>/.roots/<digest>`, the digest being that of `dir`'s
    /// canonical location (its parent resolved physically), and points at
    /// that location; registering the same directory again changes nothing.
    /// The store does not look inside `dir`: the collector's caller decides
    /// which store paths a root keeps alive and when it is stale (for kiln, a
    /// result directory whose `manifest.json` names them). `dir` need not
    /// exist yet, but its parent must.
    ///
    /// # Errors
    ///
    /// Fails if `dir`'s parent cannot be resolved or the link cannot be written.
    pub fn add_root(&self, dir: &Path) -> Result<PathBuf, StoreError> {
        let target = canonical_location(dir)?;
        let link = self.roots_dir.join(root_name(&target).to_hex());
        if fs::read_link(&link).is_ok_and(|existing| existing == target) {
            return Ok(link);
        }
        let tmp = self.roots_dir.join(unique_name(".root", "tmp"));
        std::os::unix::fs::symlink(&target, &tmp)
            .map_err(|error| StoreError::io("write root", &tmp, error))?;
        fs::rename(&tmp, &link).map_err(|error| {
            let _ = fs::remove_file(&tmp);
            StoreError::io("move into place", &link, error)
        })?;
        Ok(link)
    }

    /// The path `<root>/<hex digest>-<name>`, whether or not it exists.
    ///
    /// `name` is not validated here; [`Store::get`] and [`Store::build`] do.
    pub fn path_of(&self, digest: &Digest, name: &str) -> PathBuf {
        self.root.join(base_name(digest, name))
    }

    /// Looks up a complete path. Fast: one `readlink` of the content-hash
    /// record when the path is present, without reading the output itself.
    ///
    /// A record is written only after its path is in place, so a record means
    /// a complete path. A path present without a record (its build was
    /// killed between the two, or `.meta/` was deleted) is complete too: its
    /// content hash is recomputed and recorded, after waiting for any build
    /// of it still running.
    ///
    /// Never delete store paths by hand: a path removed behind the store's
    /// back keeps its record. Use [`Store::remove_path`].
    ///
    /// # Errors
    ///
    /// Fails on an invalid name or an I/O error other than "not found".
    pub fn get(&self, digest: &Digest, name: &str) -> Result<Option<StoreObject>, StoreError> {
        validate_name(name)?;
        let base = base_name(digest, name);
        if let Some(content_hash) = self.record(&base)? {
            return Ok(Some(self.object(&base, digest, name, content_hash)));
        }
        if !exists(&self.root.join(&base))? {
            return Ok(None);
        }
        let _lock = self.lock(&base)?;
        self.get_locked(&base, digest, name)
    }

    /// [`Store::get`] for a caller holding the path's lock.
    fn get_locked(
        &self,
        base: &str,
        digest: &Digest,
        name: &str,
    ) -> Result<Option<StoreObject>, StoreError> {
        if let Some(content_hash) = self.record(base)? {
            return Ok(Some(self.object(base, digest, name, content_hash)));
        }
        // A path without a record: its build was killed between the rename and the record, or
        // the machine lost power before a commit covered it. Its bytes may not all have
        // reached the disk, so it is not trusted, but built again. (With neither a record nor a
        // path, as before every new build, there is nothing to remove; a record that is not a
        // hash is replaced by the build's.)
        if exists(&self.root.join(base))? {
            self.remove_base(base)?;
        }
        Ok(None)
    }

    fn object(&self, base: &str, digest: &Digest, name: &str, content_hash: Digest) -> StoreObject {
        StoreObject {
            path: self.root.join(base),
            digest: *digest,
            name: name.to_owned(),
            content_hash,
        }
    }

    /// Builds the path `<digest>-<name>` with `f`, unless it already exists.
    ///
    /// `f` receives an empty directory inside `<root>/.tmp/` and fills it.
    /// Then the store hashes the tree, clears its write bits, flushes it to
    /// disk (see [`Durability`]), renames the directory into place and
    /// records its content hash, so the path appears whole or not at all,
    /// even if the process is killed at any point. If `f` fails, its
    /// directory is removed.
    ///
    /// The build holds the path's exclusive lock (a byte of `<root>/.locks/paths.lock`),
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
        if let Some(object) = self.get_locked(&base, digest, name)? {
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
        // With a pending directory, the flush is the next commit's one `syncfs`.
        let flush = self.flush() && self.pending.is_none();
        // Hashing and sealing in one walk: a mismatch below removes the sealed tree like any
        // failed build's.
        let (content_hash, metadata) = hash_and_seal(tmp, Seal { flush })?;
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
        if !metadata.is_dir() {
            // The builder replaced its directory with a file or symlink.
            if metadata.is_file() {
                clear_write_bits(tmp, &metadata)?;
                if flush {
                    sync(tmp)?;
                }
            }
            if flush {
                sync(&self.tmp_dir)?;
            }
        }
        // Renaming a directory to a new parent needs write permission on the
        // directory itself (to update its `..`), so its own write bits are
        // cleared only once it is in place.
        fs::rename(tmp, &path).map_err(|error| StoreError::io("move into place", &path, error))?;
        if metadata.is_dir() {
            clear_write_bits(&path, &metadata)?;
        }
        // The record comes last: its presence means the path is complete.
        match &self.pending {
            Some(pending) => {
                pending.ensure_dir()?;
                write_record(&pending.dir.join(base), &self.tmp_dir, &content_hash)?;
            }
            None => {
                write_record(&self.meta_dir.join(base), &self.tmp_dir, &content_hash)?;
                if flush {
                    sync(&self.root)?;
                }
            }
        }
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
        self.remove_base(&base)
    }

    /// Removes `<root>/<base>` and its record; the caller holds the path's
    /// lock or the store-wide lock exclusively.
    ///
    /// The record goes first, so no reader trusts it for a vanishing path;
    /// then the path is renamed into `.tmp/` (atomically: it is whole until
    /// it is gone), and only then deleted. A deletion interrupted there
    /// leaves a leftover in `.tmp/` that garbage collection removes.
    pub(crate) fn remove_base(&self, base: &str) -> Result<(), StoreError> {
        remove_file_if_present(&self.meta_dir.join(base))?;
        if let Some(pending) = &self.pending {
            remove_file_if_present(&pending.dir.join(base))?;
        }
        let path = self.root.join(base);
        let metadata = match fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(StoreError::io("inspect", &path, error)),
        };
        if metadata.is_dir() {
            make_owner_writable(&path, &metadata)?;
        }
        let doomed = self.tmp_dir.join(unique_name(base, "removing"));
        fs::rename(&path, &doomed).map_err(|error| StoreError::io("move away", &path, error))?;
        if self.flush() {
            // Make the rename durable before any unlink inside it can be, so
            // even a power loss never shows a half-deleted path in place.
            sync(&self.root)?;
        }
        remove_tree(&doomed)
    }

    pub(crate) fn flush(&self) -> bool {
        self.durability == Durability::Full
    }

    /// Takes the build lock of `<root>/<base>`, waiting while another thread or process holds
    /// it; released when the guard is dropped, or when the process dies, so a killed build
    /// never blocks the next one.
    fn lock(&self, base: &str) -> Result<PathLock, StoreError> {
        PathLock::take(&self.locks_dir, base)
    }
}

/// A path's build lock.
///
/// On Linux, an exclusive open file description lock (`F_OFD_SETLKW`) on one byte of
/// `<root>/.locks/paths.lock`, at [`lock_offset`] of the path's name: one file serves every
/// path, so a build creates no lock file of its own (in a cold build of thousands of small
/// paths an inode each was a tenth of the file system's work). The lock belongs to the open
/// file description this guard opened, so two threads of one process exclude each other as
/// two processes do. Two names at one offset (a 62-bit collision) would only wait for each
/// other. Elsewhere, `flock` on `<root>/.locks/<base>.lock`.
#[derive(Debug)]
struct PathLock {
    /// Closing it releases the lock.
    _file: File,
}

impl PathLock {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn take(locks_dir: &Path, base: &str) -> Result<PathLock, StoreError> {
        use nix::errno::Errno;
        use nix::fcntl::{FcntlArg, fcntl};
        use nix::libc;

        let path = locks_dir.join(PATHS_LOCK);
        let file = open_lock_file(&path)?;
        let request = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: lock_offset(base),
            l_len: 1,
            // Must be 0 for an open file description lock.
            l_pid: 0,
        };
        loop {
            match fcntl(&file, FcntlArg::F_OFD_SETLKW(&request)) {
                Ok(_) => return Ok(PathLock { _file: file }),
                Err(Errno::EINTR) => {}
                Err(errno) => return Err(StoreError::io("lock", &path, errno.into())),
            }
        }
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn take(locks_dir: &Path, base: &str) -> Result<PathLock, StoreError> {
        let path = locks_dir.join(format!("{base}.lock"));
        let file = open_lock_file(&path)?;
        file.lock()
            .map_err(|error| StoreError::io("lock", &path, error))?;
        Ok(PathLock { _file: file })
    }
}

/// The byte of `.locks/paths.lock` that is `base`'s build lock: 62 bits of a digest of the
/// name, so the offset is a valid positive `off_t` with room after it.
fn lock_offset(base: &str) -> i64 {
    let digest = DigestBuilder::new("kiln-store-path-lock-v1")
        .str(base)
        .finish();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest.as_bytes()[..8]);
    i64::try_from(u64::from_le_bytes(bytes) >> 2).unwrap_or_else(|_| unreachable!("62 bits fit"))
}

/// Opens (creating if needed) a lock file for writing, without truncating it.
fn open_lock_file(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|error| StoreError::io("open lock file", path, error))
}

/// Opens and locks the store-wide lock file; `None` if `wait` is false and
/// the lock is held in a conflicting way.
fn lock_store(path: &Path, access: Access, wait: bool) -> Result<Option<File>, StoreError> {
    let file = open_lock_file(path)?;
    // Like a path's lock, this one dies with its process.
    let locked = match (access, wait) {
        (Access::Shared, true) => file.lock_shared().map(|()| true),
        (Access::Exclusive, true) => file.lock().map(|()| true),
        (Access::Shared, false) => try_lock(file.try_lock_shared()),
        (Access::Exclusive, false) => try_lock(file.try_lock()),
    };
    match locked {
        Ok(true) => Ok(Some(file)),
        Ok(false) => Ok(None),
        Err(error) => Err(StoreError::io("lock", path, error)),
    }
}

fn try_lock(result: Result<(), fs::TryLockError>) -> io::Result<bool> {
    match result {
        Ok(()) => Ok(true),
        Err(fs::TryLockError::WouldBlock) => Ok(false),
        Err(fs::TryLockError::Error(error)) => Err(error),
    }
}

/// Where `dir` is, with its parent resolved physically (symlinks and `..`)
/// but not `dir` itself, which may be a symlink or not exist yet.
fn canonical_location(dir: &Path) -> Result<PathBuf, StoreError> {
    let absolute =
        std::path::absolute(dir).map_err(|error| StoreError::io("resolve", dir, error))?;
    match (absolute.parent(), absolute.file_name()) {
        (Some(parent), Some(name)) => Ok(fs::canonicalize(parent)
            .map_err(|error| StoreError::io("resolve", parent, error))?
            .join(name)),
        _ => fs::canonicalize(&absolute).map_err(|error| StoreError::io("resolve", dir, error)),
    }
}

/// The name of the root link for the canonical location `target`.
fn root_name(target: &Path) -> Digest {
    DigestBuilder::new("kiln-store-root-v1")
        .bytes(target.as_os_str().as_bytes())
        .finish()
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

/// The file name of the store path of `digest` and `name`: `<64 hex digits>-<name>`, the same
/// in every store (so a path can be looked for in another store's directory, as substituters
/// are, without opening it).
pub fn base_name(digest: &Digest, name: &str) -> String {
    let mut buffer = [0u8; 64];
    let hex = digest.write_hex(&mut buffer);
    let mut base = String::with_capacity(hex.len() + 1 + name.len());
    base.push_str(hex);
    base.push('-');
    base.push_str(name);
    base
}

pub(crate) fn unique_name(base: &str, purpose: &str) -> String {
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

/// Reads a content-hash record: a symlink whose target is the hash ([`record_text`]; the
/// 64 hex digits of records written before are read too), so reading it is a single
/// `readlink`. `None` if it is missing or unreadable, in which case the caller recomputes
/// it from the output.
pub(crate) fn read_record(path: &Path) -> Result<Option<Digest>, StoreError> {
    match fs::read_link(path) {
        Ok(target) => Ok(target.to_str().and_then(parse_record)),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::InvalidInput
            ) =>
        {
            Ok(None)
        }
        Err(error) => Err(StoreError::io("read record", path, error)),
    }
}

/// The URL-safe base64 alphabet of RFC 4648, section 5.
const RECORD_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Each byte's value in [`RECORD_ALPHABET`], or 0xff for a byte outside it.
const RECORD_VALUES: [u8; 256] = {
    let mut values = [0xff; 256];
    let mut index = 0;
    while index < 64 {
        values[RECORD_ALPHABET[index] as usize] = index as u8;
        index += 1;
    }
    values
};

/// A record's target: the hash in URL-safe base64 without padding, 43 characters. Short
/// enough that file systems keep the target in the inode itself (ext4 does below 60 bytes;
/// 64 hex digits were not), so writing a record allocates no block and reading one reads
/// none: a no-op rebuild reads a record per derivation.
fn record_text(content_hash: &Digest) -> String {
    let mut text = String::with_capacity(43);
    let (mut bits, mut count) = (0u32, 0u32);
    for &byte in content_hash.as_bytes() {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            text.push(char::from(RECORD_ALPHABET[(bits >> count) as usize & 63]));
        }
    }
    // 256 bits: 42 full characters and 4 bits left, padded with two zero bits.
    text.push(char::from(
        RECORD_ALPHABET[(bits << (6 - count)) as usize & 63],
    ));
    text
}

/// Parses a record's target: [`record_text`]'s 43 characters (the canonical spelling only),
/// or 64 hex digits.
fn parse_record(text: &str) -> Option<Digest> {
    if text.len() == 64 {
        return text.parse().ok();
    }
    if text.len() != 43 {
        return None;
    }
    let mut bytes = [0u8; 32];
    let (mut bits, mut count, mut filled) = (0u32, 0u32, 0usize);
    for &character in text.as_bytes() {
        let value = RECORD_VALUES[usize::from(character)];
        if value == 0xff {
            return None;
        }
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            bytes[filled] = (bits >> count) as u8;
            filled += 1;
        }
    }
    // The last character's two padding bits must be zero.
    (filled == 32 && bits & ((1 << count) - 1) == 0).then_some(Digest::from_bytes(bytes))
}

/// Writes a record so that readers see the old record, the new one, or none, and a
/// directory of records never holds a temporary (a commit moves everything in it): where
/// there is no record yet (every new build), the symlink is created in place, which is atomic
/// (it appears with its target or not at all); over an old one, through a temporary symlink in
/// `tmp_dir` and a rename.
fn write_record(path: &Path, tmp_dir: &Path, content_hash: &Digest) -> Result<(), StoreError> {
    let text = record_text(content_hash);
    match std::os::unix::fs::symlink(&text, path) {
        Ok(()) => return Ok(()),
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
        Err(error) => return Err(StoreError::io("write record", path, error)),
    }
    let file_name = path
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or("record");
    let tmp = tmp_dir.join(unique_name(file_name, "record"));
    std::os::unix::fs::symlink(&text, &tmp)
        .map_err(|error| StoreError::io("write record", &tmp, error))?;
    fs::rename(&tmp, path).map_err(|error| {
        let _ = fs::remove_file(&tmp);
        StoreError::io("move into place", path, error)
    })
}

pub(crate) fn remove_file_if_present(path: &Path) -> Result<(), StoreError> {
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
        write_record(&path, dir.path(), &digest).expect("write");
        assert_eq!(read_record(&path).expect("read"), Some(digest));
        write_record(&path, dir.path(), &Digest::of(b"y")).expect("overwrite");
        assert_eq!(read_record(&path).expect("read"), Some(Digest::of(b"y")));
        fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink("not a digest", &path).expect("symlink");
        assert_eq!(read_record(&path).expect("read"), None);
        // A record written before records were base64 is read too.
        fs::remove_file(&path).expect("remove");
        std::os::unix::fs::symlink(digest.to_hex(), &path).expect("symlink");
        assert_eq!(read_record(&path).expect("read"), Some(digest));
        fs::remove_file(&path).expect("remove");
        fs::write(&path, digest.to_hex()).expect("a plain file");
        assert_eq!(read_record(&path).expect("read"), None);
        assert_eq!(
            fs::read_dir(dir.path()).expect("ls").count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn record_text_is_short_base64_and_round_trips() {
        // RFC 4648's test vectors, padded to 32 bytes with zeros, checked against Python's
        // base64.urlsafe_b64encode.
        let mut bytes = [0u8; 32];
        bytes[..6].copy_from_slice(b"foobar");
        assert_eq!(
            record_text(&Digest::from_bytes(bytes)),
            "Zm9vYmFyAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
        );
        assert_eq!(
            record_text(&Digest::from_bytes([0xff; 32])),
            "__________________________________________8"
        );
        for seed in 0u8..=255 {
            let digest = Digest::of(&[seed]);
            let text = record_text(&digest);
            assert_eq!(text.len(), 43, "{text}");
            assert_eq!(parse_record(&text), Some(digest), "{text}");
            assert_eq!(parse_record(&digest.to_hex()), Some(digest));
        }
        // Non-canonical padding bits, a wrong length, a letter outside the alphabet.
        assert_eq!(
            parse_record("__________________________________________9"),
            None
        );
        assert_eq!(
            parse_record("__________________________________________"),
            None
        );
        assert_eq!(
            parse_record("_________________________________________+8"),
            None
        );
    }
}
