//! Typed component configuration files that k8s-openapi does not model: the kubelet's,
//! kube-proxy's and the scheduler's configuration, encryption at rest and the audit policy.

use base64::Engine as _;
use kiln_spec::{
    ControlPlaneMode, EncryptionProvider, KubeletCredentials, LeaderElectionPlan, NodePlan, Plan,
    Role,
};
use serde::{Deserialize, Serialize};

use kiln_spec::paths;

/// `kubelet.config.k8s.io/v1beta1` `KubeletConfiguration`, the fields kiln sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletConfiguration {
    /// Always `kubelet.config.k8s.io/v1beta1`.
    pub api_version: String,
    /// Always `KubeletConfiguration`.
    pub kind: String,
    /// Who may call the kubelet's API.
    pub authentication: KubeletAuthentication,
    /// How calls are authorized.
    pub authorization: KubeletAuthorization,
    /// `systemd`, matching containerd's `SystemdCgroup = true`.
    pub cgroup_driver: String,
    /// The cluster DNS Service's address.
    #[serde(rename = "clusterDNS")]
    pub cluster_dns: Vec<String>,
    /// The cluster's DNS domain.
    pub cluster_domain: String,
    /// The CRI socket; only from 1.27, when the field replaced the kubelet's flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_runtime_endpoint: Option<String>,
    /// Whether the kubelet renews its client certificate through CSRs: with bootstrap-token
    /// credentials, from 1.27, when the file replaced kiln's `--rotate-certificates` flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotate_certificates: Option<bool>,
    /// The taints the kubelet registers its node with ([`node_taints`]); only from 1.27, when
    /// the file replaced kiln's `--register-with-taints` flag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub register_with_taints: Option<Vec<NodeTaint>>,
    /// The static pod directory.
    pub static_pod_path: String,
    /// The kubelet's serving certificate.
    pub tls_cert_file: String,
    /// The kubelet's serving key.
    pub tls_private_key_file: String,
    /// The unauthenticated read-only port: `0`, off. The file's default already (the old
    /// flag's was 10255); said explicitly, as the CIS benchmark asks.
    pub read_only_port: u16,
    /// The most processes a pod may run ([`KUBELET_POD_PIDS_LIMIT`]): a fork bomb in one pod
    /// cannot exhaust the node's process ids.
    pub pod_pids_limit: i64,
    /// The TLS 1.2 cipher suites the kubelet's server offers ([`KUBELET_TLS_CIPHER_SUITES`]).
    pub tls_cipher_suites: Vec<String>,
    /// `true`: the kubelet refuses to start unless the kernel tunables it depends on already
    /// have the values it wants ([`KUBELET_SYSCTLS`], which the node sets at boot from
    /// [`paths::KUBELET_SYSCTLS`]), instead of changing them itself, as the CIS benchmark asks.
    pub protect_kernel_defaults: bool,
}

/// The kubelet's `podPidsLimit`: a pod's processes at most (the CIS benchmark asks for a
/// limit; 4096 is far above what any of kiln's add-ons or the conformance tests run).
pub const KUBELET_POD_PIDS_LIMIT: i64 = 4096;

/// The kernel tunables the kubelet checks with `protectKernelDefaults`, by their `sysctl`
/// names, with the values it wants: its container manager's `setupKernelTunables` (the same six
/// from Kubernetes 1.20 to 1.37; without the setting the kubelet writes them itself).
pub const KUBELET_SYSCTLS: [kiln_spec::sysctl::Sysctl; 6] = [
    ("vm.overcommit_memory", 1),
    ("vm.panic_on_oom", 0),
    ("kernel.panic", 10),
    ("kernel.panic_on_oops", 1),
    ("kernel.keys.root_maxkeys", 1_000_000),
    ("kernel.keys.root_maxbytes", 25_000_000),
];

/// The `sysctl.d` file of every node with a kubelet ([`paths::KUBELET_SYSCTLS`]):
/// [`KUBELET_SYSCTLS`], one `name = value` line each, which `systemd-sysctl` applies at boot,
/// before the kubelet starts.
///
/// ```
/// let text = kiln_manifests::kubelet_sysctls();
/// assert!(text.lines().any(|line| line == "kernel.panic_on_oops = 1"));
/// ```
pub fn kubelet_sysctls() -> String {
    kiln_spec::sysctl::sysctl_d(
        &[
            "The kernel tunables the kubelet wants; with protectKernelDefaults it does not start",
            "unless they are set.",
        ],
        &KUBELET_SYSCTLS,
    )
}

