//! The one table of component flags, each with the Kubernetes minor versions it is valid for.
//!
//! Every entry names its source: the Kubernetes command-line reference
//! (kubernetes.io/docs/reference/command-line-tools-reference/), a changelog entry, or the
//! pull request that deprecated or removed the flag. A window is inclusive at both ends;
//! `last: None` means the flag still exists in the newest minor kiln supports
//! ([`kiln_spec::NEWEST_SUPPORTED_MINOR`]). etcd's flags do not depend on the Kubernetes
//! version (kiln runs etcd 3.4 or later with every supported release), so their window is the
//! whole supported range.
//!
//! Flag names are written without the leading dashes, as `kiln_units::Flags` and the spec's
//! `options.extra_flags` write them.

use std::collections::BTreeMap;

use kiln_spec::{
    Component, ControlPlaneMode, EncryptionProvider, KubeletCredentials, NodePlan, Plan,
};

use crate::config::leader_election_duration;
use kiln_spec::paths;

/// One flag of the table: which component takes it, for which minor versions, and why.
#[derive(Clone, Copy)]
pub struct FlagRule {
    /// The component whose command line carries the flag.
    pub component: Component,
    /// The flag's name, without the leading dashes.
    pub name: &'static str,
    /// The first minor version (of Kubernetes 1.x) the flag is valid for.
    pub first: u32,
    /// The last minor version the flag is valid for; `None` while it still exists.
    pub last: Option<u32>,
    /// Where the window comes from.
    pub source: &'static str,
    value: fn(&Context<'_>) -> Option<String>,
}

impl FlagRule {
    /// Whether the flag exists (and kiln may pass it) in Kubernetes `1.minor`.
    pub fn valid_for(&self, minor: u32) -> bool {
        minor >= self.first && self.last.is_none_or(|last| minor <= last)
    }
}

impl std::fmt::Debug for FlagRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlagRule")
            .field("component", &self.component)
            .field("name", &self.name)
            .field("first", &self.first)
            .field("last", &self.last)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Where a component's flags are rendered for: one node, or every node at once (the
/// kube-proxy DaemonSet, which learns its node name from the downward API).
#[derive(Clone, Copy)]
pub(crate) enum Target<'a> {
    Node(&'a NodePlan),
    DaemonSet,
}

/// What a flag's value is computed from.
pub(crate) struct Context<'a> {
    pub(crate) plan: &'a Plan,
    pub(crate) target: Target<'a>,
}

impl Context<'_> {
    fn node(&self) -> Option<&NodePlan> {
        match self.target {
            Target::Node(node) => Some(node),
            Target::DaemonSet => None,
        }
    }
}

/// Every flag kiln knows, in table order (grouped by component, then by name).
pub fn flag_table() -> &'static [FlagRule] {
    TABLE
}

/// The names of every flag kiln may pass to `component` in Kubernetes `1.minor`, sorted.
///
/// This is the hook for checking the table against the real binaries: every name listed
/// must appear in `<component> --help` of that release.
pub fn flag_names(component: Component, minor: u32) -> Vec<&'static str> {
    let mut names: Vec<&'static str> = TABLE
        .iter()
        .filter(|rule| rule.component == component && rule.valid_for(minor))
        .map(|rule| rule.name)
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The flags of `component` on `node` for the plan's Kubernetes version, sorted by name,
/// with the spec's `options.extra_flags` of that component applied last (replacing a value
/// of the same name, or adding a flag).
///
/// Only flags whose window contains the plan's minor version are rendered; extra flags are
/// the user's responsibility.
pub fn flags(plan: &Plan, node: &NodePlan, component: Component) -> Vec<(String, String)> {
    render(
        &Context {
            plan,
            target: Target::Node(node),
        },
        component,
    )
}

pub(crate) fn render(context: &Context<'_>, component: Component) -> Vec<(String, String)> {
    let minor = context.plan.cluster.kubernetes_version.minor;
    let mut flags: BTreeMap<String, String> = TABLE
        .iter()
        .filter(|rule| rule.component == component && rule.valid_for(minor))
        .filter_map(|rule| (rule.value)(context).map(|value| (rule.name.to_owned(), value)))
        .collect();
    if let Some(extra) = context.plan.options.extra_flags.get(&component) {
        flags.extend(
            extra
                .iter()
                .map(|(name, value)| (name.clone(), value.clone())),
        );
    }
    flags.into_iter().collect()
}

