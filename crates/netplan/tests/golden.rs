//! Golden files: every file kiln-netplan renders for every node of every example, byte for byte.
//!
//! `tests/golden/<example>/<node>/<path>` holds each file and `tests/golden/<example>/modes.txt`
//! each file's mode (see `kiln_testkit::golden`). Run with `UPDATE_EXPECT=1` to rewrite them after
//! an intended change (and review the diff); never edit them by hand.

use std::path::Path;

use kiln_testkit::golden::{GoldenFile, check_examples};

#[test]
fn every_example_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    check_examples(&golden, |example, plan| {
        plan.nodes
            .iter()
            .flat_map(|node| {
                kiln_netplan::render_node(plan, node)
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
    });
}
