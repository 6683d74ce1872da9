//! Command-line flags, and a minimal default set per component for Kubernetes 1.20.
//!
//! The version-aware flag table belongs to the manifests renderer, which will supply flags
//! through [`crate::unit()`]; [`default_flags`] is what kiln runs until then. The paths it
//! names are certificates under `/etc/kubernetes/pki/` exactly as `kiln_pki::placement` puts
//! them on the node, and kubeconfigs under `/etc/kubernetes/` as `kiln-kubeconfig` renders
//! them (both checked by this crate's property tests). Three files are named but not yet
//! rendered by any crate: [`ENCRYPTION_CONFIG`], [`AUDIT_POLICY`] and, with
//! `kubelet_credentials = "bootstrap-token"`, `/etc/kubernetes/bootstrap-kubelet.conf`.

use std::collections::BTreeMap;

use kiln_spec::{
    Component, ControlPlaneMode, EncryptionProvider, KubeletCredentials, NodePlan, Plan,
};

use crate::services::Service;

/// Command-line flags in order, each written `--name=value`. Names are unique: setting a
/// flag again replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags(Vec<(String, String)>);

/// Where the cluster's certificates live on a node.
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// containerd's CRI socket.
pub const CONTAINERD_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// containerd's configuration file, rendered by [`crate::containerd_config`].
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The kubelet's static pod directory (static-pods mode).
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// The encryption-at-rest configuration the API server reads (rendered by the manifests
/// renderer).
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption-config.yaml";
/// The audit policy the API server reads (rendered by the manifests renderer).
pub const AUDIT_POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
/// The audit log, in the API server unit's `LogsDirectory=`.
pub const AUDIT_LOG: &str = "/var/log/kubernetes/audit.log";
/// etcd's data directory, the etcd unit's `StateDirectory=`.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";

impl Flags {
    /// No flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flags from `(name, value)` pairs in order; a repeated name keeps its first position
    /// and its last value.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut flags = Self::new();
        for (name, value) in pairs {
            flags.set(name, value);
        }
        flags
    }

    /// Sets `--name=value`, replacing an earlier value of `name` in place.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(existing, _)| existing == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.as_str())
    }

    /// Sets every flag of `extra` (the spec's `options.extra_flags` of one component).
    pub fn merge(&mut self, extra: &BTreeMap<String, String>) {
        for (name, value) in extra {
            self.set(name, value.clone());
        }
    }

    /// The `(name, value)` pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The command-line words: `--name=value`.
    pub fn to_arguments(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(name, value)| format!("--{name}={value}"))
            .collect()
    }
}

fn pki(file: &str) -> String {
    format!("{PKI_DIR}/{file}")
}

