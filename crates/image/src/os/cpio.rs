//! A deterministic writer of `newc` cpio archives, the format the Linux kernel unpacks as an
//! initramfs. Entries are written in the order given (callers sort them); every header field
//! that could carry the build machine's state (inode numbers, owners, times, devices) is fixed.

use std::io::{self, Write};

/// One entry of an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpioEntry {
    /// A directory with its permission bits.
    Directory {
        /// The path inside the archive, without a leading `/`.
        path: String,
        /// Permission bits, such as `0o755`.
        mode: u32,
    },
    /// A regular file.
    File {
        /// The path inside the archive, without a leading `/`.
        path: String,
        /// Permission bits, such as `0o755`.
        mode: u32,
        /// The file's bytes.
        data: Vec<u8>,
    },
    /// A character device node, such as `dev/console` (5, 1).
    CharDevice {
        /// The path inside the archive, without a leading `/`.
        path: String,
        /// Permission bits, such as `0o600`.
        mode: u32,
        /// The device's major number.
        major: u32,
        /// The device's minor number.
        minor: u32,
    },
    /// A symbolic link.
    Symlink {
        /// The path inside the archive, without a leading `/`.
        path: String,
        /// What the link points at.
        target: String,
    },
}

impl CpioEntry {
    fn path(&self) -> &str {
        match self {
            CpioEntry::Directory { path, .. }
            | CpioEntry::File { path, .. }
            | CpioEntry::CharDevice { path, .. }
            | CpioEntry::Symlink { path, .. } => path,
        }
    }
}

/// Writes `entries` as a `newc` archive with the trailer, owned by root, every time `mtime`,
/// inode numbers counting from 1 in order.
///
/// ```
/// use kiln_image::os::cpio::{CpioEntry, write_cpio};
/// let mut archive = Vec::new();
/// write_cpio(&mut archive, &[CpioEntry::File { path: "init".into(), mode: 0o755, data: b"#!/bin/sh\n".to_vec() }], 0)?;
/// assert!(archive.starts_with(b"070701"));
/// assert_eq!(archive.len() % 4, 0);
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// # Errors
///
/// If writing fails, or a path is empty, absolute or holds a NUL byte.
pub fn write_cpio(out: &mut impl Write, entries: &[CpioEntry], mtime: u32) -> io::Result<()> {
    let mut written = 0usize;
    for (index, entry) in entries.iter().enumerate() {
        let path = entry.path();
        if path.is_empty() || path.starts_with('/') || path.contains('\0') {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cpio entry path {path:?} must be relative and non-empty"),
            ));
        }
        let (mode, nlink, data, rdev): (u32, u32, &[u8], (u32, u32)) = match entry {
            CpioEntry::Directory { mode, .. } => (0o040_000 | (mode & 0o7777), 2, &[], (0, 0)),
            CpioEntry::File { mode, data, .. } => (0o100_000 | (mode & 0o7777), 1, data, (0, 0)),
            CpioEntry::CharDevice {
                mode, major, minor, ..
            } => (0o020_000 | (mode & 0o7777), 1, &[], (*major, *minor)),
            CpioEntry::Symlink { target, .. } => (0o120_777, 1, target.as_bytes(), (0, 0)),
        };
        let inode = u32::try_from(index + 1).unwrap_or(u32::MAX);
        let fields = Header {
            inode,
            mode,
            nlink,
            mtime,
            size: data.len(),
            rdev,
        };
        written += header(out, &fields, path)?;
        out.write_all(data)?;
        written += data.len();
        written += pad(out, written)?;
    }
    let trailer = Header {
        inode: 0,
        mode: 0,
        nlink: 1,
        mtime: 0,
        size: 0,
        rdev: (0, 0),
    };
    written += header(out, &trailer, "TRAILER!!!")?;
    pad(out, written)?;
    Ok(())
}

struct Header {
    inode: u32,
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: usize,
    rdev: (u32, u32),
}

fn header(out: &mut impl Write, fields: &Header, name: &str) -> io::Result<usize> {
    let Header {
        inode,
        mode,
        nlink,
        mtime,
        size,
        rdev: (rdev_major, rdev_minor),
    } = *fields;
    let size = u32::try_from(size)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio entry over 4 GiB"))?;
    let name_size = u32::try_from(name.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "cpio name too long"))?;
    // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check
    let text = format!(
        "070701{inode:08x}{mode:08x}{:08x}{:08x}{nlink:08x}{mtime:08x}{size:08x}{:08x}{:08x}{rdev_major:08x}{rdev_minor:08x}{name_size:08x}{:08x}",
        0, 0, 0, 0, 0
    );
    out.write_all(text.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let length = text.len() + name.len() + 1;
    let padding = (4 - length % 4) % 4;
    out.write_all(&[0; 3][..padding])?;
    Ok(length + padding)
}

fn pad(out: &mut impl Write, written: usize) -> io::Result<usize> {
    let padding = (4 - written % 4) % 4;
    out.write_all(&[0; 3][..padding])?;
    Ok(padding)
}