/// `--audit-log-maxage`: days an old audit log file is kept.
pub const AUDIT_LOG_MAX_AGE_DAYS: u32 = 30;
/// `--audit-log-maxbackup`: old audit log files kept.
pub const AUDIT_LOG_MAX_BACKUPS: u32 = 10;
/// `--audit-log-maxsize`: megabytes an audit log file grows to before it is rotated.
pub const AUDIT_LOG_MAX_SIZE_MB: u32 = 10;

fn pki(file: &str) -> Option<String> {
    Some(format!("{}/{file}", paths::PKI_DIR))
}

fn text(value: &str) -> Option<String> {
    Some(value.to_owned())
}

/// `value`, when the API server keeps an audit log (`options.audit_log`).
fn audit(context: &Context<'_>, value: impl ToString) -> Option<String> {
    context.plan.options.audit_log.then(|| value.to_string())
}

fn address(context: &Context<'_>) -> Option<String> {
    context
        .node()
        .map(|node| node.primary_address().to_string())
}

fn bootstrap(context: &Context<'_>) -> bool {
    context.plan.options.kubelet_credentials == KubeletCredentials::BootstrapToken
}

/// Whether this node's kubelet joins with the bootstrap token ([`Plan::kubelet_bootstraps`]).
fn kubelet_bootstraps(context: &Context<'_>) -> bool {
    context
        .node()
        .is_some_and(|node| context.plan.kubelet_bootstraps(node))
}

const REF_APISERVER: &str = "Kubernetes docs: kube-apiserver command-line reference";
const REF_CONTROLLER_MANAGER: &str =
    "Kubernetes docs: kube-controller-manager command-line reference";
const REF_SCHEDULER: &str = "Kubernetes docs: kube-scheduler command-line reference";
const REF_KUBELET: &str = "Kubernetes docs: kubelet command-line reference";
const REF_KUBE_PROXY: &str = "Kubernetes docs: kube-proxy command-line reference";
const REF_ETCD: &str = "etcd docs: configuration flags (3.4 and 3.5)";
const REF_INSECURE_PORT: &str = "kube-apiserver --insecure-port: a no-op that only accepts 0 since 1.20 (kubernetes PR 95856), removed in 1.24 (kubeadm issue 2156)";
const REF_PORT: &str = "kube-controller-manager and kube-scheduler --port: the only way to turn insecure serving off in 1.20 and 1.21 (kubeadm PR 92720); insecure serving removed and the flag a no-op from 1.22 (kubernetes PRs 96216, 96345), removed after";
const REF_CONTAINER_RUNTIME: &str = "kubelet --container-runtime: `remote` leaves the dockershim (removed in 1.24); the flag itself removed in 1.27 (CHANGELOG-1.27, kubernetes PR 114017: `unknown flag: --container-runtime` on 1.27)";
const REF_RUNTIME_ENDPOINT: &str = "kubelet --container-runtime-endpoint: needed with --container-runtime=remote; deprecated from 1.27, when the KubeletConfiguration field containerRuntimeEndpoint replaced it (kubernetes PR 112136; a 1.26 kubelet rejects the field, kubeone PR 2939), so kiln sets the field from 1.27 instead";
const REF_NETWORK_PLUGIN: &str = "kubelet --network-plugin: a dockershim flag, removed with the dockershim in 1.24 (CHANGELOG-1.24)";
const REF_KUBELET_CONFIG_FIELD: &str = "kubelet command-line reference: deprecated in favour of the --config file (still accepted by 1.37, whose kubelet logs a deprecation warning for each; their removal is planned for 1.38, kubernetes PR 139121). kiln passes the same value as the file through 1.26; from 1.27, as with --container-runtime-endpoint, the file alone carries every setting it has a field for";

