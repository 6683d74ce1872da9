//! Golden files: every file kiln-manifests renders for every node of every example, byte for
//! byte, and every component's flags on that node.
//!
//! `tests/golden/<example>/<node>/<path>` holds each file, `tests/golden/<example>/<node>.flags`
//! the node's flags per component, and `tests/golden/<example>/modes.txt` each file's mode.
//! Run with `UPDATE_EXPECT=1` to rewrite them after an intended change (and review the diff);
//! never edit them by hand.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_spec::{Component, NodePlan, Plan, Role};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn update() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1")
}

/// Every regular file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Compares `expected` (relative path to bytes) with the directory `dir`, or with
/// `UPDATE_EXPECT=1` makes the directory hold exactly `expected`. Returns the differences.
fn check(dir: &Path, expected: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for stale in files_under(dir)
        .into_iter()
        .filter(|path| !expected.contains_key(path))
    {
        if update() {
            std::fs::remove_file(dir.join(&stale)).expect("remove a stale golden file");
        } else {
            problems.push(format!(
                "{}: golden file no longer rendered",
                dir.join(&stale).display()
            ));
        }
    }
    for (relative, contents) in expected {
        let path = dir.join(relative);
        if update() {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, contents).expect("write a golden file");
            continue;
        }
        match std::fs::read(&path) {
            Ok(golden) if golden == *contents => {}
            Ok(golden) => problems.push(format!(
                "{} differs:\n--- golden\n{}\n--- rendered\n{}",
                path.display(),
                String::from_utf8_lossy(&golden),
                String::from_utf8_lossy(contents)
            )),
            Err(error) => problems.push(format!("{}: {error}", path.display())),
        }
    }
    problems
}

/// The components that run on `node`, whatever runs them (static pod or systemd unit).
fn components(plan: &Plan, node: &NodePlan) -> Vec<Component> {
    let mut components = Vec::new();
    if node.has(Role::Etcd) {
        components.push(Component::Etcd);
    }
    if node.has(Role::ControlPlane) {
        components.extend([
            Component::KubeApiserver,
            Component::KubeControllerManager,
            Component::KubeScheduler,
        ]);
    }
    if node.runs_kubelet(plan.cluster.control_plane_mode) {
        components.extend([Component::Kubelet, Component::KubeProxy]);
    }
    components
}

fn flags_listing(plan: &Plan, node: &NodePlan) -> String {
    let mut listing = String::new();
    for component in components(plan, node) {
        listing.push_str(&format!(
            "[{}]\n",
            kiln_manifests::component_name(component)
        ));
        for (name, value) in kiln_manifests::flags(plan, node, component) {
            listing.push_str(&format!("--{name}={value}\n"));
        }
    }
    listing
}

#[test]
fn every_example_matches_its_golden_files() {
    let mut problems = Vec::new();
    let plans = common::example_plans();
    for (example, plan) in &plans {
        let mut expected = BTreeMap::new();
        let mut modes = String::new();
        for node in &plan.nodes {
            let files = kiln_manifests::render_node(plan, &node.name, &common::TEST_KEY)
                .unwrap_or_else(|error| panic!("{example}/{}: {error}", node.name));
            for file in files {
                modes.push_str(&format!("{} {} {:o}\n", node.name, file.path, file.mode));
                expected.insert(Path::new(&node.name).join(&file.path), file.contents);
            }
            expected.insert(
                PathBuf::from(format!("{}.flags", node.name)),
                flags_listing(plan, node).into_bytes(),
            );
        }
        expected.insert(PathBuf::from("modes.txt"), modes.into_bytes());
        problems.extend(check(&golden_dir().join(example), &expected));
    }
    for entry in std::fs::read_dir(golden_dir()).expect("tests/golden exists") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if !plans.contains_key(&name) {
            if update() {
                std::fs::remove_dir_all(&path).expect("remove a stale example");
            } else {
                problems.push(format!("{}: no example {name}.toml", path.display()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden file(s) differ; if the change is intended, rerun with UPDATE_EXPECT=1 and review the diff\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}

#[test]
fn unknown_nodes_are_reported() {
    let plans = common::example_plans();
    let plan = plans.values().next().expect("an example");
    let error = kiln_manifests::render_node(plan, "nope", &common::TEST_KEY)
        .expect_err("no node is called nope");
    assert_eq!(
        error.to_string(),
        "the plan has no node `nope`\n  help: use a name from the spec's [[nodes]]"
    );
}