/// The kubelet's `tlsCipherSuites`: TLS 1.2's ECDHE suites with AEAD ciphers only, ECDSA ones
/// first (kiln's certificates are P-256 keys); TLS 1.3's suites are not configurable and all
/// strong. Every name is in Go's `crypto/tls` list of secure suites.
pub const KUBELET_TLS_CIPHER_SUITES: &[&str] = &[
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305",
];

/// The kubelet's `authentication`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeletAuthentication {
    /// Anonymous requests.
    pub anonymous: Enabled,
    /// Bearer tokens checked through a TokenReview.
    pub webhook: Enabled,
    /// Client certificates.
    pub x509: KubeletX509,
}

/// A switch: `enabled: bool`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enabled {
    /// Whether it is on.
    pub enabled: bool,
}

/// The kubelet's `authentication.x509`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeletX509 {
    /// The CA that signs client certificates.
    #[serde(rename = "clientCAFile")]
    pub client_ca_file: String,
}

/// The kubelet's `authorization`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubeletAuthorization {
    /// `Webhook`: SubjectAccessReviews against the API server.
    pub mode: String,
}

/// The first minor version whose kubelet gets every setting that has a KubeletConfiguration
/// field from the file alone (the flag table ends those flags at 1.26): the CRI endpoint and,
/// with bootstrap tokens, certificate rotation are then fields of the file. Before it, the
/// file and the command line carry the same values and the CRI endpoint is a flag (a 1.26
/// kubelet rejects the `containerRuntimeEndpoint` field).
pub const FILE_ONLY_KUBELET_SETTINGS: u32 = 27;

/// The taint key of a control-plane node that is not also a worker, as kubeadm taints one:
/// only pods that tolerate it (CoreDNS, the DaemonSets) are scheduled there.
pub const CONTROL_PLANE_TAINT: &str = "node-role.kubernetes.io/control-plane";

/// The taint key of an etcd member with a kubelet (for its static pod) that is neither a worker
/// nor on the control plane: nothing else is scheduled there.
pub const ETCD_TAINT: &str = "node-role.kubernetes.io/etcd";

/// A taint a kubelet registers its node with, as the KubeletConfiguration's
/// `registerWithTaints` lists it (a `v1.Taint` without value).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeTaint {
    /// The taint's key.
    pub key: String,
    /// `NoSchedule`.
    pub effect: String,
}

impl NodeTaint {
    /// As `--register-with-taints` takes it: `<key>:<effect>`.
    pub fn flag_value(&self) -> String {
        format!("{}:{}", self.key, self.effect)
    }
}

/// The taints `node`'s kubelet registers it with: none on a worker; on a node with a kubelet
/// that is not a worker, `NoSchedule` with [`CONTROL_PLANE_TAINT`] (a control-plane node) or
/// [`ETCD_TAINT`] (an etcd member only), so workloads stay on the workers. Static pods, which
/// the kubelet runs from files, are not scheduled and so not affected.
pub fn node_taints(plan: &Plan, node: &NodePlan) -> Vec<NodeTaint> {
    if node.has(Role::Worker) || !node.runs_kubelet(plan.cluster.control_plane_mode) {
        return Vec::new();
    }
    let key = if node.has(Role::ControlPlane) {
        CONTROL_PLANE_TAINT
    } else {
        ETCD_TAINT
    };
    vec![NodeTaint {
        key: key.to_owned(),
        effect: "NoSchedule".to_owned(),
    }]
}

