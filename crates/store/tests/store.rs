//! Tests of `Store`: layout and permissions, building and looking up paths,
//! failure clean-up, fixed outputs, concurrent builders in one process,
//! records pending until a commit, and the `Digest` type's text forms.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Barrier, Mutex};

use kiln_store::{BuildFailure, Digest, DigestBuilder, Durability, Store, StoreError, tree_hash};

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path)
        .expect("stat")
        .permissions()
        .mode()
        & 0o7777
}

fn digest(label: &str) -> Digest {
    DigestBuilder::new("kiln-store-tests").str(label).finish()
}

fn open_temp() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open store");
    (dir, store)
}

#[test]
fn open_creates_a_private_root_with_bookkeeping_dirs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("nested/store");
    let store = Store::open(&root).expect("open");
    assert_eq!(store.root(), root);
    assert_eq!(mode(&root), 0o700);
    for sub in [".tmp", ".locks", ".meta", ".roots"] {
        assert!(root.join(sub).is_dir(), "{sub} exists");
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub} is private");
    }
    // Reopening an existing store makes it private again.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
    Store::open(&root).expect("reopen");
    assert_eq!(mode(&root), 0o700);
}

#[test]
fn build_seals_the_output_and_get_finds_it() {
    let (_dir, store) = open_temp();
    let id = digest("sealed");
    let path = store.path_of(&id, "sealed");
    assert_eq!(path, store.root().join(format!("{id}-sealed")));
    assert_eq!(store.get(&id, "sealed").expect("get"), None);

    let object = store
        .build(&id, "sealed", |out| -> std::io::Result<()> {
            assert!(out.starts_with(store.root().join(".tmp")), "{out:?}");
            assert_eq!(fs::read_dir(out)?.count(), 0, "the directory starts empty");
            fs::write(out.join("key.pem"), "secret")?;
            fs::set_permissions(out.join("key.pem"), fs::Permissions::from_mode(0o600))?;
            fs::create_dir(out.join("bin"))?;
            fs::write(out.join("bin/run"), "#!/bin/sh\n")?;
            fs::set_permissions(out.join("bin/run"), fs::Permissions::from_mode(0o755))?;
            Ok(())
        })
        .expect("build");
    assert_eq!(object.path, path);
    assert_eq!(object.digest, id);
    assert_eq!(object.name, "sealed");
    assert_eq!(object.content_hash, tree_hash(&path).expect("hash"));

    let modes: Vec<(&str, u32)> = ["", "key.pem", "bin", "bin/run"]
        .into_iter()
        .map(|relative| (relative, mode(&path.join(relative))))
        .collect();
    assert_eq!(
        modes,
        [
            ("", 0o555),
            ("key.pem", 0o400),
            ("bin", 0o555),
            ("bin/run", 0o555)
        ]
    );
    assert_eq!(
        fs::read_dir(store.root().join(".tmp"))
            .expect("read .tmp")
            .count(),
        0,
        "nothing is left in .tmp"
    );
    assert_eq!(store.get(&id, "sealed").expect("get"), Some(object.clone()));

    // A second build finds the path and does not run its builder.
    let again = store
        .build(&id, "sealed", |_| -> Result<(), String> {
            panic!("the builder must not run for a present path")
        })
        .expect("second build");
    assert_eq!(again, object);
}

#[test]
fn a_failed_build_leaves_nothing_behind() {
    let (_dir, store) = open_temp();
    let id = digest("failing");
    let failure = store
        .build(&id, "failing", |out| {
            fs::write(out.join("partial"), "half").expect("write");
            Err("compiler exploded")
        })
        .expect_err("the builder fails");
    assert!(matches!(
        failure,
        BuildFailure::Builder("compiler exploded")
    ));
    assert_eq!(failure.to_string(), "builder failed: compiler exploded");
    assert!(!store.path_of(&id, "failing").exists());
    assert_eq!(store.get(&id, "failing").expect("get"), None);
    assert_eq!(
        fs::read_dir(store.root().join(".tmp")).expect("ls").count(),
        0
    );

    // The same path can then be built successfully.
    let object = store
        .build(&id, "failing", |out| fs::write(out.join("whole"), "done"))
        .expect("build");
    assert_eq!(
        fs::read_to_string(object.path.join("whole")).expect("read"),
        "done"
    );
}

