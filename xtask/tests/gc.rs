//! `cargo xtask gc`, run as a user runs it: two variants of a cluster built into one store, one
//! result directory deleted, then the real binary collects the store's garbage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;

use kiln_graph::{
    BuildContext, BuildError, Builder, Derivation, DrvId, EvalOptions, Graph, Params,
};

mod common;
use common::{artifacts, examples, succeeded};

/// Runs the xtask binary in `dir` with `args`, failing the test if it fails; returns stdout.
fn xtask(dir: &Path, args: &[&str]) -> String {
    succeeded(&run(dir, args))
}

/// Runs the xtask binary in `dir` with `args`, under umask 022.
fn run(dir: &Path, args: &[&str]) -> Output {
    common::xtask(dir, "022", &[], args)
}

/// Builds `spec` (without images) into `dir/store`, with the result in `dir/out`.
fn build(dir: &Path, spec: &str, out: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "build-cluster",
        "--no-images",
        "--spec",
        spec,
        "--store",
        "store",
        "--secrets",
        "secrets",
        "--out",
        out,
        "--json",
    ];
    args.extend(extra);
    xtask(dir, &args)
}

/// Every artifact's store path from a result directory's manifest, by derivation id.
fn store_paths(result: &Path) -> BTreeMap<String, PathBuf> {
    artifacts(result)
        .into_iter()
        .map(|(id, entry)| {
            let path = entry["store_path"].as_str().expect("a store path");
            (id, PathBuf::from(path))
        })
        .collect()
}

/// The names of the store paths in `store` (not its bookkeeping).
fn store_entries(store: &Path) -> BTreeSet<String> {
    std::fs::read_dir(store)
        .expect("the store")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| !name.starts_with('.'))
        .collect()
}

/// A fixed-output derivation, as the image graph has them (the base OS, say).
struct Pinned;

const PINNED: &str = "pinned blob\n";

impl Builder for Pinned {
    fn kind(&self) -> &str {
        "kiln-xtask-tests.pinned"
    }
    fn version(&self) -> u32 {
        1
    }
    fn params(&self) -> Params {
        Params::none()
    }
    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let path = ctx.out().join("blob");
        std::fs::write(&path, PINNED).map_err(|error| BuildError::io(&path, error))
    }
}

/// Builds a fixed-output path into `store` through kiln-graph, as a build with images would.
fn build_fixed_output(store: &Path) -> PathBuf {
    let sample = tempfile::tempdir().expect("tempdir");
    std::fs::write(sample.path().join("blob"), PINNED).expect("write");
    let content_hash = kiln_store::tree_hash(sample.path()).expect("hash");
    let mut graph = Graph::new();
    let id = DrvId::new("pinned");
    graph
        .add(
            id.clone(),
            Derivation::new("pinned", Arc::new(Pinned)).fixed(content_hash),
        )
        .expect("add");
    let graph = graph.validate().expect("valid");
    let store = kiln_store::Store::open(store).expect("store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &kiln_graph::NullObserver)
        .expect("built");
    evaluation.outputs[&id].path.clone()
}

#[test]
fn gc_removes_only_what_a_deleted_result_alone_needed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let first_spec = examples().join("two-node.toml");
    let first_spec = first_spec.to_str().expect("utf-8 path");
    // The second variant moves node2's pods: node2's plan and both nodes' networks change, the
    // certificates and everything else stay shared.
    let second_spec = std::fs::read_to_string(first_spec)
        .expect("example")
        .replace("10.1.2.0/24", "10.1.3.0/24");
    std::fs::write(root.join("second.toml"), second_spec).expect("write");

    build(root, first_spec, "first", &[]);
    build(root, "second.toml", "second", &[]);
    let first = store_paths(&root.join("first"));
    let second = store_paths(&root.join("second"));
    let shared: BTreeSet<&PathBuf> = second.values().collect();
    let first_only: Vec<&PathBuf> = first
        .values()
        .filter(|path| !shared.contains(path))
        .collect();
    assert!(
        !first_only.is_empty() && first_only.len() < first.len() / 2,
        "the variants share most paths: {} of {} differ",
        first_only.len(),
        first.len()
    );
    let store = root.join("store");
    let pinned = build_fixed_output(&store);
    // What a killed build leaves in the temporary area.
    std::fs::create_dir(store.join(".tmp/killed-build")).expect("mkdir");
    std::fs::write(store.join(".tmp/killed-build/half"), "half").expect("write");
    let before = store_entries(&store);
    assert_eq!(
        before.len(),
        first.len() + second.len() - (first.len() - first_only.len()) + 1
    );

    std::fs::remove_dir_all(root.join("first")).expect("delete the first result");

    // A dry run says what it would do and does nothing.
    let dry = xtask(root, &["gc", "--store", "store", "--dry-run"]);
    assert!(
        dry.contains(&format!(
            "gc: would remove {} store paths and 1 leftover,",
            first_only.len()
        )),
        "{dry}"
    );
    assert!(dry.contains("would remove stale root"), "{dry}");
    assert_eq!(store_entries(&store), before);
    assert!(store.join(".tmp/killed-build").exists());

    let report = xtask(root, &["gc", "--store", "store"]);
    assert!(
        report.contains(&format!(
            "gc: removed {} store paths and 1 leftover,",
            first_only.len()
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "kept {} paths (1 fixed-output) for 1 root\n",
            second.len() + 1
        )),
        "{report}"
    );
    for path in &first_only {
        assert!(!path.exists(), "{} survived", path.display());
    }
    for path in second.values() {
        assert!(path.exists(), "{} was removed", path.display());
    }
    assert!(pinned.exists(), "a fixed-output path is kept by default");
    assert!(!store.join(".tmp/killed-build").exists());
    assert_eq!(
        std::fs::read_dir(store.join(".roots"))
            .expect("roots")
            .count(),
        1,
        "the deleted result's root is gone"
    );

    // The kept variant is complete: its check rebuilds it bit for bit from the store.
    let summary: serde_json::Value =
        serde_json::from_str(&build(root, "second.toml", "second", &["--check"])).expect("json");
    assert_eq!(summary["built"], 0, "{summary}");

    // Nothing is left to collect now; then the deleted variant builds again, the same.
    let again = xtask(root, &["gc", "--store", "store"]);
    assert!(
        again.contains("gc: removed 0 store paths and 0 leftovers,"),
        "{again}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&build(root, first_spec, "first", &[])).expect("json");
    assert_eq!(summary["built"], first_only.len(), "{summary}");
    assert_eq!(store_paths(&root.join("first")), first);

    // --include-fixed takes the unreachable fixed-output path too, and nothing live.
    let report = xtask(root, &["gc", "--store", "store", "--include-fixed"]);
    assert!(
        report.contains("gc: removed 1 store path and 0 leftovers,"),
        "{report}"
    );
    assert!(!pinned.exists());
    for path in first.values().chain(second.values()) {
        assert!(path.exists(), "{} was removed", path.display());
    }
}

#[test]
fn gc_refuses_a_directory_that_is_not_a_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(dir.path(), &["gc", "--store", "nothing-here"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is not a kiln store"), "{stderr}");
    assert!(!dir.path().join("nothing-here").exists(), "gc created it");
}