/// The KubeletConfiguration of `node`'s kubelet: anonymous access off, webhook authentication and
/// authorization, the cluster CA for client certificates, the serving pair placed by
/// `kiln_pki` (`pki/kubelet.crt`, `pki/kubelet.key`), cluster DNS, the static pod
/// directory, and the systemd cgroup driver; from [`FILE_ONLY_KUBELET_SETTINGS`] also the CRI
/// endpoint, (with bootstrap tokens) certificate rotation and the node's taints
/// ([`node_taints`]).
pub fn kubelet_configuration(plan: &Plan, node: &NodePlan) -> KubeletConfiguration {
    let pki = |file: &str| format!("{}/{file}", paths::PKI_DIR);
    let minor = plan.cluster.kubernetes_version.minor;
    KubeletConfiguration {
        api_version: "kubelet.config.k8s.io/v1beta1".to_owned(),
        kind: "KubeletConfiguration".to_owned(),
        authentication: KubeletAuthentication {
            anonymous: Enabled { enabled: false },
            webhook: Enabled { enabled: true },
            x509: KubeletX509 {
                client_ca_file: pki("ca.crt"),
            },
        },
        authorization: KubeletAuthorization {
            mode: "Webhook".to_owned(),
        },
        cgroup_driver: "systemd".to_owned(),
        cluster_dns: vec![plan.cluster.cluster_dns_ip.to_string()],
        cluster_domain: plan.cluster.domain.clone(),
        container_runtime_endpoint: (minor >= FILE_ONLY_KUBELET_SETTINGS)
            .then(|| paths::CONTAINERD_SOCKET.to_owned()),
        rotate_certificates: (minor >= FILE_ONLY_KUBELET_SETTINGS
            && plan.options.kubelet_credentials == KubeletCredentials::BootstrapToken)
            .then_some(true),
        register_with_taints: Some(node_taints(plan, node))
            .filter(|taints| minor >= FILE_ONLY_KUBELET_SETTINGS && !taints.is_empty()),
        static_pod_path: paths::MANIFESTS_DIR.to_owned(),
        tls_cert_file: pki("kubelet.crt"),
        tls_private_key_file: pki("kubelet.key"),
        read_only_port: 0,
        pod_pids_limit: KUBELET_POD_PIDS_LIMIT,
        protect_kernel_defaults: true,
        tls_cipher_suites: KUBELET_TLS_CIPHER_SUITES
            .iter()
            .map(|suite| (*suite).to_owned())
            .collect(),
    }
}

/// `kubeproxy.config.k8s.io/v1alpha1` `KubeProxyConfiguration`, the fields kiln sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeProxyConfiguration {
    /// Always `kubeproxy.config.k8s.io/v1alpha1`.
    pub api_version: String,
    /// Always `KubeProxyConfiguration`.
    pub kind: String,
    /// How kube-proxy reaches the API server.
    pub client_connection: ClientConnection,
    /// The pod range: traffic from outside it to Services is masqueraded.
    #[serde(rename = "clusterCIDR")]
    pub cluster_cidr: String,
    /// The node name, for a kube-proxy bound to one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname_override: Option<String>,
    /// `iptables`.
    pub mode: String,
}

/// A component's `clientConnection`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientConnection {
    /// The kubeconfig; empty for in-cluster configuration.
    pub kubeconfig: String,
}

/// kube-proxy's configuration: iptables mode, the pod CIDR, and on a node (`Some(node)`)
/// the kubeconfig `/etc/kubernetes/kube-proxy.conf` and the node's name; for the DaemonSet
/// (`None`) in-cluster credentials and the name from `--hostname-override`.
pub fn kube_proxy_configuration(plan: &Plan, node: Option<&NodePlan>) -> KubeProxyConfiguration {
    KubeProxyConfiguration {
        api_version: "kubeproxy.config.k8s.io/v1alpha1".to_owned(),
        kind: "KubeProxyConfiguration".to_owned(),
        client_connection: ClientConnection {
            kubeconfig: node
                .map(|_| paths::KUBE_PROXY_KUBECONFIG.to_owned())
                .unwrap_or_default(),
        },
        cluster_cidr: plan.cluster.pod_cidr.to_string(),
        hostname_override: node.map(|node| node.name.clone()),
        mode: "iptables".to_owned(),
    }
}

