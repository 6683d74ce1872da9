//! The cluster spec as it is written in TOML: every field the user may set, with defaults left open.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A cluster spec exactly as read from its TOML file.
///
/// Fields a user may omit are `Option`s or defaulted collections; [`Spec::validate`](crate::Spec)
/// turns a spec into a [`Plan`](crate::Plan) where every default is explicit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Cluster-wide settings: `[cluster]`.
    pub cluster: ClusterSpec,
    /// Certificate settings: `[pki]`.
    pub pki: PkiSpec,
    /// The machines of the cluster: `[[nodes]]`, in the order that assigns default pod subnets.
    #[serde(default)]
    pub nodes: Vec<NodeSpec>,
    /// Optional features: `[options]`.
    #[serde(default)]
    pub options: OptionsSpec,
}

/// `[cluster]`: names, networks and the shape of the control plane.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSpec {
    /// The cluster's name, a DNS-1123 label; used in kubeconfig contexts and store names.
    pub name: String,
    /// Kubernetes version as `MAJOR.MINOR.PATCH`, for example `1.20.2`.
    pub kubernetes_version: String,
    /// The cluster DNS domain. Default `cluster.local`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    /// The Service IP range (IPv4 CIDR). Default `10.96.0.0/12`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The Pod IP range (IPv4 CIDR) that per-node /24 subnets are cut from. Default `10.244.0.0/16`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_cidr: Option<String>,
    /// How the control plane runs. Default `static-pods`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control_plane_mode: Option<ControlPlaneMode>,
    /// Where clients reach the API server. Default: the single control-plane node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<EndpointSpec>,
    /// The TCP port every API server listens on (`--secure-port`). Default 6443; the Xen
    /// guide's cluster serves the API on 8443.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apiserver_port: Option<u16>,
}

/// How the Kubernetes control plane runs on control-plane nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlPlaneMode {
    /// As static pods from the kubelet's manifest directory (kubeadm, the Xen guide).
    StaticPods,
    /// As systemd units (Kubernetes The Hard Way).
    Systemd,
}

/// `[cluster.endpoint]`: the address every client uses for the API server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// Which kind of endpoint.
    pub mode: EndpointMode,
    /// For `load-balancer`: an external load balancer's host name or address. When absent, the
    /// spec's `load-balancer` node is the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// TCP port. Default: the API servers' port (`cluster.apiserver_port`, 6443) for `node`,
    /// which must use that port, and `load-balancer`; 6444 for `local`, which listens on
    /// 127.0.0.1 beside the node's own API server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// The kinds of API endpoint kiln can build.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndpointMode {
    /// The one control-plane node's first address.
    Node,
    /// A TCP load balancer in front of every API server: a `load-balancer` node or an external host.
    LoadBalancer,
    /// A load balancer on every node at 127.0.0.1.
    Local,
}

/// `[pki]`: validity, rotation and bring-your-own CAs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PkiSpec {
    /// The fixed instant every certificate's `notBefore` is set to (TOML datetime with an offset).
    pub issued_at: toml::value::Datetime,
    /// CA validity in days. Default 3650.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_validity_days: Option<u32>,
    /// Leaf certificate validity in days. Default 365.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaf_validity_days: Option<u32>,
    /// Rotation generation of every leaf certificate. Default 0. Bump it to reissue all leaves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Per-certificate rotation generations, by certificate name (see [`crate::certificate_names`]),
    /// for example `apiserver = 1` or `"kubelet-serving/node1" = 2`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub generations: BTreeMap<String, u32>,
    /// How many days before expiry `cargo xtask certs` warns. Default 30.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiry_warning_days: Option<u32>,
    /// Whether the controller manager signs CSRs, which puts `ca.key` on control-plane nodes.
    /// Default false. Required by `kubelet_credentials = "bootstrap-token"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller_manager_signs_csrs: Option<bool>,
    /// When the bootstrap token expires (TOML datetime with an offset, after `issued_at`):
    /// required by `kubelet_credentials = "bootstrap-token"`, and nothing else. Workers join
    /// with the token until then; the controller manager's token cleaner deletes it after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bootstrap_token_expires: Option<toml::value::Datetime>,
    /// Bring-your-own certificate authorities, by CA: `[pki.ca.kubernetes]`, `[pki.ca.etcd]`,
    /// `[pki.ca.front-proxy]`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ca: BTreeMap<CaName, ExternalCaSpec>,
}