/// The flags kiln gives `service` on `node` for Kubernetes 1.20, followed by the spec's
/// `options.extra_flags` of the component (which replace a default of the same name in place):
///
/// - containerd: `--config`;
/// - the kubelet: the CRI socket (`--container-runtime=remote`, which 1.20 needs to leave the
///   dockershim), the systemd cgroup driver (as containerd's `SystemdCgroup`), its kubeconfig
///   (or bootstrap kubeconfig), client CA and serving pair, webhook authentication and
///   authorization, cluster DNS, the node's address and name, and in static-pods mode
///   `--pod-manifest-path`;
/// - etcd: Kubernetes The Hard Way's flags with kubeadm's certificate paths;
/// - kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy: Kubernetes The Hard
///   Way's flags with kubeadm's certificate and kubeconfig paths, and the plan's
///   authorization modes, admission plugins, encryption and audit settings.
pub fn default_flags(plan: &Plan, node: &NodePlan, service: Service) -> Flags {
    let mut flags = Flags::new();
    let address = node.primary_address().to_string();
    let cluster = &plan.cluster;
    let options = &plan.options;
    match service {
        Service::Containerd => {
            flags.set("config", CONTAINERD_CONFIG);
        }
        Service::Kubelet => {
            if options.kubelet_credentials == KubeletCredentials::BootstrapToken {
                flags.set(
                    "bootstrap-kubeconfig",
                    "/etc/kubernetes/bootstrap-kubelet.conf",
                );
                flags.set("cert-dir", "/var/lib/kubelet/pki");
                flags.set("rotate-certificates", "true");
            }
            flags.set("kubeconfig", "/etc/kubernetes/kubelet.conf");
            flags.set("container-runtime", "remote");
            flags.set("container-runtime-endpoint", CONTAINERD_SOCKET);
            flags.set("cgroup-driver", "systemd");
            flags.set("client-ca-file", pki("ca.crt"));
            flags.set("tls-cert-file", pki("kubelet.crt"));
            flags.set("tls-private-key-file", pki("kubelet.key"));
            flags.set("anonymous-auth", "false");
            flags.set("authentication-token-webhook", "true");
            flags.set("authorization-mode", "Webhook");
            flags.set("cluster-dns", cluster.cluster_dns_ip.to_string());
            flags.set("cluster-domain", cluster.domain.clone());
            flags.set("hostname-override", node.name.clone());
            flags.set("node-ip", address);
            if cluster.control_plane_mode == ControlPlaneMode::StaticPods {
                flags.set("pod-manifest-path", MANIFESTS_DIR);
            }
        }
        Service::Etcd => {
            let peer_url = format!("https://{address}:2380");
            let client_url = format!("https://{address}:2379");
            flags.set("name", node.name.clone());
            flags.set("data-dir", ETCD_DATA_DIR);
            flags.set("cert-file", pki("etcd/server.crt"));
            flags.set("key-file", pki("etcd/server.key"));
            flags.set("trusted-ca-file", pki("etcd/ca.crt"));
            flags.set("client-cert-auth", "true");
            flags.set("peer-cert-file", pki("etcd/peer.crt"));
            flags.set("peer-key-file", pki("etcd/peer.key"));
            flags.set("peer-trusted-ca-file", pki("etcd/ca.crt"));
            flags.set("peer-client-cert-auth", "true");
            flags.set("initial-advertise-peer-urls", peer_url.clone());
            flags.set("listen-peer-urls", peer_url);
            flags.set(
                "listen-client-urls",
                format!("{client_url},https://127.0.0.1:2379"),
            );
            flags.set("advertise-client-urls", client_url);
            flags.set("initial-cluster-token", cluster.name.clone());
            flags.set("initial-cluster", cluster.etcd_initial_cluster.clone());
            flags.set("initial-cluster-state", "new");
        }
        Service::KubeApiserver => {
            flags.set("advertise-address", address);
            flags.set("allow-privileged", "true");
            flags.set("authorization-mode", options.authorization_modes.join(","));
            flags.set(
                "enable-admission-plugins",
                options.admission_plugins.join(","),
            );
            flags.set("secure-port", kiln_spec::APISERVER_PORT.to_string());
            flags.set("insecure-port", "0");
            flags.set("client-ca-file", pki("ca.crt"));
            flags.set("tls-cert-file", pki("apiserver.crt"));
            flags.set("tls-private-key-file", pki("apiserver.key"));
            flags.set("etcd-servers", cluster.etcd_servers.clone());
            flags.set("etcd-cafile", pki("etcd/ca.crt"));
            flags.set("etcd-certfile", pki("apiserver-etcd-client.crt"));
            flags.set("etcd-keyfile", pki("apiserver-etcd-client.key"));
            flags.set("kubelet-certificate-authority", pki("ca.crt"));
            flags.set(
                "kubelet-client-certificate",
                pki("apiserver-kubelet-client.crt"),
            );
            flags.set("kubelet-client-key", pki("apiserver-kubelet-client.key"));
            flags.set("kubelet-preferred-address-types", "InternalIP,Hostname");
            flags.set(
                "service-account-issuer",
                format!("https://kubernetes.default.svc.{}", cluster.domain),
            );
            flags.set("service-account-key-file", pki("sa.pub"));
            flags.set("service-account-signing-key-file", pki("sa.key"));
            flags.set("service-cluster-ip-range", cluster.service_cidr.to_string());
            flags.set("requestheader-client-ca-file", pki("front-proxy-ca.crt"));
            flags.set("requestheader-allowed-names", "front-proxy-client");
            flags.set("requestheader-extra-headers-prefix", "X-Remote-Extra-");
            flags.set("requestheader-group-headers", "X-Remote-Group");
            flags.set("requestheader-username-headers", "X-Remote-User");
            flags.set("proxy-client-cert-file", pki("front-proxy-client.crt"));
            flags.set("proxy-client-key-file", pki("front-proxy-client.key"));
            if options.kubelet_credentials == KubeletCredentials::BootstrapToken {
                flags.set("enable-bootstrap-token-auth", "true");
            }
            if options.encryption_at_rest != EncryptionProvider::None {
                flags.set("encryption-provider-config", ENCRYPTION_CONFIG);
            }
            if options.audit_log {
                flags.set("audit-policy-file", AUDIT_POLICY);
                flags.set("audit-log-path", AUDIT_LOG);
            }
        }
        Service::KubeControllerManager => {
            let kubeconfig = "/etc/kubernetes/controller-manager.conf";
            flags.set("bind-address", "127.0.0.1");
            flags.set("cluster-name", cluster.name.clone());
            flags.set("kubeconfig", kubeconfig);
            flags.set("authentication-kubeconfig", kubeconfig);
            flags.set("authorization-kubeconfig", kubeconfig);
            flags.set("client-ca-file", pki("ca.crt"));
            flags.set("requestheader-client-ca-file", pki("front-proxy-ca.crt"));
            flags.set("root-ca-file", pki("ca.crt"));
            flags.set("service-account-private-key-file", pki("sa.key"));
            flags.set("service-cluster-ip-range", cluster.service_cidr.to_string());
            flags.set("use-service-account-credentials", "true");
            flags.set("leader-elect", "true");
            if plan.pki.controller_manager_signs_csrs {
                flags.set("cluster-signing-cert-file", pki("ca.crt"));
                flags.set("cluster-signing-key-file", pki("ca.key"));
            }
            if options.kubelet_credentials == KubeletCredentials::BootstrapToken {
                flags.set("controllers", "*,bootstrapsigner,tokencleaner");
            }
        }
        Service::KubeScheduler => {
            let kubeconfig = "/etc/kubernetes/scheduler.conf";
            flags.set("bind-address", "127.0.0.1");
            flags.set("kubeconfig", kubeconfig);
            flags.set("authentication-kubeconfig", kubeconfig);
            flags.set("authorization-kubeconfig", kubeconfig);
            flags.set("leader-elect", "true");
        }
        Service::KubeProxy => {
            flags.set("kubeconfig", "/etc/kubernetes/kube-proxy.conf");
            flags.set("cluster-cidr", cluster.pod_cidr.to_string());
            flags.set("hostname-override", node.name.clone());
            flags.set("proxy-mode", "iptables");
        }
    }
    if let Some(extra) = service
        .component()
        .and_then(|component: Component| options.extra_flags.get(&component))
    {
        flags.merge(extra);
    }
    flags
}
