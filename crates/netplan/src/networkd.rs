//! systemd-networkd's `.network` file for a node, built from a small typed INI model.

use std::fmt;

use kiln_spec::Plan;

use crate::network::{INTERFACE, node_network};
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
    pub entries: Vec<(&'static str, String)>,
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
    pub fn entry(mut self, key: &'static str, value: impl fmt::Display) -> Self {
        self.entries.push((key, value.to_string()));
        self
    }

    /// The section with `key=value` appended once per value.
    #[must_use]
    pub fn entries<T: fmt::Display>(
        mut self,
        key: &'static str,
        values: impl IntoIterator<Item = T>,
    ) -> Self {
        for value in values {
            self.entries.push((key, value.to_string()));
        }
        self
    }
}

impl fmt::Display for IniFile {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for comment in &self.comments {
            writeln!(out, "# {comment}")?;
        }
        for (index, section) in self.sections.iter().enumerate() {
            if index > 0 || !self.comments.is_empty() {
                writeln!(out)?;
            }
            writeln!(out, "[{}]", section.name)?;
            for (key, value) in &section.entries {
                writeln!(out, "{key}={value}")?;
            }
        }
        Ok(())
    }
}

/// The typed systemd-networkd `.network` file of the node called `node`: `[Match] Name=eth0`;
/// `[Network]` with every `Address=`, the `Gateway=` and each `DNS=`; and one `[Route]` per
/// peer pod subnet (see [`node_network`](crate::node_network)).
pub fn networkd_network(plan: &Plan, node: &str) -> Result<IniFile, Error> {
    let network = node_network(plan, node)?;
    let mut sections = vec![
        IniSection::new("Match").entry("Name", INTERFACE),
        IniSection::new("Network")
            .entries("Address", &network.addresses)
            .entries("Gateway", network.gateway)
            .entries("DNS", &network.dns),
    ];
    sections.extend(network.pod_routes.iter().map(|route| {
        IniSection::new("Route")
            .entry("Destination", route.destination)
            .entry("Gateway", route.gateway)
    }));
    Ok(IniFile {
        comments: vec![format!("Rendered by kiln for node {}.", network.node)],
        sections,
    })
}

/// [`networkd_network`] as a file at [`NETWORKD_PATH`].
pub fn networkd(plan: &Plan, node: &str) -> Result<RenderedFile, Error> {
    Ok(RenderedFile {
        path: NETWORKD_PATH.to_owned(),
        contents: networkd_network(plan, node)?.to_string().into_bytes(),
        mode: 0o644,
    })
}