/// The `kubescheduler.config.k8s.io` version of Kubernetes `1.minor`: `v1beta1` for
/// 1.19–1.21, `v1beta2` for 1.22–1.24, `v1` from 1.25. Each choice lies inside its
/// version's lifetime per KEP 785 (kubernetes/enhancements): `v1beta1` 1.19–1.22,
/// `v1beta2` 1.22–1.27 (kubernetes PR 117649 removed it in 1.28), `v1` from 1.25 (and the
/// only version left once `v1beta3` went in 1.29; 1.37's vendored
/// `k8s.io/kube-scheduler/config` holds `v1` alone).
///
/// Only `v1beta1` has insecure serving: its `healthzBindAddress` and `metricsBindAddress`
/// default to `0.0.0.0:10251`, and the 1.20 scheduler serves plain HTTP there even with
/// `--port=0` once `--config` is given (an empty value is defaulted as well; seen with the
/// 1.20.2 binary), so kiln sets both to the loopback address for 1.20 and 1.21
/// ([`SCHEDULER_INSECURE_LOOPBACK`]). Insecure serving is gone from 1.22 (`v1beta2` allows the
/// fields only empty, `v1` has none): the scheduler serves only HTTPS, on `--bind-address`
/// (1.37.2: 127.0.0.1:10259 alone).
pub fn scheduler_config_api_version(minor: u32) -> &'static str {
    const TABLE: &[(u32, &str)] = &[
        (19, "kubescheduler.config.k8s.io/v1beta1"),
        (22, "kubescheduler.config.k8s.io/v1beta2"),
        (25, "kubescheduler.config.k8s.io/v1"),
    ];
    TABLE
        .iter()
        .rev()
        .find(|(first, _)| minor >= *first)
        .map_or(TABLE[0].1, |(_, version)| version)
}

/// `KubeSchedulerConfiguration`, the fields kiln sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KubeSchedulerConfiguration {
    /// [`scheduler_config_api_version`] of the plan's version.
    pub api_version: String,
    /// Always `KubeSchedulerConfiguration`.
    pub kind: String,
    /// The scheduler's kubeconfig.
    pub client_connection: ClientConnection,
    /// Leader election, so that several control-plane nodes run one active scheduler.
    pub leader_election: LeaderElection,
    /// `/debug/pprof/`: always off.
    pub enable_profiling: bool,
    /// Where the `v1beta1` scheduler (1.20, 1.21) serves its plain-HTTP health checks:
    /// [`SCHEDULER_INSECURE_LOOPBACK`]; unset from 1.22, which has no insecure serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthz_bind_address: Option<String>,
    /// Where the `v1beta1` scheduler serves its plain-HTTP metrics: as `healthz_bind_address`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_bind_address: Option<String>,
}

/// Where kiln has the 1.20 and 1.21 scheduler serve plain HTTP (health checks and metrics,
/// which that version cannot turn off once given `--config`): the loopback address alone, on
/// the insecure port those versions' `kubectl get componentstatuses` asks.
pub const SCHEDULER_INSECURE_LOOPBACK: &str = "127.0.0.1:10251";

/// The last minor version whose scheduler serves plain HTTP (`v1beta1`'s bind addresses).
const LAST_INSECURE_SCHEDULER: u32 = 21;

/// A component's `leaderElection`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderElection {
    /// Whether to elect a leader.
    pub leader_elect: bool,
    /// How long a lease lasts unrenewed, as a Go duration (`60s`); unset: the component's
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration: Option<String>,
    /// How long the leader tries to renew before it gives up; unset: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_deadline: Option<String>,
    /// How long candidates wait between attempts; unset: the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_period: Option<String>,
}

impl LeaderElection {
    /// Leader election on, with the spec's `options.leader_election` timings if it sets any.
    pub fn of(plan: &Plan) -> Self {
        Self {
            leader_elect: true,
            lease_duration: leader_election_duration(plan, |timings| {
                timings.lease_duration_seconds
            }),
            renew_deadline: leader_election_duration(plan, |timings| {
                timings.renew_deadline_seconds
            }),
            retry_period: leader_election_duration(plan, |timings| timings.retry_period_seconds),
        }
    }
}

/// One of the spec's `options.leader_election` timings as a Go duration (`60s`), the form both
/// kube-controller-manager's flags and kube-scheduler's file take; none when the spec leaves
/// the components' defaults.
pub(crate) fn leader_election_duration(
    plan: &Plan,
    field: fn(&LeaderElectionPlan) -> u32,
) -> Option<String> {
    plan.options
        .leader_election
        .as_ref()
        .map(|timings| LeaderElectionPlan::duration(field(timings)))
}

