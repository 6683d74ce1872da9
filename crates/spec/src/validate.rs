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
    KubeconfigCertificates, KubeletCredentials, LeaderElectionSpec, Role, Spec,
};
use crate::version::KubeVersion;

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
        let endpoint = self.endpoint(spec, &nodes);
        let pki = self.pki(spec, mode);
        let options = self.options(spec, mode, version);

        let (version, service_cidr, pod_cidr, endpoint, pki, options) = (
            version?,
            service_cidr?,
            pod_cidr?,
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

    fn nodes(
        &mut self,
        spec: &Spec,
        mode: ControlPlaneMode,
        service_cidr: Option<Ipv4Net>,
        pod_cidr: Option<Ipv4Net>,
    ) -> Option<Vec<NodePlan>> {
        let mut ok = true;
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        let mut addresses: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut pod_subnets: Vec<(Ipv4Net, String)> = Vec::new();
        let mut kubelet_index: u32 = 0;
        let mut plans = Vec::new();
        for (index, node) in spec.nodes.iter().enumerate() {
            let at = |field: &str| format!("nodes[{index}].{field}");
            ok &= self.dns_label(&at("name"), &node.name);
            if let Some(first) = names.insert(&node.name, index) {
                ok = false;
                self.push(
                    Diagnostic::error(
                        at("name"),
                        format!("node name `{}` is used twice", node.name),
                    )
                    .help(format!(
                        "nodes[{first}] has the same name; node names must be unique"
                    )),
                );
            }
            let roles: BTreeSet<Role> = node.roles.iter().copied().collect();
            if roles.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::error(at("roles"), "a node needs at least one role")
                        .help("roles are control-plane, etcd, worker and load-balancer"),
                );
            } else if roles.len() != node.roles.len() {
                self.push(Diagnostic::warning(at("roles"), "a role is listed twice"));
            }

            let mut node_addresses = Vec::new();
            if node.addresses.is_empty() {
                ok = false;
                self.push(
                    Diagnostic::error(at("addresses"), "a node needs at least one address")
                        .help("IPv4 addresses in CIDR notation, for example 192.168.50.11/24"),
                );
            }
            for (address_index, text) in node.addresses.iter().enumerate() {
                let field = at(&format!("addresses[{address_index}]"));
                let Ok(address) = text.parse::<Ipv4Net>() else {
                    ok = false;
                    let help = if text.parse::<Ipv4Addr>().is_ok() {
                        format!("add the prefix length of its subnet, for example {text}/24")
                    } else {
                        "an IPv4 address in CIDR notation, for example 192.168.50.11/24".to_owned()
                    };
                    self.push(
                        Diagnostic::error(
                            &field,
                            format!("`{text}` is not an IPv4 address with a prefix"),
                        )
                        .help(help),
                    );
                    continue;
                };
                if address.prefix_len() < 31
                    && (address.addr() == address.network()
                        || address.addr() == address.broadcast())
                {
                    ok = false;
                    let what = if address.addr() == address.network() {
                        "network"
                    } else {
                        "broadcast"
                    };
                    self.push(
                        Diagnostic::error(
                            &field,
                            format!(
                                "{} is the {what} address of its own subnet {}, outside the subnet's host range",
                                address.addr(),
                                address.trunc()
                            ),
                        )
                        .help(format!(
                            "use a host address between {} and {}",
                            address.hosts().next().unwrap_or(address.addr()),
                            address.hosts().last().unwrap_or(address.addr())
                        )),
                    );
                }
                if let Some(owner) = addresses.get(&address.addr()) {
                    ok = false;
                    self.push(
                        Diagnostic::error(
                            &field,
                            format!("address {} is used twice", address.addr()),
                        )
                        .help(format!(
                            "{owner} has it already; every address must be unique"
                        )),
                    );
                } else {
                    addresses.insert(address.addr(), field.clone());
                }
                for (range, name) in [(service_cidr, "Service range"), (pod_cidr, "pod range")] {
                    if let Some(range) = range
                        && overlaps(address.trunc(), range)
                    {
                        ok = false;
                        self.push(
                            Diagnostic::error(
                                &field,
                                format!(
                                    "node network {} overlaps the {name} {range}",
                                    address.trunc()
                                ),
                            )
                            .help("node, Service and pod networks must be disjoint"),
                        );
                    }
                }
                node_addresses.push(address);
            }

            let gateway = match &node.gateway {
                None => None,
                Some(text) => match text.parse::<Ipv4Addr>() {
                    Err(_) => {
                        ok = false;
                        self.push(Diagnostic::error(
                            at("gateway"),
                            format!("`{text}` is not an IPv4 address"),
                        ));
                        None
                    }
                    Ok(gateway) => {
                        let inside = node_addresses
                            .iter()
                            .any(|net| net.trunc().contains(&gateway));
                        if !node_addresses.is_empty() && !inside {
                            ok = false;
                            let subnets: Vec<String> = node_addresses
                                .iter()
                                .map(|net| net.trunc().to_string())
                                .collect();
                            self.push(
                                Diagnostic::error(
                                    at("gateway"),
                                    format!("gateway {gateway} is outside the node's subnets"),
                                )
                                .help(format!("choose an address in {}", subnets.join(", "))),
                            );
                        } else if node_addresses.iter().any(|net| net.addr() == gateway) {
                            ok = false;
                            self.push(Diagnostic::error(
                                at("gateway"),
                                format!("gateway {gateway} is the node's own address"),
                            ));
                        }
                        Some(gateway)
                    }
                },
            };

            let mut dns = Vec::new();
            for (dns_index, text) in node.dns.iter().enumerate() {
                match text.parse::<Ipv4Addr>() {
                    Ok(address) => dns.push(address),
                    Err(_) => {
                        ok = false;
                        self.push(Diagnostic::error(
                            at(&format!("dns[{dns_index}]")),
                            format!("`{text}` is not an IPv4 address"),
                        ));
                    }
                }
            }

            let pod_subnet = if runs_kubelet(&roles, mode) {
                let subnet = match &node.pod_subnet {
                    Some(text) => self.explicit_pod_subnet(&at("pod_subnet"), text, pod_cidr),
                    None => {
                        let subnet = pod_cidr.and_then(|cidr| nth_slash24(cidr, kubelet_index));
                        if let (None, Some(cidr)) = (subnet, pod_cidr) {
                            self.push(
                                Diagnostic::error(
                                    at("pod_subnet"),
                                    format!(
                                        "more nodes than pod subnets: the pod range {cidr} has {} /24 subnets, and this is kubelet node number {}",
                                        slash24_count(cidr),
                                        kubelet_index + 1
                                    ),
                                )
                                .help("widen cluster.pod_cidr or give nodes explicit pod_subnet values"),
                            );
                        }
                        subnet
                    }
                };
                kubelet_index += 1;
                if let Some(subnet) = subnet {
                    let field = at("pod_subnet");
                    if let Some((_, owner)) = pod_subnets
                        .iter()
                        .find(|(other, _)| overlaps(*other, subnet))
                    {
                        ok = false;
                        self.push(
                            Diagnostic::error(
                                &field,
                                format!("pod subnet {subnet} is shared with {owner}"),
                            )
                            .help("every node needs a pod subnet of its own"),
                        );
                    }
                    pod_subnets.push((subnet, format!("nodes[{index}] ({})", node.name)));
                } else {
                    ok = false;
                }
                subnet
            } else {
                if node.pod_subnet.is_some() {
                    ok = false;
                    self.push(
                        Diagnostic::error(
                            at("pod_subnet"),
                            "this node runs no kubelet, so it has no pods",
                        )
                        .help("remove pod_subnet, or give the node the worker role"),
                    );
                }
                None
            };

            plans.push(NodePlan {
                name: node.name.clone(),
                roles,
                addresses: node_addresses,
                gateway,
                dns,
                pod_subnet,
            });
        }
        ok.then_some(plans)
    }

    fn explicit_pod_subnet(
        &mut self,
        field: &str,
        text: &str,
        pod_cidr: Option<Ipv4Net>,
    ) -> Option<Ipv4Net> {
        let subnet = self.network(field, text, 30, "a pod subnet needs room for pods")?;
        if let Some(cidr) = pod_cidr
            && !cidr.contains(&subnet)
        {
            self.push(
                Diagnostic::error(
                    field,
                    format!("pod subnet {subnet} is outside the pod range {cidr}"),
                )
                .help(format!(
                    "choose a subnet of {cidr}, or widen cluster.pod_cidr"
                )),
            );
            return None;
        }
        Some(subnet)
    }

    fn role_counts(&mut self, spec: &Spec) {
        let count = |role| {
            spec.nodes
                .iter()
                .filter(|node| node.roles.contains(&role))
                .count()
        };
        if count(Role::ControlPlane) == 0 {
            self.push(
                Diagnostic::error("nodes", "no node has the control-plane role")
                    .help("add \"control-plane\" to the roles of at least one node"),
            );
        }
        let etcd = count(Role::Etcd);
        if etcd == 0 {
            self.push(
                Diagnostic::error("nodes", "no node has the etcd role")
                    .help("add \"etcd\" to the roles of one, three or five nodes"),
            );
        } else if etcd % 2 == 0 {
            self.push(
                Diagnostic::warning(
                    "nodes",
                    format!(
                        "{etcd} etcd members: an even number tolerates no more failures than {}",
                        etcd - 1
                    ),
                )
                .help("use an odd number of etcd members"),
            );
        }
    }

    fn endpoint(&mut self, spec: &Spec, nodes: &Option<Vec<NodePlan>>) -> Option<EndpointPlan> {
        let field = "cluster.endpoint";
        let control_planes: Vec<&crate::raw::NodeSpec> = spec
            .nodes
            .iter()
            .filter(|node| node.roles.contains(&Role::ControlPlane))
            .collect();
        let mut balancers: Vec<&crate::raw::NodeSpec> = spec
            .nodes
            .iter()
            .filter(|node| node.roles.contains(&Role::LoadBalancer))
            .collect();
        balancers.sort_by(|a, b| a.name.cmp(&b.name));
        let endpoint = spec.cluster.endpoint.as_ref();
        let mode = match endpoint.map(|endpoint| endpoint.mode) {
            Some(mode) => mode,
            None if control_planes.len() <= 1 => EndpointMode::Node,
            None if !balancers.is_empty() => EndpointMode::LoadBalancer,
            None => {
                self.push(
                    Diagnostic::error(
                        field,
                        format!("{} control-plane nodes need an API endpoint in front of them", control_planes.len()),
                    )
                    .help("set [cluster.endpoint] mode = \"load-balancer\" (with a load-balancer node or host) or \"local\""),
                );
                return None;
            }
        };
        let host = endpoint.and_then(|endpoint| endpoint.host.clone());
        if let Some(host) = &host {
            if mode != EndpointMode::LoadBalancer {
                self.push(
                    Diagnostic::error(
                        format!("{field}.host"),
                        "only a load-balancer endpoint takes a host",
                    )
                    .help("remove host, or set mode = \"load-balancer\""),
                );
                return None;
            }
            if host.parse::<Ipv4Addr>().is_err() && !is_dns_subdomain(host) {
                self.push(Diagnostic::error(
                    format!("{field}.host"),
                    format!("`{host}` is neither an IPv4 address nor a DNS name"),
                ));
                return None;
            }
        }
        let default_port = if mode == EndpointMode::Local {
            LOCAL_ENDPOINT_PORT
        } else {
            APISERVER_PORT
        };
        let port = endpoint
            .and_then(|endpoint| endpoint.port)
            .unwrap_or(default_port);
        if port == 0 {
            self.push(
                Diagnostic::error(format!("{field}.port"), "port 0 is not a port")
                    .help("1 to 65535"),
            );
            return None;
        }
        if mode != EndpointMode::LoadBalancer {
            for node in &balancers {
                self.push(Diagnostic::warning(
                    "nodes",
                    format!("node `{}` has the load-balancer role, but the endpoint mode is not load-balancer: nothing will use it", node.name),
                ));
            }
        }
        let primary = |name: &str| -> Option<String> {
            nodes
                .as_ref()?
                .iter()
                .find(|node| node.name == name)
                .map(|node| node.primary_address().to_string())
        };
        match mode {
            EndpointMode::Node => {
                if control_planes.is_empty() {
                    // role_counts reports the missing control plane; one error is enough.
                    return None;
                }
                if control_planes.len() != 1 {
                    self.push(
                        Diagnostic::error(
                            format!("{field}.mode"),
                            format!("endpoint mode `node` needs exactly one control-plane node; the spec has {}", control_planes.len()),
                        )
                        .help("use mode = \"load-balancer\" or \"local\" for several control-plane nodes"),
                    );
                    return None;
                }
                Some(EndpointPlan {
                    mode,
                    host: primary(&control_planes[0].name)?,
                    port,
                    load_balancer_nodes: Vec::new(),
                })
            }
            EndpointMode::LoadBalancer => {
                for node in &balancers {
                    if node.roles.contains(&Role::ControlPlane) && port == APISERVER_PORT {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.port"),
                                format!("node `{}` runs both the load balancer and an API server on port {APISERVER_PORT}", node.name),
                            )
                            .help("choose another endpoint port, or put the load balancer on its own node"),
                        );
                        return None;
                    }
                }
                let host = match (host, balancers.as_slice()) {
                    (Some(host), _) => host,
                    (None, [only]) => primary(&only.name)?,
                    (None, []) => {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.host"),
                                "a load-balancer endpoint without a load-balancer node or external address",
                            )
                            .help("give a node the load-balancer role, or set host to the external load balancer's name or address"),
                        );
                        return None;
                    }
                    (None, _) => {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.host"),
                                format!("{} load-balancer nodes need one address that reaches them", balancers.len()),
                            )
                            .help("set host to a DNS name or virtual address shared by the load-balancer nodes"),
                        );
                        return None;
                    }
                };
                Some(EndpointPlan {
                    mode,
                    host,
                    port,
                    load_balancer_nodes: balancers.iter().map(|node| node.name.clone()).collect(),
                })
            }
            EndpointMode::Local => {
                if port == APISERVER_PORT {
                    self.push(
                        Diagnostic::error(
                            format!("{field}.port"),
                            format!("the local load balancer cannot listen on {APISERVER_PORT}: the API server does"),
                        )
                        .help(format!("use another port, such as {LOCAL_ENDPOINT_PORT}")),
                    );
                    return None;
                }
                Some(EndpointPlan {
                    mode,
                    host: "127.0.0.1".to_owned(),
                    port,
                    load_balancer_nodes: Vec::new(),
                })
            }
        }
    }

    fn pki(&mut self, spec: &Spec, mode: ControlPlaneMode) -> Option<PkiPlan> {
        let pki = &spec.pki;
        let mut ok = true;
        let issued_at = match crate::time::unix_seconds(&pki.issued_at) {
            Ok(seconds) => Some(seconds),
            Err(why) => {
                self.push(Diagnostic::error(
                    "pki.issued_at",
                    format!("`{}` {why}", pki.issued_at),
                ));
                None
            }
        };
        let ca_validity_days = pki.ca_validity_days.unwrap_or(3650);
        let leaf_validity_days = pki.leaf_validity_days.unwrap_or(365);
        for (field, days) in [
            ("pki.ca_validity_days", ca_validity_days),
            ("pki.leaf_validity_days", leaf_validity_days),
        ] {
            if days == 0 {
                ok = false;
                self.push(Diagnostic::error(field, "a validity of 0 days").help("at least 1 day"));
            }
        }
        if leaf_validity_days > ca_validity_days {
            ok = false;
            self.push(
                Diagnostic::error(
                    "pki.leaf_validity_days",
                    format!("leaves valid for {leaf_validity_days} days would outlive their CA ({ca_validity_days} days)"),
                )
                .help("make leaf_validity_days at most ca_validity_days"),
            );
        }
        let known = known_certificate_names(spec, mode);
        for name in pki.generations.keys() {
            if !known.contains(name) {
                ok = false;
                let per_node: Vec<&str> = NODE_CERTIFICATES.iter().map(|(kind, _)| *kind).collect();
                self.push(
                    Diagnostic::error(
                        format!("pki.generations.{}", key_segment(name)),
                        format!("no certificate is called `{name}`"),
                    )
                    .help(format!(
                        "certificates are {}, and per node {} as `<kind>/<node>`",
                        CA_CERTIFICATES
                            .iter()
                            .chain(CLUSTER_CERTIFICATES)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", "),
                        per_node.join(", ")
                    )),
                );
            }
        }
        for (ca, files) in &pki.ca {
            let ca_field = format!("pki.ca.{}", ca_key(*ca));
            for (name, path) in [("cert", &files.cert), ("key", &files.key)] {
                if path.is_empty() {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("{ca_field}.{name}"),
                        "an empty path",
                    ));
                }
            }
        }
        let controller_manager_signs_csrs = pki.controller_manager_signs_csrs.unwrap_or(false);
        if spec.options.kubelet_credentials == Some(KubeletCredentials::BootstrapToken)
            && !controller_manager_signs_csrs
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    "options.kubelet_credentials",
                    "bootstrap-token kubelets need the controller manager to sign their CSRs",
                )
                .help("set pki.controller_manager_signs_csrs = true"),
            );
        }
        let plan = PkiPlan {
            issued_at: issued_at?,
            ca_validity_days,
            leaf_validity_days,
            generation: pki.generation.unwrap_or(0),
            generations: pki.generations.clone(),
            expiry_warning_days: pki.expiry_warning_days.unwrap_or(30),
            controller_manager_signs_csrs,
            external_cas: pki.ca.clone(),
        };
        ok.then_some(plan)
    }

    fn options(
        &mut self,
        spec: &Spec,
        mode: ControlPlaneMode,
        version: Option<KubeVersion>,
    ) -> Option<OptionsPlan> {
        let options = &spec.options;
        let mut ok = true;
        let authorization_modes = options
            .authorization_modes
            .clone()
            .unwrap_or_else(|| vec!["Node".to_owned(), "RBAC".to_owned()]);
        if authorization_modes.is_empty() {
            ok = false;
            self.push(
                Diagnostic::error("options.authorization_modes", "no authorization mode")
                    .help("for example [\"Node\", \"RBAC\"]"),
            );
        }
        for (index, name) in authorization_modes.iter().enumerate() {
            let field = format!("options.authorization_modes[{index}]");
            if !AUTHORIZATION_MODES.contains(&name.as_str()) {
                ok = false;
                self.push(
                    Diagnostic::error(&field, format!("unknown authorization mode `{name}`"))
                        .help(format!("one of {}", AUTHORIZATION_MODES.join(", "))),
                );
            } else if name == "AlwaysAllow" {
                self.push(Diagnostic::warning(
                    &field,
                    "AlwaysAllow lets every authenticated request through",
                ));
            }
        }
        let admission_plugins = options
            .admission_plugins
            .clone()
            .unwrap_or_else(|| vec!["NodeRestriction".to_owned()]);
        for (index, name) in admission_plugins.iter().enumerate() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                ok = false;
                self.push(
                    Diagnostic::error(
                        format!("options.admission_plugins[{index}]"),
                        format!("`{name}` is not an admission plugin name"),
                    )
                    .help("one plugin per entry, for example NodeRestriction"),
                );
            }
        }
        for (index, name) in options.extra_sans.iter().enumerate() {
            if name.parse::<Ipv4Addr>().is_err() && !is_dns_subdomain(name) {
                ok = false;
                self.push(Diagnostic::error(
                    format!("options.extra_sans[{index}]"),
                    format!("`{name}` is neither an IPv4 address nor a DNS name"),
                ));
            }
        }
        for (component, flags) in &options.extra_flags {
            for flag in flags.keys() {
                let valid = !flag.is_empty()
                    && flag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                    && !flag.starts_with('-');
                if !valid {
                    ok = false;
                    let component_key = serde_json::to_value(component)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    self.push(
                        Diagnostic::error(
                            format!("options.extra_flags.{component_key}.{}", key_segment(flag)),
                            format!("`{flag}` is not a flag name"),
                        )
                        .help("write the flag without its dashes: `v = \"2\"` for --v=2"),
                    );
                }
            }
        }
        let leader_election = options
            .leader_election
            .map(|timings| self.leader_election(timings));
        if leader_election.is_some_and(|timings| timings.is_none()) {
            ok = false;
        }
        let kube_proxy = options.kube_proxy.unwrap_or(match mode {
            ControlPlaneMode::StaticPods => KubeProxyMode::StaticPod,
            ControlPlaneMode::Systemd => KubeProxyMode::Systemd,
        });
        let (cluster_dns, upstream_dns) = self.cluster_dns(spec, version)?;
        let plan = OptionsPlan {
            encryption_at_rest: options
                .encryption_at_rest
                .unwrap_or(EncryptionProvider::Aescbc),
            audit_log: options.audit_log.unwrap_or(true),
            authorization_modes,
            admission_plugins,
            extra_sans: options.extra_sans.clone(),
            kube_proxy,
            kubeconfig_certificates: options
                .kubeconfig_certificates
                .unwrap_or(KubeconfigCertificates::Embedded),
            kubelet_credentials: options
                .kubelet_credentials
                .unwrap_or(KubeletCredentials::Issued),
            leader_election: leader_election.flatten(),
            extra_flags: options.extra_flags.clone(),
            cluster_dns,
            upstream_dns,
        };
        ok.then_some(plan)
    }

    /// `options.cluster_dns` with its default for `version` (CoreDNS from 1.21), and
    /// `options.upstream_dns` parsed; `None` after recording an error. Without a version (one
    /// that did not parse, already reported) the default is `none`.
    fn cluster_dns(
        &mut self,
        spec: &Spec,
        version: Option<KubeVersion>,
    ) -> Option<(ClusterDns, Vec<Ipv4Addr>)> {
        let options = &spec.options;
        let has_endpoint_slices = version.is_some_and(|version| version.minor >= 21);
        let cluster_dns = options.cluster_dns.unwrap_or(if has_endpoint_slices {
            ClusterDns::Coredns
        } else {
            ClusterDns::None
        });
        let mut ok = true;
        if cluster_dns == ClusterDns::Coredns
            && let Some(version) = version
            && !has_endpoint_slices
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    "options.cluster_dns",
                    format!(
                        "CoreDNS needs Kubernetes 1.21 or later (it reads discovery.k8s.io/v1 EndpointSlices), and this cluster runs {version}"
                    ),
                )
                .help("set cluster_dns = \"none\", or a newer cluster.kubernetes_version"),
            );
        }
        let mut upstream_dns = Vec::new();
        for (index, text) in options.upstream_dns.iter().enumerate() {
            match text.parse::<Ipv4Addr>() {
                Ok(address) if !upstream_dns.contains(&address) => upstream_dns.push(address),
                Ok(_) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("options.upstream_dns[{index}]"),
                        format!("{text} is listed twice"),
                    ));
                }
                Err(_) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("options.upstream_dns[{index}]"),
                        format!("`{text}` is not an IPv4 address"),
                    ));
                }
            }
        }
        if cluster_dns == ClusterDns::None && !upstream_dns.is_empty() {
            ok = false;
            self.push(
                Diagnostic::error(
                    "options.upstream_dns",
                    "upstream resolvers are for kiln's cluster DNS, and cluster_dns is \"none\"",
                )
                .help("remove upstream_dns, or set cluster_dns = \"coredns\""),
            );
        }
        ok.then_some((cluster_dns, upstream_dns))
    }

    /// `[options.leader_election]` with the components' defaults filled in, if client-go's
    /// leader elector would accept it: every time at least 1 s, the lease longer than the renew
    /// deadline, and the renew deadline longer than 1.2 retry periods (its jitter factor).
    /// Otherwise the components exit at start, so this is an error here.
    fn leader_election(&mut self, timings: LeaderElectionSpec) -> Option<LeaderElectionPlan> {
        const FIELD: &str = "options.leader_election";
        let defaults = LeaderElectionPlan::KUBERNETES_DEFAULTS;
        let plan = LeaderElectionPlan {
            lease_duration_seconds: timings
                .lease_duration_seconds
                .unwrap_or(defaults.lease_duration_seconds),
            renew_deadline_seconds: timings
                .renew_deadline_seconds
                .unwrap_or(defaults.renew_deadline_seconds),
            retry_period_seconds: timings
                .retry_period_seconds
                .unwrap_or(defaults.retry_period_seconds),
        };
        let mut ok = true;
        for (name, value) in [
            ("lease_duration_seconds", plan.lease_duration_seconds),
            ("renew_deadline_seconds", plan.renew_deadline_seconds),
            ("retry_period_seconds", plan.retry_period_seconds),
        ] {
            if value == 0 {
                ok = false;
                self.push(Diagnostic::error(
                    format!("{FIELD}.{name}"),
                    "must be at least 1 second",
                ));
            }
        }
        if ok && plan.lease_duration_seconds <= plan.renew_deadline_seconds {
            ok = false;
            self.push(
                Diagnostic::error(
                    format!("{FIELD}.lease_duration_seconds"),
                    format!(
                        "the lease ({} s) must be longer than the renew deadline ({} s)",
                        plan.lease_duration_seconds, plan.renew_deadline_seconds
                    ),
                )
                .help("for example 60, 40 and 10 seconds"),
            );
        }
        // 10 * deadline > 12 * retry is deadline > 1.2 * retry without floating point.
        if ok
            && u64::from(plan.renew_deadline_seconds) * 10
                <= u64::from(plan.retry_period_seconds) * 12
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    format!("{FIELD}.renew_deadline_seconds"),
                    format!(
                        "the renew deadline ({} s) must be longer than 1.2 retry periods ({} s)",
                        plan.renew_deadline_seconds, plan.retry_period_seconds
                    ),
                )
                .help("for example 60, 40 and 10 seconds"),
            );
        }
        ok.then_some(plan)
    }
}

fn known_certificate_names(spec: &Spec, mode: ControlPlaneMode) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = CA_CERTIFICATES
        .iter()
        .chain(CLUSTER_CERTIFICATES)
        .map(|name| (*name).to_owned())
        .collect();
    for node in &spec.nodes {
        let roles: BTreeSet<Role> = node.roles.iter().copied().collect();
        for (kind, role) in NODE_CERTIFICATES {
            let wanted = match role {
                Some(role) => roles.contains(role),
                None => runs_kubelet(&roles, mode),
            };
            if wanted {
                names.insert(format!("{kind}/{}", node.name));
            }
        }
    }
    names
}

fn ca_key(ca: crate::raw::CaName) -> &'static str {
    match ca {
        crate::raw::CaName::Kubernetes => "kubernetes",
        crate::raw::CaName::Etcd => "etcd",
        crate::raw::CaName::FrontProxy => "front-proxy",
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
