//! CNI checks: kiln's conflist read back as plain JSON against the CNI spec's required fields
//! and the field names containernetworking-plugins documents; and the real plugins from
//! Debian's `containernetworking-plugins` (1.1.1): every plugin kiln names exists and supports
//! kiln's `cniVersion`, and `host-local` allocates from the node's pod subnet with kiln's IPAM
//! section (in a scratch data directory; host-local touches no network).

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_spec::Plan;
use serde_json::{Value, json};

/// Keys the plugins document, per object (containernetworking-plugins' bridge, host-local and
/// portmap READMEs, and the CNI spec's network configuration).
const CONFLIST_KEYS: &[&str] = &["cniVersion", "name", "disableCheck", "plugins"];
const BRIDGE_KEYS: &[&str] = &[
    "type",
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "mtu",
    "hairpinMode",
    "ipam",
    "promiscMode",
    "vlan",
    "capabilities",
];
const HOST_LOCAL_KEYS: &[&str] = &["type", "routes", "resolvConf", "dataDir", "ranges"];
const RANGE_KEYS: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];
const ROUTE_KEYS: &[&str] = &["dst", "gw"];
const PORTMAP_KEYS: &[&str] = &[
    "type",
    "capabilities",
    "snat",
    "externalSetMarkChain",
    "markMasqBit",
    "conditionsV4",
    "conditionsV6",
];

fn keys_within(object: &Value, allowed: &[&str], what: &str) {
    let keys: BTreeSet<&str> = object
        .as_object()
        .unwrap_or_else(|| panic!("{what} is an object: {object}"))
        .keys()
        .map(String::as_str)
        .collect();
    let unknown: Vec<&&str> = keys.iter().filter(|key| !allowed.contains(key)).collect();
    assert!(
        unknown.is_empty(),
        "{what} has undocumented keys {unknown:?}: {object}"
    );
}

fn conflist_json(plan: &Plan, node: &str) -> Value {
    let files =
        kiln_netplan::cni(plan, plan.node(node).expect("a node of the plan")).expect("renders");
    let file = files
        .iter()
        .find(|file| file.path == kiln_netplan::CONFLIST_PATH)
        .unwrap_or_else(|| panic!("{node} has a conflist"));
    serde_json::from_slice(&file.contents).expect("the conflist is JSON")
}

/// Every kubelet node of every example.
fn kubelet_nodes() -> Vec<(String, Plan, String)> {
    let mut nodes = Vec::new();
    for (example, plan) in kiln_testkit::example_plans() {
        for node in plan.kubelet_nodes() {
            nodes.push((example.clone(), plan.clone(), node.name.clone()));
        }
    }
    assert!(nodes.len() >= 10, "the examples have kubelet nodes");
    nodes
}

#[test]
fn conflists_have_the_spec_fields_and_documented_plugin_fields() {
    for (example, plan, node) in kubelet_nodes() {
        let what = format!("{example}/{node}");
        let pod_subnet = plan
            .node(&node)
            .and_then(|node| node.pod_subnet)
            .expect("a pod subnet");
        let conflist = conflist_json(&plan, &node);
        keys_within(&conflist, CONFLIST_KEYS, &what);
        // The CNI spec requires cniVersion, name, and plugins, each with a type.
        assert_eq!(conflist["cniVersion"], "0.4.0", "{what}");
        assert_eq!(conflist["name"], "kiln", "{what}");
        let plugins = conflist["plugins"].as_array().expect("plugins is a list");
        let types: Vec<&str> = plugins
            .iter()
            .map(|plugin| plugin["type"].as_str().expect("type is a string"))
            .collect();
        assert_eq!(types, ["bridge", "portmap"], "{what}");

        let bridge = &plugins[0];
        keys_within(bridge, BRIDGE_KEYS, &what);
        assert_eq!(bridge["bridge"], "cni0");
        for flag in ["isGateway", "hairpinMode"] {
            assert_eq!(bridge[flag], true, "{what}: {flag}");
        }
        // No NAT between pods: kiln-pod-nat.service masquerades only what leaves pod_cidr.
        assert_eq!(bridge["ipMasq"], false, "{what}: ipMasq");
        // With both isDefaultGateway and an IPAM default route, bridge 1.1.1 fails every pod.
        assert!(bridge.get("isDefaultGateway").is_none(), "{what}");
        let ipam = &bridge["ipam"];
        keys_within(ipam, HOST_LOCAL_KEYS, &what);
        assert_eq!(ipam["type"], "host-local");
        assert_eq!(
            ipam["ranges"],
            json!([[{ "subnet": pod_subnet.to_string() }]]),
            "{what}"
        );
        for range in ipam["ranges"][0].as_array().expect("a range set") {
            keys_within(range, RANGE_KEYS, &what);
        }
        assert_eq!(ipam["routes"], json!([{ "dst": "0.0.0.0/0" }]), "{what}");
        keys_within(&ipam["routes"][0], ROUTE_KEYS, &what);

        let portmap = &plugins[1];
        keys_within(portmap, PORTMAP_KEYS, &what);
        assert_eq!(
            portmap["capabilities"],
            json!({ "portMappings": true }),
            "{what}"
        );

        // The typed value reads back from the bytes.
        let typed: kiln_netplan::CniConfList =
            serde_json::from_value(conflist).expect("reads back");
        assert_eq!(
            Some(typed),
            kiln_netplan::cni_conflist(&plan, plan.node(&node).expect("a node of the plan"))
                .expect("renders"),
            "{what}"
        );
    }
}

