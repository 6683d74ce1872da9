//! On-node paths: where kiln's renderers put files and where its components read them, the
//! one list every crate names them from (flags, static pods, configuration files, kubeconfigs,
//! and the VM tests that look for them).

/// Kubernetes' configuration directory on a node: kubeconfigs, the PKI, static pods, add-ons.
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// Where the cluster's certificates live on a node (as `kiln_pki::placement` puts them).
pub const PKI_DIR: &str = "/etc/kubernetes/pki";
/// The kubelet's static pod directory, where the static pod of `name` is
/// [`static_pod_manifest`]`(name)`.
pub const MANIFESTS_DIR: &str = "/etc/kubernetes/manifests";
/// Bootstrap objects (RBAC, the kube-proxy DaemonSet, CoreDNS) for a control-plane node to
/// apply: the files below.
pub const ADDONS_DIR: &str = "/etc/kubernetes/addons";
/// The bootstrap RBAC add-on (in [`ADDONS_DIR`]).
pub const RBAC_ADDON: &str = "/etc/kubernetes/addons/rbac.yaml";
/// The kube-proxy DaemonSet add-on (in [`ADDONS_DIR`]), with `kube_proxy = "daemonset"`.
pub const KUBE_PROXY_ADDON: &str = "/etc/kubernetes/addons/kube-proxy.yaml";
/// The cluster DNS add-on (in [`ADDONS_DIR`]), with `cluster_dns = "coredns"`.
pub const COREDNS_ADDON: &str = "/etc/kubernetes/addons/coredns.yaml";
/// containerd's CRI socket.
pub const CONTAINERD_SOCKET: &str = "unix:///run/containerd/containerd.sock";
/// The encryption-at-rest configuration the API server reads (mode 0600: it holds the key).
pub const ENCRYPTION_CONFIG: &str = "/etc/kubernetes/encryption-config.yaml";
/// The audit policy the API server reads.
pub const AUDIT_POLICY: &str = "/etc/kubernetes/audit-policy.yaml";
/// The API server's admission configuration (`--admission-control-config-file`).
pub const ADMISSION_CONFIG: &str = "/etc/kubernetes/admission-config.yaml";
/// The API server's authentication configuration (`--authentication-config`).
pub const AUTHENTICATION_CONFIG: &str = "/etc/kubernetes/authentication-config.yaml";
/// The audit log.
pub const AUDIT_LOG: &str = "/var/log/kubernetes/audit.log";
/// The audit log's directory, mounted writable into the API server's pod.
pub const AUDIT_LOG_DIR: &str = "/var/log/kubernetes";
/// etcd's data directory.
pub const ETCD_DATA_DIR: &str = "/var/lib/etcd";
/// The scheduler's KubeSchedulerConfiguration.
pub const SCHEDULER_CONFIG: &str = "/etc/kubernetes/scheduler-config.yaml";
/// The kubelet's KubeletConfiguration (kubeadm's path).
pub const KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";
/// The kernel tunables the kubelet wants, applied by `systemd-sysctl` at boot.
pub const KUBELET_SYSCTLS: &str = "/etc/sysctl.d/90-kubelet.conf";
/// kube-proxy's KubeProxyConfiguration on a node (static pod or systemd unit).
pub const KUBE_PROXY_CONFIG: &str = "/etc/kubernetes/kube-proxy-config.yaml";
/// kube-proxy's KubeProxyConfiguration inside the DaemonSet's pods (from its ConfigMap).
pub const KUBE_PROXY_DAEMONSET_CONFIG: &str = "/var/lib/kube-proxy/config.conf";
/// The controller manager's kubeconfig (`kiln_kubeconfig::KubeconfigKind::path`).
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "/etc/kubernetes/controller-manager.conf";
/// The scheduler's kubeconfig (`kiln_kubeconfig::KubeconfigKind::path`).
pub const SCHEDULER_KUBECONFIG: &str = "/etc/kubernetes/scheduler.conf";
/// The kubelet's kubeconfig (`kiln_kubeconfig::KubeconfigKind::path`).
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet.conf";
/// The kubelet's bootstrap kubeconfig with `kubelet_credentials = "bootstrap-token"`.
pub const BOOTSTRAP_KUBELET_KUBECONFIG: &str = "/etc/kubernetes/bootstrap-kubelet.conf";
/// kube-proxy's kubeconfig (`kiln_kubeconfig::KubeconfigKind::path`).
pub const KUBE_PROXY_KUBECONFIG: &str = "/etc/kubernetes/kube-proxy.conf";
/// Where a kubelet that joined with the bootstrap token keeps the client certificate its CSR
/// got, and the key it generated for it (`kubelet-client-current.pem`, both in one file).
pub const KUBELET_CERT_DIR: &str = "/var/lib/kubelet/pki";
/// The bootstrap token's objects (its Secret, kubeadm's bindings, `cluster-info`) for the
/// operator to apply with the add-ons. Not on any node: in the operator's
/// `cluster/bootstrap-token` output, under this name.
pub const BOOTSTRAP_TOKEN_OBJECTS: &str = "bootstrap-token.yaml";

/// The static pod manifest of the pod named `name` (`kube-apiserver`) in [`MANIFESTS_DIR`].
pub fn static_pod_manifest(name: &str) -> String {
    format!("{MANIFESTS_DIR}/{name}.yaml")
}

/// `path` (one of this module's) relative to the node's root, as a node's rendered files and
/// image trees name it: `etc/kubernetes/addons/rbac.yaml`.
pub fn node_relative(path: &str) -> &str {
    path.trim_start_matches('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_add_on_is_in_the_add_on_directory() {
        for addon in [RBAC_ADDON, KUBE_PROXY_ADDON, COREDNS_ADDON] {
            let file = std::path::Path::new(addon);
            assert_eq!(
                file.parent(),
                Some(std::path::Path::new(ADDONS_DIR)),
                "{addon}"
            );
            assert_eq!(
                file.extension().and_then(|e| e.to_str()),
                Some("yaml"),
                "{addon}"
            );
        }
    }

    #[test]
    fn kubernetes_files_are_in_the_kubernetes_directory() {
        for path in [
            PKI_DIR,
            MANIFESTS_DIR,
            ADDONS_DIR,
            ENCRYPTION_CONFIG,
            AUDIT_POLICY,
            AUTHENTICATION_CONFIG,
            ADMISSION_CONFIG,
            SCHEDULER_CONFIG,
            KUBE_PROXY_CONFIG,
            CONTROLLER_MANAGER_KUBECONFIG,
            SCHEDULER_KUBECONFIG,
            KUBELET_KUBECONFIG,
            BOOTSTRAP_KUBELET_KUBECONFIG,
            KUBE_PROXY_KUBECONFIG,
        ] {
            assert_eq!(
                std::path::Path::new(path).parent(),
                Some(std::path::Path::new(KUBERNETES_DIR)),
                "{path}"
            );
        }
    }

    #[test]
    fn static_pod_manifests_are_in_the_manifest_directory() {
        assert_eq!(
            static_pod_manifest("kube-apiserver"),
            "/etc/kubernetes/manifests/kube-apiserver.yaml"
        );
        assert_eq!(
            node_relative(&static_pod_manifest("etcd")),
            "etc/kubernetes/manifests/etcd.yaml"
        );
    }
}
