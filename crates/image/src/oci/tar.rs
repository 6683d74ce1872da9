//! A deterministic ustar writer: entries in the order given (callers sort
//! them), owner 0:0 without names, one fixed mtime, modes as given.
//!
//! Why this is not the `tar` crate (measured with tar 0.4.46, and kept true
//! by `the_tar_crate_writes_other_header_bytes` below): every image kiln has
//! ever built, and so every node image's digest, is these exact bytes, and
//! the crate's `Header::new_ustar` with the same fields differs in every
//! header. It writes the checksum as seven octal digits and a NUL where GNU
//! tar and this writer write six, a NUL and a space; it leaves the device
//! major and minor fields as NULs where this writer writes octal zeros; and
//! for a path longer than 100 bytes it puts the longest parent that fits in
//! the prefix field, where this writer puts the shortest. Taking the crate
//! would change every image digest for no gain in what the archives mean;
//! the crate is used instead to read these archives back
//! (`the_tar_crate_reads_every_field_back`), as are umoci, skopeo and
//! containerd in `tests/oci.rs`.

/// What one tar entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OciEntryKind {
    /// A directory.
    Directory,
    /// A regular file with these bytes.
    File(Vec<u8>),
    /// A symbolic link to this target.
    Symlink(String),
}

/// One entry of a layer or archive: a relative path (no leading `/` or
/// `./`, no trailing `/`), its permission bits, and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciEntry {
    /// The path inside the archive, such as `bin/busybox`.
    pub path: String,
    /// The permission bits, such as `0o755`.
    pub mode: u32,
    /// A directory, a file or a symbolic link.
    pub kind: OciEntryKind,
}

impl OciEntry {
    /// A directory.
    pub fn directory(path: impl Into<String>, mode: u32) -> OciEntry {
        OciEntry {
            path: path.into(),
            mode,
            kind: OciEntryKind::Directory,
        }
    }

    /// A regular file.
    pub fn file(path: impl Into<String>, mode: u32, bytes: Vec<u8>) -> OciEntry {
        OciEntry {
            path: path.into(),
            mode,
            kind: OciEntryKind::File(bytes),
        }
    }

    /// A symbolic link (mode 0777, as links have).
    pub fn symlink(path: impl Into<String>, target: impl Into<String>) -> OciEntry {
        OciEntry {
            path: path.into(),
            mode: 0o777,
            kind: OciEntryKind::Symlink(target.into()),
        }
    }
}

const BLOCK: usize = 512;

/// Writes `entries`, in order, as a ustar archive with every mtime `mtime`.
///
/// Paths longer than ustar's 100 bytes are split into its prefix field;
/// a path that does not fit is an error message naming it.
pub(crate) fn write(entries: &[OciEntry], mtime: u64) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    for entry in entries {
        let mut header = [0u8; BLOCK];
        let name = match entry.kind {
            OciEntryKind::Directory => format!("{}/", entry.path),
            _ => entry.path.clone(),
        };
        let (prefix, name) = split_name(&name)?;
        header[..name.len()].copy_from_slice(name.as_bytes());
        octal(&mut header[100..108], u64::from(entry.mode & 0o7777));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        let (typeflag, size, data, link): (u8, usize, &[u8], &str) = match &entry.kind {
            OciEntryKind::Directory => (b'5', 0, &[], ""),
            OciEntryKind::File(bytes) => (b'0', bytes.len(), bytes, ""),
            OciEntryKind::Symlink(target) => (b'2', 0, &[], target),
        };
        octal(&mut header[124..136], size as u64);
        octal(&mut header[136..148], mtime);
        header[156] = typeflag;
        if link.len() > 100 {
            return Err(format!("{}: link target longer than 100 bytes", entry.path));
        }
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        octal(&mut header[329..337], 0);
        octal(&mut header[337..345], 0);
        header[345..345 + prefix.len()].copy_from_slice(prefix.as_bytes());
        // The checksum is computed with its own field as eight spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|byte| u64::from(*byte)).sum();
        octal(&mut header[148..155], sum);
        header[155] = b' ';
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    Ok(out)
}