/// The three certificate authorities of a cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaName {
    /// `kubernetes-ca`: every Kubernetes client and server certificate.
    Kubernetes,
    /// `etcd-ca`: etcd peers, servers and clients.
    Etcd,
    /// `kubernetes-front-proxy-ca`: the aggregation layer's client certificate.
    FrontProxy,
}

/// An existing CA certificate and key, by path relative to the spec file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExternalCaSpec {
    /// PEM certificate path.
    pub cert: String,
    /// PEM private key path.
    pub key: String,
}

/// `[[nodes]]`: one machine.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// Host and Kubernetes node name, a DNS-1123 label.
    pub name: String,
    /// What runs on the node.
    pub roles: Vec<Role>,
    /// IPv4 addresses in CIDR notation (`192.168.50.11/24`); the first is the node's primary address.
    pub addresses: Vec<String>,
    /// Default gateway, inside one of the node's subnets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// DNS servers written into the node's network configuration.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// This node's pod subnet. Default: the i-th /24 of the pod CIDR, where i counts the nodes that
    /// run a kubelet in spec order from 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_subnet: Option<String>,
}

/// What a node does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs kube-apiserver, kube-controller-manager and kube-scheduler.
    ControlPlane,
    /// Runs an etcd member.
    Etcd,
    /// Runs workloads: kubelet, containerd, kube-proxy.
    Worker,
    /// Runs the TCP load balancer in front of the API servers.
    LoadBalancer,
}

/// `[options]`: features with defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptionsSpec {
    /// Encryption at rest of Secrets in etcd. Default `aescbc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_at_rest: Option<EncryptionProvider>,
    /// The generations of the encryption-at-rest key, each derived from the root secret: the
    /// first encrypts what the API server writes, every one decrypts. Default `[0]`. To rotate,
    /// as Kubernetes asks: build with `[1, 0]` (every API server can read the new key's data;
    /// a cluster whose API servers all restart at once may start here), rewrite every Secret
    /// (`kubectl get secrets -A -o json | kubectl replace -f -`), then build with `[1]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption_key_generations: Option<Vec<u32>>,
    /// Whether the API server writes an audit log with kiln's policy. Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_log: Option<bool>,
    /// `--authorization-mode`, in order. Default `["Node", "RBAC"]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_modes: Option<Vec<String>>,
    /// `--enable-admission-plugins`. Default `["NodeRestriction"]`. With `EventRateLimit`
    /// listed, kiln writes that plugin's configuration (its limits on the rate of Events) into
    /// the API server's admission configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admission_plugins: Option<Vec<String>>,
    /// Extra subject alternative names for the API server certificate (names or IPv4 addresses).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_sans: Vec<String>,
    /// Where kube-proxy runs. Default: `static-pod` with static-pods control planes, `systemd` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kube_proxy: Option<KubeProxyMode>,
    /// Whether kubeconfigs embed certificates or reference them by path. Default `embedded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_certificates: Option<KubeconfigCertificates>,
    /// How kubelets get their client certificates. Default `issued` (by kiln, at build time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubelet_credentials: Option<KubeletCredentials>,
    /// Leader election of kube-controller-manager and kube-scheduler:
    /// `[options.leader_election]`. Default: the components' own (15 s, 10 s, 2 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_election: Option<LeaderElectionSpec>,
    /// Extra command-line flags per component: `[options.extra_flags.kube-apiserver]` `v = "2"`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_flags: BTreeMap<Component, BTreeMap<String, String>>,
    /// The cluster's DNS add-on, serving the `kube-dns` Service at the tenth address of the
    /// Service range (the kubelets' `clusterDNS`). Default `coredns`, at the release kiln's
    /// package set pairs with the cluster's Kubernetes version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_dns: Option<ClusterDns>,
    /// The IPv4 resolvers the cluster DNS forwards names outside the cluster's domain to, in
    /// order. Default none: it answers for the cluster's names only and refuses the rest, so
    /// an offline cluster never waits on a resolver it cannot reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_dns: Vec<String>,
    /// The Pod Security Standards level every namespace but `kube-system` gets unless its own
    /// labels say otherwise (`pod-security.kubernetes.io/enforce`). Default `baseline` from
    /// Kubernetes 1.23, whose API server has PodSecurity admission; before 1.23 only
    /// `privileged` (no admission) is possible.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
    /// The kind of Xen guest the `xl.cfg` of every node image describes. Default `pvh`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xen_guest: Option<XenGuest>,
}

