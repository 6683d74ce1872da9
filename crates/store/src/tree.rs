//! Canonical hashing and comparison of file trees, and the permission walks
//! that seal a finished output or unseal it for removal.
//!
//! Only what a build can meaningfully produce is part of a tree's identity:
//! entry names (sorted by bytes), entry types, file contents, symlink targets
//! and the executable bit. Timestamps, owners and other mode bits are not,
//! so the same outputs hash the same on any machine.

use std::cmp::Ordering;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, DigestBuilder};
use crate::error::StoreError;

/// The size of the buffer file contents are streamed through.
const CHUNK: usize = 128 * 1024;

const TAG_FILE: u64 = 1;
const TAG_DIRECTORY: u64 = 2;
const TAG_SYMLINK: u64 = 3;

/// Computes the canonical content hash of a file, a directory tree or a symlink.
///
/// The encoding covers, for every entry in byte order of names: its name, its
/// type (file, directory or symlink), and for files the executable bit (the
/// owner's `x`) and the bytes, streamed; for symlinks the target. It ignores
/// timestamps, owners and all other mode bits. Symlinks are never followed.
///
/// # Errors
///
/// Fails if an entry cannot be read, if it is neither a regular file, a
/// directory nor a symlink, or if a file changes size while it is hashed.
pub fn tree_hash(path: &Path) -> Result<Digest, StoreError> {
    hash_tree(path, None, &mut raw_target).map(|(digest, _)| digest)
}

/// [`tree_hash`], hashing each symlink's target as `link(symlink, target)` returns it instead of
/// the target itself. With a `link` that returns the target's bytes unchanged it is
/// [`tree_hash`]. For an identity of a tree that must not change with where its links point
/// but only with what they point at (for example a link into a store path, whose name holds
/// a digest, identified instead by that path's content).
///
/// # Errors
///
/// As [`tree_hash`].
pub fn tree_hash_with_links(
    path: &Path,
    link: &mut dyn FnMut(&Path, &Path) -> Vec<u8>,
) -> Result<Digest, StoreError> {
    hash_tree(path, None, link).map(|(digest, _)| digest)
}

/// A symlink's target as [`tree_hash`] hashes it: its bytes.
fn raw_target(_link: &Path, target: &Path) -> Vec<u8> {
    target.as_os_str().as_bytes().to_vec()
}

/// What [`hash_and_seal`] does to each entry below the root once it is hashed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seal {
    /// Flush every file and directory to disk too.
    pub(crate) flush: bool,
}

/// [`tree_hash`] of a finished output, sealing it in the same walk: the write bits of
/// everything below `path` (not `path` itself, which must stay writable until it is renamed
/// into place) are cleared once each entry is hashed, and, with `seal.flush`, every file and
/// directory is flushed to disk. One walk instead of two: each directory is listed and each
/// entry inspected once. Sealing changes no input of the hash (only the owner's `x` bit
/// counts, and it is kept). Returns the hash and `path`'s own metadata, read once before the
/// walk (the walk leaves `path` itself as it was), so the caller need not read it again.
pub(crate) fn hash_and_seal(path: &Path, seal: Seal) -> Result<(Digest, Metadata), StoreError> {
    hash_tree(path, Some(seal), &mut raw_target)
}

fn hash_tree(
    path: &Path,
    seal: Option<Seal>,
    link: &mut dyn FnMut(&Path, &Path) -> Vec<u8>,
) -> Result<(Digest, Metadata), StoreError> {
    let mut builder = DigestBuilder::new("kiln-tree-v1");
    let mut walk = Walk {
        buffer: vec![0u8; CHUNK],
        seal,
        link,
    };
    let metadata = symlink_metadata(path)?;
    hash_entry(path, &metadata, &mut builder, &mut walk)?;
    if let Some(seal) = seal
        && seal.flush
        && metadata.is_dir()
    {
        sync(path)?;
    }
    Ok((builder.finish(), metadata))
}

/// What a hashing walk carries from entry to entry.
struct Walk<'a> {
    /// The buffer file contents are streamed through.
    buffer: Vec<u8>,
    /// Whether (and how) to seal what was hashed.
    seal: Option<Seal>,
    /// What to hash for a symlink's target.
    link: &'a mut dyn FnMut(&Path, &Path) -> Vec<u8>,
}

