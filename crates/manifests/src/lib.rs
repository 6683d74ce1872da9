//! kiln's Kubernetes manifests: static pods, RBAC and the kube-proxy DaemonSet typed through
//! `k8s-openapi`, the component configuration files Kubernetes reads (KubeletConfiguration,
//! KubeProxyConfiguration, KubeSchedulerConfiguration, EncryptionConfiguration, the audit
//! Policy) as typed serde structs, and the one version-aware table of component flags.
//!
//! Flags come from [`flag_table`]: every entry names its component, the Kubernetes minor
//! versions it is valid for (1.20 through [`kiln_spec::NEWEST_SUPPORTED_MINOR`]) and its
//! source. [`flags`] renders a component's flags for the plan's version, sorted, with the
//! spec's `options.extra_flags` applied last; [`flag_names`] lists every name per component
//! and version, the hook for checking the table against each release's `--help`.
//!
//! Images are named `kiln.local/<component>:v<version>` ([`image`]): kiln builds them itself
//! and imports them into containerd, so pods never pull (`imagePullPolicy: Never`).
//!
//! The crate is pure: the encryption key is an input (derived by the caller from the
//! cluster's root secret), and every file is byte-for-byte reproducible YAML.
//!
//! ```
//! let source = r#"
//! [cluster]
//! name = "demo"
//! kubernetes_version = "1.20.2"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! "#;
//! let plan = kiln_spec::load(source, "demo.toml").expect("a valid spec").plan;
//! // The releases of the images besides Kubernetes' own come from kiln's package set.
//! let releases = kiln_spec::images::Releases { etcd: "3.4.23".into(), coredns: Some("1.7.0".into()) };
//! let files = kiln_manifests::render_node(&plan, plan.node("node1").expect("node1 is in the plan"), &|_| [7; 32], &releases)?;
//! let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
//! assert_eq!(
//!     paths,
//!     [
//!         "etc/kubernetes/addons/coredns.yaml",
//!         "etc/kubernetes/addons/rbac.yaml",
//!         "etc/kubernetes/audit-policy.yaml",
//!         "etc/kubernetes/encryption-config.yaml",
//!         "etc/kubernetes/kube-proxy-config.yaml",
//!         "etc/kubernetes/manifests/etcd.yaml",
//!         "etc/kubernetes/manifests/kube-apiserver.yaml",
//!         "etc/kubernetes/manifests/kube-controller-manager.yaml",
//!         "etc/kubernetes/manifests/kube-proxy.yaml",
//!         "etc/kubernetes/manifests/kube-scheduler.yaml",
//!         "etc/kubernetes/scheduler-config.yaml",
//!         "etc/sysctl.d/90-kubelet.conf",
//!         "var/lib/kubelet/config.yaml",
//!     ]
//! );
//!
//! // Flags depend on the version: 1.20 still has --insecure-port, 1.24 does not.
//! let node = plan.node("node1").expect("node1");
//! let apiserver = kiln_manifests::flags(&plan, node, kiln_spec::Component::KubeApiserver);
//! assert!(apiserver.contains(&("insecure-port".to_owned(), "0".to_owned())));
//! assert!(!kiln_manifests::flag_names(kiln_spec::Component::KubeApiserver, 24)
//!     .contains(&"insecure-port"));
//! // From 1.27 the kubelet's settings that have a KubeletConfiguration field are in the file
//! // alone.
//! assert!(kiln_manifests::flag_names(kiln_spec::Component::Kubelet, 20).contains(&"cgroup-driver"));
//! assert!(!kiln_manifests::flag_names(kiln_spec::Component::Kubelet, 37).contains(&"cgroup-driver"));
//!
//! // Static pods are k8s-openapi Pods.
//! let pods = kiln_manifests::static_pods(&plan, &releases, node);
//! let apiserver_pod = &pods[1];
//! assert_eq!(apiserver_pod.metadata.name.as_deref(), Some("kube-apiserver"));
//! # Ok::<(), kiln_manifests::Error>(())
//! ```
#![forbid(unsafe_code)]

mod bootstrap;
mod config;
mod dns;
mod error;
mod flags;
mod objects;

