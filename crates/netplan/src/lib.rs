//! kiln's node networking: each node's interface configuration (netplan YAML and the equivalent
//! systemd-networkd file), its CNI configuration, and the nginx load balancer in front of the
//! API servers, all rendered from a [`kiln_spec::Plan`].
//!
//! Pods reach each other across nodes without an overlay: every kubelet node gets a pod subnet
//! on a `cni0` bridge, and every node that talks to pods gets a static route to each other
//! kubelet node's pod subnet through that node's address, as `ip route add 10.1.2.0/24 via
//! 192.168.50.12` does in the two-node guide. That needs the next hops on-link: kiln assumes the
//! nodes share an L2 subnet and returns [`Error::UnreachablePeer`] where they do not.
//!
//! There is no NAT between pods, as Kubernetes' network model asks: a pod on another node sees
//! the sending pod's own address. The bridge plugin's `ipMasq` is off, since
//! containernetworking-plugins 1.1.1 exempts only the node's own pod subnet from it and so
//! would masquerade traffic to other nodes' pods too; traffic from a pod to anything outside
//! the cluster's `pod_cidr` is masqueraded instead by a node firewall rule that kiln-units'
//! `kiln-pod-nat.service` installs on every kubelet node.
//!
//! The crate is pure: functions take a plan and one of its nodes (found once, by the caller,
//! with [`kiln_spec::Plan::node`]) and return typed values or [`RenderedFile`]s (node-relative
//! path, bytes, mode), sorted and byte-for-byte reproducible.
//!
//! ```
//! let source = r#"
//! [cluster]
//! name = "two-node"
//! kubernetes_version = "1.20.2"
//! pod_cidr = "10.1.0.0/16"
//! control_plane_mode = "systemd"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! pod_subnet = "10.1.1.0/24"
//!
//! [[nodes]]
//! name = "node2"
//! roles = ["worker"]
//! addresses = ["192.168.50.12/24"]
//! pod_subnet = "10.1.2.0/24"
//! "#;
//! let plan = kiln_spec::load(source, "two-node.toml").expect("a valid spec").plan;
//!
//! let node1 = plan.node("node1").expect("node1 is in the spec");
//! let routes = kiln_netplan::pod_routes(&plan, node1)?;
//! assert_eq!(routes.len(), 1);
//! assert_eq!(routes[0].destination.to_string(), "10.1.2.0/24");
//! assert_eq!(routes[0].gateway.to_string(), "192.168.50.12");
//!
//! let files = kiln_netplan::render_node(&plan, node1)?;
//! let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
//! assert_eq!(
//!     paths,
//!     [
//!         "etc/cni/net.d/10-kiln.conflist",
//!         "etc/cni/net.d/99-loopback.conf",
//!         "etc/modules-load.d/kiln-pod-network.conf",
//!         "etc/netplan/10-kiln.yaml",
//!         "etc/sysctl.d/90-kiln-pod-network.conf",
//!         "etc/systemd/network/10-kiln-eth0.network",
//!     ]
//! );
//! let networkd = String::from_utf8(files[5].contents.clone()).expect("UTF-8");
//! assert!(networkd.contains("[Route]\nDestination=10.1.2.0/24\nGateway=192.168.50.12\n"));
//! # Ok::<(), kiln_netplan::Error>(())
//! ```
#![forbid(unsafe_code)]

mod cni;
mod error;
mod netplan;
mod network;
mod networkd;
mod nginx;

pub use cni::{
    BRIDGE, BRIDGE_NETFILTER_MODULES_PATH, BRIDGE_NETFILTER_SYSCTL_PATH, BridgePlugin, CNI_VERSION,
    CONFLIST_PATH, CniConf, CniConfList, CniPlugin, HostLocalIpam, IpamRange, IpamRoute,
    LOOPBACK_PATH, POD_NETWORK_SYSCTLS, PortmapCapabilities, PortmapPlugin, cni, cni_conflist,
    cni_loopback,
};
pub use error::Error;
pub use netplan::{NETPLAN_PATH, netplan};
pub use network::{INTERFACE, NodeNetwork, PodRoute, node_network, pod_routes};
pub use networkd::{IniFile, IniSection, IniValue, NETWORKD_PATH, networkd, networkd_network};
pub use nginx::{
    APISERVER_TLS_NAME, CA_CERTIFICATE_PATH, CLIENT_CERTIFICATE_PATH, CLIENT_KEY_PATH, Directive,
    HEALTH_CHECK_PORT, NGINX_PATH, NginxConf, load_balancer, load_balancer_config,
};

/// One file to write (defined once, in kiln-spec, for every renderer).
pub use kiln_spec::RenderedFile;

/// Every network file of `node` (one of `plan`'s nodes), sorted by path: the netplan YAML and the
/// systemd-networkd file (an image uses whichever its network stack reads), the CNI files on a
/// kubelet node, and nginx's configuration where the API load balancer runs.
pub fn render_node(
    plan: &kiln_spec::Plan,
    node: &kiln_spec::NodePlan,
) -> Result<Vec<RenderedFile>, Error> {
    // Both interface files describe the same network; compute its routes once.
    let network = node_network(plan, node)?;
    let mut files = vec![
        netplan::netplan_file(&network),
        networkd::networkd_file(&network),
    ];
    files.extend(cni(plan, node)?);
    files.extend(load_balancer(plan, node)?);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
