//! Tests of `tree_hash` and `first_difference`: what a tree's identity
//! includes (names, types, contents, the executable bit) and what it ignores.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, SystemTime};

use kiln_store::{DifferenceKind, EntryType, first_difference, tree_hash, tree_hash_with_links};

/// Creates the reference tree, in either creation order.
fn reference_tree(root: &Path, reverse: bool) {
    let mut steps: Vec<fn(&Path)> = vec![
        |root| write(root, "a.txt", b"alpha", 0o644),
        |root| write(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o755),
        |root| write(root, "sub/dir/deep.txt", b"deep", 0o644),
        |root| write(root, "sub/b.txt", b"", 0o644),
        |root| symlink("a.txt", root.join("link")).expect("symlink"),
    ];
    if reverse {
        steps.reverse();
    }
    fs::create_dir_all(root).expect("create root");
    for step in steps {
        step(root);
    }
}

fn write(root: &Path, relative: &str, contents: &[u8], mode: u32) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("parent")).expect("create parent");
    fs::write(&path, contents).expect("write");
    chmod(&path, mode);
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Builds the reference tree and a variant of it, then checks that their
/// hashes are equal exactly when `expected` (the first difference) is `None`,
/// and that `first_difference` describes it as `expected`.
fn check(variant: impl Fn(&Path), expected: Option<&str>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    reference_tree(&first, false);
    reference_tree(&second, false);
    variant(&second);
    let same_hash = tree_hash(&first).expect("hash") == tree_hash(&second).expect("hash");
    let difference = first_difference(&first, &second).expect("compare");
    let description = difference.as_ref().map(|d| d.description());
    assert_eq!(description.as_deref(), expected);
    assert_eq!(
        same_hash,
        expected.is_none(),
        "hash equality for {expected:?}"
    );
}

#[test]
fn ignores_metadata_that_is_not_content() {
    check(|_| {}, None);
    check(
        |root| {
            let old = SystemTime::UNIX_EPOCH + Duration::from_secs(86_400);
            let file = fs::File::options()
                .write(true)
                .open(root.join("a.txt"))
                .expect("open");
            file.set_modified(old).expect("set mtime");
        },
        None,
    );
    check(|root| chmod(&root.join("a.txt"), 0o600), None);
    check(|root| chmod(&root.join("a.txt"), 0o444), None);
    check(|root| chmod(&root.join("bin/tool"), 0o700), None);
    check(|root| chmod(&root.join("sub"), 0o755), None);
    check(
        |root| {
            fs::remove_dir_all(root).expect("remove");
            reference_tree(root, true);
        },
        None,
    );
}

#[test]
fn changes_with_content_names_types_and_exec_bit() {
    check(
        |root| chmod(&root.join("a.txt"), 0o744),
        Some("a.txt: executable bit differs (first: clear, second: set)"),
    );
    check(
        |root| chmod(&root.join("bin/tool"), 0o644),
        Some("bin/tool: executable bit differs (first: set, second: clear)"),
    );
    check(
        |root| fs::write(root.join("a.txt"), "alphA").expect("write"),
        Some("a.txt: contents differ at byte 4 (sizes 5 and 5)"),
    );
    check(
        |root| fs::write(root.join("a.txt"), "alpha!").expect("write"),
        Some("a.txt: contents differ at byte 5 (sizes 5 and 6)"),
    );
    check(
        |root| fs::write(root.join("sub/dir/deep.txt"), "").expect("write"),
        Some("sub/dir/deep.txt: contents differ at byte 0 (sizes 4 and 0)"),
    );
    check(
        |root| fs::rename(root.join("a.txt"), root.join("A.txt")).expect("rename"),
        Some("A.txt: only in the second tree"),
    );
    check(
        |root| fs::remove_file(root.join("sub/b.txt")).expect("remove"),
        Some("sub/b.txt: only in the first tree"),
    );
    check(
        |root| fs::create_dir(root.join("sub/dir/empty")).expect("mkdir"),
        Some("sub/dir/empty: only in the second tree"),
    );
    check(
        |root| {
            fs::remove_file(root.join("sub/b.txt")).expect("remove");
            fs::create_dir(root.join("sub/b.txt")).expect("mkdir");
        },
        Some("sub/b.txt: a file in the first tree but a directory in the second"),
    );
    check(
        |root| {
            fs::remove_file(root.join("link")).expect("remove");
            symlink("sub/b.txt", root.join("link")).expect("symlink");
        },
        Some("link: symlink targets differ (a.txt and sub/b.txt)"),
    );
    check(
        |root| {
            fs::remove_file(root.join("link")).expect("remove");
            fs::write(root.join("link"), "alpha").expect("write");
        },
        Some("link: a symlink in the first tree but a file in the second"),
    );
}

