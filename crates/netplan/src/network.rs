//! A node's network as typed values: its addresses, default gateway, DNS servers, and the
//! routes that reach other nodes' pod subnets without an overlay.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kiln_spec::{NodePlan, Plan, Role};

use crate::Error;

/// The name of the one interface kiln configures on a node.
///
/// kiln's images boot with `net.ifnames=0`, so the first Ethernet interface is `eth0` whatever
/// the hardware. Matching it by name (rather than with `match: {name: "e*"}` and `set-name`)
/// keeps the netplan and systemd-networkd files equivalent without a `.link` rename file, and
/// never configures a second NIC by accident.
pub const INTERFACE: &str = "eth0";

/// Everything a node's interface configuration holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeNetwork {
    /// The node's name.
    pub node: String,
    /// The node's addresses with their prefixes, primary first.
    pub addresses: Vec<Ipv4Net>,
    /// The default gateway, if the node has one.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers, in the plan's order.
    pub dns: Vec<Ipv4Addr>,
    /// Routes to the other kubelet nodes' pod subnets, by peer name.
    pub pod_routes: Vec<PodRoute>,
}

/// A static route to another node's pod subnet: `ip route add DESTINATION via GATEWAY`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodRoute {
    /// The peer's pod subnet.
    pub destination: Ipv4Net,
    /// The peer's address that forwards to its pods: its first address on a subnet this node
    /// shares (the primary address, for every reference shape).
    pub gateway: Ipv4Addr,
    /// The peer's name.
    pub peer: String,
}

/// The network of `node` (one of `plan`'s nodes).
///
/// Pod routes go to every node that reaches pods: each node that runs a kubelet (its pods talk
/// to pods elsewhere) and each control-plane node (the API server calls webhooks and aggregated
/// APIs that run in pods, and in `systemd` mode it has no kubelet of its own). A node that is only
/// a load balancer or an etcd member gets none.
///
/// Routes are direct: every next hop must be on a subnet of this node, which holds when all nodes
/// share one L2 network, as in every reference shape. When a peer has no address on a shared
/// subnet, this is [`Error::UnreachablePeer`] rather than a route the kernel would refuse.
pub fn node_network(plan: &Plan, node: &NodePlan) -> Result<NodeNetwork, Error> {
    let this = node;
    Ok(NodeNetwork {
        node: this.name.clone(),
        addresses: this.addresses.clone(),
        gateway: this.gateway,
        dns: this.dns.clone(),
        pod_routes: pod_routes(plan, node)?,
    })
}

/// The routes from `node` (one of `plan`'s nodes) to the other kubelet nodes' pod subnets, by peer name;
/// empty for a node that does not reach pods (see [`node_network`]).
pub fn pod_routes(plan: &Plan, node: &NodePlan) -> Result<Vec<PodRoute>, Error> {
    let this = node;
    if this.addresses.is_empty() {
        return Err(Error::NoAddress {
            node: this.name.clone(),
        });
    }
    let mode = plan.cluster.control_plane_mode;
    if !(this.runs_kubelet(mode) || this.has(Role::ControlPlane)) {
        return Ok(Vec::new());
    }
    let mut routes = Vec::new();
    for peer in plan.kubelet_nodes().filter(|peer| peer.name != this.name) {
        let destination = peer.pod_subnet.ok_or_else(|| Error::MissingPodSubnet {
            node: peer.name.clone(),
        })?;
        let gateway = peer
            .addresses
            .iter()
            .map(|address| address.addr())
            .find(|address| on_link(this, *address))
            .ok_or_else(|| Error::UnreachablePeer {
                node: this.name.clone(),
                peer: peer.name.clone(),
                pod_subnet: destination,
                peer_addresses: join(peer.addresses.iter()),
                node_subnets: join(this.addresses.iter().map(Ipv4Net::trunc)),
            })?;
        routes.push(PodRoute {
            destination,
            gateway,
            peer: peer.name.clone(),
        });
    }
    Ok(routes)
}

/// Whether `address` is on one of `node`'s subnets (and is not the node itself).
fn on_link(node: &NodePlan, address: Ipv4Addr) -> bool {
    node.addresses.iter().all(|own| own.addr() != address)
        && node
            .addresses
            .iter()
            .any(|own| own.trunc().contains(&address))
}

fn join<T: ToString>(items: impl Iterator<Item = T>) -> String {
    items
        .map(|item| item.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
