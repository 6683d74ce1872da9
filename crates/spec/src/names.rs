//! Names of a cluster's certificates, as used by `[pki.generations]` and the PKI crate.

use crate::plan::Plan;
use crate::raw::{Component, Role};

/// The certificate authorities (and the service-account key pair), one per cluster.
/// Their generation defaults to 0, not to `pki.generation`: bumping the leaves' generation
/// never replaces a CA.
pub const CA_CERTIFICATES: &[&str] = &["ca", "etcd-ca", "front-proxy-ca", "service-account"];

/// Leaf certificates issued once per cluster.
pub const CLUSTER_CERTIFICATES: &[&str] = &[
    "admin",
    "apiserver",
    "apiserver-etcd-client",
    "apiserver-kubelet-client",
    "controller-manager",
    "etcd-healthcheck-client",
    "front-proxy-client",
    "kube-proxy",
    "scheduler",
    "super-admin",
];

/// Leaf certificates issued once per node, named `<kind>/<node>`, and the role a node needs
/// to receive one (`None`: every node that runs a kubelet; `kubelet-client` only where the
/// kubelet does not join with the bootstrap token, [`Plan::kubelet_bootstraps`]).
pub const NODE_CERTIFICATES: &[(&str, Option<Role>)] = &[
    ("etcd-peer", Some(Role::Etcd)),
    ("etcd-server", Some(Role::Etcd)),
    ("healthz-client", Some(Role::LoadBalancer)),
    ("kubelet-client", None),
    ("kubelet-serving", None),
];

/// Every certificate name of `plan`, sorted: CAs, cluster leaves, and `<kind>/<node>` leaves.
pub fn certificate_names(plan: &Plan) -> Vec<String> {
    let mode = plan.cluster.control_plane_mode;
    let mut names: Vec<String> = CA_CERTIFICATES
        .iter()
        .chain(CLUSTER_CERTIFICATES)
        .map(|name| (*name).to_owned())
        .collect();
    for node in &plan.nodes {
        for (kind, role) in NODE_CERTIFICATES {
            let wanted = match role {
                Some(role) => node.has(*role),
                // A kubelet that joins with the bootstrap token gets its client certificate
                // from the cluster's CSR signer, not from kiln.
                None if *kind == "kubelet-client" => {
                    node.runs_kubelet(mode) && !plan.kubelet_bootstraps(node)
                }
                None => node.runs_kubelet(mode),
            };
            if wanted {
                names.push(format!("{kind}/{}", node.name));
            }
        }
    }
    names.sort();
    names
}

/// The client certificate in the kubeconfig of `component`, by its name in
/// [`certificate_names`] (also its file name under [`PKI_DIR`](crate::paths::PKI_DIR) on a
/// node, `<name>.crt` and `<name>.key`, as kubeadm names them): for the components whose
/// kubeconfig names one certificate for the whole cluster. The kubelet's is per node
/// (`kubelet-client/<node>`); etcd and the API server have no kubeconfig.
///
/// ```
/// use kiln_spec::{Component, kubeconfig_certificate};
/// assert_eq!(kubeconfig_certificate(Component::KubeScheduler), Some("scheduler"));
/// assert_eq!(kubeconfig_certificate(Component::Kubelet), None);
/// ```
pub fn kubeconfig_certificate(component: Component) -> Option<&'static str> {
    match component {
        Component::KubeControllerManager => Some("controller-manager"),
        Component::KubeScheduler => Some("scheduler"),
        Component::KubeProxy => Some("kube-proxy"),
        Component::Etcd | Component::KubeApiserver | Component::Kubelet => None,
    }
}
