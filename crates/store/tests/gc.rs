//! Tests of garbage collection: the store-wide lock between builds and a
//! collector, roots, the live closure through symlinks, removal, and what a
//! killed deletion leaves behind.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kiln_store::{
    Collector, Digest, DigestBuilder, Garbage, GarbageKind, Store, StoreError, StoreObject,
};

fn digest(label: &str) -> Digest {
    DigestBuilder::new("kiln-store-gc-tests")
        .str(label)
        .finish()
}

fn build(store: &Store, label: &str, f: impl FnOnce(&Path) -> std::io::Result<()>) -> StoreObject {
    store.build(&digest(label), label, f).expect("build")
}

fn write_file(out: &Path) -> std::io::Result<()> {
    fs::write(out.join("file"), "content")
}

/// The file names of every piece of garbage, with its kind.
fn names(garbage: &[Garbage]) -> Vec<(GarbageKind, String)> {
    garbage
        .iter()
        .map(|piece| {
            let name = piece.path.file_name().expect("a name").to_string_lossy();
            (piece.kind, name.into_owned())
        })
        .collect()
}

fn base(object: &StoreObject) -> String {
    object
        .path
        .file_name()
        .expect("a name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn a_collector_waits_for_open_stores_and_stores_wait_for_a_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let first = Store::open(&root).expect("open");
    // Builds share the lock: a second store opens while the first is open.
    let second = Store::open(&root).expect("open a second store");
    assert!(
        Collector::try_open(&root).expect("try").is_none(),
        "no collection while a store is open"
    );
    drop(first);
    assert!(Collector::try_open(&root).expect("try").is_none());
    drop(second);

    let collector = Collector::try_open(&root)
        .expect("try")
        .expect("a collection once every store is closed");
    assert!(
        Collector::try_open(&root).expect("try").is_none(),
        "one collection at a time"
    );
    let released = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let opener = scope.spawn(|| {
            let store = Store::open(&root).expect("open after the collection");
            assert!(
                released.load(Ordering::SeqCst),
                "a store opened while a collector held the lock"
            );
            drop(store);
        });
        std::thread::sleep(Duration::from_millis(200));
        released.store(true, Ordering::SeqCst);
        drop(collector);
        opener.join().expect("the opener finishes");
    });
}

#[test]
fn garbage_is_what_the_live_paths_do_not_reach_through_symlinks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    let layer = build(&store, "layer", write_file);
    let kernel = build(&store, "kernel", write_file);
    let unrelated = build(&store, "unrelated", write_file);
    let orphan_input = build(&store, "orphan-input", write_file);
    // An image links to its layer relatively (as node images do) and to its
    // kernel absolutely; an unreachable path's references do not count.
    let layer_link = format!("../../{}/file", base(&layer));
    let kernel_path = kernel.path.join("file");
    let image = build(&store, "image", |out| {
        fs::create_dir(out.join("disks"))?;
        symlink(&layer_link, out.join("disks/layer"))?;
        symlink(&kernel_path, out.join("kernel"))
    });
    let orphan_link = format!("../{}", base(&orphan_input));
    let orphan = build(&store, "orphan", |out| {
        symlink(&orphan_link, out.join("input"))
    });
    // Not store paths: never garbage.
    fs::write(root.join("README"), "not a store path").expect("write");
    drop(store);

    let collector = Collector::open(&root).expect("collector");
    let garbage = collector
        .garbage(&[image.path.join("kernel"), dir.path().join("elsewhere")])
        .expect("garbage");
    let mut expected = vec![
        (GarbageKind::Path, base(&orphan_input)),
        (GarbageKind::Path, base(&orphan)),
        (GarbageKind::Path, base(&unrelated)),
    ];
    expected.sort();
    let mut actual = names(&garbage);
    actual.sort();
    assert_eq!(actual, expected);
    assert!(garbage.iter().all(|piece| piece.bytes > 0), "{garbage:?}");

    for piece in &garbage {
        collector.remove(piece).expect("remove");
    }
    assert!(
        collector
            .garbage(std::slice::from_ref(&image.path))
            .expect("again")
            .is_empty()
    );
    let mut left: Vec<String> = collector.paths().expect("paths").iter().map(base).collect();
    left.sort();
    let mut kept = vec![base(&layer), base(&kernel), base(&image)];
    kept.sort();
    assert_eq!(left, kept);
    assert!(root.join("README").exists());
    // Removed paths' records and lock files go too.
    assert_eq!(collector.tidy().expect("tidy"), 0, "nothing else to tidy");
    for piece in &garbage {
        let name = piece.path.file_name().expect("name").to_string_lossy();
        assert!(!root.join(".meta").join(&*name).exists());
        assert!(!root.join(".locks").join(format!("{name}.lock")).exists());
    }
    drop(collector);

    // The store still works, and rebuilds a removed path.
    let store = Store::open(&root).expect("reopen");
    assert_eq!(
        store.get(&digest("unrelated"), "unrelated").expect("get"),
        None
    );
    let rebuilt = build(&store, "unrelated", write_file);
    assert_eq!(rebuilt.content_hash, unrelated.content_hash);
}

