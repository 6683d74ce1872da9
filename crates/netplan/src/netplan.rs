//! netplan's YAML for a node: the same interface configuration as the systemd-networkd file,
//! for images that configure their network with netplan.

use std::collections::BTreeMap;

use kiln_spec::Plan;
use serde::Serialize;

use crate::network::{INTERFACE, NodeNetwork, node_network};
use crate::{Error, RenderedFile};

/// Where the netplan file goes, relative to the node's root.
pub const NETPLAN_PATH: &str = "etc/netplan/10-kiln.yaml";

/// netplan refuses to trust, and warns about, configuration that others can read.
const NETPLAN_MODE: u32 = 0o600;

/// The netplan file of the node called `node`: `eth0` with static addresses, the gateway as a
/// default route, the DNS servers, and a route to every peer's pod subnet (see
/// [`node_network`](crate::node_network)). Rendered for `renderer: networkd`.
pub fn netplan(plan: &Plan, node: &str) -> Result<RenderedFile, Error> {
    let network = node_network(plan, node)?;
    let document = Document::from(&network);
    let text = serde_norway::to_string(&document).map_err(|error| Error::Encode {
        what: "the netplan YAML",
        message: error.to_string(),
    })?;
    Ok(RenderedFile {
        path: NETPLAN_PATH.to_owned(),
        contents: format!("# Rendered by kiln for node {}.\n{text}", network.node).into_bytes(),
        mode: NETPLAN_MODE,
    })
}

/// The top of a netplan file. Field order is output order.
#[derive(Serialize)]
struct Document {
    network: Network,
}

#[derive(Serialize)]
struct Network {
    version: u8,
    renderer: &'static str,
    ethernets: BTreeMap<&'static str, Ethernet>,
}

#[derive(Serialize)]
struct Ethernet {
    dhcp4: bool,
    addresses: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers>,
}

#[derive(Serialize)]
struct Route {
    to: String,
    via: String,
}

#[derive(Serialize)]
struct Nameservers {
    addresses: Vec<String>,
}

impl From<&NodeNetwork> for Document {
    fn from(network: &NodeNetwork) -> Self {
        let default_route = network.gateway.map(|gateway| Route {
            to: "default".to_owned(),
            via: gateway.to_string(),
        });
        let pod_routes = network.pod_routes.iter().map(|route| Route {
            to: route.destination.to_string(),
            via: route.gateway.to_string(),
        });
        let ethernet = Ethernet {
            dhcp4: false,
            addresses: network.addresses.iter().map(ToString::to_string).collect(),
            routes: default_route.into_iter().chain(pod_routes).collect(),
            nameservers: (!network.dns.is_empty()).then(|| Nameservers {
                addresses: network.dns.iter().map(ToString::to_string).collect(),
            }),
        };
        Self {
            network: Network {
                version: 2,
                renderer: "networkd",
                ethernets: BTreeMap::from([(INTERFACE, ethernet)]),
            },
        }
    }
}
