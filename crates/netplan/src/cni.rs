//! The CNI configuration of a kubelet node: a bridge with host-local addresses from the node's
//! pod subnet, port mappings, and loopback.
//!
//! Field names follow containernetworking-plugins' `bridge`, `host-local` and `portmap` docs;
//! struct field order is JSON key order, so the output is byte-stable.

use ipnet::Ipv4Net;
use kiln_spec::{NodePlan, Plan};
use serde::{Deserialize, Serialize};

use crate::{Error, RenderedFile};

/// The CNI spec version kiln writes: the newest that both containernetworking-plugins 1.1.1 and
/// containerd 1.6 support for a conflist.
pub const CNI_VERSION: &str = "0.4.0";

/// Where the pod network's conflist goes. The runtime uses the first file by name, so `10-`
/// puts it before any other network.
pub const CONFLIST_PATH: &str = "etc/cni/net.d/10-kiln.conflist";

/// Where the loopback network's config goes.
pub const LOOPBACK_PATH: &str = "etc/cni/net.d/99-loopback.conf";

/// Where the module list that loads `br_netfilter` at boot goes (systemd-modules-load).
pub const BRIDGE_NETFILTER_MODULES_PATH: &str = "etc/modules-load.d/kiln-pod-network.conf";

/// Where the sysctl that passes bridged traffic through iptables goes (systemd-sysctl, which
/// runs after systemd-modules-load).
pub const BRIDGE_NETFILTER_SYSCTL_PATH: &str = "etc/sysctl.d/90-kiln-pod-network.conf";

/// The kernel settings of the pod network on every node with a kubelet
/// ([`BRIDGE_NETFILTER_SYSCTL_PATH`]): bridged traffic passes iptables.
pub const POD_NETWORK_SYSCTLS: [kiln_spec::sysctl::Sysctl; 1] =
    [("net.bridge.bridge-nf-call-iptables", 1)];

/// Why the pod network's module and setting are there (the first line of both files).
const BRIDGE_NETFILTER_WHY: &str =
    "Pod traffic across the CNI bridge passes iptables (kube-proxy's Service NAT).";

/// The bridge every pod of a node attaches to.
pub const BRIDGE: &str = "cni0";

/// A CNI network configuration list (`.conflist`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CniConfList {
    /// The CNI spec version: [`CNI_VERSION`].
    pub cni_version: String,
    /// The network's name: `kiln`.
    pub name: String,
    /// The plugin chain, in order.
    pub plugins: Vec<CniPlugin>,
}

/// One plugin of a [`CniConfList`], tagged by its `type`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum CniPlugin {
    /// The `bridge` plugin.
    Bridge(BridgePlugin),
    /// The `portmap` plugin.
    Portmap(PortmapPlugin),
}

/// The `bridge` plugin: pods on a Linux bridge that is their gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BridgePlugin {
    /// The bridge's name: [`BRIDGE`].
    pub bridge: String,
    /// Whether the bridge gets the subnet's gateway address.
    ///
    /// kiln leaves `isDefaultGateway` out: pods get their default route from
    /// [`HostLocalIpam::routes`] instead, and with both the bridge plugin of
    /// containernetworking-plugins 1.1.1 adds the default route twice and fails every pod with
    /// "failed to add route ... file exists" (its tests run the plugin to show this).
    pub is_gateway: bool,
    /// Whether traffic leaving the pod subnet is masqueraded to the node's address. kiln writes
    /// `false`: the plugin exempts only the node's own subnet, so it would also masquerade
    /// traffic to other nodes' pods, and Kubernetes' network model has pods see each other's
    /// real addresses. kiln-units' `kiln-pod-nat.service` masquerades instead what leaves the
    /// cluster's whole pod range.
    pub ip_masq: bool,
    /// Whether a pod can reach itself through a Service (hairpin).
    pub hairpin_mode: bool,
    /// Address management.
    pub ipam: HostLocalIpam,
}

/// The `host-local` IPAM plugin: addresses from a fixed range, recorded on the node's disk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostLocalIpam {
    /// Always `host-local`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Range sets; each inner list is one set of ranges for one address.
    pub ranges: Vec<Vec<IpamRange>>,
    /// Routes to put in each pod, through the bridge's address: `0.0.0.0/0`, the pod's default
    /// route.
    pub routes: Vec<IpamRoute>,
}

/// One range of a [`HostLocalIpam`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamRange {
    /// The subnet addresses come from: the node's pod subnet.
    pub subnet: Ipv4Net,
}

/// One route of a [`HostLocalIpam`], through the range's gateway.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpamRoute {
    /// The destination.
    pub dst: Ipv4Net,
}

