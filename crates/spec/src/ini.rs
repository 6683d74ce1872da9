//! systemd's INI format (unit files, systemd-networkd's `.network` files), as a small typed
//! model written in order: the one INI writer of kiln's renderers.
//!
//! ```
//! use kiln_spec::ini::{IniFile, IniSection};
//!
//! let file = IniFile {
//!     comments: vec!["written by kiln".into()],
//!     sections: vec![
//!         IniSection::new("Match").entry("Name", "eth0"),
//!         IniSection::new("Route")
//!             .entry("Destination", "10.1.2.0/24".parse::<ipnet::Ipv4Net>().unwrap())
//!             .entry("Gateway", std::net::Ipv4Addr::new(192, 168, 50, 12)),
//!     ],
//! };
//! assert_eq!(
//!     file.to_text(),
//!     "# written by kiln\n\n[Match]\nName=eth0\n\n[Route]\nDestination=10.1.2.0/24\nGateway=192.168.50.12\n"
//! );
//! ```

use std::fmt;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::text::{push_ipv4, push_ipv4_net};

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
    /// A file of `sections` with no comment lines.
    pub fn new(sections: Vec<IniSection>) -> Self {
        Self {
            comments: Vec::new(),
            sections,
        }
    }

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
