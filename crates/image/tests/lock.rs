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