/// The scheduler's configuration for the plan's Kubernetes version.
pub fn scheduler_configuration(plan: &Plan) -> KubeSchedulerConfiguration {
    KubeSchedulerConfiguration {
        api_version: scheduler_config_api_version(plan.cluster.kubernetes_version.minor).to_owned(),
        kind: "KubeSchedulerConfiguration".to_owned(),
        client_connection: ClientConnection {
            kubeconfig: paths::SCHEDULER_KUBECONFIG.to_owned(),
        },
        leader_election: LeaderElection::of(plan),
        enable_profiling: false,
        healthz_bind_address: (plan.cluster.kubernetes_version.minor <= LAST_INSECURE_SCHEDULER)
            .then(|| SCHEDULER_INSECURE_LOOPBACK.to_owned()),
        metrics_bind_address: (plan.cluster.kubernetes_version.minor <= LAST_INSECURE_SCHEDULER)
            .then(|| SCHEDULER_INSECURE_LOOPBACK.to_owned()),
    }
}

/// `apiserver.config.k8s.io/v1` `EncryptionConfiguration`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EncryptionConfiguration {
    /// Always `apiserver.config.k8s.io/v1`.
    pub api_version: String,
    /// Always `EncryptionConfiguration`.
    pub kind: String,
    /// Which resources are encrypted how.
    pub resources: Vec<EncryptionResources>,
}

/// One entry of `resources`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionResources {
    /// The resources, for example `secrets`.
    pub resources: Vec<String>,
    /// Providers in order: the first encrypts, all are tried to decrypt.
    pub providers: Vec<EncryptionProviderConfig>,
}

/// One provider: exactly one field is set.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionProviderConfig {
    /// AES-CBC keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aescbc: Option<EncryptionKeys>,
    /// XSalsa20-Poly1305 keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secretbox: Option<EncryptionKeys>,
    /// No encryption: reads data written before encryption was turned on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Empty>,
}

/// An empty YAML mapping, `{}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

/// A provider's keys.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKeys {
    /// Keys in order; the first encrypts.
    pub keys: Vec<EncryptionKey>,
}

/// One named key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncryptionKey {
    /// The key's name, recorded with every value it encrypts.
    pub name: String,
    /// The key, base64.
    pub secret: String,
}

/// The name of the encryption-at-rest key of `generation` (`options.encryption_key_generations`):
/// `key<generation + 1>`, so generation 0 keeps the name `key1` that every value it encrypted
/// records.
pub fn encryption_key_name(generation: u32) -> String {
    format!("key{}", u64::from(generation) + 1)
}

/// Encryption at rest of Secrets with `provider` and `keys`, each a generation and its 32-byte
/// key (named by [`encryption_key_name`], base64) in order, the first encrypting and every one
/// decrypting; identity last so that Secrets written before encryption stay readable.
/// [`EncryptionProvider::None`] gives the identity provider alone.
pub fn encryption_configuration(
    provider: EncryptionProvider,
    keys: &[(u32, [u8; 32])],
) -> EncryptionConfiguration {
    let keys = || EncryptionKeys {
        keys: keys
            .iter()
            .map(|(generation, key)| EncryptionKey {
                name: encryption_key_name(*generation),
                secret: base64::engine::general_purpose::STANDARD.encode(key),
            })
            .collect(),
    };
    let mut providers = Vec::new();
    match provider {
        EncryptionProvider::Aescbc => providers.push(EncryptionProviderConfig {
            aescbc: Some(keys()),
            ..Default::default()
        }),
        EncryptionProvider::Secretbox => providers.push(EncryptionProviderConfig {
            secretbox: Some(keys()),
            ..Default::default()
        }),
        EncryptionProvider::None => {}
    }
    providers.push(EncryptionProviderConfig {
        identity: Some(Empty {}),
        ..Default::default()
    });
    EncryptionConfiguration {
        api_version: "apiserver.config.k8s.io/v1".to_owned(),
        kind: "EncryptionConfiguration".to_owned(),
        resources: vec![EncryptionResources {
            resources: vec!["secrets".to_owned()],
            providers,
        }],
    }
}

/// The first minor version whose API server takes the anonymous endpoints it allows from its
/// authentication configuration (`AnonymousAuthConfigurableEndpoints`, beta and on by default
/// in 1.32, stable in 1.34; KEP-4633).
pub const ANONYMOUS_ENDPOINTS_MINOR: u32 = 32;

