//! Golden files: every kubeconfig kiln-kubeconfig renders for every node of every example, and
//! the operator's, byte for byte (see `kiln_testkit::golden`). Run with `UPDATE_EXPECT=1` to
//! rewrite them after an intended change (and review the diff); never edit them by hand.

mod common;

use std::path::Path;

use kiln_testkit::golden::{GoldenFile, check_examples};

#[test]
fn every_example_matches_its_golden_files() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    check_examples(&golden, |example, plan| {
        let pki = common::pki(plan);
        let mut groups = vec![(
            "_operator".to_owned(),
            kiln_kubeconfig::render_operator(plan, &pki).expect("operator kubeconfigs"),
        )];
        for node in &plan.nodes {
            let files = kiln_kubeconfig::render_node(plan, node, &pki)
                .unwrap_or_else(|error| panic!("{example}/{}: {error}", node.name));
            groups.push((node.name.clone(), files));
        }
        groups
            .into_iter()
            .flat_map(|(owner, files)| {
                files.into_iter().map(move |file| GoldenFile {
                    owner: owner.clone(),
                    path: file.path,
                    contents: file.contents,
                    mode: file.mode,
                })
            })
            .collect()
    });
}

#[test]
fn rendering_is_deterministic() {
    for plan in kiln_testkit::example_plans().values() {
        let first = common::pki(plan);
        let second = common::pki(plan);
        for node in &plan.nodes {
            assert_eq!(
                kiln_kubeconfig::render_node(plan, node, &first).expect("renders"),
                kiln_kubeconfig::render_node(plan, node, &second).expect("renders"),
            );
        }
    }
}
