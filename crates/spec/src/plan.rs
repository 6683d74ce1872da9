//! The normalized cluster plan: every default explicit, every derived value computed once.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

use crate::raw::{
    CaName, ClusterDns, ClusterSpec, Component, ControlPlaneMode, EncryptionProvider, EndpointMode,
    EndpointSpec, ExternalCaSpec, KubeProxyMode, KubeconfigCertificates, KubeletCredentials,
    LeaderElectionSpec, NodeSpec, OptionsSpec, PkiSpec, PodSecurityLevel, Role, Spec, XenGuest,
};
use crate::version::KubeVersion;

/// The validated, normalized cluster: the one input every renderer receives.
///
/// Nodes are sorted by name, so a plan (and every digest derived from it) does not depend on the
/// order of nodes in the spec once their pod subnets are fixed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// Cluster-wide values.
    pub cluster: ClusterPlan,
    /// Certificate settings.
    pub pki: PkiPlan,
    /// Every node, sorted by name.
    pub nodes: Vec<NodePlan>,
    /// Features with every default filled in.
    pub options: OptionsPlan,
}

/// Cluster-wide values of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterPlan {
    /// The cluster's name.
    pub name: String,
    /// The Kubernetes version.
    pub kubernetes_version: KubeVersion,
    /// The cluster DNS domain, for example `cluster.local`.
    pub domain: String,
    /// The Service IP range.
    pub service_cidr: Ipv4Net,
    /// The Pod IP range.
    pub pod_cidr: Ipv4Net,
    /// How the control plane runs.
    pub control_plane_mode: ControlPlaneMode,
    /// Where clients reach the API server.
    pub endpoint: EndpointPlan,
    /// The TCP port every API server listens on: its `--secure-port`, the load balancer's
    /// back ends, and the local API server's address on its own node (`https://127.0.0.1:PORT`).
    pub apiserver_port: u16,
    /// The first address of the Service range: the `kubernetes` Service's ClusterIP.
    pub first_service_ip: Ipv4Addr,
    /// The cluster DNS Service's ClusterIP: the tenth address of the Service range (as kubeadm).
    pub cluster_dns_ip: Ipv4Addr,
    /// etcd's `--initial-cluster`: `name=https://ip:2380` for every member, sorted by name.
    pub etcd_initial_cluster: String,
    /// The API server's `--etcd-servers`: `https://ip:2379` for every member, sorted by name.
    pub etcd_servers: String,
}

/// The API endpoint, resolved.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndpointPlan {
    /// Which kind of endpoint.
    pub mode: EndpointMode,
    /// Host name or address clients connect to.
    pub host: String,
    /// TCP port clients connect to.
    pub port: u16,
    /// Names of the nodes that run the load balancer (`load-balancer` mode with a node; empty otherwise).
    pub load_balancer_nodes: Vec<String>,
}

impl EndpointPlan {
    /// The endpoint as an `https://` URL, with IPv4 hosts as they are.
    pub fn url(&self) -> String {
        format!("https://{}:{}", self.host, self.port)
    }
}

/// The port API servers listen on unless `cluster.apiserver_port` says otherwise
/// ([`ClusterPlan::apiserver_port`]).
pub const APISERVER_PORT: u16 = 6443;

/// Certificate settings of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PkiPlan {
    /// `notBefore` of every certificate, as seconds since the Unix epoch (UTC).
    pub issued_at: i64,
    /// CA validity in days.
    pub ca_validity_days: u32,
    /// Leaf validity in days.
    pub leaf_validity_days: u32,
    /// Rotation generation of every leaf.
    pub generation: u32,
    /// Per-certificate generations, overriding `generation`.
    pub generations: BTreeMap<String, u32>,
    /// Warning horizon for `cargo xtask certs`, in days.
    pub expiry_warning_days: u32,
    /// Whether the controller manager signs CSRs (and so holds `ca.key`).
    pub controller_manager_signs_csrs: bool,
    /// When the bootstrap token expires, as seconds since the Unix epoch (UTC); set exactly
    /// when `options.kubelet_credentials = "bootstrap-token"`.
    pub bootstrap_token_expires: Option<i64>,
    /// Bring-your-own CAs, paths as written in the spec (relative to the spec file).
    pub external_cas: BTreeMap<CaName, ExternalCaSpec>,
}

impl PkiPlan {
    /// `issued_at` in RFC 3339 form, in UTC: `2026-01-01T00:00:00Z`.
    pub fn issued_at_rfc3339(&self) -> String {
        crate::time::format_rfc3339(self.issued_at)
    }