/// Which requests the API server serves without credentials (see [`anonymous_access`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnonymousAccess {
    /// None: `--anonymous-auth=false`, anonymous requests get 401.
    Refused,
    /// Only requests for these exact paths; any other anonymous request gets 401.
    Endpoints(Vec<String>),
    /// Any request, as `system:anonymous`, which RBAC then refuses (403) unless a binding
    /// allows it: the API server's default.
    Unrestricted,
}

/// What `plan`'s API servers serve anonymously.
///
/// - systemd mode: nothing. No kubelet probes the API server, and the load balancer's health
///   check presents a client certificate.
/// - static-pod mode: the kubelet's probes are unauthenticated, so `/livez`, `/readyz` and
///   `/healthz`, and with bootstrap tokens `kube-public/cluster-info`, which a joining node reads
///   before it has a credential. From 1.32 ([`ANONYMOUS_ENDPOINTS_MINOR`]) that is all it
///   serves anonymously; before, the API server can only allow every anonymous request, which
///   RBAC refuses (403), as kubeadm's does.
pub fn anonymous_access(plan: &Plan) -> AnonymousAccess {
    if plan.cluster.control_plane_mode == ControlPlaneMode::Systemd {
        return AnonymousAccess::Refused;
    }
    if plan.cluster.kubernetes_version.minor < ANONYMOUS_ENDPOINTS_MINOR {
        return AnonymousAccess::Unrestricted;
    }
    let mut paths: Vec<String> = ["/healthz", "/livez", "/readyz"]
        .map(str::to_owned)
        .to_vec();
    if plan.options.kubelet_credentials == KubeletCredentials::BootstrapToken {
        paths.push(format!(
            "/api/v1/namespaces/{}/configmaps/{}",
            crate::bootstrap::PUBLIC_NAMESPACE,
            crate::bootstrap::CLUSTER_INFO
        ));
    }
    AnonymousAccess::Endpoints(paths)
}

/// `apiserver.config.k8s.io` `AuthenticationConfiguration`, the fields kiln sets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticationConfiguration {
    /// `apiserver.config.k8s.io/v1` from 1.34, `v1beta1` before.
    pub api_version: String,
    /// Always `AuthenticationConfiguration`.
    pub kind: String,
    /// Anonymous authentication and the paths it applies to.
    pub anonymous: AnonymousAuthentication,
}

/// The `anonymous` section of an [`AuthenticationConfiguration`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnonymousAuthentication {
    /// Whether anonymous requests are authenticated at all.
    pub enabled: bool,
    /// The only paths anonymous requests may ask for.
    pub conditions: Vec<AnonymousCondition>,
}

/// One path of [`AnonymousAuthentication::conditions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AnonymousCondition {
    /// The exact request path.
    pub path: String,
}

/// The API server's authentication configuration (`--authentication-config`), when
/// [`anonymous_access`] limits anonymous requests to endpoints; `None` otherwise.
pub fn authentication_configuration(plan: &Plan) -> Option<AuthenticationConfiguration> {
    let AnonymousAccess::Endpoints(paths) = anonymous_access(plan) else {
        return None;
    };
    let api_version = if plan.cluster.kubernetes_version.minor >= 34 {
        "apiserver.config.k8s.io/v1"
    } else {
        "apiserver.config.k8s.io/v1beta1"
    };
    Some(AuthenticationConfiguration {
        api_version: api_version.to_owned(),
        kind: "AuthenticationConfiguration".to_owned(),
        anonymous: AnonymousAuthentication {
            enabled: true,
            conditions: paths
                .into_iter()
                .map(|path| AnonymousCondition { path })
                .collect(),
        },
    })
}

/// `apiserver.config.k8s.io/v1` `AdmissionConfiguration` (`--admission-control-config-file`),
/// configuring PodSecurity and EventRateLimit admission.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionConfiguration {
    /// Always `apiserver.config.k8s.io/v1`.
    pub api_version: String,
    /// Always `AdmissionConfiguration`.
    pub kind: String,
    /// One entry per configured admission plugin.
    pub plugins: Vec<AdmissionPlugin>,
}

/// One plugin of an [`AdmissionConfiguration`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionPlugin {
    /// The plugin: `PodSecurity` or `EventRateLimit`.
    pub name: String,
    /// Its configuration.
    pub configuration: AdmissionPluginConfiguration,
}

