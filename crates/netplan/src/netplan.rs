//! netplan's YAML for a node: the same interface configuration as the systemd-networkd file,
//! for images that configure their network with netplan.
//!
//! The document is a small typed model ([`Document`]) written by a purpose-built emitter rather
//! than a generic YAML serializer: a node of a 1000-node cluster has 999 pod routes, and the
//! generic path spent over a second of a whole cluster's rendering on them. The emitter only has
//! to be right for the model's shapes, whose scalars are all plain in YAML (fixed words,
//! numbers, booleans, and IPv4 addresses and networks, which never need quoting); the tests
//! check, for generated nodes and arbitrary addresses, that its bytes are exactly what
//! serde_norway writes for the same model and that they read back to the same value.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kiln_spec::{NodePlan, Plan};
use serde::{Serialize, Serializer};

use crate::network::{INTERFACE, NodeNetwork, node_network};
use crate::{Error, RenderedFile};
use kiln_spec::text::{push_decimal, push_ipv4, push_ipv4_net};

/// Where the netplan file goes, relative to the node's root.
pub const NETPLAN_PATH: &str = "etc/netplan/10-kiln.yaml";

/// netplan refuses to trust, and warns about, configuration that others can read.
const NETPLAN_MODE: u32 = 0o600;

/// The netplan file of `node` (one of `plan`'s nodes): `eth0` with static addresses, the gateway as a
/// default route, the DNS servers, and a route to every peer's pod subnet (see
/// [`node_network`](crate::node_network)). Rendered for `renderer: networkd`.
pub fn netplan(plan: &Plan, node: &NodePlan) -> Result<RenderedFile, Error> {
    Ok(netplan_file(&node_network(plan, node)?))
}

/// The netplan file of `network`.
pub(crate) fn netplan_file(network: &NodeNetwork) -> RenderedFile {
    RenderedFile {
        path: NETPLAN_PATH.to_owned(),
        contents: netplan_text(network).into_bytes(),
        mode: NETPLAN_MODE,
    }
}

/// The netplan file's text: a comment naming the node (a DNS label, so one plain line), then
/// the document.
fn netplan_text(network: &NodeNetwork) -> String {
    // About 48 bytes per route; growing the buffer would copy it several times.
    let mut text = String::with_capacity(256 + 48 * network.pod_routes.len());
    text.push_str("# Rendered by kiln for node ");
    text.push_str(&network.node);
    text.push_str(".\n");
    Document::from(network).write_yaml(&mut text);
    text
}

/// The top of a netplan file. Field order is output order.
#[derive(Serialize)]
struct Document<'a> {
    network: Network<'a>,
}

#[derive(Serialize)]
struct Network<'a> {
    version: u8,
    renderer: &'static str,
    ethernets: BTreeMap<&'static str, Ethernet<'a>>,
}

#[derive(Serialize)]
struct Ethernet<'a> {
    dhcp4: bool,
    /// Always false: the cluster network is IPv4 with static addresses, and waiting for an
    /// IPv6 router advertisement nobody sends held `network-online.target` back 12 s per boot.
    #[serde(rename = "accept-ra")]
    accept_ra: bool,
    /// Always empty: no link-local addresses (no IPv6 on the cluster network).
    #[serde(rename = "link-local")]
    link_local: &'static [&'static str],
    addresses: &'a [Ipv4Net],
    #[serde(skip_serializing_if = "Vec::is_empty")]
    routes: Vec<Route>,
    #[serde(skip_serializing_if = "Option::is_none")]
    nameservers: Option<Nameservers<'a>>,
}

#[derive(Serialize)]
struct Route {
    to: Destination,
    via: Ipv4Addr,
}

/// A route's `to:`: the word `default` or a network.
enum Destination {
    Default,
    Network(Ipv4Net),
}

impl Serialize for Destination {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Default => serializer.serialize_str("default"),
            Self::Network(network) => network.serialize(serializer),
        }
    }
}

#[derive(Serialize)]
struct Nameservers<'a> {
    addresses: &'a [Ipv4Addr],
}

