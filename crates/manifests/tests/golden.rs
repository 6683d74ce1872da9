//! Golden files: every file kiln-manifests renders for every node of every example, byte for
//! byte, and every component's flags on that node.
//!
//! `tests/golden/<example>/<node>/<path>` holds each file (`tests/golden-1.20.2/` the same for
//! every example at Kubernetes 1.20.2, the Debian-built release), `tests/golden/<example>/<node>.flags`
//! the node's flags per component, and `tests/golden/<example>/modes.txt` each file's mode.
//! Run with `UPDATE_EXPECT=1` to rewrite them after an intended change (and review the diff);
//! never edit them by hand.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_spec::{Component, NodePlan, Plan, Role};
use kiln_testkit::golden::{GoldenFile, check_example_trees, check_example_trees_of, tree};

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
        listing.push_str(&format!("[{}]\n", component.name()));
        for (name, value) in kiln_manifests::flags(plan, node, component) {
            listing.push_str(&format!("--{name}={value}\n"));
        }
    }
    listing
}

#[test]
fn every_example_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    check_example_trees(&golden, expected_tree);
}

/// The examples at Kubernetes 1.20.2 (their own version is 1.37.2): the other end of the
/// supported range, with the flags 1.20 had, the kubelet's settings as flags, the scheduler's
/// v1beta1 configuration and containerd 1.6's version 2 file.
#[test]
fn every_example_at_1_20_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-1.20.2");
    let plans = kiln_testkit::example_plans_at("1.20.2".parse().expect("a version"));
    check_example_trees_of(&golden, &plans, expected_tree);
}

/// Every file of every node of `plan`, and each node's flags as a listing beside its
/// directory.
fn expected_tree(example: &str, plan: &Plan) -> BTreeMap<PathBuf, Vec<u8>> {
    {
        let mut files = Vec::new();
        for node in &plan.nodes {
            let rendered =
                kiln_manifests::render_node(plan, node, &common::test_key, &common::releases(plan))
                    .unwrap_or_else(|error| panic!("{example}/{}: {error}", node.name));
            files.extend(rendered.into_iter().map(|file| GoldenFile {
                owner: node.name.clone(),
                path: file.path,
                contents: file.contents,
                mode: file.mode,
            }));
        }
        // Each node's flags, as a listing beside its directory (not in modes.txt).
        let mut expected = tree(files);
        for node in &plan.nodes {
            expected.insert(
                PathBuf::from(format!("{}.flags", node.name)),
                flags_listing(plan, node).into_bytes(),
            );
        }
        expected
    }
}