/// The configuration of one [`AdmissionPlugin`]: its own API object, inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AdmissionPluginConfiguration {
    /// PodSecurity's.
    PodSecurity(PodSecurityConfiguration),
    /// EventRateLimit's.
    EventRateLimit(EventRateLimitConfiguration),
}

/// `eventratelimit.admission.k8s.io/v1alpha1` `Configuration`: the rate at which the API server
/// accepts Events, per bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRateLimitConfiguration {
    /// Always `eventratelimit.admission.k8s.io/v1alpha1`.
    pub api_version: String,
    /// Always `Configuration`.
    pub kind: String,
    /// One limit per bucket type.
    pub limits: Vec<EventRateLimit>,
}

/// One limit of an [`EventRateLimitConfiguration`]: a token bucket per `type_` (one for the
/// whole server, one per namespace, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventRateLimit {
    /// `Server`, `Namespace`, `User` or `SourceAndObject`.
    #[serde(rename = "type")]
    pub type_: String,
    /// Events per second accepted once the burst is spent.
    pub qps: u32,
    /// Events accepted at once from a full bucket.
    pub burst: u32,
    /// How many buckets are kept (least recently used go first); not for `Server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u32>,
}

/// The admission plugin that limits the rate of Events, which kiln configures when
/// `options.admission_plugins` lists it ([`EVENT_RATE_LIMITS`]).
pub const EVENT_RATE_LIMIT_PLUGIN: &str = "EventRateLimit";

/// kiln's EventRateLimit limits, as (type, qps, burst, cache size): the whole server at 5000
/// per second (bursts of 20000), and each namespace at 50 (bursts of 100, 2000 namespaces
/// tracked), so one namespace's flood of Events cannot take the API server's capacity from the
/// rest. No per-user limit: the kubelets and controllers send their Events in bursts.
pub const EVENT_RATE_LIMITS: [(&str, u32, u32, Option<u32>); 2] = [
    ("Server", 5000, 20_000, None),
    ("Namespace", 50, 100, Some(2000)),
];

/// `pod-security.admission.config.k8s.io` `PodSecurityConfiguration`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityConfiguration {
    /// `pod-security.admission.config.k8s.io/v1` from 1.25, `v1beta1` before.
    pub api_version: String,
    /// Always `PodSecurityConfiguration`.
    pub kind: String,
    /// The levels of namespaces that have no labels of their own.
    pub defaults: PodSecurityDefaults,
    /// What admission leaves alone.
    pub exemptions: PodSecurityExemptions,
}

/// [`PodSecurityConfiguration::defaults`]: each mode's level and the policy version it checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct PodSecurityDefaults {
    /// Pods that break this level are refused.
    pub enforce: String,
    /// The version of the enforced level's checks: `latest`.
    pub enforce_version: String,
    /// Pods that break this level are annotated in the audit log.
    pub audit: String,
    /// `latest`.
    pub audit_version: String,
    /// Pods that break this level are admitted with a warning to the client.
    pub warn: String,
    /// `latest`.
    pub warn_version: String,
}

/// [`PodSecurityConfiguration::exemptions`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSecurityExemptions {
    /// Users whose requests are not checked: none.
    pub usernames: Vec<String>,
    /// Runtime classes not checked: none.
    pub runtime_classes: Vec<String>,
    /// Namespaces not checked.
    pub namespaces: Vec<String>,
}