    /// The rotation generation of the certificate named `name` (see [`crate::certificate_names`]):
    /// its entry in `generations`, else 0 for a CA and `generation` for a leaf.
    pub fn generation_of(&self, name: &str) -> u32 {
        let default = if crate::names::CA_CERTIFICATES.contains(&name) {
            0
        } else {
            self.generation
        };
        self.generations.get(name).copied().unwrap_or(default)
    }
}

/// One node of a [`Plan`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodePlan {
    /// The node's name.
    pub name: String,
    /// The node's roles.
    pub roles: BTreeSet<Role>,
    /// Addresses with their prefix, primary first.
    pub addresses: Vec<Ipv4Net>,
    /// Default gateway.
    pub gateway: Option<Ipv4Addr>,
    /// DNS servers.
    pub dns: Vec<Ipv4Addr>,
    /// The node's pod subnet, for nodes that run a kubelet.
    pub pod_subnet: Option<Ipv4Net>,
}

impl NodePlan {
    /// The node's primary address (its first).
    ///
    /// # Panics
    ///
    /// If the node has no address. A plan from [`Spec::validate`](crate::Spec::validate) or
    /// [`load`](crate::load) never has such a node; a hand-built one must not either.
    pub fn primary_address(&self) -> Ipv4Addr {
        self.addresses[0].addr()
    }

    /// Whether the node has `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// Whether the node runs a kubelet: every worker, and in static-pods mode every node that
    /// runs a control-plane component or an etcd member as a static pod.
    pub fn runs_kubelet(&self, mode: ControlPlaneMode) -> bool {
        runs_kubelet(&self.roles, mode)
    }
}

pub(crate) fn runs_kubelet(roles: &BTreeSet<Role>, mode: ControlPlaneMode) -> bool {
    roles.contains(&Role::Worker)
        || (mode == ControlPlaneMode::StaticPods
            && (roles.contains(&Role::ControlPlane) || roles.contains(&Role::Etcd)))
}

/// Features of a [`Plan`], every default filled in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OptionsPlan {
    /// Encryption at rest of Secrets.
    pub encryption_at_rest: EncryptionProvider,
    /// The encryption-at-rest key's generations: the first encrypts, every one decrypts.
    pub encryption_key_generations: Vec<u32>,
    /// Whether the API server writes an audit log.
    pub audit_log: bool,
    /// `--authorization-mode`.
    pub authorization_modes: Vec<String>,
    /// `--enable-admission-plugins`.
    pub admission_plugins: Vec<String>,
    /// Extra API server SANs, as written.
    pub extra_sans: Vec<String>,
    /// Where kube-proxy runs.
    pub kube_proxy: KubeProxyMode,
    /// Embedded or referenced kubeconfig certificates.
    pub kubeconfig_certificates: KubeconfigCertificates,
    /// How kubelets get their credentials.
    pub kubelet_credentials: KubeletCredentials,
    /// The kind of Xen guest every node's `xl.cfg` describes.
    pub xen_guest: XenGuest,
    /// Leader-election timings of kube-controller-manager and kube-scheduler; `None` leaves
    /// the components' own defaults (and renders nothing).
    pub leader_election: Option<LeaderElectionPlan>,
    /// Extra flags per component.
    pub extra_flags: BTreeMap<Component, BTreeMap<String, String>>,
    /// The cluster's DNS add-on.
    pub cluster_dns: ClusterDns,
    /// The resolvers the cluster DNS forwards other names to, in order.
    pub upstream_dns: Vec<Ipv4Addr>,
    /// The Pod Security Standards level PodSecurity admission enforces by default; `None`
    /// before Kubernetes 1.23, which has no such admission.
    pub pod_security: Option<PodSecurityLevel>,
}

/// Leader-election timings, in seconds, every one set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderElectionPlan {
    /// `--leader-elect-lease-duration`, `leaseDuration`.
    pub lease_duration_seconds: u32,
    /// `--leader-elect-renew-deadline`, `renewDeadline`.
    pub renew_deadline_seconds: u32,
    /// `--leader-elect-retry-period`, `retryPeriod`.
    pub retry_period_seconds: u32,
}

impl LeaderElectionPlan {
    /// The components' own defaults (client-go's leader election as Kubernetes configures it):
    /// a 15 s lease, a 10 s renew deadline and a 2 s retry period.
    pub const KUBERNETES_DEFAULTS: Self = Self {
        lease_duration_seconds: 15,
        renew_deadline_seconds: 10,
        retry_period_seconds: 2,
    };

    /// `seconds` as a Go duration, the form the flags and configuration files take: `60s`.
    pub fn duration(seconds: u32) -> String {
        format!("{seconds}s")
    }
}

impl Plan {
    /// The node called `name`.
    pub fn node(&self, name: &str) -> Option<&NodePlan> {
        self.nodes
            .binary_search_by(|node| node.name.as_str().cmp(name))
            .ok()
            .map(|index| &self.nodes[index])
    }