pub use bootstrap::{
    BOOTSTRAPPERS_GROUP, BootstrapObjects, CLUSTER_INFO, PUBLIC_NAMESPACE, bootstrap_objects,
};
pub use config::{
    ANONYMOUS_ENDPOINTS_MINOR, AdmissionConfiguration, AdmissionPlugin,
    AdmissionPluginConfiguration, AnonymousAccess, AnonymousAuthentication, AnonymousCondition,
    AuditGroupResources, AuditPolicy, AuditRule, AuthenticationConfiguration, CONTROL_PLANE_TAINT,
    ClientConnection, ETCD_TAINT, EVENT_RATE_LIMIT_PLUGIN, EVENT_RATE_LIMITS, Empty, Enabled,
    EncryptionConfiguration, EncryptionKey, EncryptionKeys, EncryptionProviderConfig,
    EncryptionResources, EventRateLimit, EventRateLimitConfiguration, FILE_ONLY_KUBELET_SETTINGS,
    KUBELET_POD_PIDS_LIMIT, KUBELET_SYSCTLS, KUBELET_TLS_CIPHER_SUITES, KubeProxyConfiguration,
    KubeSchedulerConfiguration, KubeletAuthentication, KubeletAuthorization, KubeletConfiguration,
    KubeletX509, LeaderElection, NodeTaint, PodSecurityConfiguration, PodSecurityDefaults,
    PodSecurityExemptions, SCHEDULER_INSECURE_LOOPBACK, admission_configuration, anonymous_access,
    audit_policy, authentication_configuration, encryption_configuration, encryption_key_name,
    kube_proxy_configuration, kubelet_configuration, kubelet_sysctls, node_taints,
    scheduler_config_api_version, scheduler_configuration,
};
pub use dns::{
    APP_LABEL as COREDNS_POD_LABEL, COREDNS_NAME, DNS_SERVICE_NAME, DnsAddon, HEALTH_PORT,
    METRICS_PORT, READY_PORT, corefile, dns_addon,
};
pub use error::Error;
pub use flags::{
    AUDIT_LOG_MAX_AGE_DAYS, AUDIT_LOG_MAX_BACKUPS, AUDIT_LOG_MAX_SIZE_MB, FlagRule, flag_names,
    flag_table, flags,
};
pub use objects::{
    Addons, IMAGE_REGISTRY, KubeProxyAddon, STARTUP_FAILURE_THRESHOLD, addons, image, pki_files,
    pod_components, pod_images, rbac_bindings, static_pod_components, static_pods,
};

use kiln_spec::images::Releases;
use kiln_spec::{EncryptionProvider, KubeProxyMode, NodePlan, Plan, Role, paths};
use serde::Serialize;

/// The namespace of the cluster's own add-ons (kube-proxy's DaemonSet, CoreDNS, their
/// accounts and bindings) and of the static pods' mirror pods.
pub const SYSTEM_NAMESPACE: &str = "kube-system";

/// Mode of every file this crate renders, except those of [`SECRET_FILE_MODE`].
pub const FILE_MODE: u32 = 0o644;
/// Mode of the encryption configuration, which holds the key, and of the kubelet's
/// configuration and the static pods' manifests, which only the kubelet (root) reads.
pub const SECRET_FILE_MODE: u32 = 0o600;

/// One file to write (defined once, in kiln-spec, for every renderer).
pub use kiln_spec::RenderedFile;