/// The API server's admission configuration: PodSecurity's when `options.pod_security` is set
/// (from 1.23, where it defaults to `baseline`), and EventRateLimit's ([`EVENT_RATE_LIMITS`])
/// when `options.admission_plugins` lists it; `None` without either.
///
/// Every namespace without `pod-security.kubernetes.io/*` labels of its own gets the spec's
/// level enforced and warned about, and `restricted` audited (annotations in the audit log).
/// `kube-system` is exempt: kiln's own privileged pods run there (static-pod control planes and
/// kube-proxy, which need host namespaces and host paths), and who may create pods there may
/// already do anything.
pub fn admission_configuration(plan: &Plan) -> Option<AdmissionConfiguration> {
    let mut plugins: Vec<AdmissionPlugin> = plan
        .options
        .pod_security
        .map(|level| pod_security_plugin(plan, level))
        .into_iter()
        .collect();
    if plan
        .options
        .admission_plugins
        .iter()
        .any(|name| name == EVENT_RATE_LIMIT_PLUGIN)
    {
        plugins.push(AdmissionPlugin {
            name: EVENT_RATE_LIMIT_PLUGIN.to_owned(),
            configuration: AdmissionPluginConfiguration::EventRateLimit(
                EventRateLimitConfiguration {
                    api_version: "eventratelimit.admission.k8s.io/v1alpha1".to_owned(),
                    kind: "Configuration".to_owned(),
                    limits: EVENT_RATE_LIMITS
                        .iter()
                        .map(|(type_, qps, burst, cache_size)| EventRateLimit {
                            type_: (*type_).to_owned(),
                            qps: *qps,
                            burst: *burst,
                            cache_size: *cache_size,
                        })
                        .collect(),
                },
            ),
        });
    }
    (!plugins.is_empty()).then(|| AdmissionConfiguration {
        api_version: "apiserver.config.k8s.io/v1".to_owned(),
        kind: "AdmissionConfiguration".to_owned(),
        plugins,
    })
}

/// PodSecurity's entry of the admission configuration, enforcing `level`.
fn pod_security_plugin(plan: &Plan, level: kiln_spec::PodSecurityLevel) -> AdmissionPlugin {
    let level = level.name().to_owned();
    let api_version = if plan.cluster.kubernetes_version.minor >= 25 {
        "pod-security.admission.config.k8s.io/v1"
    } else {
        "pod-security.admission.config.k8s.io/v1beta1"
    };
    let latest = || "latest".to_owned();
    AdmissionPlugin {
        name: "PodSecurity".to_owned(),
        configuration: AdmissionPluginConfiguration::PodSecurity(PodSecurityConfiguration {
            api_version: api_version.to_owned(),
            kind: "PodSecurityConfiguration".to_owned(),
            defaults: PodSecurityDefaults {
                enforce: level.clone(),
                enforce_version: latest(),
                audit: kiln_spec::PodSecurityLevel::Restricted.name().to_owned(),
                audit_version: latest(),
                warn: level,
                warn_version: latest(),
            },
            exemptions: PodSecurityExemptions {
                usernames: Vec::new(),
                runtime_classes: Vec::new(),
                namespaces: vec![crate::SYSTEM_NAMESPACE.to_owned()],
            },
        }),
    }
}

/// `audit.k8s.io/v1` `Policy`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditPolicy {
    /// Always `audit.k8s.io/v1`.
    pub api_version: String,
    /// Always `Policy`.
    pub kind: String,
    /// Stages never logged.
    pub omit_stages: Vec<String>,
    /// Rules in order; the first that matches decides.
    pub rules: Vec<AuditRule>,
}

/// One audit rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRule {
    /// `None`, `Metadata`, `Request` or `RequestResponse`.
    pub level: String,
    /// The resources the rule matches; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Vec<AuditGroupResources>>,
}

/// Resources of one API group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditGroupResources {
    /// The API group; `""` is the core group.
    pub group: String,
    /// Resource names.
    pub resources: Vec<String>,
}

/// kiln's audit policy: Secrets, ConfigMaps and TokenReviews at `Metadata` first (so that
/// their bodies, which carry secrets and tokens, are never logged, whatever later rules
/// say), then `Metadata` for everything; the `RequestReceived` stage is omitted.
pub fn audit_policy() -> AuditPolicy {
    AuditPolicy {
        api_version: "audit.k8s.io/v1".to_owned(),
        kind: "Policy".to_owned(),
        omit_stages: vec!["RequestReceived".to_owned()],
        rules: vec![
            AuditRule {
                level: "Metadata".to_owned(),
                resources: Some(vec![
                    AuditGroupResources {
                        group: String::new(),
                        resources: vec!["secrets".to_owned(), "configmaps".to_owned()],
                    },
                    AuditGroupResources {
                        group: "authentication.k8s.io".to_owned(),
                        resources: vec!["tokenreviews".to_owned()],
                    },
                ]),
            },
            AuditRule {
                level: "Metadata".to_owned(),
                resources: None,
            },
        ],
    }
}