macro_rules! rule {
    ($component:ident, $name:literal, $first:literal..=$last:literal, $source:expr, $value:expr) => {
        FlagRule {
            component: Component::$component,
            name: $name,
            first: $first,
            last: Some($last),
            source: $source,
            value: $value,
        }
    };
    ($component:ident, $name:literal, $first:literal.., $source:expr, $value:expr) => {
        FlagRule {
            component: Component::$component,
            name: $name,
            first: $first,
            last: None,
            source: $source,
            value: $value,
        }
    };
}

static TABLE: &[FlagRule] = &[
    // etcd.
    rule!(Etcd, "advertise-client-urls", 20.., REF_ETCD, |c| address(
        c
    )
    .map(|a| format!("https://{a}:2379"))),
    rule!(Etcd, "cert-file", 20.., REF_ETCD, |_| pki(
        "etcd/server.crt"
    )),
    rule!(Etcd, "client-cert-auth", 20.., REF_ETCD, |_| text("true")),
    rule!(Etcd, "data-dir", 20.., REF_ETCD, |_| text(
        paths::ETCD_DATA_DIR
    )),
    rule!(Etcd, "initial-advertise-peer-urls", 20.., REF_ETCD, |c| {
        address(c).map(|a| format!("https://{a}:2380"))
    }),
    rule!(Etcd, "initial-cluster", 20.., REF_ETCD, |c| Some(
        c.plan.cluster.etcd_initial_cluster.clone()
    )),
    rule!(Etcd, "initial-cluster-state", 20.., REF_ETCD, |_| text(
        "new"
    )),
    rule!(Etcd, "initial-cluster-token", 20.., REF_ETCD, |c| Some(
        c.plan.cluster.name.clone()
    )),
    rule!(Etcd, "key-file", 20.., REF_ETCD, |_| pki("etcd/server.key")),
    rule!(Etcd, "listen-client-urls", 20.., REF_ETCD, |c| address(c)
        .map(|a| format!("https://{a}:2379,https://127.0.0.1:2379"))),
    // Plain HTTP on loopback for the liveness probe, as kubeadm: /health over the client port
    // would need a client certificate.
    rule!(Etcd, "listen-metrics-urls", 20.., REF_ETCD, |_| text(
        "http://127.0.0.1:2381"
    )),
    rule!(Etcd, "listen-peer-urls", 20.., REF_ETCD, |c| address(c)
        .map(|a| format!("https://{a}:2380"))),
    rule!(Etcd, "name", 20.., REF_ETCD, |c| c
        .node()
        .map(|n| n.name.clone())),
    rule!(Etcd, "peer-cert-file", 20.., REF_ETCD, |_| pki(
        "etcd/peer.crt"
    )),
    rule!(Etcd, "peer-client-cert-auth", 20.., REF_ETCD, |_| text(
        "true"
    )),
    rule!(Etcd, "peer-key-file", 20.., REF_ETCD, |_| pki(
        "etcd/peer.key"
    )),
    rule!(Etcd, "peer-trusted-ca-file", 20.., REF_ETCD, |_| pki(
        "etcd/ca.crt"
    )),
    rule!(Etcd, "trusted-ca-file", 20.., REF_ETCD, |_| pki(
        "etcd/ca.crt"
    )),
    // kube-apiserver.
    rule!(
        KubeApiserver,
        "advertise-address",
        20..,
        REF_APISERVER,
        address
    ),
    rule!(
        KubeApiserver,
        "allow-privileged",
        20..,
        REF_APISERVER,
        |_| text("true")
    ),
    // Anonymous requests: see `config::anonymous_access`. Refused outright in systemd mode;
    // limited to the health endpoints (and cluster-info) by the authentication configuration
    // in static-pod mode from 1.32. The two flags never go together: the API server refuses
    // `--anonymous-auth` beside a configuration that sets `anonymous`.
    rule!(KubeApiserver, "anonymous-auth", 20.., REF_APISERVER, |c| {
        (crate::config::anonymous_access(c.plan) == crate::config::AnonymousAccess::Refused)
            .then(|| "false".to_owned())
    }),
    rule!(
        KubeApiserver,
        "authentication-config",
        29..,
        REF_APISERVER,
        |c| crate::config::authentication_configuration(c.plan)
            .map(|_| paths::AUTHENTICATION_CONFIG.to_owned())
    ),
    rule!(
        KubeApiserver,
        "admission-control-config-file",
        20..,
        REF_APISERVER,
        |c| crate::config::admission_configuration(c.plan)
            .map(|_| paths::ADMISSION_CONFIG.to_owned())
    ),
    // Audit log rotation (CIS 1.2.17 to 1.2.19): 30 days and 10 old files as CIS asks, but
    // files of 10 MB rather than 100, because the log lives on the node's RAM root: at most
    // 110 MB of a control plane's 2 GiB (see SECURITY.md).
    rule!(
        KubeApiserver,
        "audit-log-maxage",
        20..,
        REF_APISERVER,
        |c| audit(c, AUDIT_LOG_MAX_AGE_DAYS)
    ),
    rule!(
        KubeApiserver,
        "audit-log-maxbackup",
        20..,
        REF_APISERVER,
        |c| audit(c, AUDIT_LOG_MAX_BACKUPS)
    ),
    rule!(
        KubeApiserver,
        "audit-log-maxsize",
        20..,
        REF_APISERVER,
        |c| audit(c, AUDIT_LOG_MAX_SIZE_MB)
    ),
    rule!(KubeApiserver, "audit-log-path", 20.., REF_APISERVER, |c| {
        audit(c, paths::AUDIT_LOG)
    }),
    rule!(
        KubeApiserver,
        "audit-policy-file",
        20..,
        REF_APISERVER,
        |c| audit(c, paths::AUDIT_POLICY)
    ),
    rule!(
        KubeApiserver,
        "authorization-mode",
        20..,
        REF_APISERVER,
        |c| Some(c.plan.options.authorization_modes.join(","))
    ),
    rule!(KubeApiserver, "client-ca-file", 20.., REF_APISERVER, |_| {
        pki("ca.crt")
    }),
    rule!(
        KubeApiserver,
        "enable-admission-plugins",
        20..,
        REF_APISERVER,
        |c| Some(c.plan.options.admission_plugins.join(","))
    ),
    rule!(
        KubeApiserver,
        "enable-bootstrap-token-auth",
        20..,
        REF_APISERVER,
        |c| { bootstrap(c).then(|| "true".to_owned()) }
    ),
    rule!(
        KubeApiserver,
        "encryption-provider-config",
        20..,
        REF_APISERVER,
        |c| {
            (c.plan.options.encryption_at_rest != EncryptionProvider::None)
                .then(|| paths::ENCRYPTION_CONFIG.to_owned())
        }
    ),
    rule!(KubeApiserver, "etcd-cafile", 20.., REF_APISERVER, |_| pki(
        "etcd/ca.crt"
    )),
    rule!(
        KubeApiserver,
        "etcd-certfile",
        20..,
        REF_APISERVER,
        |_| pki("apiserver-etcd-client.crt")
    ),
    rule!(KubeApiserver, "etcd-keyfile", 20.., REF_APISERVER, |_| pki(
        "apiserver-etcd-client.key"
    )),
    rule!(
        KubeApiserver,
        "etcd-servers",
        20..,
        REF_APISERVER,
        |c| Some(c.plan.cluster.etcd_servers.clone())
    ),
    rule!(
        KubeApiserver,
        "insecure-port",
        20..=23,
        REF_INSECURE_PORT,
        |_| text("0")
    ),
    rule!(
        KubeApiserver,
        "kubelet-certificate-authority",
        20..,
        REF_APISERVER,
        |_| pki("ca.crt")
    ),
    rule!(
        KubeApiserver,
        "kubelet-client-certificate",
        20..,
        REF_APISERVER,
        |_| pki("apiserver-kubelet-client.crt")
    ),
    rule!(
        KubeApiserver,
        "kubelet-client-key",
        20..,
        REF_APISERVER,
        |_| pki("apiserver-kubelet-client.key")
    ),
    rule!(
        KubeApiserver,
        "kubelet-preferred-address-types",
        20..,
        REF_APISERVER,
        |_| text("InternalIP,Hostname")
    ),
    // Profiling (`/debug/pprof/`) off, as the CIS benchmark asks of the API server, the
    // controller manager and the scheduler.
    rule!(KubeApiserver, "profiling", 20.., REF_APISERVER, |_| text(
        "false"
    )),
    rule!(
        KubeApiserver,
        "proxy-client-cert-file",
        20..,
        REF_APISERVER,
        |_| pki("front-proxy-client.crt")
    ),
    rule!(
        KubeApiserver,
        "proxy-client-key-file",
        20..,
        REF_APISERVER,
        |_| pki("front-proxy-client.key")
    ),
    rule!(
        KubeApiserver,
        "requestheader-allowed-names",
        20..,
        REF_APISERVER,
        |_| text("front-proxy-client")
    ),
    rule!(
        KubeApiserver,
        "requestheader-client-ca-file",
        20..,
        REF_APISERVER,
        |_| pki("front-proxy-ca.crt")
    ),
    rule!(
        KubeApiserver,
        "requestheader-extra-headers-prefix",
        20..,
        REF_APISERVER,
        |_| text("X-Remote-Extra-")
    ),
    rule!(
        KubeApiserver,
        "requestheader-group-headers",
        20..,
        REF_APISERVER,
        |_| text("X-Remote-Group")
    ),
    rule!(
        KubeApiserver,
        "requestheader-username-headers",
        20..,
        REF_APISERVER,
        |_| text("X-Remote-User")
    ),
    rule!(KubeApiserver, "secure-port", 20.., REF_APISERVER, |c| Some(
        c.plan.cluster.apiserver_port.to_string()
    )),
    rule!(
        KubeApiserver,
        "service-account-extend-token-expiration",
        20..,
        "CIS 1.2.30 (cis-1.11): projected tokens expire when they say, not up to a year later",
        |_| text("false")
    ),
    rule!(
        KubeApiserver,
        "service-account-issuer",
        20..,
        "kube-apiserver: required from 1.20 with BoundServiceAccountTokenVolume (CHANGELOG-1.20)",
        |c| Some(format!(
            "https://kubernetes.default.svc.{}",
            c.plan.cluster.domain
        ))
    ),
    rule!(
        KubeApiserver,
        "service-account-key-file",
        20..,
        REF_APISERVER,
        |_| pki("sa.pub")
    ),
    rule!(
        KubeApiserver,
        "service-account-signing-key-file",
        20..,
        "kube-apiserver: required from 1.20 with --service-account-issuer (CHANGELOG-1.20)",
        |_| pki("sa.key")
    ),
    rule!(
        KubeApiserver,
        "service-cluster-ip-range",
        20..,
        REF_APISERVER,
        |c| Some(c.plan.cluster.service_cidr.to_string())
    ),
    rule!(
        KubeApiserver,
        "tls-cert-file",
        20..,
        REF_APISERVER,
        |_| pki("apiserver.crt")
    ),
    rule!(
        KubeApiserver,
        "tls-private-key-file",
        20..,
        REF_APISERVER,
        |_| pki("apiserver.key")
    ),
    // kube-controller-manager.
    rule!(
        KubeControllerManager,
        "authentication-kubeconfig",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text(paths::CONTROLLER_MANAGER_KUBECONFIG)
    ),
    rule!(
        KubeControllerManager,
        "authorization-kubeconfig",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text(paths::CONTROLLER_MANAGER_KUBECONFIG)
    ),
    rule!(
        KubeControllerManager,
        "bind-address",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text("127.0.0.1")
    ),
    rule!(
        KubeControllerManager,
        "client-ca-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| pki("ca.crt")
    ),
    rule!(
        KubeControllerManager,
        "cluster-name",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| Some(c.plan.cluster.name.clone())
    ),
    rule!(
        KubeControllerManager,
        "cluster-signing-cert-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| c
            .plan
            .pki
            .controller_manager_signs_csrs
            .then(|| format!("{}/ca.crt", paths::PKI_DIR))
    ),
    rule!(
        KubeControllerManager,
        "cluster-signing-key-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| c
            .plan
            .pki
            .controller_manager_signs_csrs
            .then(|| format!("{}/ca.key", paths::PKI_DIR))
    ),
    rule!(
        KubeControllerManager,
        "controllers",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| bootstrap(c).then(|| "*,bootstrapsigner,tokencleaner".to_owned())
    ),
    rule!(
        KubeControllerManager,
        "kubeconfig",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text(paths::CONTROLLER_MANAGER_KUBECONFIG)
    ),
    rule!(
        KubeControllerManager,
        "leader-elect",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text("true")
    ),
    rule!(
        KubeControllerManager,
        "leader-elect-lease-duration",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| leader_election_duration(c.plan, |timings| timings.lease_duration_seconds)
    ),
    rule!(
        KubeControllerManager,
        "leader-elect-renew-deadline",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| leader_election_duration(c.plan, |timings| timings.renew_deadline_seconds)
    ),
    rule!(
        KubeControllerManager,
        "leader-elect-retry-period",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| leader_election_duration(c.plan, |timings| timings.retry_period_seconds)
    ),
    rule!(KubeControllerManager, "port", 20..=21, REF_PORT, |_| text(
        "0"
    )),
    rule!(
        KubeControllerManager,
        "profiling",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text("false")
    ),
    rule!(
        KubeControllerManager,
        "requestheader-client-ca-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| pki("front-proxy-ca.crt")
    ),
    rule!(
        KubeControllerManager,
        "root-ca-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| pki("ca.crt")
    ),
    rule!(
        KubeControllerManager,
        "service-account-private-key-file",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| pki("sa.key")
    ),
    rule!(
        KubeControllerManager,
        "service-cluster-ip-range",
        20..,
        REF_CONTROLLER_MANAGER,
        |c| Some(c.plan.cluster.service_cidr.to_string())
    ),
    rule!(
        KubeControllerManager,
        "use-service-account-credentials",
        20..,
        REF_CONTROLLER_MANAGER,
        |_| text("true")
    ),
    // kube-scheduler. `--kubeconfig` and `--leader-elect` are ignored once `--config` is given
    // (the file sets both); kiln passes them with the same values because kiln-units does.
    rule!(
        KubeScheduler,
        "authentication-kubeconfig",
        20..,
        REF_SCHEDULER,
        |_| text(paths::SCHEDULER_KUBECONFIG)
    ),
    rule!(
        KubeScheduler,
        "authorization-kubeconfig",
        20..,
        REF_SCHEDULER,
        |_| text(paths::SCHEDULER_KUBECONFIG)
    ),
    rule!(
        KubeScheduler,
        "bind-address",
        20..,
        REF_SCHEDULER,
        |_| text("127.0.0.1")
    ),
    rule!(KubeScheduler, "config", 20.., REF_SCHEDULER, |_| text(
        paths::SCHEDULER_CONFIG
    )),
    rule!(KubeScheduler, "kubeconfig", 20.., REF_SCHEDULER, |_| text(
        paths::SCHEDULER_KUBECONFIG
    )),
    rule!(
        KubeScheduler,
        "leader-elect",
        20..,
        REF_SCHEDULER,
        |_| text("true")
    ),
    rule!(KubeScheduler, "port", 20..=21, REF_PORT, |_| text("0")),
    // Ignored once `--config` is given (the file's `enableProfiling: false` rules); passed
    // with the same value for those who read the command line, as kube-bench does.
    rule!(KubeScheduler, "profiling", 20.., REF_SCHEDULER, |_| text(
        "false"
    )),
    // kubelet.
    rule!(
        Kubelet,
        "anonymous-auth",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| text("false")
    ),
    rule!(
        Kubelet,
        "authentication-token-webhook",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| text("true")
    ),
    rule!(
        Kubelet,
        "authorization-mode",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| text("Webhook")
    ),
    rule!(Kubelet, "bootstrap-kubeconfig", 20.., REF_KUBELET, |c| {
        kubelet_bootstraps(c).then(|| paths::BOOTSTRAP_KUBELET_KUBECONFIG.to_owned())
    }),
    rule!(Kubelet, "cert-dir", 20.., REF_KUBELET, |c| {
        kubelet_bootstraps(c).then(|| paths::KUBELET_CERT_DIR.to_owned())
    }),
    rule!(
        Kubelet,
        "cgroup-driver",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| text("systemd")
    ),
    rule!(
        Kubelet,
        "client-ca-file",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| pki("ca.crt")
    ),
    rule!(
        Kubelet,
        "cluster-dns",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |c| Some(c.plan.cluster.cluster_dns_ip.to_string())
    ),
    rule!(
        Kubelet,
        "cluster-domain",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |c| Some(c.plan.cluster.domain.clone())
    ),
    rule!(Kubelet, "config", 20.., REF_KUBELET, |_| text(
        paths::KUBELET_CONFIG
    )),
    rule!(
        Kubelet,
        "container-runtime",
        20..=26,
        REF_CONTAINER_RUNTIME,
        |_| text("remote")
    ),
    rule!(
        Kubelet,
        "container-runtime-endpoint",
        20..=26,
        REF_RUNTIME_ENDPOINT,
        |_| text(paths::CONTAINERD_SOCKET)
    ),
    rule!(Kubelet, "hostname-override", 20.., REF_KUBELET, |c| c
        .node()
        .map(|n| n.name.clone())),
    rule!(Kubelet, "kubeconfig", 20.., REF_KUBELET, |_| text(
        paths::KUBELET_KUBECONFIG
    )),
    rule!(
        Kubelet,
        "network-plugin",
        20..=23,
        REF_NETWORK_PLUGIN,
        |_| text("cni")
    ),
    rule!(Kubelet, "node-ip", 20.., REF_KUBELET, address),
    rule!(
        Kubelet,
        "pod-manifest-path",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |c| {
            (c.plan.cluster.control_plane_mode == ControlPlaneMode::StaticPods)
                .then(|| paths::MANIFESTS_DIR.to_owned())
        }
    ),
    rule!(
        Kubelet,
        "register-with-taints",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |c| {
            let taints = crate::config::node_taints(c.plan, c.node()?);
            (!taints.is_empty()).then(|| {
                taints
                    .iter()
                    .map(crate::config::NodeTaint::flag_value)
                    .collect::<Vec<_>>()
                    .join(",")
            })
        }
    ),
    rule!(
        Kubelet,
        "rotate-certificates",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |c| bootstrap(c).then(|| "true".to_owned())
    ),
    rule!(
        Kubelet,
        "tls-cert-file",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| pki("kubelet.crt")
    ),
    rule!(
        Kubelet,
        "tls-private-key-file",
        20..=26,
        REF_KUBELET_CONFIG_FIELD,
        |_| pki("kubelet.key")
    ),
    // kube-proxy. With `--config`, the file is authoritative; the other flags repeat its
    // values because kiln-units passes them.
    rule!(KubeProxy, "cluster-cidr", 20.., REF_KUBE_PROXY, |c| Some(
        c.plan.cluster.pod_cidr.to_string()
    )),
    rule!(KubeProxy, "config", 20.., REF_KUBE_PROXY, |c| Some(
        match c.target {
            Target::Node(_) => paths::KUBE_PROXY_CONFIG.to_owned(),
            Target::DaemonSet => paths::KUBE_PROXY_DAEMONSET_CONFIG.to_owned(),
        }
    )),
    rule!(KubeProxy, "hostname-override", 20.., REF_KUBE_PROXY, |c| {
        Some(match c.target {
            Target::Node(node) => node.name.clone(),
            Target::DaemonSet => "$(NODE_NAME)".to_owned(),
        })
    }),
    rule!(
        KubeProxy,
        "kubeconfig",
        20..,
        REF_KUBE_PROXY,
        |c| match c.target {
            Target::Node(_) => text(paths::KUBE_PROXY_KUBECONFIG),
            Target::DaemonSet => None,
        }
    ),
    rule!(KubeProxy, "proxy-mode", 20.., REF_KUBE_PROXY, |_| text(
        "iptables"
    )),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// The kubelet flags that repeat a KubeletConfiguration field end where the file takes
    /// over, so that no setting is ever in neither place.
    #[test]
    fn kubelet_settings_move_to_the_file_at_one_version() {
        let moved: Vec<&FlagRule> = TABLE
            .iter()
            .filter(|rule| {
                rule.source == REF_KUBELET_CONFIG_FIELD || rule.source == REF_RUNTIME_ENDPOINT
            })
            .collect();
        assert_eq!(moved.len(), 13);
        for rule in moved {
            assert_eq!(
                rule.last,
                Some(crate::config::FILE_ONLY_KUBELET_SETTINGS - 1),
                "--{}",
                rule.name
            );
        }
    }
}
