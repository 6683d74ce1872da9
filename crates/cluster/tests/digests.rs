//! Digest properties of generated clusters: every valid spec builds a graph; digests do not
//! depend on the order of nodes; changing one node changes only the digests its data reaches.

use std::collections::{BTreeMap, BTreeSet};

use kiln_spec::strategies::valid_spec;
use kiln_spec::{Plan, Role, Spec};
use proptest::prelude::*;

fn plan_of(spec: &Spec) -> Result<Plan, TestCaseError> {
    spec.validate()
        .map(|(plan, _)| plan)
        .map_err(|errors| TestCaseError::fail(format!("{errors:#?}")))
}

fn digests(plan: &Plan) -> Result<BTreeMap<String, String>, TestCaseError> {
    let cluster = kiln_cluster::cluster_graph(plan, &inputs())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let graph = cluster
        .graph
        .validate()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(graph
        .ids()
        .map(|id| {
            (
                id.to_string(),
                graph.digest(id).map(|d| d.to_hex()).unwrap_or_default(),
            )
        })
        .collect())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn digests_do_not_depend_on_node_or_key_order(spec in valid_spec(1..=10), seed in any::<u64>()) {
        let plan = plan_of(&spec)?;
        let before = digests(&plan)?;
        // Pod subnets are explicit in the plan's spec; shuffle its nodes, and reverse the order of
        // every table's keys by going through TOML and a reversed document.
        let mut shuffled = plan.to_spec();
        let mut state = seed | 1;
        for index in (1..shuffled.nodes.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            shuffled.nodes.swap(index, (state % (index as u64 + 1)) as usize);
        }
        let text = shuffled.to_toml();
        let reversed: String = reverse_keys(&text);
        let loaded = kiln_spec::load(&reversed, "reversed.toml").map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(digests(&loaded.plan)?, before);
    }

    #[test]
    fn changing_one_worker_changes_only_what_depends_on_it(spec in valid_spec(2..=10), pick in any::<usize>()) {
        let plan = plan_of(&spec)?;
        let workers: Vec<&str> = plan
            .nodes
            .iter()
            .filter(|node| node.roles.iter().all(|role| *role == Role::Worker))
            .map(|node| node.name.as_str())
            .collect();
        prop_assume!(!workers.is_empty());
        let target = workers[pick % workers.len()].to_owned();
        let mut changed_spec = plan.to_spec();
        let node = changed_spec.nodes.iter_mut().find(|node| node.name == target).expect("target exists");
        let octets: Vec<&str> = node.addresses[0].split(['.', '/']).collect();
        node.addresses[0] = format!("{}.{}.{}.{}/24", octets[0], octets[1], octets[2], 200);
        let before = digests(&plan)?;
        let after = digests(&plan_of(&changed_spec)?)?;
        let changed: BTreeSet<&String> = before.keys().filter(|id| before[*id] != after[*id]).collect();
        let own_plan = format!("node/{target}/plan");
        prop_assert!(changed.iter().any(|id| **id == own_plan), "{} unchanged", own_plan);
        for id in &changed {
            let its_own = id.split('/').any(|part| part == target);
            // Every node's network configuration routes to the changed node's pod subnet.
            let routes_to_it = id.starts_with("node/") && id.ends_with("/network");
            prop_assert!(
                its_own || routes_to_it || id.as_str() == "cluster/plan",
                "{} changed when only {} did", id, target
            );
        }
    }

    #[test]
    fn changing_one_nodes_dns_changes_exactly_its_plan_and_network(spec in valid_spec(1..=10), pick in any::<usize>()) {
        let plan = plan_of(&spec)?;
        let target = plan.nodes[pick % plan.nodes.len()].name.clone();
        let mut changed_spec = plan.to_spec();
        let node = changed_spec.nodes.iter_mut().find(|node| node.name == target).expect("target exists");
        node.dns.push("192.0.2.53".to_owned());
        let before = digests(&plan)?;
        let after = digests(&plan_of(&changed_spec)?)?;
        let changed: BTreeSet<String> = before.keys().filter(|id| before[*id] != after[*id]).cloned().collect();
        let expected: BTreeSet<String> =
            ["cluster/plan".to_owned(), format!("node/{target}/plan"), format!("node/{target}/network")].into();
        prop_assert_eq!(changed, expected);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Parameters are projections of the plan: a renderer must not read what its projection
    /// leaves out, or its store path would be reused for different output. Units ignore a
    /// node's gateway and DNS, and so do manifests; kubeconfigs also ignore its addresses.
    #[test]
    fn renderers_ignore_what_their_parameters_leave_out(spec in valid_spec(1..=6), pick in any::<usize>()) {
        let plan = plan_of(&spec)?;
        let target = plan.nodes[pick % plan.nodes.len()].name.clone();
        let mut changed = plan.clone();
        let node = changed.nodes.iter_mut().find(|node| node.name == target).expect("target exists");
        node.dns.push("192.0.2.53".parse().expect("address"));
        node.gateway = None;
        let units = |plan: &Plan| kiln_units::render_node(plan, plan.node(&target).expect("target exists")).map_err(|e| TestCaseError::fail(e.to_string()));
        prop_assert_eq!(units(&changed)?, units(&plan)?);
        let manifests = |plan: &Plan| {
            kiln_manifests::render_node(plan, plan.node(&target).expect("target exists"), &|_| [9; 32], &inputs().releases).map_err(|e| TestCaseError::fail(e.to_string()))
        };
        prop_assert_eq!(manifests(&changed)?, manifests(&plan)?);
        let kinds = |plan: &Plan| {
            let node = plan.node(&target).expect("target exists");
            kiln_kubeconfig::node_kinds(plan, node)
                .iter()
                .map(|kind| kiln_kubeconfig::render_file(plan, kind, kiln_kubeconfig::Credentials::referenced(kind)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| TestCaseError::fail(e.to_string()))
        };
        let node = changed.nodes.iter_mut().find(|node| node.name == target).expect("target exists");
        node.addresses[0] = "198.51.100.7/24".parse().expect("address");
        prop_assert_eq!(kinds(&changed)?, kinds(&plan)?);
    }
}

/// The recipe is a real SHA-256 (64 hex digits from build.rs), so `recipe()` never falls back.
#[test]
fn the_recipe_is_a_digest_of_the_renderers_source() {
    assert_eq!(kiln_cluster::RECIPE.len(), 64);
    assert_eq!(
        kiln_cluster::RECIPE.parse::<kiln_store::Digest>().ok(),
        Some(kiln_cluster::recipe())
    );
}

/// The same TOML document with the key order of every table reversed (tables keep their
/// headers, so only the lines inside each table move).
fn reverse_keys(text: &str) -> String {
    let mut out = Vec::new();
    let mut block: Vec<&str> = Vec::new();
    for line in text.lines() {
        if line.starts_with('[') {
            block.reverse();
            out.append(&mut block);
            out.push(line);
        } else if !line.trim().is_empty() {
            block.push(line);
        }
    }
    block.reverse();
    out.append(&mut block);
    out.join("\n") + "\n"
}

/// A fixed root secret: digests then depend on the spec alone.
fn inputs() -> kiln_cluster::ClusterInputs {
    kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
        external_cas: Default::default(),
        releases: kiln_spec::images::Releases {
            etcd: "3.6.16".into(),
            coredns: Some("1.15.0".into()),
        },
    }
}
