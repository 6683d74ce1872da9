//! `write_cpio` checked by Debian's GNU cpio: the listing (`cpio -itv`) and an extraction as
//! root (`cpio -idm`) show every name, mode, link target, device number, time and byte as
//! written, and the same entries always give the same archive.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_image::os::cpio::{CpioEntry, write_cpio};

/// 2026-01-01T00:00:00Z, which `cpio -itv` shows as `Jan  1  2026` in UTC.
const MTIME: u32 = 1_767_225_600;

fn cpio() -> PathBuf {
    let path = Path::new("/usr/bin/cpio");
    assert!(
        path.is_file(),
        "`cpio` is not installed; this test checks write_cpio's archives with it. \
         Install the Debian package: apt-get install -y cpio (cargo xtask test does)"
    );
    path.to_owned()
}

/// Bytes that are not all alike, of a length that needs padding.
fn pattern(length: usize) -> Vec<u8> {
    (0..length)
        .map(|index| u8::try_from((index * 7 + index / 251) % 256).expect("a byte"))
        .collect()
}

fn entries() -> Vec<CpioEntry> {
    let directory = |path: &str, mode| CpioEntry::Directory {
        path: path.into(),
        mode,
    };
    let file = |path: &str, mode, data: Vec<u8>| CpioEntry::File {
        path: path.into(),
        mode,
        data,
    };
    vec![
        directory("bin", 0o755),
        file("bin/busybox", 0o755, pattern(100_003)),
        CpioEntry::Symlink {
            path: "bin/sh".into(),
            target: "busybox".into(),
        },
        directory("dev", 0o755),
        CpioEntry::CharDevice {
            path: "dev/console".into(),
            mode: 0o600,
            major: 5,
            minor: 1,
        },
        CpioEntry::CharDevice {
            path: "dev/null".into(),
            mode: 0o666,
            major: 1,
            minor: 3,
        },
        // A device number past 8 bits each, to see both halves survive.
        CpioEntry::CharDevice {
            path: "dev/big".into(),
            mode: 0o640,
            major: 300,
            minor: 70_000,
        },
        directory("etc", 0o755),
        file("etc/empty", 0o644, Vec::new()),
        file("etc/one", 0o644, b"1".to_vec()),
        file("etc/two", 0o640, b"22".to_vec()),
        file("etc/three", 0o600, b"333".to_vec()),
        directory("etc/private", 0o700),
        file("etc/private/key", 0o400, b"-----BEGIN KEY-----\n".to_vec()),
        CpioEntry::Symlink {
            path: "etc/absolute".into(),
            target: "/etc/one".into(),
        },
        file("init", 0o755, b"#!/bin/sh\nexec /bin/sh\n".to_vec()),
        directory("tmp", 0o1777),
    ]
}

fn archive(entries: &[CpioEntry]) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_cpio(&mut bytes, entries, MTIME).expect("write the archive");
    bytes
}

/// Runs cpio with `args` in `dir`, the archive on its standard input; returns standard output.
fn run_cpio(dir: &Path, args: &[&str], archive: &[u8]) -> String {
    let mut child = Command::new(cpio())
        .args(args)
        .current_dir(dir)
        .env("TZ", "UTC")
        .env("LC_ALL", "C")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cpio starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(archive)
        .expect("feed cpio");
    let output = child.wait_with_output().expect("cpio finishes");
    assert!(
        output.status.success(),
        "cpio {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 listing")
}