/// Hashes the entry at `path` (whose `metadata` the caller has); with `walk.seal`, seals
/// everything below it (see [`hash_and_seal`]), but not the entry itself.
fn hash_entry(
    path: &Path,
    metadata: &Metadata,
    builder: &mut DigestBuilder,
    walk: &mut Walk<'_>,
) -> Result<(), StoreError> {
    let buffer = walk.buffer.as_mut_slice();
    match entry_type(path, metadata)? {
        EntryType::File => {
            builder.write_u64(TAG_FILE);
            builder.write_u64(u64::from(is_executable(metadata)));
            let expected = metadata.len();
            builder.write_u64(expected);
            let mut file = File::open(path).map_err(|error| StoreError::io("open", path, error))?;
            let mut actual = 0u64;
            loop {
                let count = read_some(&mut file, buffer, path)?;
                if count == 0 {
                    break;
                }
                actual += count as u64;
                if actual > expected {
                    break;
                }
                builder.write_raw(&buffer[..count]);
            }
            if actual != expected {
                return Err(StoreError::FileChanged {
                    path: path.to_owned(),
                    expected,
                    actual,
                });
            }
        }
        EntryType::Directory => {
            builder.write_u64(TAG_DIRECTORY);
            let names = sorted_names(path)?;
            builder.write_u64(names.len() as u64);
            for name in &names {
                builder.write_bytes(name.as_bytes());
                let child = path.join(name);
                let metadata = symlink_metadata(&child)?;
                hash_entry(&child, &metadata, builder, walk)?;
                if let Some(seal) = walk.seal {
                    seal_entry(&child, &metadata, seal)?;
                }
            }
        }
        EntryType::Symlink => {
            builder.write_u64(TAG_SYMLINK);
            let target =
                fs::read_link(path).map_err(|error| StoreError::io("read symlink", path, error))?;
            builder.write_bytes(&(walk.link)(path, &target));
        }
    }
    Ok(())
}

/// The kind of an entry in a tree, as far as the store cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum EntryType {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
}

impl fmt::Display for EntryType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryType::File => "file",
            EntryType::Directory => "directory",
            EntryType::Symlink => "symlink",
        })
    }
}

/// The first place where two trees differ, as found by [`first_difference`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The differing entry, relative to the roots of both trees; empty when
    /// the roots themselves differ.
    pub path: PathBuf,
    /// How it differs.
    pub kind: DifferenceKind,
}

impl Difference {
    /// A one-line human description, such as `etc/ca.pem: contents differ at byte 412`.
    pub fn description(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.as_os_str().is_empty() {
            f.write_str(".")?;
        } else {
            write!(f, "{}", self.path.display())?;
        }
        write!(f, ": {}", self.kind)
    }
}

/// How an entry differs between two trees.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DifferenceKind {
    /// The entry exists only in the first tree.
    OnlyInFirst,
    /// The entry exists only in the second tree.
    OnlyInSecond,
    /// The entry has a different type on each side.
    Type {
        /// The type in the first tree.
        first: EntryType,
        /// The type in the second tree.
        second: EntryType,
    },
    /// A file is executable on one side only.
    Executable {
        /// Whether the first tree's file is executable.
        first: bool,
        /// Whether the second tree's file is executable.
        second: bool,
    },
    /// A file's bytes differ.
    Content {
        /// The offset of the first differing byte (or the length of the shorter file).
        offset: u64,
        /// The size of the first tree's file.
        first_len: u64,
        /// The size of the second tree's file.
        second_len: u64,
    },
    /// A symlink points somewhere else.
    SymlinkTarget {
        /// The first tree's target.
        first: PathBuf,
        /// The second tree's target.
        second: PathBuf,
    },
}

impl fmt::Display for DifferenceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DifferenceKind::OnlyInFirst => f.write_str("only in the first tree"),
            DifferenceKind::OnlyInSecond => f.write_str("only in the second tree"),
            DifferenceKind::Type { first, second } => {
                write!(
                    f,
                    "a {first} in the first tree but a {second} in the second"
                )
            }
            DifferenceKind::Executable { first, second } => write!(
                f,
                "executable bit differs (first: {}, second: {})",
                if *first { "set" } else { "clear" },
                if *second { "set" } else { "clear" }
            ),
            DifferenceKind::Content {
                offset,
                first_len,
                second_len,
            } => write!(
                f,
                "contents differ at byte {offset} (sizes {first_len} and {second_len})"
            ),
            DifferenceKind::SymlinkTarget { first, second } => write!(
                f,
                "symlink targets differ ({} and {})",
                first.display(),
                second.display()
            ),
        }
    }
}

