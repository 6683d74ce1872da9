//! Each node's network configuration (kiln-netplan) as a derivation.
//!
//! The parameters are the node itself and one digest of the cluster's network table (the
//! cluster-wide plan and every node's name, roles, addresses and pod subnet), computed once
//! for all nodes. Changing a node's address or subnet therefore rebuilds every node's network
//! configuration (they all route to it), while changing its gateway or DNS rebuilds its own only.

use std::sync::Arc;

use kiln_graph::{Graph, Params};
use kiln_spec::{NodePlan, Plan, Role};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::rendered::NodeRenderer;
use crate::{Artifacts, ClusterError};

#[derive(Serialize)]
struct PeerEntry<'a> {
    name: &'a str,
    roles: Vec<Role>,
    addresses: Vec<String>,
    pod_subnet: Option<String>,
}

#[derive(Serialize)]
struct NodeParams<'a> {
    network_table: String,
    node: &'a NodePlan,
}

/// Adds `node/<name>/network` for every node.
pub(crate) fn add_network(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Arc<Plan>,
) -> Result<(), ClusterError> {
    let peers: Vec<PeerEntry<'_>> = plan
        .nodes
        .iter()
        .map(|node| PeerEntry {
            name: &node.name,
            roles: node.roles.iter().copied().collect(),
            addresses: node.addresses.iter().map(ToString::to_string).collect(),
            pod_subnet: node.pod_subnet.map(|subnet| subnet.to_string()),
        })
        .collect();
    let table = Params::of(&(&plan.cluster, &peers));
    let network_table = hex(&Sha256::digest(table.as_bytes()));

    let renderer = NodeRenderer::new("network", "kiln-netplan.node", kiln_netplan::render_node);
    for node in &plan.nodes {
        let params = Params::of(&NodeParams {
            network_table: network_table.clone(),
            node,
        });
        renderer.add(graph, artifacts, plan, &node.name, params)?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
