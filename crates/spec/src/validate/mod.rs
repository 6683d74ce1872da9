//! Checks a [`Spec`] and normalizes it into a [`Plan`], collecting every problem at once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use crate::diagnostic::{Diagnostic, Severity};
use crate::locate::key_segment;
use crate::names::{CA_CERTIFICATES, CLUSTER_CERTIFICATES, NODE_CERTIFICATES};
use crate::plan::{
    APISERVER_PORT, ClusterPlan, EndpointPlan, LeaderElectionPlan, NodePlan, OptionsPlan, PkiPlan,
    Plan, runs_kubelet,
};
use crate::raw::{
    ClusterDns, ControlPlaneMode, EncryptionProvider, EndpointMode, KubeProxyMode,
    KubeconfigCertificates, KubeletCredentials, LeaderElectionSpec, PodSecurityLevel, Role, Spec,
};
use crate::version::KubeVersion;

mod endpoint;
mod nodes;
mod options;
pub use options::POD_SECURITY_MINOR;
mod pki;

const DEFAULT_DOMAIN: &str = "cluster.local";
const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";
const DEFAULT_POD_CIDR: &str = "10.244.0.0/16";
const LOCAL_ENDPOINT_PORT: u16 = 6444;
const AUTHORIZATION_MODES: &[&str] = &[
    "ABAC",
    "AlwaysAllow",
    "AlwaysDeny",
    "Node",
    "RBAC",
    "Webhook",
];
const DNS_LABEL_HELP: &str =
    "use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit";

/// Validates `spec`: the plan when there are no errors, and every finding (errors and warnings).
pub(crate) fn validate(spec: &Spec) -> (Option<Plan>, Vec<Diagnostic>) {
    let mut checker = Checker::default();
    let plan = checker.plan(spec);
    let has_errors = checker
        .findings
        .iter()
        .any(|item| item.severity == Severity::Error);
    (if has_errors { None } else { plan }, checker.findings)
}

#[derive(Default)]
struct Checker {
    findings: Vec<Diagnostic>,
}

impl Checker {
    fn push(&mut self, diagnostic: Diagnostic) {
        self.findings.push(diagnostic);
    }

    /// Builds the plan, recording findings; `None` when a value the plan needs is unusable.
    fn plan(&mut self, spec: &Spec) -> Option<Plan> {
        let cluster = &spec.cluster;
        self.dns_label("cluster.name", &cluster.name);
        let version = self.version(&cluster.kubernetes_version);
        let domain = cluster
            .domain
            .clone()
            .unwrap_or_else(|| DEFAULT_DOMAIN.to_owned());
        if !is_dns_subdomain(&domain) {
            self.push(
                Diagnostic::error("cluster.domain", format!("`{domain}` is not a DNS domain"))
                    .help("dot-separated DNS labels, for example cluster.local"),
            );
        }
        let service_cidr = self.network(
            "cluster.service_cidr",
            cluster
                .service_cidr
                .as_deref()
                .unwrap_or(DEFAULT_SERVICE_CIDR),
            28,
            "the Service range needs at least 16 addresses (the cluster DNS address is the tenth)",
        );
        let pod_cidr = self.network(
            "cluster.pod_cidr",
            cluster.pod_cidr.as_deref().unwrap_or(DEFAULT_POD_CIDR),
            24,
            "each node gets a /24 of the pod range",
        );
        if let (Some(service), Some(pod)) = (service_cidr, pod_cidr)
            && overlaps(service, pod)
        {
            self.push(
                Diagnostic::error(
                    "cluster.service_cidr",
                    format!("the Service range {service} overlaps the pod range {pod}"),
                )
                .help("choose disjoint ranges, for example 10.96.0.0/12 and 10.244.0.0/16"),
            );
        }
        let mode = cluster
            .control_plane_mode
            .unwrap_or(ControlPlaneMode::StaticPods);

        let nodes = self.nodes(spec, mode, service_cidr, pod_cidr);
        self.role_counts(spec);
        let apiserver_port = self.apiserver_port(cluster.apiserver_port);
        let endpoint = self.endpoint(spec, &nodes, apiserver_port);
        let pki = self.pki(spec, mode);
        let options = self.options(spec, mode, version);

        let (version, service_cidr, pod_cidr, apiserver_port, endpoint, pki, options) = (
            version?,
            service_cidr?,
            pod_cidr?,
            apiserver_port?,
            endpoint?,
            pki?,
            options?,
        );
        let mut nodes = nodes?;
        nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let etcd: Vec<&NodePlan> = nodes.iter().filter(|node| node.has(Role::Etcd)).collect();
        let etcd_initial_cluster = etcd
            .iter()
            .map(|node| format!("{}=https://{}:2380", node.name, node.primary_address()))
            .collect::<Vec<_>>()
            .join(",");
        let etcd_servers = etcd
            .iter()
            .map(|node| format!("https://{}:2379", node.primary_address()))
            .collect::<Vec<_>>()
            .join(",");
        let service_base = u32::from(service_cidr.network());
        Some(Plan {
            cluster: ClusterPlan {
                name: cluster.name.clone(),
                kubernetes_version: version,
                domain,
                service_cidr,
                pod_cidr,
                control_plane_mode: mode,
                endpoint,
                apiserver_port,
                first_service_ip: Ipv4Addr::from(service_base + 1),
                cluster_dns_ip: Ipv4Addr::from(service_base + 10),
                etcd_initial_cluster,
                etcd_servers,
            },
            pki,
            nodes,
            options,
        })
    }

