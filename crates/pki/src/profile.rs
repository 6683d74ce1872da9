//! What each certificate says: subject, issuer, usage, SANs and validity, computed from the plan.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use kiln_spec::{CaName, NodePlan, Plan, Role};
use serde::Serialize;

use crate::error::PkiError;

/// One certificate as kiln will issue it: everything that determines its bytes except the keys.
///
/// Two plans that give the same profile for a name give byte-identical certificates (with the
/// same root secret and CA), so a profile is what a build graph hashes. It never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CertificateProfile {
    /// The certificate's name, as in `kiln_spec::certificate_names`: `apiserver`,
    /// `kubelet-serving/node1`, `ca`.
    pub name: String,
    /// Subject common name.
    pub common_name: String,
    /// Subject organization, if any.
    pub organization: Option<String>,
    /// What the certificate is for.
    pub usage: Usage,
    /// Subject alternative names, sorted and deduplicated (see [`San`]'s order).
    pub sans: Vec<San>,
    /// The CA that signs it; `None` for a (self-signed) CA.
    pub issuer: Option<CaName>,
    /// The rotation generation, part of the key derivation.
    pub generation: u32,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
}

/// What a certificate is for: its basicConstraints, keyUsage and extendedKeyUsage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Usage {
    /// A CA: CA:TRUE (path length 0), keyCertSign and cRLSign, no extended key usage.
    Authority,
    /// A TLS server: digitalSignature, serverAuth.
    Server,
    /// A TLS client: digitalSignature, clientAuth.
    Client,
    /// Both (etcd members): digitalSignature, serverAuth and clientAuth.
    ServerAndClient,
}

/// A subject alternative name.
///
/// The derived order is the order in certificates: DNS names alphabetically, then IPv4
/// addresses, then IPv6 addresses, each numerically.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum San {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
}

impl San {
    /// An IP SAN if `value` parses as an address, a DNS SAN otherwise.
    pub fn parse(value: &str) -> Self {
        value
            .parse::<IpAddr>()
            .map_or_else(|_| Self::Dns(value.to_owned()), Self::Ip)
    }
}

impl std::fmt::Display for San {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Dns(name) => write!(formatter, "DNS:{name}"),
            Self::Ip(address) => write!(formatter, "IP:{address}"),
        }
    }
}

impl CertificateProfile {
    /// The profile as canonical bytes (JSON with a fixed field order): what a build graph puts
    /// in a derivation's parameters.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // A struct of strings, numbers, enums and lists: JSON cannot refuse it, and an empty
        // encoding would give every certificate the same serial.
        serde_json::to_vec(self).expect("a certificate profile is JSON")
    }
}

/// The certificate name of a CA (`ca`, `etcd-ca`, `front-proxy-ca`), as used in
/// `[pki.generations]`.
pub fn ca_certificate_name(ca: CaName) -> &'static str {
    match ca {
        CaName::Kubernetes => "ca",
        CaName::Etcd => "etcd-ca",
        CaName::FrontProxy => "front-proxy-ca",
    }
}

/// The name of a CA's `[pki.ca.*]` table: `kubernetes`, `etcd`, `front-proxy`.
pub(crate) fn ca_table_name(ca: CaName) -> &'static str {
    match ca {
        CaName::Kubernetes => "kubernetes",
        CaName::Etcd => "etcd",
        CaName::FrontProxy => "front-proxy",
    }
}

/// The three CAs, in a fixed order.
pub const CA_NAMES: [CaName; 3] = [CaName::Kubernetes, CaName::Etcd, CaName::FrontProxy];

/// The name of the service-account key pair in `[pki.generations]`.
pub const SERVICE_ACCOUNT: &str = "service-account";

/// The profile of every certificate of `plan` (CAs first, then leaves, each sorted by name).
/// The service-account key pair has no certificate and so no profile.
pub fn profiles(plan: &Plan) -> Vec<CertificateProfile> {
    let mut all: Vec<CertificateProfile> =
        CA_NAMES.iter().map(|ca| ca_profile(plan, *ca)).collect();
    all.extend(
        kiln_spec::certificate_names(plan)
            .iter()
            .filter(|name| !kiln_spec::CA_CERTIFICATES.contains(&name.as_str()))
            .filter_map(|name| profile(plan, name).ok()),
    );
    all
}

/// The profile of the CA `ca`.
pub fn ca_profile(plan: &Plan, ca: CaName) -> CertificateProfile {
    let name = ca_certificate_name(ca);
    let common_name = match ca {
        CaName::Kubernetes => "kubernetes-ca",
        CaName::Etcd => "etcd-ca",
        CaName::FrontProxy => "kubernetes-front-proxy-ca",
    };
    let (not_before, not_after) = validity(plan, plan.pki.ca_validity_days);
    CertificateProfile {
        name: name.to_owned(),
        common_name: common_name.to_owned(),
        organization: None,
        usage: Usage::Authority,
        sans: Vec::new(),
        issuer: None,
        generation: plan.pki.generation_of(name),
        not_before,
        not_after,
    }
}