#[test]
fn fixed_output_builds_verify_their_content_hash() {
    let (dir, store) = open_temp();
    let reference = dir.path().join("reference");
    fs::create_dir(&reference).expect("mkdir");
    fs::write(reference.join("image"), "bytes").expect("write");
    let expected = tree_hash(&reference).expect("hash");

    let id = digest("fixed");
    // The wrong output has a subdirectory: it is sealed read-only while it is hashed, and
    // must still be removed whole.
    let wrong = store
        .build_fixed(&id, "image", &expected, |out| {
            fs::write(out.join("image"), "other bytes")?;
            fs::create_dir(out.join("sub"))?;
            fs::write(out.join("sub/extra"), "more")
        })
        .expect_err("wrong content");
    match wrong {
        BuildFailure::Store(StoreError::ContentHashMismatch {
            path,
            expected: reported,
            actual,
        }) => {
            assert_eq!(path, store.path_of(&id, "image"));
            assert_eq!(reported, expected);
            assert_ne!(actual, expected);
        }
        other => panic!("expected a content hash mismatch, got {other}"),
    }
    assert_eq!(store.get(&id, "image").expect("get"), None);
    assert_eq!(
        fs::read_dir(store.root().join(".tmp"))
            .expect("read .tmp")
            .count(),
        0,
        "a mismatching output leaves nothing in .tmp"
    );

    let object = store
        .build_fixed(&id, "image", &expected, |out| {
            fs::write(out.join("image"), "bytes")
        })
        .expect("right content");
    assert_eq!(object.content_hash, expected);

    // A present path whose content does not match the promise is reported too.
    let other_hash = Digest::of(b"something else");
    let error = store
        .build_fixed(&id, "image", &other_hash, |_| -> Result<(), String> {
            panic!("not run for a present path")
        })
        .expect_err("mismatch with the existing path");
    assert!(
        error
            .to_string()
            .contains(&format!("expected {other_hash}")),
        "{error}"
    );
}

/// The directory of this boot's pending records (the test machines run Linux).
fn pending_dir(store: &Store) -> std::path::PathBuf {
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("a boot id");
    store
        .root()
        .join(".meta")
        .join(format!("pending-{}", boot.trim()))
}

#[test]
fn a_path_without_a_record_is_built_again() {
    let (_dir, store) = open_temp();
    let id = digest("record");
    let built = store
        .build(&id, "record", |out| fs::write(out.join("f"), "x"))
        .expect("build");
    let pending = pending_dir(&store).join(format!("{id}-record"));
    // The hash in 43 characters of URL-safe base64 (short enough to live in the inode).
    let target = fs::read_link(&pending).expect("a pending record");
    assert_eq!(target.as_os_str().len(), 43, "{target:?}");
    // As if the build had been killed between its rename and its record: the path may be
    // torn, so it is not trusted.
    fs::remove_file(&pending).expect("remove record");
    assert_eq!(store.get(&id, "record").expect("get"), None);
    assert!(!built.path.exists(), "the untrusted path is removed");
    let runs = AtomicUsize::new(0);
    let rebuilt = store
        .build(&id, "record", |out| {
            runs.fetch_add(1, Ordering::SeqCst);
            fs::write(out.join("f"), "x")
        })
        .expect("build");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    assert_eq!(rebuilt.content_hash, built.content_hash);

    // An unusable record is no record.
    store.commit().expect("commit");
    let record = store.root().join(".meta").join(format!("{id}-record"));
    fs::remove_file(&record).expect("remove record");
    fs::write(&record, "garbage").expect("write");
    assert_eq!(store.get(&id, "record").expect("get"), None);
    assert!(!record.exists(), "removed with its path");
}