    fn dns_label(&mut self, field: &str, name: &str) -> bool {
        let valid = is_dns_label(name);
        if !valid {
            self.push(
                Diagnostic::error(field, format!("`{name}` is not a DNS-1123 label"))
                    .help(DNS_LABEL_HELP),
            );
        }
        valid
    }

    fn version(&mut self, text: &str) -> Option<KubeVersion> {
        let field = "cluster.kubernetes_version";
        match text.parse::<KubeVersion>() {
            Err(error) => {
                self.push(Diagnostic::error(field, error.to_string()));
                None
            }
            Ok(version) if !version.is_supported() => {
                self.push(
                    Diagnostic::error(field, format!("Kubernetes {version} is not supported"))
                        .help(format!("kiln supports {}", KubeVersion::supported_range())),
                );
                None
            }
            Ok(version) => Some(version),
        }
    }

    /// Parses a network in CIDR notation with no host bits and a prefix of at most `max_prefix`.
    fn network(&mut self, field: &str, text: &str, max_prefix: u8, why: &str) -> Option<Ipv4Net> {
        let Ok(net) = text.parse::<Ipv4Net>() else {
            self.push(
                Diagnostic::error(field, format!("`{text}` is not an IPv4 network"))
                    .help("CIDR notation, for example 10.96.0.0/12"),
            );
            return None;
        };
        if net.trunc() != net {
            self.push(
                Diagnostic::error(field, format!("`{text}` has host bits set"))
                    .help(format!("did you mean {}?", net.trunc())),
            );
            return None;
        }
        if net.prefix_len() > max_prefix {
            self.push(
                Diagnostic::error(field, format!("{net} is too small"))
                    .help(format!("use a prefix of /{max_prefix} or shorter: {why}")),
            );
            return None;
        }
        Some(net)
    }
}

/// Whether `name` is a DNS-1123 label: 1 to 63 of `[a-z0-9-]`, starting and ending alphanumeric.
pub fn is_dns_label(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Whether `name` is a DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(is_dns_label)
}

fn overlaps(a: Ipv4Net, b: Ipv4Net) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

fn slash24_count(cidr: Ipv4Net) -> u64 {
    1u64 << (24 - u32::from(cidr.prefix_len().min(24)))
}

fn nth_slash24(cidr: Ipv4Net, index: u32) -> Option<Ipv4Net> {
    if u64::from(index) >= slash24_count(cidr) {
        return None;
    }
    let base = u32::from(cidr.network()) + (index << 8);
    Ipv4Net::new(Ipv4Addr::from(base), 24).ok()
}
