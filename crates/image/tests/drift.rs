//! A moving archive, for real: an apt repository of the test's own (packages built with
//! `dpkg-deb`, indexed with `apt-ftparchive`, read by the real apt through a `file:` source)
//! holds busybox-static at version 1; a lock is made of it and a build recorded; then version 1
//! is replaced by version 2, as Debian replaces a package on a security update. The default
//! resolution builds version 2 and names the move; `Policy::Locked` refuses, naming the
//! package; a second source that still holds version 1 (the stand-in for a snapshot archive)
//! makes the locked build succeed again, bit for bit the first build, in another store. The
//! Kubernetes source package (a `.dsc` built with `dpkg-source`) and its Go toolchain move the
//! same way.

use std::path::{Path, PathBuf};
use std::process::Command;

use kiln_graph::{Addressing, DrvId, EvalOptions, Graph, NullObserver};
use kiln_image::{
    ImageError,
    lock::{Lock, PackageSetLock},
    oci::busybox_static,
    resolve::{AptSources, Indices, Policy, Requests, Resolver, resolve},
};
use kiln_store::Store;

const PACKAGE: &str = "busybox-static";

/// Builds `busybox-static_<version>_amd64.deb` into `repo`: a `bin/busybox` that lists two
/// applets and says which version it is, so the builds of two versions differ.
fn build_deb(repo: &Path, version: &str) {
    build_deb_named(repo, PACKAGE, version);
}

/// Builds `<name>_<version>_amd64.deb` into `repo`, holding such a `bin/busybox`.
fn build_deb_named(repo: &Path, name: &str, version: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let tree = root.path().join("pkg");
    std::fs::create_dir_all(tree.join("DEBIAN")).expect("mkdir");
    std::fs::create_dir_all(tree.join("bin")).expect("mkdir");
    std::fs::write(
        tree.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: {version}\nArchitecture: amd64\nMaintainer: kiln tests <tests@kiln.invalid>\nDescription: a stand-in busybox\n"
        ),
    )
    .expect("write control");
    let busybox = tree.join("bin/busybox");
    std::fs::write(
        &busybox,
        format!("#!/bin/sh\n# version {version}\n[ \"$1\" = --list ] && printf 'sh\\nls\\n'\n"),
    )
    .expect("write busybox");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&busybox, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let deb = repo.join(format!("{name}_{}_amd64.deb", version.replace(':', "%3a")));
    kiln_testkit::run(
        Command::new(kiln_testkit::tool("dpkg-deb", "dpkg"))
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&deb),
    );
}

/// Writes the flat repository's `Packages` and `Release` for what `repo` holds now.
fn index(repo: &Path) {
    let ftparchive = kiln_testkit::tool("apt-ftparchive", "apt-utils");
    let packages = kiln_testkit::run(
        Command::new(&ftparchive)
            .current_dir(repo)
            .args(["packages", "."]),
    );
    std::fs::write(repo.join("Packages"), &packages.stdout).expect("write Packages");
    let release = kiln_testkit::run(
        Command::new(&ftparchive)
            .current_dir(repo)
            .args(["release", "."]),
    );
    std::fs::write(repo.join("Release"), &release.stdout).expect("write Release");
}

/// A flat repository holding `versions` of the package.
fn repository(dir: &Path, versions: &[&str]) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    for version in versions {
        build_deb(dir, version);
    }
    index(dir);
    dir.to_owned()
}

fn source(repo: &Path) -> String {
    format!("deb [trusted=yes] file:{} ./", repo.display())
}

/// Only busybox: the base OS needs a real Debian archive.
fn requests() -> Requests {
    Requests {
        busybox: vec![PACKAGE.to_owned()],
        base_os: Vec::new(),
        kubernetes_toolchain: Vec::new(),
        busybox_toolchain: Vec::new(),
    }
}

