//! systemd-networkd's `.network` file for a node, built with kiln-spec's typed INI model
//! ([`kiln_spec::ini`]).

pub use kiln_spec::ini::{IniFile, IniSection, IniValue};
use kiln_spec::{NodePlan, Plan};

use crate::network::{INTERFACE, NodeNetwork, node_network};
use crate::{Error, RenderedFile};

/// Where the systemd-networkd file goes, relative to the node's root. It sorts before netplan's
/// generated `10-netplan-eth0.network`, so it wins should both exist.
pub const NETWORKD_PATH: &str = "etc/systemd/network/10-kiln-eth0.network";

/// The typed systemd-networkd `.network` file of `node` (one of `plan`'s nodes): `[Match] Name=eth0`;
/// `[Network]` with every `Address=`, the `Gateway=`, each `DNS=`, and no IPv6 (no link-local
/// address, no router advertisements); and one `[Route]` per
/// peer pod subnet (see [`node_network`](crate::node_network)).
pub fn networkd_network(plan: &Plan, node: &NodePlan) -> Result<IniFile, Error> {
    Ok(network_file(&node_network(plan, node)?))
}

/// The `.network` file of `network`.
fn network_file(network: &NodeNetwork) -> IniFile {
    let mut sections = Vec::with_capacity(2 + network.pod_routes.len());
    sections.push(IniSection::new("Match").entry("Name", INTERFACE));
    sections.push(
        IniSection::new("Network")
            .entries("Address", &network.addresses)
            .entries("Gateway", network.gateway)
            .entries("DNS", &network.dns)
            // IPv4 only: without these, the link waits for an IPv6 router advertisement that
            // never comes, holding `network-online.target` (and so the kubelet) back 12 s.
            .entry("LinkLocalAddressing", "no")
            .entry("IPv6AcceptRA", "no"),
    );
    sections.extend(network.pod_routes.iter().map(|route| IniSection {
        name: "Route",
        entries: vec![
            ("Destination", route.destination.into()),
            ("Gateway", route.gateway.into()),
        ],
    }));
    IniFile {
        comments: vec![format!("Rendered by kiln for node {}.", network.node)],
        sections,
    }
}

/// [`networkd_network`] as a file at [`NETWORKD_PATH`].
pub fn networkd(plan: &Plan, node: &NodePlan) -> Result<RenderedFile, Error> {
    Ok(networkd_file(&node_network(plan, node)?))
}

/// The systemd-networkd file of `network`.
pub(crate) fn networkd_file(network: &NodeNetwork) -> RenderedFile {
    RenderedFile {
        path: NETWORKD_PATH.to_owned(),
        contents: network_file(network).to_text().into_bytes(),
        mode: 0o644,
    }
}
