//! Property tests over generated clusters (`kiln_spec::strategies::valid_spec`): routes go
//! through other nodes' on-link addresses, pod subnets are disjoint, every kubelet node routes
//! to every other exactly once, the netplan and networkd files agree, and rendering is
//! deterministic.

use std::collections::{BTreeMap, BTreeSet};

use kiln_spec::{EndpointMode, Plan, Role};
use proptest::prelude::*;

fn plan_of(spec: &kiln_spec::Spec) -> Plan {
    spec.validate().expect("generated specs are valid").0
}

/// Whether `node` should have pod routes: it runs a kubelet or an API server.
fn reaches_pods(plan: &Plan, node: &kiln_spec::NodePlan) -> bool {
    node.runs_kubelet(plan.cluster.control_plane_mode) || node.has(Role::ControlPlane)
}

/// The routes of a netplan file, read back as YAML, as (to, via) pairs.
fn netplan_routes(yaml: &[u8]) -> Vec<(String, String)> {
    let document: serde_norway::Value =
        serde_norway::from_slice(yaml).expect("netplan YAML parses");
    let routes = &document["network"]["ethernets"]["eth0"]["routes"];
    routes
        .as_sequence()
        .map(|routes| {
            routes
                .iter()
                .map(|route| {
                    (
                        route["to"].as_str().expect("to").to_owned(),
                        route["via"].as_str().expect("via").to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn routes_go_through_other_nodes_on_link_addresses(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        for node in &plan.nodes {
            for route in kiln_netplan::pod_routes(&plan, node).expect("routes") {
                prop_assert_ne!(&route.peer, &node.name);
                let peer = plan.node(&route.peer).expect("the peer exists");
                prop_assert!(peer.addresses.iter().any(|address| address.addr() == route.gateway),
                    "{} routes via {}, not an address of {}", node.name, route.gateway, peer.name);
                prop_assert!(node.addresses.iter().all(|address| address.addr() != route.gateway),
                    "{} routes via its own address {}", node.name, route.gateway);
                prop_assert!(node.addresses.iter().any(|address| address.trunc().contains(&route.gateway)),
                    "{}'s next hop {} is not on-link", node.name, route.gateway);
                prop_assert_eq!(Some(route.destination), peer.pod_subnet);
            }
        }
    }

    #[test]
    fn pod_subnets_are_disjoint(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        let subnets: Vec<_> = plan.kubelet_nodes().map(|node| node.pod_subnet.expect("a pod subnet")).collect();
        for (index, a) in subnets.iter().enumerate() {
            prop_assert!(plan.cluster.pod_cidr.contains(a));
            for b in &subnets[index + 1..] {
                prop_assert!(!a.contains(b) && !b.contains(a), "{} and {} overlap", a, b);
            }
        }
    }

    #[test]
    fn every_node_that_reaches_pods_routes_once_to_every_other_kubelet_node(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        let kubelets: BTreeSet<&str> = plan.kubelet_nodes().map(|node| node.name.as_str()).collect();
        for node in &plan.nodes {
            let routes = kiln_netplan::pod_routes(&plan, node).expect("routes");
            let peers: Vec<&str> = routes.iter().map(|route| route.peer.as_str()).collect();
            let expected: Vec<&str> = if reaches_pods(&plan, node) {
                kubelets.iter().copied().filter(|name| *name != node.name).collect()
            } else {
                Vec::new()
            };
            prop_assert_eq!(peers, expected, "routes of {}", node.name);
        }
    }

    #[test]
    fn netplan_networkd_and_cni_agree(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        for node in &plan.nodes {
            let network = kiln_netplan::node_network(&plan, node).expect("a network");
            let mut expected: Vec<(String, String)> = network.gateway
                .map(|gateway| ("default".to_owned(), gateway.to_string()))
                .into_iter()
                .collect();
            expected.extend(network.pod_routes.iter().map(|route| (route.destination.to_string(), route.gateway.to_string())));
            let yaml = kiln_netplan::netplan(&plan, node).expect("netplan");
            prop_assert_eq!(netplan_routes(&yaml.contents), expected.clone());

            let ini = kiln_netplan::networkd_network(&plan, node).expect("networkd");
            let mut routes: Vec<(String, String)> = ini.sections.iter()
                .filter(|section| section.name == "Route")
                .map(|section| {
                    let value = |key: &str| section.entries.iter().find(|(name, _)| *name == key).map(|(_, value)| value.to_string()).expect("the key");
                    (value("Destination"), value("Gateway"))
                })
                .collect();
            if let Some(gateway) = network.gateway {
                routes.insert(0, ("default".to_owned(), gateway.to_string()));
            }
            prop_assert_eq!(routes, expected);

            let conflist = kiln_netplan::cni_conflist(&plan, node).expect("cni");
            let runs_kubelet = node.runs_kubelet(plan.cluster.control_plane_mode);
            prop_assert_eq!(conflist.is_some(), runs_kubelet);
            if let Some(conflist) = conflist {
                let kiln_netplan::CniPlugin::Bridge(bridge) = &conflist.plugins[0] else {
                    panic!("the first plugin is the bridge");
                };
                prop_assert_eq!(Some(bridge.ipam.ranges[0][0].subnet), node.pod_subnet);
            }
        }
    }

    #[test]
    fn the_load_balancer_goes_where_the_endpoint_says(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        let endpoint = &plan.cluster.endpoint;
        for node in &plan.nodes {
            let conf = kiln_netplan::load_balancer_config(&plan, node).expect("nginx");
            let expected = match endpoint.mode {
                EndpointMode::Node => false,
                EndpointMode::Local => true,
                EndpointMode::LoadBalancer => endpoint.load_balancer_nodes.contains(&node.name),
            };
            prop_assert_eq!(conf.is_some(), expected, "{:?} on {}", endpoint.mode, node.name);
        }
    }

    #[test]
    fn rendering_is_deterministic_and_paths_are_sorted_and_relative(spec in kiln_spec::strategies::valid_spec(1..=8)) {
        let plan = plan_of(&spec);
        // A plan that went through serialization is an independent copy of the same value.
        let copy: Plan = serde_json::from_str(&serde_json::to_string(&plan).expect("JSON")).expect("reads back");
        let mut all = BTreeMap::new();
        for node in &plan.nodes {
            let files = kiln_netplan::render_node(&plan, node).expect("renders");
            prop_assert_eq!(&files, &kiln_netplan::render_node(&copy, node).expect("renders"));
            let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
            let mut sorted = paths.clone();
            sorted.sort_unstable();
            sorted.dedup();
            prop_assert_eq!(&paths, &sorted);
            for file in &files {
                prop_assert!(!file.path.starts_with('/') && !file.path.contains(".."), "{}", file.path);
                prop_assert!(file.contents.ends_with(b"\n"), "{} ends with a newline", file.path);
            }
            all.insert(node.name.clone(), files);
        }
        prop_assert_eq!(all.len(), plan.nodes.len());
    }
}