#[test]
fn names_are_sorted_by_bytes_and_encoding_is_unambiguous() {
    // Moving bytes between a name and its contents must change the hash.
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second) = (dir.path().join("first"), dir.path().join("second"));
    fs::create_dir(&first).expect("mkdir");
    fs::create_dir(&second).expect("mkdir");
    fs::write(first.join("ab"), "c").expect("write");
    fs::write(second.join("a"), "bc").expect("write");
    assert_ne!(
        tree_hash(&first).expect("hash"),
        tree_hash(&second).expect("hash")
    );

    // Upper case sorts before lower case by bytes, whatever the locale.
    let sorted = dir.path().join("sorted");
    fs::create_dir(&sorted).expect("mkdir");
    fs::write(sorted.join("b"), "").expect("write");
    fs::write(sorted.join("B"), "").expect("write");
    let other = dir.path().join("other");
    fs::create_dir(&other).expect("mkdir");
    fs::write(other.join("b"), "").expect("write");
    let difference = first_difference(&sorted, &other)
        .expect("compare")
        .expect("they differ");
    assert_eq!(difference.path, Path::new("B"));
    assert_eq!(difference.kind, DifferenceKind::OnlyInFirst);
}

#[test]
fn hashes_single_files_and_large_files_by_streaming() {
    let dir = tempfile::tempdir().expect("tempdir");
    let small = dir.path().join("small");
    fs::write(&small, "x").expect("write");
    let other = dir.path().join("other-name");
    fs::write(&other, "x").expect("write");
    // A lone file's hash does not include its own name, only what is in it.
    assert_eq!(
        tree_hash(&small).expect("hash"),
        tree_hash(&other).expect("hash")
    );

    // Several buffers' worth of data, differing only in the very last byte.
    let mut contents = vec![7u8; 3 * 128 * 1024 + 17];
    let big = dir.path().join("big");
    fs::write(&big, &contents).expect("write");
    let last = contents.len() - 1;
    contents[last] = 8;
    let big_changed = dir.path().join("big-changed");
    fs::write(&big_changed, &contents).expect("write");
    assert_ne!(
        tree_hash(&big).expect("hash"),
        tree_hash(&big_changed).expect("hash")
    );
    let difference = first_difference(&big, &big_changed)
        .expect("compare")
        .expect("they differ");
    assert_eq!(
        difference.kind,
        DifferenceKind::Content {
            offset: last as u64,
            first_len: contents.len() as u64,
            second_len: contents.len() as u64,
        }
    );
    assert_eq!(
        first_difference(&small, &dir.path().join("sub-dir-missing")).map_err(|e| e.to_string()),
        Err(format!(
            "cannot inspect {}: No such file or directory (os error 2)",
            dir.path().join("sub-dir-missing").display()
        ))
    );
}

#[test]
fn rejects_special_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket_path).expect("bind");
    let error = tree_hash(dir.path()).expect_err("a socket cannot be hashed");
    assert!(
        error
            .to_string()
            .contains("only regular files, directories and symlinks"),
        "{error}"
    );
}

#[test]
fn entry_types_display_as_words() {
    let names: Vec<String> = [EntryType::File, EntryType::Directory, EntryType::Symlink]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["file", "directory", "symlink"]);
}

#[test]
fn links_can_be_hashed_as_something_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("tree");
    fs::create_dir_all(root.join("sub")).expect("mkdir");
    fs::write(root.join("sub/file"), "bytes").expect("write");
    symlink("../elsewhere/one", root.join("link")).expect("symlink");
    let plain = tree_hash(&root).expect("hash");
    // Handing back each target unchanged is tree_hash itself.
    let same = tree_hash_with_links(&root, &mut |_, target| {
        target.as_os_str().as_encoded_bytes().to_vec()
    })
    .expect("hash");
    assert_eq!(same, plain);
    // Another target text, another hash; the mapper sees the link's own path.
    let mut seen = Vec::new();
    let mapped = tree_hash_with_links(&root, &mut |link, _| {
        seen.push(link.to_owned());
        b"identity".to_vec()
    })
    .expect("hash");
    assert_ne!(mapped, plain);
    assert_eq!(seen, [root.join("link")]);
}