#[test]
fn records_are_pending_until_a_commit_and_trusted_only_in_their_boot() {
    let (_dir, store) = open_temp();
    let pending = pending_dir(&store);
    let (first, second) = (digest("first"), digest("second"));
    let built = store
        .build(&first, "first", |out| fs::write(out.join("f"), "1"))
        .expect("build");
    let committed = store.root().join(".meta").join(format!("{first}-first"));
    assert!(pending.join(format!("{first}-first")).is_symlink());
    assert!(!committed.is_symlink(), "not committed before a flush");
    // This boot trusts its own pending record: the page cache holds the path's data.
    assert_eq!(
        store.get(&first, "first").expect("get"),
        Some(built.clone())
    );

    assert_eq!(store.commit().expect("commit"), 1);
    assert!(committed.is_symlink());
    assert_eq!(fs::read_dir(&pending).expect("read").count(), 0);
    assert_eq!(store.commit().expect("commit"), 0, "nothing left to commit");

    // A record pending when the machine lost power belongs to another boot: its path may be
    // torn, so it is built again, while committed paths stay.
    let lost = store
        .build(&second, "second", |out| fs::write(out.join("f"), "2"))
        .expect("build");
    let other_boot = store
        .root()
        .join(".meta")
        .join("pending-00000000-0000-0000-0000-000000000000");
    fs::rename(&pending, &other_boot).expect("as if from another boot");
    assert_eq!(store.get(&second, "second").expect("get"), None);
    assert!(!lost.path.exists());
    assert_eq!(store.get(&first, "first").expect("get"), Some(built));
}

#[test]
fn dropping_the_last_clone_commits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let id = digest("dropped");
    {
        let store = Store::open(&root).expect("open");
        let clone = store.clone();
        clone
            .build(&id, "dropped", |out| fs::write(out.join("f"), "x"))
            .expect("build");
        drop(clone);
        assert!(
            !root
                .join(".meta")
                .join(format!("{id}-dropped"))
                .is_symlink()
        );
    }
    assert!(
        root.join(".meta")
            .join(format!("{id}-dropped"))
            .is_symlink()
    );
}

#[test]
fn a_store_without_durability_writes_records_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store =
        Store::open_with(&dir.path().join("store"), Durability::ProcessCrashOnly).expect("open");
    let id = digest("scratch");
    store
        .build(&id, "scratch", |out| fs::write(out.join("f"), "x"))
        .expect("build");
    assert!(
        store
            .root()
            .join(".meta")
            .join(format!("{id}-scratch"))
            .is_symlink()
    );
    assert_eq!(store.commit().expect("commit"), 0);
}

#[test]
fn remove_path_deletes_a_sealed_output() {
    let (_dir, store) = open_temp();
    let id = digest("removable");
    store
        .build(&id, "removable", |out| {
            fs::create_dir(out.join("dir"))?;
            fs::write(out.join("dir/file"), "x")
        })
        .expect("build");
    store.remove_path(&id, "removable").expect("remove");
    assert!(!store.path_of(&id, "removable").exists());
    assert_eq!(store.get(&id, "removable").expect("get"), None);
    // Removing an absent path is fine.
    store.remove_path(&id, "removable").expect("remove again");
    assert_eq!(
        fs::read_dir(store.root().join(".tmp")).expect("ls").count(),
        0
    );
}

#[test]
fn invalid_names_are_rejected_everywhere() {
    let (_dir, store) = open_temp();
    let id = digest("names");
    let error = store.get(&id, "../escape").expect_err("invalid");
    assert_eq!(
        error.to_string(),
        "invalid store name \"../escape\": it starts with '.' (names are 1 to 200 characters \
         from A-Z a-z 0-9 + - . _ ? = and do not start with '.')"
    );
    let failure = store
        .build(&id, "a/b", |_| -> Result<(), String> { panic!("not run") })
        .expect_err("invalid");
    assert!(
        matches!(&failure, BuildFailure::Store(StoreError::InvalidName { name, .. }) if name == "a/b")
    );
}