/// `ls -l`'s mode string of an entry.
fn mode_string(kind: char, mode: u32) -> String {
    let mut text = String::from(kind);
    for (shift, special, special_char) in [(6, 0o4000, 's'), (3, 0o2000, 's'), (0, 0o1000, 't')] {
        let bits = (mode >> shift) & 7;
        text.push(if bits & 4 != 0 { 'r' } else { '-' });
        text.push(if bits & 2 != 0 { 'w' } else { '-' });
        let execute = bits & 1 != 0;
        text.push(match (mode & special != 0, execute) {
            (true, true) => special_char,
            (true, false) => special_char.to_ascii_uppercase(),
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    text
}

/// What `cpio -itv` should print for an entry, split into words.
fn expected_listing(entry: &CpioEntry) -> Vec<String> {
    let date = ["Jan", "1", "2026"].map(str::to_owned);
    let words: Vec<String> = match entry {
        CpioEntry::Directory { path, mode } => vec![
            mode_string('d', *mode),
            "2".into(),
            "root".into(),
            "root".into(),
            "0".into(),
        ]
        .into_iter()
        .chain(date)
        .chain([path.clone()])
        .collect(),
        CpioEntry::File { path, mode, data } => vec![
            mode_string('-', *mode),
            "1".into(),
            "root".into(),
            "root".into(),
            data.len().to_string(),
        ]
        .into_iter()
        .chain(date)
        .chain([path.clone()])
        .collect(),
        CpioEntry::CharDevice {
            path,
            mode,
            major,
            minor,
        } => vec![
            mode_string('c', *mode),
            "1".into(),
            "root".into(),
            "root".into(),
            format!("{major},"),
            minor.to_string(),
        ]
        .into_iter()
        .chain(date)
        .chain([path.clone()])
        .collect(),
        CpioEntry::Symlink { path, target } => vec![
            "lrwxrwxrwx".into(),
            "1".into(),
            "root".into(),
            "root".into(),
            target.len().to_string(),
        ]
        .into_iter()
        .chain(date)
        .chain([path.clone(), "->".into(), target.clone()])
        .collect(),
    };
    words
}

#[test]
fn cpio_lists_every_entry_as_written() {
    let entries = entries();
    let listing = run_cpio(Path::new("/"), &["-itv", "--quiet"], &archive(&entries));
    let lines: Vec<Vec<String>> = listing
        .lines()
        .map(|line| line.split_whitespace().map(str::to_owned).collect())
        .collect();
    let expected: Vec<Vec<String>> = entries.iter().map(expected_listing).collect();
    assert_eq!(lines, expected, "cpio -itv printed:\n{listing}");
}

/// Linux's encoding of `st_rdev` (glibc's `major` and `minor`).
fn major_minor(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
}

#[test]
fn cpio_extracts_every_entry_as_written() {
    let entries = entries();
    let scratch = tempfile::tempdir().expect("tempdir");
    run_cpio(
        scratch.path(),
        &["-idm", "--quiet", "--no-absolute-filenames"],
        &archive(&entries),
    );
    let root = scratch.path();
    for entry in &entries {
        match entry {
            CpioEntry::Directory { path, mode } => {
                let meta = fs::symlink_metadata(root.join(path)).expect("extracted");
                assert!(meta.is_dir(), "{path} is not a directory");
                assert_eq!(meta.permissions().mode() & 0o7777, *mode, "mode of {path}");
                assert_eq!((meta.uid(), meta.gid()), (0, 0), "owner of {path}");
            }
            CpioEntry::File { path, mode, data } => {
                let meta = fs::symlink_metadata(root.join(path)).expect("extracted");
                assert!(meta.is_file(), "{path} is not a file");
                assert_eq!(meta.permissions().mode() & 0o7777, *mode, "mode of {path}");
                assert_eq!((meta.uid(), meta.gid()), (0, 0), "owner of {path}");
                assert_eq!(meta.mtime(), i64::from(MTIME), "mtime of {path}");
                assert!(
                    fs::read(root.join(path)).expect("readable") == *data,
                    "bytes of {path}"
                );
            }
            CpioEntry::CharDevice {
                path,
                mode,
                major,
                minor,
            } => {
                let meta = fs::symlink_metadata(root.join(path)).expect("extracted");
                assert!(
                    meta.file_type().is_char_device(),
                    "{path} is not a character device"
                );
                assert_eq!(meta.permissions().mode() & 0o7777, *mode, "mode of {path}");
                assert_eq!(
                    major_minor(meta.rdev()),
                    (u64::from(*major), u64::from(*minor)),
                    "device numbers of {path}"
                );
            }
            CpioEntry::Symlink { path, target } => {
                let link = fs::read_link(root.join(path)).expect("a symbolic link");
                assert_eq!(link, Path::new(target), "target of {path}");
            }
        }
    }
    // Nothing else was extracted.
    let mut found = BTreeMap::new();
    walk(root, root, &mut found);
    let written: BTreeMap<String, ()> = entries
        .iter()
        .map(|entry| {
            let path = match entry {
                CpioEntry::Directory { path, .. }
                | CpioEntry::File { path, .. }
                | CpioEntry::CharDevice { path, .. }
                | CpioEntry::Symlink { path, .. } => path.clone(),
            };
            (path, ())
        })
        .collect();
    assert_eq!(found, written);
}

fn walk(root: &Path, dir: &Path, found: &mut BTreeMap<String, ()>) {
    for entry in fs::read_dir(dir).expect("readable") {
        let path = entry.expect("an entry").path();
        let relative = path.strip_prefix(root).expect("below the root");
        found.insert(relative.display().to_string(), ());
        if fs::symlink_metadata(&path).expect("stat").is_dir() {
            walk(root, &path, found);
        }
    }
}

#[test]
fn the_same_entries_give_the_same_bytes() {
    let first = archive(&entries());
    let second = archive(&entries());
    assert!(first == second, "two archives of the same entries differ");
    assert_eq!(first.len() % 4, 0);
    assert!(
        first.windows(10).any(|window| window == b"TRAILER!!!"),
        "no trailer"
    );
    // A different time is a different archive: the time really is in the header.
    let mut later = Vec::new();
    write_cpio(&mut later, &entries(), MTIME + 1).expect("write");
    assert!(first != later);
}

#[test]
fn an_absolute_or_empty_path_is_refused() {
    for path in ["/etc/passwd", ""] {
        let entry = CpioEntry::File {
            path: path.into(),
            mode: 0o644,
            data: Vec::new(),
        };
        let error = write_cpio(&mut Vec::new(), &[entry], MTIME).expect_err("refused");
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{path:?}");
    }
}
