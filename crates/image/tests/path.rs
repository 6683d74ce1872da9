//! The `path` source: binaries copied from a local directory into the store,
//! pinned to the directory's content hash.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use kiln_graph::{DrvId, EvalError, EvalOptions, Graph, NullObserver, ValidatedGraph};
use kiln_image::{
    ImageError,
    kubernetes::{KUBERNETES_BINARIES, KubernetesSource, PathKubernetes, kubernetes_binaries},
};
use kiln_store::{Store, tree_hash};

fn fixture_bin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bin")
}

/// A copy of the fixture binaries in a directory of the test's own.
fn copy_fixture(into: &Path) -> PathBuf {
    let dir = into.join("bin");
    fs::create_dir_all(&dir).expect("create a directory");
    for name in KUBERNETES_BINARIES {
        fs::copy(fixture_bin().join(name), dir.join(name)).expect("copy a file");
    }
    dir
}

fn graph_of(source: &KubernetesSource) -> ValidatedGraph {
    let mut graph = Graph::new();
    graph
        .add(
            "kubernetes",
            kubernetes_binaries(source).expect("describe the derivation"),
        )
        .expect("add the derivation");
    graph.validate().expect("validate the graph")
}

fn path_source(dir: &Path) -> KubernetesSource {
    KubernetesSource::Path {
        version: "v1.20.2".to_owned(),
        dir: dir.to_owned(),
    }
}

#[test]
fn copies_the_binaries_executable_with_a_version() {
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let graph = graph_of(&path_source(&fixture_bin()));
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("evaluate the graph");
    let output = &evaluation.outputs[&DrvId::from("kubernetes")];

    let mut names: Vec<String> = fs::read_dir(output.path.join("bin"))
        .expect("list a directory")
        .map(|entry| {
            entry
                .expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 file name")
        })
        .collect();
    names.sort();
    let mut expected: Vec<&str> = KUBERNETES_BINARIES.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected);
    for name in KUBERNETES_BINARIES {
        let installed = output.path.join("bin").join(name);
        assert_eq!(
            fs::read(&installed).expect("read a file"),
            fs::read(fixture_bin().join(name)).expect("read a file")
        );
        assert_eq!(
            fs::metadata(&installed)
                .expect("stat a file")
                .permissions()
                .mode()
                & 0o111,
            0o111,
            "{name} is executable"
        );
    }
    assert_eq!(
        fs::read_to_string(output.path.join("VERSION")).expect("read a file"),
        "v1.20.2\n"
    );
    assert_eq!(
        output.content_hash,
        tree_hash(&output.path).expect("hash a tree")
    );

    // The fake kubectl runs from the store.
    let ran = std::process::Command::new(output.path.join("bin/kubectl"))
        .output()
        .expect("run the command");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        "kubectl v1.20.2 (fake)\n"
    );
}

#[test]
fn the_same_binaries_elsewhere_give_the_same_store_path() {
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let copy = copy_fixture(scratch.path());
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let original = graph_of(&path_source(&fixture_bin()));
    let copied = graph_of(&path_source(&copy));
    let id = DrvId::from("kubernetes");
    assert_eq!(
        original.store_path(&store, &id),
        copied.store_path(&store, &id)
    );

    // A different version is a different output.
    let other = graph_of(&KubernetesSource::Path {
        version: "v1.20.3".to_owned(),
        dir: copy,
    });
    assert_ne!(
        original.store_path(&store, &id),
        other.store_path(&store, &id)
    );
}

#[test]
fn a_directory_changed_after_hashing_fails_naming_both_hashes() {
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let dir = copy_fixture(scratch.path());
    let before = tree_hash(&dir).expect("hash a tree");
    let graph = graph_of(&path_source(&dir));
    fs::write(dir.join("kubelet"), "#!/bin/sh\necho tampered\n").expect("write a file");
    let after = tree_hash(&dir).expect("hash a tree");

    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let error = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect_err("a failing build");
    let EvalError::Build { id, error } = &error else {
        panic!("expected a build error, got {error}");
    };
    assert_eq!(id.as_str(), "kubernetes");
    let message = error.to_string();
    assert!(message.contains(&dir.display().to_string()), "{message}");
    assert!(message.contains(&format!("was {before}")), "{message}");
    assert!(message.contains(&format!("now {after}")), "{message}");
    assert!(
        store
            .get(
                &graph.digest(id).expect("the derivation is in the graph"),
                "kubernetes-binaries"
            )
            .expect("look up the store")
            .is_none(),
        "nothing reaches the store"
    );
}

#[test]
fn a_pinned_hash_that_does_not_match_fails() {
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let dir = copy_fixture(scratch.path());
    let wrong = kiln_store::Digest::of(b"not the directory");
    let builder = PathKubernetes::pinned("v1.20.2", &dir, wrong);
    assert_eq!(builder.content_hash(), wrong);
    let mut graph = Graph::new();
    graph
        .add(
            "kubernetes",
            kiln_graph::Derivation::new("kubernetes-binaries", std::sync::Arc::new(builder)),
        )
        .expect("add the derivation");
    let store = Store::open(&scratch.path().join("store")).expect("open the store");
    let error = graph
        .validate()
        .expect("validate the graph")
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect_err("a failing build")
        .to_string();
    assert!(error.contains(&format!("was {wrong}")), "{error}");
}

#[test]
fn a_directory_without_every_binary_is_refused_up_front() {
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    let dir = copy_fixture(scratch.path());
    fs::remove_file(dir.join("kube-proxy")).expect("remove a file");
    fs::remove_file(dir.join("kubeadm")).expect("remove a file");
    let error = kubernetes_binaries(&path_source(&dir)).expect_err("an invalid source");
    assert!(matches!(error, ImageError::Binaries { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains("missing kube-proxy, kubeadm"), "{message}");
    assert!(message.contains(&dir.display().to_string()), "{message}");
}
