//! netplan checks kiln's YAML: `netplan generate` (netplan.io) accepts it for every node of every
//! example and of generated plans, and the systemd-networkd file it generates means what kiln's
//! own `10-kiln-eth0.network` means (see `common::meaning` for what is normalized).

mod common;

use std::path::Path;
use std::process::Command;

use kiln_spec::Plan;
use proptest::prelude::*;

/// Runs `netplan generate` on `node`'s YAML in a scratch root and compares the result with
/// kiln's networkd file. Returns a description of the first difference.
fn netplan_agrees(plan: &Plan, node: &kiln_spec::NodePlan) -> Result<(), String> {
    let name = &node.name;
    let netplan = kiln_testkit::tool("netplan", "netplan.io");
    let root = tempfile::tempdir().expect("a scratch directory");
    let yaml = kiln_netplan::netplan(plan, node).map_err(|error| error.to_string())?;
    kiln_testkit::write_file(root.path(), &yaml.path, &yaml.contents, yaml.mode);
    let output = kiln_testkit::run(
        Command::new(&netplan)
            .arg("generate")
            .arg("--root-dir")
            .arg(root.path()),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("netplan generate failed for {name}: {stderr}"));
    }
    // netplan warns on stderr about what it dislikes (such as a world-readable file) but still
    // succeeds; kiln's YAML should draw no warning at all.
    if !stderr.trim().is_empty() {
        return Err(format!("netplan generate warned for {name}: {stderr}"));
    }
    let generated_path = root
        .path()
        .join("run/systemd/network/10-netplan-eth0.network");
    let generated = std::fs::read_to_string(&generated_path).map_err(|error| {
        format!(
            "{}: {error}; netplan wrote {:?}",
            generated_path.display(),
            list(root.path())
        )
    })?;
    let ours = kiln_netplan::networkd(plan, node).map_err(|error| error.to_string())?;
    let ours = String::from_utf8(ours.contents).expect("UTF-8");
    let (theirs_meaning, ours_meaning) = (common::meaning(&generated), common::meaning(&ours));
    if theirs_meaning != ours_meaning {
        return Err(format!(
            "{name}: netplan's networkd file differs from kiln's\n--- netplan\n{generated}\n--- kiln\n{ours}\n{theirs_meaning:#?}\n{ours_meaning:#?}"
        ));
    }
    // Every network file netplan wrote is the one for eth0: kiln's YAML configures one interface.
    let networks: Vec<String> = list(&root.path().join("run/systemd/network"));
    if networks != ["10-netplan-eth0.network"] {
        return Err(format!("{name}: netplan wrote {networks:?}"));
    }
    Ok(())
}

fn list(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|entry| {
                    entry
                        .expect("a directory entry")
                        .file_name()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn netplan_generate_agrees_with_kiln_on_every_example_node() {
    let mut checked = 0;
    for (example, plan) in kiln_testkit::example_plans() {
        for node in &plan.nodes {
            netplan_agrees(&plan, node).unwrap_or_else(|why| panic!("{example}: {why}"));
            checked += 1;
        }
    }
    assert!(
        checked >= 15,
        "every node of the four examples (15 nodes) was checked"
    );
}

#[test]
fn the_comparison_notices_a_missing_route() {
    // The oracle must be able to fail: drop one route from kiln's side and compare again.
    let plan = common::example("two-node");
    let ours =
        kiln_netplan::networkd_network(&plan, plan.node("node1").expect("node1 is in the plan"))
            .expect("renders");
    let mut broken = ours.clone();
    broken.sections.retain(|section| section.name != "Route");
    assert_ne!(
        common::meaning(&ours.to_string()),
        common::meaning(&broken.to_string())
    );
}

proptest! {
    // Each case runs netplan once per node (about half a second each), so keep the count small.
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn netplan_generate_agrees_with_kiln_on_generated_plans(spec in kiln_spec::strategies::valid_spec(1..=4)) {
        let (plan, _) = spec.validate().expect("a valid spec");
        for node in &plan.nodes {
            if let Err(why) = netplan_agrees(&plan, node) {
                prop_assert!(false, "{}", why);
            }
        }
    }
}