/// The kind of Xen guest a node boots as (`options.xen_guest`): what the `type` of the `xl.cfg`
/// kiln writes for each node says. The same image boots as either, and under QEMU.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum XenGuest {
    /// PVH: a hardware-virtualised guest without emulated devices, which needs the host's
    /// hardware-assisted paging (Intel EPT or AMD NPT).
    #[default]
    Pvh,
    /// Paravirtualised: runs on any Xen host, hardware assistance or not (a Xen host that is
    /// itself emulated, for one: see BENCHMARKS.md).
    Pv,
}

impl XenGuest {
    /// The guest type as `xl.cfg` spells it (`type = "pvh"`).
    pub const fn name(self) -> &'static str {
        match self {
            XenGuest::Pvh => "pvh",
            XenGuest::Pv => "pv",
        }
    }
}

/// The cluster's DNS add-on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClusterDns {
    /// CoreDNS from kiln's package set: a Deployment behind the `kube-dns` Service, applied at
    /// bootstrap with the other add-ons.
    Coredns,
    /// No cluster DNS: the kubelets still point pods at the `kube-dns` address, so the user
    /// brings their own.
    None,
}

/// `[options.leader_election]`: how long kube-controller-manager and kube-scheduler hold and
/// renew their leader leases. Longer times tolerate a slow apiserver (a loaded or emulated
/// machine) at the cost of a slower fail-over; a component that cannot renew within the renew
/// deadline exits and is restarted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeaderElectionSpec {
    /// How long other candidates wait before taking over a lease that is not renewed
    /// (`--leader-elect-lease-duration`, `leaseDuration`). Default 15.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<u32>,
    /// How long the leader keeps trying to renew before it gives up and exits
    /// (`--leader-elect-renew-deadline`, `renewDeadline`). Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_deadline_seconds: Option<u32>,
    /// How long candidates wait between attempts (`--leader-elect-retry-period`,
    /// `retryPeriod`). Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_period_seconds: Option<u32>,
}

/// Encryption-at-rest providers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EncryptionProvider {
    /// No encryption (identity provider only).
    None,
    /// AES-CBC with PKCS#7 padding.
    Aescbc,
    /// XSalsa20 and Poly1305.
    Secretbox,
}

/// Where kube-proxy runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeProxyMode {
    /// A static pod on every node with a kubelet.
    StaticPod,
    /// A DaemonSet applied at bootstrap.
    Daemonset,
    /// A systemd unit on every node with a kubelet.
    Systemd,
}

/// How kubeconfigs carry certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeconfigCertificates {
    /// Certificates and keys inside the kubeconfig ("flattened": one file to move).
    Embedded,
    /// Certificates and keys referenced by absolute path on the node (easier to rotate).
    Referenced,
}

/// A Pod Security Standards level (`options.pod_security`), which the API server's PodSecurity
/// admission enforces on every namespace that does not say otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodSecurityLevel {
    /// Anything goes, as without admission.
    Privileged,
    /// No known privilege escalation: no privileged containers, host namespaces, hostPath
    /// volumes, host ports or added capabilities beyond the default set.
    Baseline,
    /// Baseline, and pods run as non-root without privilege escalation, with every capability
    /// dropped and a seccomp profile.
    Restricted,
}

impl PodSecurityLevel {
    /// The level's name, as Kubernetes spells it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Privileged => "privileged",
            Self::Baseline => "baseline",
            Self::Restricted => "restricted",
        }
    }
}

/// How kubelets obtain their client credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KubeletCredentials {
    /// kiln issues each kubelet's client certificate at build time.
    Issued,
    /// Kubelets join with a bootstrap token and get a certificate through a CSR (kubeadm style).
    BootstrapToken,
}

/// Cluster components that accept extra flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// etcd.
    Etcd,
    /// kube-apiserver.
    KubeApiserver,
    /// kube-controller-manager.
    KubeControllerManager,
    /// kube-scheduler.
    KubeScheduler,
    /// kubelet.
    Kubelet,
    /// kube-proxy.
    KubeProxy,
}

impl Component {
    /// The component's program, pod and container name: `etcd`, `kube-apiserver`, ...
    ///
    /// ```
    /// assert_eq!(kiln_spec::Component::KubeApiserver.name(), "kube-apiserver");
    /// ```
    pub const fn name(self) -> &'static str {
        match self {
            Component::Etcd => "etcd",
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::KubeProxy => "kube-proxy",
        }
    }
}
