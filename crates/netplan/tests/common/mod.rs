//! Shared helpers for kiln-netplan's integration tests: example plans, the real programs that
//! check our output (failing with the Debian package to install when one is missing), and an
//! independent INI reader for systemd-networkd files.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use kiln_spec::Plan;

/// The plan of the spec at `path`.
pub fn load(path: &Path) -> Plan {
    let source = std::fs::read_to_string(path).expect("the spec is readable");
    load_source(&source, &path.display().to_string())
}

/// The plan of spec text `source`.
pub fn load_source(source: &str, file: &str) -> Plan {
    kiln_spec::load(source, file)
        .unwrap_or_else(|errors| panic!("{errors}"))
        .plan
}

/// The source text of the example `name` (`two-node`, `ha`, ...).
pub fn example_source(name: &str) -> String {
    std::fs::read_to_string(kiln_testkit::examples_dir().join(format!("{name}.toml")))
        .expect("the example is readable")
}

/// The plan of the example `name`.
pub fn example(name: &str) -> Plan {
    load(&kiln_testkit::examples_dir().join(format!("{name}.toml")))
}

/// A systemd-style INI file as (section, key, value) triples, each section numbered by its
/// position so that repeated `[Route]` sections stay apart: `("Route#2", "Gateway", "10.0.0.1")`.
/// Written independently of kiln-netplan's INI model, so it can check it.
pub fn parse_ini(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut index = 0;
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            index += 1;
            section = format!("{name}#{index}");
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("`{line}` is neither a section nor Key=value"));
        assert!(!section.is_empty(), "`{line}` comes before any section");
        entries.push((
            section.clone(),
            key.trim().to_owned(),
            value.trim().to_owned(),
        ));
    }
    entries
}

/// What a `.network` file means for kiln, normalized so that netplan's output and ours compare:
/// the interface matched, the addresses, the default gateway (netplan writes `to: default` as a
/// `[Route]` with `Destination=0.0.0.0/0`; kiln writes `[Network] Gateway=`), DNS servers (one
/// per line or several on a line), and the other routes as (destination, gateway) pairs. Keys
/// that only one side writes (netplan's `LinkLocalAddressing=ipv6`) are left out, and any other
/// key fails the comparison so that nothing is silently dropped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct NetworkMeaning {
    pub match_name: BTreeSet<String>,
    pub addresses: BTreeSet<String>,
    pub gateways: BTreeSet<String>,
    pub dns: BTreeSet<String>,
    pub routes: BTreeSet<(String, String)>,
    /// `LinkLocalAddressing=` and `IPv6AcceptRA=`, as written (empty: not written).
    pub ipv6: (String, String),
}

pub fn meaning(text: &str) -> NetworkMeaning {
    let mut meaning = NetworkMeaning::default();
    let mut routes: BTreeMap<String, (Option<String>, Option<String>)> = BTreeMap::new();
    for (section, key, value) in parse_ini(text) {
        let name = section.split('#').next().expect("a name").to_owned();
        match (name.as_str(), key.as_str()) {
            ("Match", "Name") => {
                meaning.match_name.insert(value);
            }
            ("Network", "Address") => {
                meaning.addresses.insert(value);
            }
            ("Network", "Gateway") => {
                meaning.gateways.insert(value);
            }
            ("Network", "DNS") => meaning
                .dns
                .extend(value.split_whitespace().map(str::to_owned)),
            ("Network", "LinkLocalAddressing") => meaning.ipv6.0 = value,
            ("Network", "IPv6AcceptRA") => meaning.ipv6.1 = value,
            ("Route", "Destination") => routes.entry(section).or_default().0 = Some(value),
            ("Route", "Gateway") => routes.entry(section).or_default().1 = Some(value),
            _ => panic!("unexpected key [{name}] {key}={value} in\n{text}"),
        }
    }
    for (section, route) in routes {
        match route {
            (Some(destination), Some(gateway)) if destination == "0.0.0.0/0" => {
                meaning.gateways.insert(gateway);
            }
            (Some(destination), Some(gateway)) => {
                meaning.routes.insert((destination, gateway));
            }
            incomplete => panic!("[{section}] is incomplete: {incomplete:?} in\n{text}"),
        }
    }
    meaning
}
