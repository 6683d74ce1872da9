//! systemd-networkd's `.network` file for a node, built from a small typed INI model.

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use kiln_spec::Plan;

use crate::network::{INTERFACE, NodeNetwork, node_network};
use crate::text::{push_ipv4, push_ipv4_net};
use crate::{Error, RenderedFile};

/// Where the systemd-networkd file goes, relative to the node's root. It sorts before netplan's
/// generated `10-netplan-eth0.network`, so it wins should both exist.
pub const NETWORKD_PATH: &str = "etc/systemd/network/10-kiln-eth0.network";

/// A systemd unit-style INI file: comment lines, then sections in order.
///
/// Keys may repeat within a section (`Address=` once per address), and sections may repeat
/// (`[Route]` once per route), so both are ordered lists rather than maps.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IniFile {
    /// Comment lines written before the first section, without their `# `.
    pub comments: Vec<String>,
    /// The sections, in output order.
    pub sections: Vec<IniSection>,
}

/// One `[Name]` section of an [`IniFile`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IniSection {
    /// The section's name, without brackets: `Network`.
    pub name: &'static str,
    /// `Key=value` entries in output order.
    pub entries: Vec<(&'static str, IniValue)>,
}

/// The value of an [`IniSection`] entry, kept typed until the file is written: a million routes
/// need no intermediate strings.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IniValue {
    /// Text, written as it is (one line).
    Text(String),
    /// An IPv4 address: `192.168.50.12`.
    Address(Ipv4Addr),
    /// An IPv4 network with its prefix: `10.1.2.0/24`.
    Network(Ipv4Net),
}

impl IniValue {
    fn write(&self, out: &mut String) {
        match self {
            Self::Text(text) => out.push_str(text),
            Self::Address(address) => push_ipv4(out, *address),
            Self::Network(network) => push_ipv4_net(out, *network),
        }
    }
}

impl fmt::Display for IniValue {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Text(text) => out.write_str(text),
            Self::Address(address) => address.fmt(out),
            Self::Network(network) => network.fmt(out),
        }
    }
}

impl From<&str> for IniValue {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for IniValue {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<Ipv4Addr> for IniValue {
    fn from(address: Ipv4Addr) -> Self {
        Self::Address(address)
    }
}

impl From<&Ipv4Addr> for IniValue {
    fn from(address: &Ipv4Addr) -> Self {
        Self::Address(*address)
    }
}

impl From<Ipv4Net> for IniValue {
    fn from(network: Ipv4Net) -> Self {
        Self::Network(network)
    }
}

impl From<&Ipv4Net> for IniValue {
    fn from(network: &Ipv4Net) -> Self {
        Self::Network(*network)
    }
}

impl IniSection {
    /// An empty section called `name`.
    pub fn new(name: &'static str) -> Self {
        Self {
            name,
            entries: Vec::new(),
        }
    }

    /// The section with `key=value` appended.
    #[must_use]
    pub fn entry(mut self, key: &'static str, value: impl Into<IniValue>) -> Self {
        self.entries.push((key, value.into()));
        self
    }

    /// The section with `key=value` appended once per value.
    #[must_use]
    pub fn entries<T: Into<IniValue>>(
        mut self,
        key: &'static str,
        values: impl IntoIterator<Item = T>,
    ) -> Self {
        self.entries
            .extend(values.into_iter().map(|value| (key, value.into())));
        self
    }
}

impl IniFile {
    /// The file's text: `# comment` lines, then each section after a blank line (none before
    /// the first when there are no comments), one `Key=value` per line.
    pub fn to_text(&self) -> String {
        // Sections here are short: about 24 bytes each plus their entries.
        let entries: usize = self
            .sections
            .iter()
            .map(|section| section.entries.len())
            .sum();
        let mut out = String::with_capacity(64 + 16 * self.sections.len() + 32 * entries);
        for comment in &self.comments {
            out.push_str("# ");
            out.push_str(comment);
            out.push('\n');
        }
        for (index, section) in self.sections.iter().enumerate() {
            if index > 0 || !self.comments.is_empty() {
                out.push('\n');
            }
            out.push('[');
            out.push_str(section.name);
            out.push_str("]\n");
            for (key, value) in &section.entries {
                out.push_str(key);
                out.push('=');
                value.write(&mut out);
                out.push('\n');
            }
        }
        out
    }
}

impl fmt::Display for IniFile {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        out.write_str(&self.to_text())
    }
}

/// The typed systemd-networkd `.network` file of the node called `node`: `[Match] Name=eth0`;
/// `[Network]` with every `Address=`, the `Gateway=` and each `DNS=`; and one `[Route]` per
/// peer pod subnet (see [`node_network`](crate::node_network)).
pub fn networkd_network(plan: &Plan, node: &str) -> Result<IniFile, Error> {
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
            .entries("DNS", &network.dns),
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
pub fn networkd(plan: &Plan, node: &str) -> Result<RenderedFile, Error> {
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
