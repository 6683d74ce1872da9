//! `kiln.lock`'s file format: the repository's lock reads and writes back byte for byte, and a
//! malformed lock is refused naming the file, the line and what is wrong.

use kiln_image::lock::{Lock, LockChange};

fn repository_lock() -> String {
    kiln_testkit::lock_text()
}

#[test]
fn the_repositorys_lock_round_trips_byte_for_byte() {
    let text = repository_lock();
    let lock = Lock::parse(&text, "kiln.lock").expect("kiln.lock parses");
    assert_eq!(
        lock.render(),
        text,
        "kiln.lock is not as `cargo xtask lock` writes it"
    );
    assert!(
        lock.is_complete(),
        "every input of kiln.lock has a recorded build"
    );
    assert!(lock.base_os.packages.len() > 100);
    assert_eq!(lock.busybox.packages.len(), 1);
    let busybox = lock.busybox_source.as_ref().expect("[busybox-source]");
    assert_eq!(busybox.package, kiln_image::oci::BUSYBOX_SOURCE_PACKAGE);
    for name in kiln_image::toolchain::C_TOOLCHAIN_REQUEST {
        assert!(
            busybox.toolchain.iter().any(|package| package.name == name),
            "{name} is not in [busybox-source]'s toolchain"
        );
    }
    assert_eq!(
        busybox.binaries.keys().collect::<Vec<_>>(),
        ["busybox"],
        "[busybox-source.binaries]"
    );
    assert!(
        lock.kubernetes.toolchain.iter().all(|package| package
            .name
            .starts_with(kiln_image::kubernetes::TOOLCHAIN_PREFIX)),
        "{:?}",
        lock.kubernetes.toolchain
    );
}

/// `check(edit, expect)`: the repository's lock with `edit` applied is refused with a message
/// holding every piece of `expect`.
fn check(edit: impl Fn(String) -> String, expect: &[&str]) {
    let text = edit(repository_lock());
    let error = Lock::parse(&text, "kiln.lock")
        .expect_err("a malformed lock")
        .to_string();
    for piece in expect {
        assert!(error.contains(piece), "{piece:?} not in {error:?}");
    }
}

#[test]
fn malformed_locks_are_refused_naming_the_line() {
    // A package line with a field missing.
    check(
        |text| text.replacen("\"adduser 3.134 all ", "\"adduser 3.134 ", 1),
        &["kiln.lock:", "base-os.packages", "adduser 3.134"],
    );
    // A package listed twice.
    check(
        |text| {
            let line = text
                .lines()
                .find(|line| line.contains("\"adduser "))
                .expect("adduser is locked")
                .to_owned();
            text.replacen(&line, &format!("{line}\n{line}"), 1)
        },
        &["adduser is listed twice"],
    );
    // A content hash that is not a SHA-256.
    check(
        |text| text.replacen("content-hash = \"", "content-hash = \"zz", 1),
        &["content-hash", "is not a SHA-256"],
    );
    // A field kiln does not know.
    check(
        |text| text.replacen("[busybox]\n", "[busybox]\nmirror = \"x\"\n", 1),
        &["kiln.lock:", "mirror"],
    );
    // A format from the future.
    check(
        |text| text.replacen("version = 1\n", "version = 2\n", 1),
        &["lock format version 2"],
    );
}

#[test]
fn changes_are_listed_one_package_a_line() {
    let old = Lock::parse(&repository_lock(), "kiln.lock").expect("parses");
    let mut new = old.clone();
    new.base_os
        .packages
        .retain(|package| package.name != "adduser");
    new.busybox.packages[0].version = "1:9.9-1".to_owned();
    new.kubernetes.version = "1.20.5+really1.20.2-1.1+deb12u9".to_owned();
    let changes: Vec<String> = old
        .changes(&new)
        .iter()
        .map(LockChange::to_string)
        .collect();
    assert_eq!(
        changes,
        [
            format!(
                "busybox: busybox-static {} -> 1:9.9-1",
                old.busybox.packages[0].version
            ),
            format!(
                "kubernetes: kubernetes {} -> 1.20.5+really1.20.2-1.1+deb12u9",
                old.kubernetes.version
            ),
            "base-os: adduser 3.134 -> (removed)".to_owned(),
        ]
    );
}

/// A lock written before busybox's source was an input reads as having none (and writes back
/// without it); the resolution that adds it reports it new, and a moved toolchain package or
/// version is one line each.
#[test]
fn the_busybox_source_input_is_listed_when_it_comes_or_moves() {
    let full = Lock::parse(&repository_lock(), "kiln.lock").expect("parses");
    let mut without = full.clone();
    without.busybox_source = None;
    let text = without.render();
    assert!(!text.contains("busybox-source"), "{text}");
    let reread = Lock::parse(&text, "old.lock").expect("an older lock parses");
    assert_eq!(reread, without);
    assert!(reread.is_complete());

    let source = full.busybox_source.clone().expect("[busybox-source]");
    let added: Vec<String> = without
        .changes(&full)
        .iter()
        .map(LockChange::to_string)
        .collect();
    assert_eq!(added.len(), source.toolchain.len() + 1, "{added:?}");
    assert_eq!(
        added.last().expect("the version"),
        &format!("busybox-source: busybox (new) -> {}", source.version)
    );
    let gcc = &source
        .toolchain
        .iter()
        .find(|package| package.name == "gcc")
        .expect("gcc")
        .version;
    assert!(
        added.contains(&format!("busybox-source-toolchain: gcc (new) -> {gcc}")),
        "{added:?}"
    );

    let mut moved = full.clone();
    let moved_source = moved.busybox_source.as_mut().expect("[busybox-source]");
    moved_source.version = "1:9.9-1".to_owned();
    let make = moved_source
        .toolchain
        .iter_mut()
        .find(|package| package.name == "make")
        .expect("make");
    let old_make = make.version.clone();
    make.version = "9.9-1".to_owned();
    let changes: Vec<String> = full
        .changes(&moved)
        .iter()
        .map(LockChange::to_string)
        .collect();
    assert_eq!(
        changes,
        [
            format!("busybox-source-toolchain: make {old_make} -> 9.9-1"),
            format!("busybox-source: busybox {} -> 1:9.9-1", source.version),
        ]
    );
    let mut unbuilt = full;
    unbuilt
        .busybox_source
        .as_mut()
        .expect("source")
        .content_hash = None;
    assert!(!unbuilt.is_complete());
}