/// Every file of `node` (one of `plan`'s nodes), sorted by path:
///
/// - a control-plane node: the scheduler's configuration, the admission configuration of
///   PodSecurity (see [`admission_configuration`]), the authentication configuration
///   when it limits anonymous requests (see [`authentication_configuration`]), the audit policy (with
///   `options.audit_log`), the encryption configuration (unless encryption is `none`; mode
///   0600), and the bootstrap objects under `etc/kubernetes/addons/` (`rbac.yaml`,
///   `kube-proxy.yaml` with a kube-proxy DaemonSet and `coredns.yaml` with the cluster DNS;
///   see [`addons`]) to apply once the API is up;
/// - a node with a kubelet: the KubeletConfiguration, and kube-proxy's configuration unless
///   kube-proxy is a DaemonSet;
/// - the node's static pods ([`static_pods`]) under `etc/kubernetes/manifests/`.
///
/// `encryption_key` gives the 32-byte key of encryption at rest of a generation (of
/// `options.encryption_key_generations`); `releases` tag the images the static pods and
/// add-ons run (see [`image`]).
pub fn render_node(
    plan: &Plan,
    node: &NodePlan,
    encryption_key: &dyn Fn(u32) -> [u8; 32],
    releases: &Releases,
) -> Result<Vec<RenderedFile>, Error> {
    let mut files = Vec::new();
    let mut add = |path: &str, contents: String, mode: u32| {
        files.push(RenderedFile {
            path: path.trim_start_matches('/').to_owned(),
            contents: contents.into_bytes(),
            mode,
        });
    };
    if node.has(Role::ControlPlane) {
        add(
            paths::SCHEDULER_CONFIG,
            yaml("scheduler configuration", &scheduler_configuration(plan))?,
            FILE_MODE,
        );
        if let Some(config) = admission_configuration(plan) {
            add(
                paths::ADMISSION_CONFIG,
                yaml("admission configuration", &config)?,
                FILE_MODE,
            );
        }
        if let Some(config) = authentication_configuration(plan) {
            add(
                paths::AUTHENTICATION_CONFIG,
                yaml("authentication configuration", &config)?,
                FILE_MODE,
            );
        }
        if plan.options.audit_log {
            add(
                paths::AUDIT_POLICY,
                yaml("audit policy", &audit_policy())?,
                FILE_MODE,
            );
        }
        if plan.options.encryption_at_rest != EncryptionProvider::None {
            let keys: Vec<(u32, [u8; 32])> = plan
                .options
                .encryption_key_generations
                .iter()
                .map(|generation| (*generation, encryption_key(*generation)))
                .collect();
            let config = encryption_configuration(plan.options.encryption_at_rest, &keys);
            add(
                paths::ENCRYPTION_CONFIG,
                yaml("encryption configuration", &config)?,
                SECRET_FILE_MODE,
            );
        }
        let addons = addons(plan, releases)?;
        add(
            paths::RBAC_ADDON,
            documents("RBAC bindings", addons.rbac.iter())?,
            FILE_MODE,
        );
        if let Some(kube_proxy) = &addons.kube_proxy {
            let documents = [
                yaml("kube-proxy ServiceAccount", &kube_proxy.service_account)?,
                yaml("kube-proxy binding", &kube_proxy.cluster_role_binding)?,
                yaml("kube-proxy ConfigMap", &kube_proxy.config_map)?,
                yaml("kube-proxy DaemonSet", &kube_proxy.daemon_set)?,
            ];
            add(paths::KUBE_PROXY_ADDON, documents.join("---\n"), FILE_MODE);
        }
        if let Some(dns) = &addons.dns {
            let documents = [
                yaml("CoreDNS ServiceAccount", &dns.service_account)?,
                yaml("CoreDNS ClusterRole", &dns.cluster_role)?,
                yaml("CoreDNS binding", &dns.cluster_role_binding)?,
                yaml("CoreDNS ConfigMap", &dns.config_map)?,
                yaml("CoreDNS Deployment", &dns.deployment)?,
                yaml("kube-dns Service", &dns.service)?,
            ];
            add(paths::COREDNS_ADDON, documents.join("---\n"), FILE_MODE);
        }
    }
    if node.runs_kubelet(plan.cluster.control_plane_mode) {
        add(
            paths::KUBELET_CONFIG,
            yaml("kubelet configuration", &kubelet_configuration(plan, node))?,
            // Read by the kubelet alone, which runs as root (the CIS benchmark asks 0600).
            SECRET_FILE_MODE,
        );
        add(paths::KUBELET_SYSCTLS, kubelet_sysctls(), FILE_MODE);
        if plan.options.kube_proxy != KubeProxyMode::Daemonset {
            add(
                paths::KUBE_PROXY_CONFIG,
                yaml(
                    "kube-proxy configuration",
                    &kube_proxy_configuration(plan, Some(node)),
                )?,
                FILE_MODE,
            );
        }
    }
    for pod in static_pods(plan, releases, node) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        add(
            &paths::static_pod_manifest(&name),
            yaml(&format!("static pod {name}"), &pod)?,
            // Read by the kubelet alone (CIS 1.1.1, 1.1.3, 1.1.5 and 1.1.7 ask 0600).
            SECRET_FILE_MODE,
        );
    }
    files.sort();
    Ok(files)
}

/// `value` as YAML through serde_norway, fields in declaration order.
pub(crate) fn yaml(what: &str, value: &impl Serialize) -> Result<String, Error> {
    serde_norway::to_string(value).map_err(|error| Error::Encode {
        what: what.to_owned(),
        message: error.to_string(),
    })
}

fn documents<'a, T: Serialize + 'a>(
    what: &str,
    values: impl Iterator<Item = &'a T>,
) -> Result<String, Error> {
    let documents = values
        .map(|value| yaml(what, value))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(documents.join("---\n"))
}