#[test]
fn concurrent_builders_in_threads_run_the_builder_once() {
    const THREADS: usize = 8;
    let (_dir, store) = open_temp();
    let id = digest("contended");
    let runs = AtomicUsize::new(0);
    let barrier = Barrier::new(THREADS);
    let hashes = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                barrier.wait();
                let object = store
                    .build(&id, "contended", |out| {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // Stay in the builder a while so the others queue on the lock.
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        fs::write(out.join("file"), "contents")
                    })
                    .expect("build");
                hashes.lock().expect("lock").push(object.content_hash);
            });
        }
    });
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    let hashes = hashes.into_inner().expect("lock");
    assert_eq!(hashes.len(), THREADS);
    assert!(hashes.iter().all(|hash| *hash == hashes[0]));
}

#[test]
fn digests_have_a_hex_text_form() {
    let id = Digest::of(b"kiln");
    let text = id.to_string();
    assert_eq!(text.len(), 64);
    assert_eq!(text, id.to_hex());
    assert_eq!(format!("{id:?}"), text);
    assert_eq!(text.parse::<Digest>().expect("parse"), id);
    assert_eq!(Digest::from_bytes(*id.as_bytes()), id);

    let json = serde_json::to_string(&id).expect("serialize");
    assert_eq!(json, format!("\"{text}\""));
    assert_eq!(
        serde_json::from_str::<Digest>(&json).expect("deserialize"),
        id
    );

    let cases = [
        (
            "abc",
            "invalid digest \"abc\": expected 64 hex digits, found 3 characters",
        ),
        (&text.to_uppercase(), "hex digits must be lowercase"),
        (
            &format!("{}zz", &text[..62]),
            "expected only the hex digits 0-9 and a-f",
        ),
    ];
    for (input, expected) in cases {
        let error = input.parse::<Digest>().expect_err("invalid");
        let message = error.to_string();
        assert!(message.contains(expected), "{message}");
        assert!(
            message.contains(input),
            "the error names the input: {message}"
        );
    }
    let error = serde_json::from_str::<Digest>("\"nope\"").expect_err("invalid");
    assert!(error.to_string().contains("\"nope\""), "{error}");
}

#[test]
fn digest_builder_fields_cannot_be_confused() {
    let encodings = [
        DigestBuilder::new("d").str("ab").str("c").finish(),
        DigestBuilder::new("d").str("a").str("bc").finish(),
        DigestBuilder::new("d").str("abc").finish(),
        DigestBuilder::new("d").bytes(b"abc").u64(0).finish(),
        DigestBuilder::new("e").str("abc").finish(),
        DigestBuilder::new("d").u64(1).finish(),
        DigestBuilder::new("d").digest(&Digest::of(b"")).finish(),
        DigestBuilder::new("d").finish(),
    ];
    for (i, a) in encodings.iter().enumerate() {
        for b in &encodings[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // Strings and byte strings with the same bytes are the same field.
    assert_eq!(
        DigestBuilder::new("d").str("abc").finish(),
        DigestBuilder::new("d").bytes(b"abc").finish()
    );
}

#[test]
fn durability_changes_flushing_not_results() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = digest("durability");
    let mut hashes = Vec::new();
    for durability in [Durability::Full, Durability::ProcessCrashOnly] {
        let store = Store::open_with(&dir.path().join(format!("{durability:?}")), durability)
            .expect("open");
        assert_eq!(store.durability(), durability);
        let object = store
            .build(&id, "durability", |out| {
                fs::create_dir(out.join("sub"))?;
                fs::write(out.join("sub/file"), "x")
            })
            .expect("build");
        assert_eq!(mode(&object.path.join("sub/file")) & 0o222, 0);
        hashes.push(object.content_hash);
    }
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(
        Store::open(dir.path()).expect("open").durability(),
        Durability::Full
    );
}