#[test]
fn loopback_is_the_plain_loopback_network() {
    let plan = common::example("two-node");
    let files = kiln_netplan::cni(&plan, plan.node("node1").expect("node1 is in the plan"))
        .expect("renders");
    let loopback = files
        .iter()
        .find(|file| file.path == kiln_netplan::LOOPBACK_PATH)
        .expect("a loopback file");
    let value: Value = serde_json::from_slice(&loopback.contents).expect("JSON");
    assert_eq!(
        value,
        json!({ "cniVersion": "0.4.0", "name": "lo", "type": "loopback" })
    );
}

#[test]
fn nodes_without_a_kubelet_have_no_cni_files() {
    let plan = common::example("ha");
    for name in ["lb", "controller-0", "controller-1", "controller-2"] {
        assert!(
            kiln_netplan::cni(&plan, plan.node(name).expect("a node of the plan"))
                .expect("renders")
                .is_empty(),
            "{name}"
        );
    }
}

fn plugin(name: &str) -> PathBuf {
    let path = Path::new("/usr/lib/cni").join(name);
    assert!(
        path.is_file(),
        "{} is missing; install the Debian package: apt-get install -y containernetworking-plugins",
        path.display()
    );
    path
}

/// Runs CNI plugin `name` with `command`, `config` on standard input, and the CNI variables.
fn run_plugin(name: &str, command: &str, config: &Value) -> (bool, Value, String) {
    let mut child = Command::new(plugin(name))
        .env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_CONTAINERID", "kiln-netplan-test")
        .env("CNI_NETNS", "/nonexistent/kiln-netplan-test")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the plugin starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(config.to_string().as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("the plugin runs");
    let stdout = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
    (
        output.status.success(),
        stdout,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_real_plugins_support_kilns_cni_version() {
    let plan = common::example("two-node");
    let conflist = conflist_json(&plan, "node1");
    let version = conflist["cniVersion"].clone();
    let mut types: Vec<String> = conflist["plugins"]
        .as_array()
        .expect("plugins")
        .iter()
        .map(|plugin| plugin["type"].as_str().expect("a type").to_owned())
        .collect();
    types.push("host-local".to_owned());
    types.push("loopback".to_owned());
    for name in types {
        let (ok, answer, stderr) = run_plugin(&name, "VERSION", &json!({ "cniVersion": version }));
        assert!(ok, "{name} VERSION failed: {stderr}");
        let supported = answer["supportedVersions"]
            .as_array()
            .expect("supportedVersions");
        assert!(
            supported.contains(&version),
            "{name} supports {supported:?}, not {version}"
        );
    }
}

#[test]
fn host_local_allocates_from_the_pod_subnet() {
    for (example, plan, node) in kubelet_nodes().into_iter().take(3) {
        let pod_subnet = plan
            .node(&node)
            .and_then(|node| node.pod_subnet)
            .expect("a pod subnet");
        let conflist = conflist_json(&plan, &node);
        // What libcni gives a plugin of a list: its object with the list's name and cniVersion.
        let mut config = conflist["plugins"][0].clone();
        config["name"] = conflist["name"].clone();
        config["cniVersion"] = conflist["cniVersion"].clone();
        // The one change for the test: keep host-local's records in a scratch directory.
        let data = tempfile::tempdir().expect("a scratch directory");
        config["ipam"]["dataDir"] = json!(data.path());
        let (ok, result, stderr) = run_plugin("host-local", "ADD", &config);
        assert!(ok, "{example}/{node}: host-local ADD failed: {stderr}");
        let address: ipnet::Ipv4Net = result["ips"][0]["address"]
            .as_str()
            .expect("an address")
            .parse()
            .expect("CIDR");
        let gateway: std::net::Ipv4Addr = result["ips"][0]["gateway"]
            .as_str()
            .expect("a gateway")
            .parse()
            .expect("IPv4");
        assert_eq!(address.trunc(), pod_subnet, "{example}/{node}: {result}");
        assert!(pod_subnet.contains(&gateway), "{example}/{node}: {result}");
        assert_eq!(
            result["routes"],
            json!([{ "dst": "0.0.0.0/0" }]),
            "{example}/{node}"
        );
        let (released, _, stderr) = run_plugin("host-local", "DEL", &config);
        assert!(
            released,
            "{example}/{node}: host-local DEL failed: {stderr}"
        );
    }
}