/// Splits a path into ustar's prefix (up to 155 bytes) and name (up to 100).
fn split_name(path: &str) -> Result<(&str, &str), String> {
    if path.len() <= 100 {
        return Ok(("", path));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    for (index, _) in trimmed.match_indices('/') {
        let (prefix, name) = (&path[..index], &path[index + 1..]);
        if prefix.len() <= 155 && name.len() <= 100 {
            return Ok((prefix, name));
        }
    }
    Err(format!("{path}: too long for a ustar header"))
}

/// Zero-padded octal filling all but the last byte of `field`, then NUL.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let text = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&text.as_bytes()[text.len() - digits..]);
    field[digits] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_fixed_and_checksummed() {
        let entries = [
            OciEntry::directory("bin", 0o755),
            OciEntry::file("bin/hello", 0o755, b"hi\n".to_vec()),
            OciEntry::symlink("bin/sh", "hello"),
        ];
        let archive = write(&entries, 1).expect("small paths");
        assert_eq!(archive.len(), 512 * 4 + 512 * 2);
        assert_eq!(&archive[..4], b"bin/");
        assert_eq!(&archive[100..108], b"0000755\0");
        assert_eq!(&archive[512 + 124..512 + 136], b"00000000003\0");
        assert_eq!(&archive[512 + 136..512 + 148], b"00000000001\0");
        assert_eq!(&archive[1024..1027], b"hi\n");
        assert_eq!(archive[1536 + 156], b'2');
        assert_eq!(&archive[1536 + 157..1536 + 162], b"hello");
        let header = &archive[..512];
        let mut blanked = header.to_vec();
        blanked[148..156].copy_from_slice(b"        ");
        let sum: u64 = blanked.iter().map(|byte| u64::from(*byte)).sum();
        let recorded = std::str::from_utf8(&header[148..154]).expect("octal digits");
        assert_eq!(u64::from_str_radix(recorded, 8).expect("octal"), sum);
    }

    fn sample() -> Vec<OciEntry> {
        vec![
            OciEntry::directory("bin", 0o755),
            OciEntry::file("bin/hello", 0o750, b"hi\n".to_vec()),
            OciEntry::symlink("bin/sh", "hello"),
            OciEntry::file(
                // 142 bytes: ustar's prefix can be either parent.
                format!("{}/{}/{}", "d".repeat(50), "e".repeat(30), "f".repeat(60)),
                0o600,
                b"long".to_vec(),
            ),
        ]
    }

    #[test]
    fn the_tar_crate_reads_every_field_back() {
        let bytes = write(&sample(), 1_672_531_200).expect("writes");
        let mut archive = ::tar::Archive::new(bytes.as_slice());
        let mut read = Vec::new();
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("an entry");
            let header = entry.header().clone();
            assert!(header.as_ustar().is_some(), "a ustar header");
            assert_eq!(header.uid().expect("uid"), 0);
            assert_eq!(header.gid().expect("gid"), 0);
            assert_eq!(header.username().expect("user name"), Some(""));
            assert_eq!(header.mtime().expect("mtime"), 1_672_531_200);
            let link = header
                .link_name()
                .expect("link name")
                .map(|link| link.display().to_string());
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).expect("content");
            read.push((
                entry.path().expect("path").display().to_string(),
                header.mode().expect("mode"),
                header.entry_type(),
                link,
                content,
            ));
        }
        let expected: Vec<_> = sample()
            .into_iter()
            .map(|entry| {
                let (kind, link, content) = match entry.kind {
                    OciEntryKind::Directory => {
                        return (
                            format!("{}/", entry.path),
                            entry.mode,
                            ::tar::EntryType::Directory,
                            None,
                            vec![],
                        );
                    }
                    OciEntryKind::File(bytes) => (::tar::EntryType::Regular, None, bytes),
                    OciEntryKind::Symlink(target) => {
                        (::tar::EntryType::Symlink, Some(target), vec![])
                    }
                };
                (entry.path, entry.mode, kind, link, content)
            })
            .collect();
        assert_eq!(read, expected);
    }

    /// The reason, measured, that this writer is not the `tar` crate (see the
    /// module's documentation). If the crate ever writes these headers
    /// byte for byte, this fails, and the writer should give way to it.
    #[test]
    fn the_tar_crate_writes_other_header_bytes() {
        for entry in sample() {
            let ours = write(std::slice::from_ref(&entry), 1).expect("writes");
            let mut header = ::tar::Header::new_ustar();
            let path = match entry.kind {
                OciEntryKind::Directory => format!("{}/", entry.path),
                _ => entry.path.clone(),
            };
            header.set_path(&path).expect("path");
            header.set_mode(entry.mode);
            header.set_uid(0);
            header.set_gid(0);
            header.set_mtime(1);
            match &entry.kind {
                OciEntryKind::Directory => {
                    header.set_entry_type(::tar::EntryType::Directory);
                    header.set_size(0);
                }
                OciEntryKind::File(bytes) => {
                    header.set_entry_type(::tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                }
                OciEntryKind::Symlink(target) => {
                    header.set_entry_type(::tar::EntryType::Symlink);
                    header.set_size(0);
                    header.set_link_name(target).expect("link");
                }
            }
            header.set_cksum();
            let theirs = header.as_bytes();
            let differing: Vec<usize> = (0..BLOCK)
                .filter(|&index| ours[index] != theirs[index])
                .collect();
            assert!(
                differing.iter().any(|index| (148..156).contains(index)),
                "{}: the checksum fields agree: {differing:?}",
                entry.path
            );
            assert!(
                differing.iter().any(|index| (329..345).contains(index)),
                "{}: the device fields agree: {differing:?}",
                entry.path
            );
            if entry.path.len() > 100 {
                assert!(
                    differing.iter().any(|index| (345..500).contains(index)),
                    "{}: the prefix fields agree: {differing:?}",
                    entry.path
                );
            }
        }
    }

    #[test]
    fn long_paths_use_the_prefix() {
        let long = format!("{}/{}", "d".repeat(120), "f".repeat(90));
        assert_eq!(
            split_name(&long).expect("fits"),
            (&long[..120], &long[121..])
        );
        assert!(split_name(&"x".repeat(300)).is_err());
    }
}