/// The profile of the certificate `name` (a CA or a leaf, see `kiln_spec::certificate_names`).
pub fn profile(plan: &Plan, name: &str) -> Result<CertificateProfile, PkiError> {
    let unknown = || PkiError::UnknownCertificate {
        name: name.to_owned(),
    };
    if let Some(ca) = CA_NAMES
        .into_iter()
        .find(|ca| ca_certificate_name(*ca) == name)
    {
        return Ok(ca_profile(plan, ca));
    }
    let leaf = if let Some((kind, node_name)) = name.split_once('/') {
        let node = plan.node(node_name).ok_or_else(unknown)?;
        let wanted = kiln_spec::NODE_CERTIFICATES
            .iter()
            .find(|(known, _)| *known == kind)
            .map(|(_, role)| match role {
                Some(role) => node.has(*role),
                None => node.runs_kubelet(plan.cluster.control_plane_mode),
            });
        if wanted != Some(true) {
            return Err(unknown());
        }
        node_leaf(kind, node).ok_or_else(unknown)?
    } else {
        cluster_leaf(plan, name).ok_or_else(unknown)?
    };
    let (not_before, not_after) = validity(plan, plan.pki.leaf_validity_days);
    let mut sans = leaf.sans;
    sans.sort();
    sans.dedup();
    Ok(CertificateProfile {
        name: name.to_owned(),
        common_name: leaf.common_name,
        organization: leaf.organization.map(str::to_owned),
        usage: leaf.usage,
        sans,
        issuer: Some(leaf.issuer),
        generation: plan.pki.generation_of(name),
        not_before,
        not_after,
    })
}

/// The apiserver's SANs, sorted and deduplicated.
pub fn apiserver_sans(plan: &Plan) -> Vec<San> {
    let domain = &plan.cluster.domain;
    let mut sans: Vec<San> = [
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        format!("kubernetes.default.svc.{domain}"),
        "localhost".to_owned(),
    ]
    .into_iter()
    .map(San::Dns)
    .collect();
    sans.push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.push(San::Ip(IpAddr::V4(plan.cluster.first_service_ip)));
    for node in plan.nodes_with(Role::ControlPlane) {
        sans.extend(node_sans(node));
    }
    sans.push(San::parse(&plan.cluster.endpoint.host));
    sans.extend(plan.options.extra_sans.iter().map(|san| San::parse(san)));
    sans.sort();
    sans.dedup();
    sans
}

struct Leaf {
    common_name: String,
    organization: Option<&'static str>,
    usage: Usage,
    issuer: CaName,
    sans: Vec<San>,
}

fn cluster_leaf(plan: &Plan, name: &str) -> Option<Leaf> {
    let simple = |common_name: &str, organization, issuer| Leaf {
        common_name: common_name.to_owned(),
        organization,
        usage: Usage::Client,
        issuer,
        sans: Vec::new(),
    };
    Some(match name {
        "admin" => simple(
            "kubernetes-admin",
            Some("kiln:cluster-admins"),
            CaName::Kubernetes,
        ),
        "apiserver" => Leaf {
            usage: Usage::Server,
            sans: apiserver_sans(plan),
            ..simple("kube-apiserver", None, CaName::Kubernetes)
        },
        "apiserver-etcd-client" => simple("kube-apiserver-etcd-client", None, CaName::Etcd),
        "apiserver-kubelet-client" => {
            simple("kube-apiserver-kubelet-client", None, CaName::Kubernetes)
        }
        "controller-manager" => simple("system:kube-controller-manager", None, CaName::Kubernetes),
        "etcd-healthcheck-client" => simple("kube-etcd-healthcheck-client", None, CaName::Etcd),
        "front-proxy-client" => simple("front-proxy-client", None, CaName::FrontProxy),
        "kube-proxy" => simple("system:kube-proxy", None, CaName::Kubernetes),
        "scheduler" => simple("system:kube-scheduler", None, CaName::Kubernetes),
        "super-admin" => simple(
            "kubernetes-super-admin",
            Some("system:masters"),
            CaName::Kubernetes,
        ),
        _ => return None,
    })
}

fn node_leaf(kind: &str, node: &NodePlan) -> Option<Leaf> {
    let kubelet = |usage, sans| Leaf {
        common_name: format!("system:node:{}", node.name),
        organization: Some("system:nodes"),
        usage,
        issuer: CaName::Kubernetes,
        sans,
    };
    let etcd = || {
        let mut sans = node_sans(node);
        sans.push(San::Dns("localhost".to_owned()));
        sans.push(San::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        sans.push(San::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        Leaf {
            common_name: node.name.clone(),
            organization: None,
            usage: Usage::ServerAndClient,
            issuer: CaName::Etcd,
            sans,
        }
    };
    Some(match kind {
        "etcd-peer" | "etcd-server" => etcd(),
        // The load balancer's `/healthz` proxy: the API servers refuse anonymous requests in
        // systemd mode, and any authenticated identity may read /healthz (the built-in
        // `system:public-info-viewer` binding of `system:authenticated`). No group: it can do
        // nothing else.
        "healthz-client" => Leaf {
            common_name: format!("kiln:healthz-client:{}", node.name),
            organization: None,
            usage: Usage::Client,
            issuer: CaName::Kubernetes,
            sans: Vec::new(),
        },
        "kubelet-client" => kubelet(Usage::Client, Vec::new()),
        "kubelet-serving" => kubelet(Usage::Server, node_sans(node)),
        _ => return None,
    })
}

/// A node's name and every address.
fn node_sans(node: &NodePlan) -> Vec<San> {
    std::iter::once(San::Dns(node.name.clone()))
        .chain(
            node.addresses
                .iter()
                .map(|net| San::Ip(IpAddr::V4(net.addr()))),
        )
        .collect()
}

fn validity(plan: &Plan, days: u32) -> (i64, i64) {
    let not_before = plan.pki.issued_at;
    (
        not_before,
        not_before.saturating_add(i64::from(days) * 86_400),
    )
}