impl<'a> From<&'a NodeNetwork> for Document<'a> {
    fn from(network: &'a NodeNetwork) -> Self {
        let default_route = network.gateway.map(|gateway| Route {
            to: Destination::Default,
            via: gateway,
        });
        let pod_routes = network.pod_routes.iter().map(|route| Route {
            to: Destination::Network(route.destination),
            via: route.gateway,
        });
        let ethernet = Ethernet {
            dhcp4: false,
            accept_ra: false,
            link_local: &[],
            addresses: &network.addresses,
            routes: default_route.into_iter().chain(pod_routes).collect(),
            nameservers: (!network.dns.is_empty()).then_some(Nameservers {
                addresses: &network.dns,
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

/// Block-style YAML as serde_norway lays it out: two spaces per mapping level, and a sequence's
/// `- ` at its key's own indentation.
impl Document<'_> {
    fn write_yaml(&self, out: &mut String) {
        let network = &self.network;
        out.push_str("network:\n  version: ");
        push_decimal(out, network.version);
        out.push_str("\n  renderer: ");
        push_word(out, network.renderer);
        out.push_str("\n  ethernets:");
        if network.ethernets.is_empty() {
            out.push_str(" {}\n");
            return;
        }
        out.push('\n');
        for (name, ethernet) in &network.ethernets {
            out.push_str("    ");
            push_word(out, name);
            out.push_str(":\n");
            ethernet.write_yaml(out);
        }
    }
}

impl Ethernet<'_> {
    /// The interface's keys, at six spaces.
    fn write_yaml(&self, out: &mut String) {
        out.push_str("      dhcp4: ");
        out.push_str(if self.dhcp4 { "true" } else { "false" });
        out.push_str("\n      accept-ra: ");
        out.push_str(if self.accept_ra { "true" } else { "false" });
        out.push_str("\n      link-local:");
        write_sequence(out, "      ", self.link_local, |out, family| {
            push_word(out, family)
        });
        out.push_str("      addresses:");
        write_sequence(out, "      ", self.addresses, |out, address| {
            push_ipv4_net(out, *address);
        });
        if !self.routes.is_empty() {
            out.push_str("      routes:\n");
            for route in &self.routes {
                out.push_str("      - to: ");
                match route.to {
                    Destination::Default => out.push_str("default"),
                    Destination::Network(network) => push_ipv4_net(out, network),
                }
                out.push_str("\n        via: ");
                push_ipv4(out, route.via);
                out.push('\n');
            }
        }
        if let Some(nameservers) = &self.nameservers {
            out.push_str("      nameservers:\n        addresses:");
            write_sequence(out, "        ", nameservers.addresses, |out, address| {
                push_ipv4(out, *address);
            });
        }
    }
}

/// The rest of a `key:` line whose value is a sequence of scalars: ` []` when empty, else a
/// line break and one `- item` line per item at `indent`.
fn write_sequence<T>(
    out: &mut String,
    indent: &str,
    items: &[T],
    mut write_item: impl FnMut(&mut String, &T),
) {
    if items.is_empty() {
        out.push_str(" []\n");
        return;
    }
    out.push('\n');
    for item in items {
        out.push_str(indent);
        out.push_str("- ");
        write_item(out, item);
        out.push('\n');
    }
}

/// Appends a key or word the model fixes (`eth0`, `networkd`): lowercase letters and digits,
/// starting with a letter, which YAML reads as a plain string unless it is one of its few
/// special words (`true`, `null`, ...), and the model has none of those.
fn push_word(out: &mut String, word: &str) {
    debug_assert!(
        word.starts_with(|c: char| c.is_ascii_lowercase())
            && word
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && !matches!(
                word,
                "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "y" | "n"
            ),
        "`{word}` is not a plain YAML word"
    );
    out.push_str(word);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::network::PodRoute;

    /// What serde_norway's generic serializer writes for the same model: the emitter's oracle.
    fn generic(network: &NodeNetwork) -> String {
        let yaml = serde_norway::to_string(&Document::from(network)).expect("serializes");
        format!("# Rendered by kiln for node {}.\n{yaml}", network.node)
    }

    /// Checks the emitter's text for `network` against serde_norway: the same bytes as its
    /// serializer, and read back by its parser, the same value as the typed model.
    fn check(network: &NodeNetwork) -> Result<(), TestCaseError> {
        let fast = netplan_text(network);
        prop_assert_eq!(&fast, &generic(network));
        let parsed: serde_norway::Value = serde_norway::from_str(&fast).expect("parses");
        let model = serde_norway::to_value(Document::from(network)).expect("a value");
        prop_assert_eq!(parsed, model);
        Ok(())
    }

    fn ipv4() -> impl Strategy<Value = Ipv4Addr> {
        any::<u32>().prop_map(Ipv4Addr::from)
    }

    fn ipv4_net() -> impl Strategy<Value = Ipv4Net> {
        (ipv4(), 0..=32u8)
            .prop_map(|(address, prefix)| Ipv4Net::new(address, prefix).expect("0 to 32"))
    }

    /// Any node network, including shapes no valid plan has (no address, any prefix, the
    /// unspecified and broadcast addresses).
    fn node_network_value() -> impl Strategy<Value = NodeNetwork> {
        (
            "[a-z]([a-z0-9-]{0,10}[a-z0-9])?",
            prop::collection::vec(ipv4_net(), 0..4),
            prop::option::of(ipv4()),
            prop::collection::vec(ipv4(), 0..4),
            prop::collection::vec((ipv4_net(), ipv4()), 0..6),
        )
            .prop_map(|(node, addresses, gateway, dns, routes)| NodeNetwork {
                node,
                addresses,
                gateway,
                dns,
                pod_routes: routes
                    .into_iter()
                    .map(|(destination, gateway)| PodRoute {
                        destination,
                        gateway,
                        peer: "peer".to_owned(),
                    })
                    .collect(),
            })
    }

    #[test]
    fn edge_addresses_are_written_as_serde_norway_writes_them() {
        let network = NodeNetwork {
            node: "n0".to_owned(),
            addresses: vec![
                "0.0.0.0/0".parse().expect("CIDR"),
                "255.255.255.255/32".parse().expect("CIDR"),
                "1.2.3.4/8".parse().expect("CIDR"),
            ],
            gateway: Some(Ipv4Addr::UNSPECIFIED),
            dns: vec![Ipv4Addr::BROADCAST, Ipv4Addr::new(1, 0, 0, 1)],
            pod_routes: vec![PodRoute {
                destination: "10.0.0.0/8".parse().expect("CIDR"),
                gateway: Ipv4Addr::new(100, 64, 0, 1),
                peer: "n1".to_owned(),
            }],
        };
        check(&network).expect("agrees");
        check(&NodeNetwork {
            addresses: Vec::new(),
            gateway: None,
            dns: Vec::new(),
            pod_routes: Vec::new(),
            ..network
        })
        .expect("agrees");
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        #[test]
        fn the_emitter_agrees_with_serde_norway_for_any_network(network in node_network_value()) {
            check(&network)?;
        }

        #[test]
        fn the_emitter_agrees_with_serde_norway_for_generated_nodes(spec in kiln_spec::strategies::valid_spec(1..=8)) {
            let plan = spec.validate().expect("generated specs are valid").0;
            for node in &plan.nodes {
                check(&node_network(&plan, node).expect("a network"))?;
            }
        }
    }
}
