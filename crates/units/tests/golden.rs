//! Golden files: every file kiln-units renders for every node of every example, byte for byte.
//!
//! `tests/golden/<example>/<node>/<path>` holds each file (`tests/golden-1.20.2/` the same for
//! every example at Kubernetes 1.20.2, the Debian-built release) and `tests/golden/<example>/modes.txt`
//! each file's mode (see `kiln_testkit::golden`). Run with `UPDATE_EXPECT=1` to rewrite them after
//! an intended change (and review the diff); never edit them by hand.

use std::path::Path;

use kiln_spec::Plan;
use kiln_testkit::golden::{GoldenFile, check_examples, check_examples_of};

#[test]
fn every_example_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    check_examples(&golden, files);
}

/// The examples at Kubernetes 1.20.2 (their own version is 1.37.2): the other end of the
/// supported range, with the flags 1.20 had, the kubelet's settings as flags, the scheduler's
/// v1beta1 configuration and containerd 1.6's version 2 file.
#[test]
fn every_example_at_1_20_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden-1.20.2");
    let plans = kiln_testkit::example_plans_at("1.20.2".parse().expect("a version"));
    check_examples_of(&golden, &plans, files);
}

/// Every file of every node of `plan`.
fn files(example: &str, plan: &Plan) -> Vec<GoldenFile> {
    plan.nodes
        .iter()
        .flat_map(|node| {
            kiln_units::render_node(plan, node)
                .unwrap_or_else(|error| panic!("{example}/{}: {error}", node.name))
                .into_iter()
                .map(|file| GoldenFile {
                    owner: node.name.clone(),
                    path: file.path,
                    contents: file.contents,
                    mode: file.mode,
                })
        })
        .collect()
}