/// Walks two trees in the same canonical order as [`tree_hash`] and returns
/// the first entry that differs, or `None` when they would hash the same.
///
/// # Errors
///
/// Fails if either root is missing or an entry cannot be read.
pub fn first_difference(first: &Path, second: &Path) -> Result<Option<Difference>, StoreError> {
    let mut buffers = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    compare_entries(first, second, &mut PathBuf::new(), &mut buffers)
}

fn compare_entries(
    first: &Path,
    second: &Path,
    relative: &mut PathBuf,
    buffers: &mut (Vec<u8>, Vec<u8>),
) -> Result<Option<Difference>, StoreError> {
    let difference = |relative: &Path, kind| {
        Ok(Some(Difference {
            path: relative.to_owned(),
            kind,
        }))
    };
    let first_metadata = symlink_metadata(first)?;
    let second_metadata = symlink_metadata(second)?;
    let first_type = entry_type(first, &first_metadata)?;
    let second_type = entry_type(second, &second_metadata)?;
    if first_type != second_type {
        return difference(
            relative,
            DifferenceKind::Type {
                first: first_type,
                second: second_type,
            },
        );
    }
    match first_type {
        EntryType::File => {
            let (first_exec, second_exec) = (
                is_executable(&first_metadata),
                is_executable(&second_metadata),
            );
            if first_exec != second_exec {
                return difference(
                    relative,
                    DifferenceKind::Executable {
                        first: first_exec,
                        second: second_exec,
                    },
                );
            }
            if let Some(kind) = compare_contents(first, second, buffers)? {
                return difference(relative, kind);
            }
        }
        EntryType::Symlink => {
            let first_target = fs::read_link(first)
                .map_err(|error| StoreError::io("read symlink", first, error))?;
            let second_target = fs::read_link(second)
                .map_err(|error| StoreError::io("read symlink", second, error))?;
            if first_target != second_target {
                return difference(
                    relative,
                    DifferenceKind::SymlinkTarget {
                        first: first_target,
                        second: second_target,
                    },
                );
            }
        }
        EntryType::Directory => {
            let first_names = sorted_names(first)?;
            let second_names = sorted_names(second)?;
            let (mut i, mut j) = (0, 0);
            while i < first_names.len() || j < second_names.len() {
                let order = match (first_names.get(i), second_names.get(j)) {
                    (Some(a), Some(b)) => a.as_bytes().cmp(b.as_bytes()),
                    (Some(_), None) => Ordering::Less,
                    _ => Ordering::Greater,
                };
                match order {
                    Ordering::Less => {
                        relative.push(&first_names[i]);
                        return difference(relative, DifferenceKind::OnlyInFirst);
                    }
                    Ordering::Greater => {
                        relative.push(&second_names[j]);
                        return difference(relative, DifferenceKind::OnlyInSecond);
                    }
                    Ordering::Equal => {
                        let name = &first_names[i];
                        relative.push(name);
                        let found = compare_entries(
                            &first.join(name),
                            &second.join(name),
                            relative,
                            buffers,
                        )?;
                        if found.is_some() {
                            return Ok(found);
                        }
                        relative.pop();
                        i += 1;
                        j += 1;
                    }
                }
            }
        }
    }
    Ok(None)
}

fn compare_contents(
    first: &Path,
    second: &Path,
    (first_buffer, second_buffer): &mut (Vec<u8>, Vec<u8>),
) -> Result<Option<DifferenceKind>, StoreError> {
    let mut first_file = File::open(first).map_err(|error| StoreError::io("open", first, error))?;
    let mut second_file =
        File::open(second).map_err(|error| StoreError::io("open", second, error))?;
    let mut offset = 0u64;
    loop {
        let first_count = read_full(&mut first_file, first_buffer, first)?;
        let second_count = read_full(&mut second_file, second_buffer, second)?;
        let common = first_count.min(second_count);
        if let Some(position) = first_buffer[..common]
            .iter()
            .zip(&second_buffer[..common])
            .position(|(a, b)| a != b)
        {
            offset += position as u64;
            return Ok(Some(content_difference(offset, first, second)?));
        }
        offset += common as u64;
        if first_count != second_count {
            return Ok(Some(content_difference(offset, first, second)?));
        }
        if first_count == 0 {
            return Ok(None);
        }
    }
}