fn empty_lock() -> Lock {
    // The repository's lock gives the shape; its busybox and base OS are replaced.
    let mut lock = Lock::parse(&kiln_testkit::lock_text(), "kiln.lock").expect("kiln.lock");
    lock.busybox = PackageSetLock::default();
    lock.base_os = PackageSetLock::default();
    lock
}

fn resolve_with(
    sources: &AptSources,
    lock: &Lock,
    policy: Policy,
) -> Result<kiln_image::resolve::Resolution, ImageError> {
    let resolver = Resolver::new(sources, Indices::Binary)?;
    resolve(&resolver, lock, &requests(), policy, false)
}

/// Builds busybox as `set` pins it from `sources` into `store`: its path and content hash.
fn build(
    set: &PackageSetLock,
    sources: &AptSources,
    store: &Path,
) -> (PathBuf, kiln_store::Digest, Addressing) {
    let derivation = busybox_static(set, sources).expect("describe busybox");
    let addressing = derivation.addressing;
    let mut graph = Graph::new();
    graph.add("busybox", derivation).expect("add");
    let graph = graph.validate().expect("validate");
    let store = Store::open(store).expect("store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("build busybox");
    let output = &evaluation.outputs[&DrvId::new("busybox")];
    (output.path.clone(), output.content_hash, addressing)
}

#[test]
fn a_moved_archive_is_built_and_reported_locked_refuses_and_a_snapshot_restores() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let archive = repository(&scratch.path().join("archive"), &["1.0-1"]);
    let sources = AptSources::from_lines(&[source(&archive)]);

    // Lock what the archive has, and record a build of it (what `cargo xtask lock` does).
    let first = resolve_with(&sources, &empty_lock(), Policy::Latest).expect("resolve");
    assert_eq!(first.lock.busybox.versions()[PACKAGE], "1.0-1");
    assert_eq!(first.lock.busybox.content_hash, None);
    let (first_path, first_hash, addressing) =
        build(&first.lock.busybox, &sources, &scratch.path().join("store"));
    assert_eq!(
        addressing,
        Addressing::Inputs,
        "no content hash recorded yet"
    );
    assert_eq!(
        std::fs::read_to_string(first_path.join("VERSION")).expect("VERSION"),
        "1.0-1\n"
    );
    let mut locked = first.lock.clone();
    locked.busybox.content_hash = Some(first_hash);
    // The lock goes through its file format, as it would through kiln.lock.
    let locked = Lock::parse(&locked.render(), "kiln.lock").expect("the rendered lock parses");

    // Nothing moved: the lock resolves to itself, a fixed-output derivation.
    let same = resolve_with(&sources, &locked, Policy::Locked).expect("nothing moved");
    assert!(same.changes.is_empty(), "{:?}", same.changes);
    assert_eq!(same.lock, locked);

    // Debian publishes version 2 and drops version 1; a snapshot archive keeps its bytes.
    let snapshot = scratch.path().join("snapshot");
    std::fs::create_dir_all(&snapshot).expect("mkdir");
    let version_1 = format!("{PACKAGE}_1.0-1_amd64.deb");
    std::fs::rename(archive.join(&version_1), snapshot.join(&version_1)).expect("mv");
    index(&snapshot);
    build_deb(&archive, "1.0-2");
    index(&archive);

    // The default build goes on with version 2, names the move, and records version 2.
    let moved = resolve_with(&sources, &locked, Policy::PreferLocked).expect("resolve");
    let changes: Vec<String> = moved.changes.iter().map(ToString::to_string).collect();
    assert_eq!(changes, [format!("busybox: {PACKAGE} 1.0-1 -> 1.0-2")]);
    assert_eq!(moved.lock.busybox.versions()[PACKAGE], "1.0-2");
    assert_eq!(
        moved.lock.busybox.content_hash, None,
        "a new set has no pin yet"
    );
    let (moved_path, moved_hash, addressing) =
        build(&moved.lock.busybox, &sources, &scratch.path().join("store"));
    assert_eq!(addressing, Addressing::Inputs);
    assert_ne!(moved_path, first_path);
    assert_ne!(moved_hash, first_hash);
    assert_eq!(
        std::fs::read_to_string(moved_path.join("VERSION")).expect("VERSION"),
        "1.0-2\n"
    );

    // --locked refuses, naming the package and both versions.
    let refused = resolve_with(&sources, &locked, Policy::Locked).expect_err("drift");
    let message = refused.to_string();
    assert!(matches!(refused, ImageError::Drift { .. }), "{message}");
    assert!(
        message.contains(&format!("{PACKAGE} 1.0-1 -> 1.0-2")),
        "{message}"
    );

    // A snapshot of the old archive, beside the moved one: the locked build succeeds, in a
    // fresh store (another machine), with the first build's bytes.
    let both = AptSources::from_lines(&[source(&archive), source(&snapshot)]);
    let restored = resolve_with(&both, &locked, Policy::Locked).expect("the snapshot has 1.0-1");
    assert!(restored.changes.is_empty(), "{:?}", restored.changes);
    assert_eq!(restored.lock, locked);
    let (restored_path, restored_hash, addressing) = build(
        &restored.lock.busybox,
        &both,
        &scratch.path().join("other-store"),
    );
    assert_eq!(
        addressing,
        Addressing::Fixed {
            content_hash: first_hash
        }
    );
    assert_eq!(restored_hash, first_hash);
    assert_eq!(
        kiln_store::first_difference(&first_path, &restored_path).expect("compare"),
        None
    );
}