#[test]
fn a_killed_deletion_leaves_a_leftover_that_the_next_collection_removes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    let doomed = build(&store, "doomed", |out| {
        fs::create_dir(out.join("dir"))?;
        for index in 0..20 {
            fs::write(out.join(format!("dir/{index}")), "x")?;
        }
        Ok(())
    });
    let killed_build = root.join(".tmp").join("killed-build");
    fs::create_dir(&killed_build).expect("a killed build's directory");
    fs::write(killed_build.join("half"), "half written").expect("write");
    drop(store);

    // Exactly what `Collector::remove` does before it deletes, then a kill
    // halfway through the deletion: the record gone, the path renamed into
    // `.tmp/` whole, some of its files deleted.
    let name = base(&doomed);
    fs::remove_file(root.join(".meta").join(&name)).expect("remove the record");
    let moved = root.join(".tmp").join(format!("{name}.removing-1-0"));
    fs::rename(&doomed.path, &moved).expect("move away");
    make_writable(&moved);
    for index in 0..10 {
        fs::remove_file(moved.join(format!("dir/{index}"))).expect("delete some");
    }

    let store = Store::open(&root).expect("reopen");
    assert_eq!(
        store.get(&doomed.digest, &doomed.name).expect("get"),
        None,
        "a half-deleted path is never found"
    );
    drop(store);

    let collector = Collector::open(&root).expect("collector");
    let garbage = collector.garbage(&[]).expect("garbage");
    assert_eq!(
        names(&garbage),
        [
            (GarbageKind::Leftover, format!("{name}.removing-1-0")),
            (GarbageKind::Leftover, "killed-build".to_owned()),
        ]
    );
    for piece in &garbage {
        collector.remove(piece).expect("remove");
    }
    assert_eq!(fs::read_dir(root.join(".tmp")).expect("ls").count(), 0);
    // Builds leave no lock file of their own: the store-wide lock and the one file whose
    // bytes are the paths' locks.
    assert_eq!(collector.tidy().expect("tidy"), 0);
    let mut locks: Vec<_> = fs::read_dir(root.join(".locks"))
        .expect("ls")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    locks.sort();
    assert_eq!(locks, ["paths.lock", "store.lock"]);
}

#[test]
fn tidying_removes_the_lock_files_of_single_paths_that_older_stores_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    let kept = build(&store, "kept", write_file);
    drop(store);
    // As an older kiln left them: one per path built, present or not.
    let legacy = [
        root.join(".locks").join(format!("{}.lock", base(&kept))),
        root.join(".locks")
            .join(format!("{}-gone.lock", digest("gone").to_hex())),
    ];
    for file in &legacy {
        fs::write(file, "").expect("a legacy lock file");
    }
    let collector = Collector::open(&root).expect("collector");
    assert_eq!(collector.tidy().expect("tidy"), 2);
    assert!(legacy.iter().all(|file| !file.exists()));
    assert!(root.join(".locks/store.lock").exists());
    drop(collector);
    let store = Store::open(&root).expect("reopen");
    assert_eq!(store.get(&kept.digest, "kept").expect("get"), Some(kept));
}

fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    for entry in [path.to_path_buf(), path.join("dir")] {
        fs::set_permissions(&entry, fs::Permissions::from_mode(0o700)).expect("chmod");
    }
}

#[test]
fn roots_are_registered_once_per_directory_and_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    fs::create_dir(dir.path().join("work")).expect("mkdir");
    // The same directory spelled three ways, and one more.
    let link = store
        .add_root(&dir.path().join("work/result"))
        .expect("add");
    assert_eq!(
        store
            .add_root(&dir.path().join("work/../work/result"))
            .expect("add again"),
        link
    );
    symlink(dir.path().join("work"), dir.path().join("alias")).expect("symlink");
    assert_eq!(
        store
            .add_root(&dir.path().join("alias/result"))
            .expect("add through a symlink"),
        link
    );
    store
        .add_root(&dir.path().join("work/other"))
        .expect("another");
    drop(store);

    let collector = Collector::open(&root).expect("collector");
    let roots = collector.roots().expect("roots");
    let canonical = fs::canonicalize(dir.path().join("work")).expect("canonical");
    let mut targets: Vec<PathBuf> = roots.iter().map(|root| root.target.clone()).collect();
    targets.sort();
    assert_eq!(targets, [canonical.join("other"), canonical.join("result")]);
    let result = roots
        .iter()
        .find(|root| root.link == link)
        .expect("the result's root");
    collector.remove_root(result).expect("remove root");
    assert_eq!(collector.roots().expect("roots").len(), 1);
}

#[test]
fn contains_sees_the_store_however_it_is_spelled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let store = Store::open(&root).expect("open");
    let object = build(&store, "thing", write_file);
    drop(store);
    symlink(&root, dir.path().join("alias")).expect("symlink");
    let collector = Collector::open(&root).expect("collector");
    let name = base(&object);
    assert!(collector.contains(&object.path));
    assert!(collector.contains(&object.path.join("file")));
    assert!(collector.contains(&dir.path().join("alias").join(&name)));
    assert!(collector.contains(&root.join("x/..").join(&name)));
    assert!(!collector.contains(&root.join(".meta").join(&name)));
    assert!(!collector.contains(&root.join(format!("{}-missing", digest("missing")))));
    assert!(!collector.contains(&dir.path().join(&name)));
}

#[test]
fn remove_refuses_anything_outside_the_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let outside = dir.path().join(format!("{}-precious", digest("precious")));
    fs::create_dir(&outside).expect("mkdir");
    let collector = Collector::open(&root).expect("collector");
    for (kind, path) in [
        (GarbageKind::Path, outside.clone()),
        (GarbageKind::Leftover, outside.clone()),
        (GarbageKind::Path, root.join(".meta")),
    ] {
        let error = collector
            .remove(&Garbage {
                kind,
                path: path.clone(),
                bytes: 0,
            })
            .expect_err("refused");
        assert!(
            matches!(error, StoreError::NotInStore { .. }),
            "{path:?}: {error}"
        );
    }
    assert!(outside.exists() && root.join(".meta").exists());
}

#[test]
fn tidying_drops_another_boots_pending_records_and_the_paths_they_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().join("store");
    let meta = root.join(".meta");
    let boot = fs::read_to_string("/proc/sys/kernel/random/boot_id").expect("a boot id");
    let (kept, torn) = {
        let store = Store::open(&root).expect("open");
        let kept = build(&store, "kept", write_file);
        store.commit().expect("commit");
        let torn = build(&store, "torn", write_file);
        // As if the machine lost power before a commit covered `torn`: its record is left in
        // the directory of a boot that is over.
        fs::rename(
            meta.join(format!("pending-{}", boot.trim())),
            meta.join("pending-00000000-0000-0000-0000-000000000000"),
        )
        .expect("rename");
        (kept, torn)
    };
    let collector = Collector::open(&root).expect("collector");
    // The record and its directory.
    assert_eq!(collector.tidy().expect("tidy"), 2);
    assert!(
        !torn.path.exists(),
        "a path no committed record vouches for"
    );
    assert!(kept.path.exists());
    let left: Vec<String> = fs::read_dir(&meta)
        .expect("read")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(left, [base(&kept)]);
}