fn content_difference(
    offset: u64,
    first: &Path,
    second: &Path,
) -> Result<DifferenceKind, StoreError> {
    Ok(DifferenceKind::Content {
        offset,
        first_len: symlink_metadata(first)?.len(),
        second_len: symlink_metadata(second)?.len(),
    })
}

/// Reads until `buffer` is full or the file ends, so two files are compared
/// in aligned chunks whatever sizes the kernel returns.
fn read_full(file: &mut File, buffer: &mut [u8], path: &Path) -> Result<usize, StoreError> {
    let mut filled = 0;
    while filled < buffer.len() {
        let count = read_some(file, &mut buffer[filled..], path)?;
        if count == 0 {
            break;
        }
        filled += count;
    }
    Ok(filled)
}

fn read_some(file: &mut File, buffer: &mut [u8], path: &Path) -> Result<usize, StoreError> {
    loop {
        match file.read(buffer) {
            Ok(count) => return Ok(count),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(StoreError::io("read", path, error)),
        }
    }
}

pub(crate) fn symlink_metadata(path: &Path) -> Result<Metadata, StoreError> {
    fs::symlink_metadata(path).map_err(|error| StoreError::io("inspect", path, error))
}

fn entry_type(path: &Path, metadata: &Metadata) -> Result<EntryType, StoreError> {
    let file_type = metadata.file_type();
    if file_type.is_file() {
        Ok(EntryType::File)
    } else if file_type.is_dir() {
        Ok(EntryType::Directory)
    } else if file_type.is_symlink() {
        Ok(EntryType::Symlink)
    } else {
        Err(StoreError::UnsupportedFileType {
            path: path.to_owned(),
        })
    }
}

fn is_executable(metadata: &Metadata) -> bool {
    metadata.permissions().mode() & 0o100 != 0
}

/// The names in a directory, sorted by their bytes (not by locale).
pub(crate) fn sorted_names(path: &Path) -> Result<Vec<OsString>, StoreError> {
    let entries =
        fs::read_dir(path).map_err(|error| StoreError::io("read directory", path, error))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|error| StoreError::io("read directory", path, error))?;
        names.push(entry.file_name());
    }
    names.sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Seals one entry whose contents (if a directory) are sealed already: clears its write bits
/// and, with `seal.flush`, flushes it to disk.
fn seal_entry(path: &Path, metadata: &Metadata, seal: Seal) -> Result<(), StoreError> {
    // Symlinks have no permissions of their own on Linux.
    if metadata.is_dir() || metadata.is_file() {
        if seal.flush {
            sync(path)?;
        }
        clear_write_bits(path, metadata)?;
    }
    Ok(())
}

pub(crate) fn clear_write_bits(path: &Path, metadata: &Metadata) -> Result<(), StoreError> {
    let mode = metadata.permissions().mode();
    if mode & 0o222 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode & !0o222))
            .map_err(|error| StoreError::io("make read-only", path, error))?;
    }
    Ok(())
}

pub(crate) fn sync(path: &Path) -> Result<(), StoreError> {
    File::open(path)
        .and_then(|file| file.sync_all())
        .map_err(|error| StoreError::io("flush to disk", path, error))
}

/// Removes a tree that may have been sealed read-only, restoring the owner's
/// write bit on each directory before deleting its entries. A missing path is
/// not an error.
pub(crate) fn remove_tree(path: &Path) -> Result<(), StoreError> {
    let metadata = match fs::symlink_metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(StoreError::io("inspect", path, error)),
    };
    if metadata.is_dir() {
        make_owner_writable(path, &metadata)?;
        for name in sorted_names(path)? {
            remove_tree(&path.join(name))?;
        }
        fs::remove_dir(path).map_err(|error| StoreError::io("remove directory", path, error))
    } else {
        fs::remove_file(path).map_err(|error| StoreError::io("remove", path, error))
    }
}

pub(crate) fn make_owner_writable(path: &Path, metadata: &Metadata) -> Result<(), StoreError> {
    let mode = metadata.permissions().mode();
    if mode & 0o700 != 0o700 {
        fs::set_permissions(path, fs::Permissions::from_mode(mode | 0o700))
            .map_err(|error| StoreError::io("make writable", path, error))?;
    }
    Ok(())
}