#[test]
fn a_locked_deb_whose_bytes_changed_is_refused() {
    // The same version rebuilt with other bytes is a different input, never silently taken.
    let scratch = tempfile::tempdir().expect("tempdir");
    let archive = repository(&scratch.path().join("archive"), &["1.0-1"]);
    let sources = AptSources::from_lines(&[source(&archive)]);
    let mut lock = resolve_with(&sources, &empty_lock(), Policy::Latest)
        .expect("resolve")
        .lock;
    lock.busybox.packages[0].sha256 = "00".repeat(32);
    let error = build_error(&lock.busybox, &sources, &scratch.path().join("store"));
    assert!(error.contains("SHA-256"), "{error}");
    assert!(error.contains(&"00".repeat(32)), "{error}");
}

fn build_error(set: &PackageSetLock, sources: &AptSources, store: &Path) -> String {
    let mut graph = Graph::new();
    graph
        .add("busybox", busybox_static(set, sources).expect("describe"))
        .expect("add");
    let graph = graph.validate().expect("validate");
    let store = Store::open(store).expect("store");
    match graph.evaluate(&store, &EvalOptions::default(), &NullObserver) {
        Ok(_) => panic!("the build should fail"),
        Err(error) => format!("{error:?} {error}"),
    }
}

/// Builds source package `kubernetes` at `version` (a native one: a `.dsc` and a tarball) into
/// `repo`.
fn build_source(repo: &Path, version: &str) {
    let root = tempfile::tempdir().expect("tempdir");
    let tree = root.path().join(format!("kubernetes-{version}"));
    std::fs::create_dir_all(tree.join("debian/source")).expect("mkdir");
    std::fs::write(tree.join("debian/source/format"), "3.0 (native)\n").expect("write");
    std::fs::write(
        tree.join("debian/control"),
        "Source: kubernetes\nMaintainer: kiln tests <tests@kiln.invalid>\n\nPackage: kubernetes-stand-in\nArchitecture: all\nDescription: a stand-in\n",
    )
    .expect("write");
    std::fs::write(
        tree.join("debian/changelog"),
        format!(
            "kubernetes ({version}) bookworm; urgency=medium\n\n  * A stand-in.\n\n -- kiln tests <tests@kiln.invalid>  Sun, 08 Jun 2025 23:40:27 +0100\n"
        ),
    )
    .expect("write");
    std::fs::write(
        tree.join("debian/rules"),
        "#!/usr/bin/make -f\n%:\n\tdh $@\n",
    )
    .expect("write");
    kiln_testkit::run(
        Command::new(kiln_testkit::tool("dpkg-source", "dpkg-dev"))
            .current_dir(root.path())
            .arg("-b")
            .arg(format!("kubernetes-{version}")),
    );
    for entry in std::fs::read_dir(root.path()).expect("ls") {
        let path = entry.expect("entry").path();
        if path.is_file() {
            std::fs::copy(&path, repo.join(path.file_name().expect("a name"))).expect("copy");
        }
    }
    let sources = kiln_testkit::run(
        Command::new(kiln_testkit::tool("apt-ftparchive", "apt-utils"))
            .current_dir(repo)
            .args(["sources", "."]),
    );
    std::fs::write(repo.join("Sources"), &sources.stdout).expect("write Sources");
}