/// The `portmap` plugin: `hostPort`s.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortmapPlugin {
    /// The runtime capabilities the plugin takes.
    pub capabilities: PortmapCapabilities,
}

/// The capabilities of a [`PortmapPlugin`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortmapCapabilities {
    /// Whether the runtime passes the pod's port mappings.
    pub port_mappings: bool,
}

/// A single-plugin CNI network configuration (`.conf`), used for loopback.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CniConf {
    /// The CNI spec version: [`CNI_VERSION`].
    pub cni_version: String,
    /// The network's name.
    pub name: String,
    /// The plugin: `loopback`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// The pod network of `node` (one of `plan`'s nodes), or `None` for a node without a kubelet.
///
/// Pods get addresses from the node's pod subnet on bridge [`BRIDGE`], which is their default
/// gateway. Other nodes' pods are reached through the node's routing table, where
/// [`pod_routes`](crate::pod_routes) puts a route per peer, so there is no overlay.
pub fn cni_conflist(plan: &Plan, node: &NodePlan) -> Result<Option<CniConfList>, Error> {
    let this = node;
    if !this.runs_kubelet(plan.cluster.control_plane_mode) {
        return Ok(None);
    }
    let subnet = this.pod_subnet.ok_or_else(|| Error::MissingPodSubnet {
        node: this.name.clone(),
    })?;
    let everywhere = Ipv4Net::default();
    Ok(Some(CniConfList {
        cni_version: CNI_VERSION.to_owned(),
        name: "kiln".to_owned(),
        plugins: vec![
            CniPlugin::Bridge(BridgePlugin {
                bridge: BRIDGE.to_owned(),
                is_gateway: true,
                ip_masq: false,
                hairpin_mode: true,
                ipam: HostLocalIpam {
                    kind: "host-local".to_owned(),
                    ranges: vec![vec![IpamRange { subnet }]],
                    routes: vec![IpamRoute { dst: everywhere }],
                },
            }),
            CniPlugin::Portmap(PortmapPlugin {
                capabilities: PortmapCapabilities {
                    port_mappings: true,
                },
            }),
        ],
    }))
}

/// The loopback network every kubelet node needs beside its pod network.
pub fn cni_loopback() -> CniConf {
    CniConf {
        cni_version: CNI_VERSION.to_owned(),
        name: "lo".to_owned(),
        kind: "loopback".to_owned(),
    }
}

/// The CNI files of `node` (one of `plan`'s nodes): [`CONFLIST_PATH`] and [`LOOPBACK_PATH`], or none
/// for a node without a kubelet; with them, `br_netfilter` loaded at boot
/// ([`BRIDGE_NETFILTER_MODULES_PATH`]) and [`POD_NETWORK_SYSCTLS`]
/// ([`BRIDGE_NETFILTER_SYSCTL_PATH`]), as kubeadm's prerequisites ask. Without them a pod's
/// packet to a Service whose chosen endpoint is a pod on the same bridge is DNATed on the way
/// out, but the reply is bridged straight back without passing iptables, so it is never
/// un-NATed and the client drops it: a pod could not reach the cluster DNS when CoreDNS ran on
/// its own node.
pub fn cni(plan: &Plan, node: &NodePlan) -> Result<Vec<RenderedFile>, Error> {
    let Some(conflist) = cni_conflist(plan, node)? else {
        return Ok(Vec::new());
    };
    let text = |path: &str, contents: &str| RenderedFile {
        path: path.to_owned(),
        contents: contents.as_bytes().to_vec(),
        mode: 0o644,
    };
    Ok(vec![
        json_file(CONFLIST_PATH, &conflist)?,
        json_file(LOOPBACK_PATH, &cni_loopback())?,
        text(
            BRIDGE_NETFILTER_MODULES_PATH,
            &format!("# {BRIDGE_NETFILTER_WHY}\nbr_netfilter\n"),
        ),
        text(
            BRIDGE_NETFILTER_SYSCTL_PATH,
            &kiln_spec::sysctl::sysctl_d(&[BRIDGE_NETFILTER_WHY], &POD_NETWORK_SYSCTLS),
        ),
    ])
}

fn json_file(path: &str, value: &impl Serialize) -> Result<RenderedFile, Error> {
    let mut contents = serde_json::to_vec_pretty(value).map_err(|error| Error::Encode {
        what: "a CNI configuration",
        message: error.to_string(),
    })?;
    contents.push(b'\n');
    Ok(RenderedFile {
        path: path.to_owned(),
        contents,
        mode: 0o644,
    })
}