    /// Nodes with `role`, by name.
    pub fn nodes_with(&self, role: Role) -> impl Iterator<Item = &NodePlan> {
        self.nodes.iter().filter(move |node| node.has(role))
    }

    /// Whether `node`'s kubelet joins with the bootstrap token and gets its client certificate
    /// through a CSR (`options.kubelet_credentials = "bootstrap-token"`). Only kubelets the
    /// API does not depend on bootstrap, as with kubeadm: a control-plane or etcd node's
    /// kubelet runs the static pods that serve the API, so it cannot wait for the API to sign
    /// its certificate, and kiln issues it one as in `issued` mode.
    pub fn kubelet_bootstraps(&self, node: &NodePlan) -> bool {
        self.options.kubelet_credentials == KubeletCredentials::BootstrapToken
            && node.runs_kubelet(self.cluster.control_plane_mode)
            && !node.has(Role::ControlPlane)
            && !node.has(Role::Etcd)
    }

    /// Nodes that run a kubelet, by name.
    pub fn kubelet_nodes(&self) -> impl Iterator<Item = &NodePlan> {
        let mode = self.cluster.control_plane_mode;
        self.nodes
            .iter()
            .filter(move |node| node.runs_kubelet(mode))
    }

    /// The plan written back as a spec with every default explicit. Validating it gives this plan.
    pub fn to_spec(&self) -> Spec {
        let cluster = &self.cluster;
        let pki = &self.pki;
        let options = &self.options;
        Spec {
            cluster: ClusterSpec {
                name: cluster.name.clone(),
                kubernetes_version: cluster.kubernetes_version.to_string(),
                domain: Some(cluster.domain.clone()),
                service_cidr: Some(cluster.service_cidr.to_string()),
                pod_cidr: Some(cluster.pod_cidr.to_string()),
                control_plane_mode: Some(cluster.control_plane_mode),
                endpoint: Some(EndpointSpec {
                    mode: cluster.endpoint.mode,
                    host: match cluster.endpoint.mode {
                        EndpointMode::LoadBalancer
                            if cluster.endpoint.load_balancer_nodes.is_empty() =>
                        {
                            Some(cluster.endpoint.host.clone())
                        }
                        _ => None,
                    },
                    port: Some(cluster.endpoint.port),
                }),
                apiserver_port: Some(cluster.apiserver_port),
            },
            pki: PkiSpec {
                issued_at: crate::time::to_toml_datetime(pki.issued_at),
                ca_validity_days: Some(pki.ca_validity_days),
                leaf_validity_days: Some(pki.leaf_validity_days),
                generation: Some(pki.generation),
                generations: pki.generations.clone(),
                expiry_warning_days: Some(pki.expiry_warning_days),
                controller_manager_signs_csrs: Some(pki.controller_manager_signs_csrs),
                bootstrap_token_expires: pki
                    .bootstrap_token_expires
                    .map(crate::time::to_toml_datetime),
                ca: pki.external_cas.clone(),
            },
            nodes: self
                .nodes
                .iter()
                .map(|node| NodeSpec {
                    name: node.name.clone(),
                    roles: node.roles.iter().copied().collect(),
                    addresses: node.addresses.iter().map(ToString::to_string).collect(),
                    gateway: node.gateway.map(|gateway| gateway.to_string()),
                    dns: node.dns.iter().map(ToString::to_string).collect(),
                    pod_subnet: node.pod_subnet.map(|subnet| subnet.to_string()),
                })
                .collect(),
            options: OptionsSpec {
                encryption_at_rest: Some(options.encryption_at_rest),
                encryption_key_generations: Some(options.encryption_key_generations.clone()),
                audit_log: Some(options.audit_log),
                authorization_modes: Some(options.authorization_modes.clone()),
                admission_plugins: Some(options.admission_plugins.clone()),
                extra_sans: options.extra_sans.clone(),
                kube_proxy: Some(options.kube_proxy),
                kubeconfig_certificates: Some(options.kubeconfig_certificates),
                kubelet_credentials: Some(options.kubelet_credentials),
                xen_guest: Some(options.xen_guest),
                pod_security: options.pod_security,
                leader_election: options.leader_election.map(|timings| LeaderElectionSpec {
                    lease_duration_seconds: Some(timings.lease_duration_seconds),
                    renew_deadline_seconds: Some(timings.renew_deadline_seconds),
                    retry_period_seconds: Some(timings.retry_period_seconds),
                }),
                extra_flags: options.extra_flags.clone(),
                cluster_dns: Some(options.cluster_dns),
                upstream_dns: options
                    .upstream_dns
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
            },
        }
    }
}