/// Removes every file of `repo` whose name starts with `prefix`.
fn remove(repo: &Path, prefix: &str) {
    for entry in std::fs::read_dir(repo).expect("ls") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(prefix))
        {
            std::fs::remove_file(&path).expect("rm");
        }
    }
}

#[test]
fn a_moved_kubernetes_source_or_go_toolchain_is_a_moved_input() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let archive = scratch.path().join("archive");
    std::fs::create_dir_all(&archive).expect("mkdir");
    build_source(&archive, "1.0");
    build_deb_named(&archive, "golang-go", "2:1.19~1");
    index(&archive);
    let sources = AptSources::from_lines(&[source(&archive)]);
    let requests = Requests {
        busybox: Vec::new(),
        base_os: Vec::new(),
        kubernetes_toolchain: vec!["golang-go".to_owned()],
        busybox_toolchain: Vec::new(),
    };
    let resolve_source = |lock: &Lock, policy: Policy| {
        let resolver = Resolver::new(&sources, Indices::BinaryAndSource)?;
        resolve(&resolver, lock, &requests, policy, true)
    };

    // The lock as `cargo xtask lock` would write it, with a recorded build.
    let mut lock = empty_lock();
    lock.kubernetes.version = "1.0".to_owned();
    lock.kubernetes.toolchain.clear();
    let mut lock = resolve_source(&lock, Policy::Latest).expect("resolve").lock;
    assert_eq!(lock.kubernetes.version, "1.0");
    assert_eq!(
        lock.kubernetes.toolchain.len(),
        1,
        "{:?}",
        lock.kubernetes.toolchain
    );
    lock.kubernetes.content_hash = Some(kiln_store::Digest::of(b"a recorded build"));
    let same = resolve_source(&lock, Policy::Locked).expect("nothing moved");
    assert_eq!(same.lock, lock);

    // The source package moves on.
    remove(&archive, "kubernetes_1.0");
    build_source(&archive, "1.1");
    index(&archive);
    let moved = resolve_source(&lock, Policy::PreferLocked).expect("resolve");
    let changes: Vec<String> = moved.changes.iter().map(ToString::to_string).collect();
    assert_eq!(changes, ["kubernetes: kubernetes 1.0 -> 1.1"]);
    assert_eq!(moved.lock.kubernetes.content_hash, None);
    let refused = resolve_source(&lock, Policy::Locked).expect_err("drift");
    assert!(
        refused.to_string().contains("kubernetes 1.0 -> 1.1"),
        "{refused}"
    );

    // With the source back, the Go toolchain moves on: the build's input moved all the same.
    lock.kubernetes.version = "1.1".to_owned();
    remove(&archive, "golang-go_");
    build_deb_named(&archive, "golang-go", "2:1.19~2");
    index(&archive);
    let moved = resolve_source(&lock, Policy::PreferLocked).expect("resolve");
    let changes: Vec<String> = moved.changes.iter().map(ToString::to_string).collect();
    assert_eq!(
        changes,
        ["kubernetes-toolchain: golang-go 2:1.19~1 -> 2:1.19~2"]
    );
    assert_eq!(moved.lock.kubernetes.content_hash, None);
    assert_eq!(moved.lock.kubernetes.version, "1.1");
}
