//! Where files go: kubeadm's layout for the operator's output, and least-privilege placement
//! on each node.

use kiln_spec::{KubeProxyMode, NodePlan, Plan, Role};

use crate::issue::Pki;
use crate::profile::SERVICE_ACCOUNT;

/// Mode of a private key file.
pub const KEY_MODE: u32 = 0o600;
/// Mode of a certificate or public key file.
pub const CERTIFICATE_MODE: u32 = 0o644;

/// One file of a PKI layout.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PlacedFile {
    /// Path relative to the layout's root: `pki/apiserver.crt`. On a node the root is
    /// `/etc/kubernetes`, so this is where kubeadm looks.
    pub path: String,
    /// What the file holds.
    pub source: FileSource,
    /// Unix permission bits: [`KEY_MODE`] or [`CERTIFICATE_MODE`].
    pub mode: u32,
}

/// What a [`PlacedFile`] holds.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileSource {
    /// The certificate named `name` (see `kiln_spec::certificate_names`), PEM.
    Certificate(String),
    /// The private key of the certificate named `name`, PEM.
    PrivateKey(String),
    /// The service-account signing key (`sa.key`).
    ServiceAccountPrivateKey,
    /// The service-account verification key (`sa.pub`).
    ServiceAccountPublicKey,
}

impl FileSource {
    /// Whether the file is secret.
    pub fn is_private(&self) -> bool {
        matches!(self, Self::PrivateKey(_) | Self::ServiceAccountPrivateKey)
    }

    /// The certificate (or key pair) name this file comes from.
    pub fn certificate_name(&self) -> &str {
        match self {
            Self::Certificate(name) | Self::PrivateKey(name) => name,
            Self::ServiceAccountPrivateKey | Self::ServiceAccountPublicKey => SERVICE_ACCOUNT,
        }
    }
}

/// The kubeadm file name of a certificate, without extension and without the node:
/// `ca`, `etcd/ca`, `apiserver`, `etcd/server`, `kubelet` (serving), `kubelet-client`.
///
/// kiln's additions to kubeadm's list use their certificate name: `controller-manager`,
/// `scheduler`, `kube-proxy`, `admin`, `super-admin`.
pub fn kubeadm_stem(name: &str) -> &str {
    let kind = name.split_once('/').map_or(name, |(kind, _)| kind);
    match kind {
        "etcd-ca" => "etcd/ca",
        "etcd-healthcheck-client" => "etcd/healthcheck-client",
        "etcd-server" => "etcd/server",
        "etcd-peer" => "etcd/peer",
        "kubelet-serving" => "kubelet",
        other => other,
    }
}

/// Where the operator's output keeps the certificate `name` (extension `crt` or `key`):
/// cluster-wide files as kubeadm (`pki/apiserver.crt`), per-node files under
/// `pki/nodes/<node>/` (`pki/nodes/node1/etcd/server.crt`).
pub fn operator_path(name: &str, extension: &str) -> String {
    let stem = kubeadm_stem(name);
    match name.split_once('/') {
        Some((_, node)) => format!("pki/nodes/{node}/{stem}.{extension}"),
        None => format!("pki/{stem}.{extension}"),
    }
}

/// Exactly the files `node` receives, sorted by path, per the least-privilege table of
/// `shared/reference/pki.md`:
///
/// - every node that runs a kubelet or a control plane: `pki/ca.crt`;
/// - control plane: `ca.key` only if `pki.controller_manager_signs_csrs`; `sa.key`, `sa.pub`,
///   `front-proxy-ca.crt`, `etcd/ca.crt`; the apiserver, apiserver-kubelet-client,
///   apiserver-etcd-client, front-proxy-client, controller-manager and scheduler pairs;
/// - etcd member: `etcd/ca.crt`, its own `etcd/server` and `etcd/peer` pairs. Not
///   `etcd/healthcheck-client`, whose key is full access to etcd: kiln's etcd health probe is
///   plain HTTP on the loopback metrics port, so nothing on a node would read it (it stays in
///   the operator's output, where kubeadm keeps it);
/// - a node that runs a kubelet: its own serving pair (`kubelet.crt`), and its own client pair
///   (`kubelet-client.crt`) unless it bootstraps with a token ([`Plan::kubelet_bootstraps`]);
/// - a node that runs kube-proxy (a kubelet node, unless kube-proxy is a DaemonSet, whose pods
///   use a service-account token): `kube-proxy` pair;
/// - a load-balancer node of the API endpoint: `ca.crt`, which its `/healthz` proxy verifies
///   the API servers against, and its own `healthz-client` pair, which the proxy presents to
///   them (kiln's addition: the API servers refuse anonymous requests in systemd mode);
/// - never: `etcd/ca.key`, `front-proxy-ca.key`, admin or super-admin keys.
pub fn placement(plan: &Plan, node: &NodePlan) -> Vec<PlacedFile> {
    let control_plane = node.has(Role::ControlPlane);
    let etcd = node.has(Role::Etcd);
    let kubelet = node.runs_kubelet(plan.cluster.control_plane_mode);
    let kube_proxy = kubelet && plan.options.kube_proxy != KubeProxyMode::Daemonset;
    // The load balancer's /healthz proxy verifies the API servers against the cluster CA and
    // authenticates to them with its own client certificate.
    let balancer = plan
        .cluster
        .endpoint
        .load_balancer_nodes
        .contains(&node.name);

    let mut files = Vec::new();
    let mut certificate = |name: &str| files.push(certificate_file(name, &node.name));
    if control_plane || kubelet || balancer {
        certificate("ca");
    }
    if control_plane {
        for name in [
            "front-proxy-ca",
            "etcd-ca",
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
            "controller-manager",
            "scheduler",
        ] {
            certificate(name);
        }
    }
    if etcd {
        for name in ["etcd-ca", "etcd-server", "etcd-peer"] {
            certificate(name);
        }
    }
    if kubelet {
        certificate("kubelet-serving");
        if !plan.kubelet_bootstraps(node) {
            certificate("kubelet-client");
        }
    }
    if kube_proxy {
        certificate("kube-proxy");
    }
    if balancer {
        certificate("healthz-client");
    }

    let mut keys: Vec<PlacedFile> = files
        .iter()
        .filter(|file| !is_ca(file.source.certificate_name()))
        .map(|file| key_file(file.source.certificate_name()))
        .collect();
    if control_plane && plan.pki.controller_manager_signs_csrs {
        keys.push(key_file("ca"));
    }
    if control_plane {
        keys.push(PlacedFile {
            path: "pki/sa.key".to_owned(),
            source: FileSource::ServiceAccountPrivateKey,
            mode: KEY_MODE,
        });
        keys.push(PlacedFile {
            path: "pki/sa.pub".to_owned(),
            source: FileSource::ServiceAccountPublicKey,
            mode: CERTIFICATE_MODE,
        });
    }
    files.extend(keys);
    files.sort();
    files.dedup();
    files
}

impl Pki {
    /// The contents of a file of [`placement`] or [`Pki::files`], or `None` for a certificate
    /// this PKI does not have.
    pub fn contents(&self, source: &FileSource) -> Option<&str> {
        let ca = |name: &str| {
            crate::profile::CA_NAMES
                .into_iter()
                .find(|ca| crate::profile::ca_certificate_name(*ca) == name)
                .and_then(|ca| self.authorities.get(&ca))
        };
        match source {
            FileSource::Certificate(name) => ca(name)
                .map(|authority| authority.certificate_pem())
                .or_else(|| {
                    self.leaves
                        .get(name)
                        .map(|leaf| leaf.certificate_pem.as_str())
                }),
            FileSource::PrivateKey(name) => ca(name)
                .map(|authority| authority.key_pem())
                .or_else(|| self.leaves.get(name).map(|leaf| leaf.key_pem.as_str())),
            FileSource::ServiceAccountPrivateKey => Some(&self.service_account.private_pem),
            FileSource::ServiceAccountPublicKey => Some(&self.service_account.public_pem),
        }
    }

    /// Every file of the operator's output, sorted by path: kubeadm's layout for cluster-wide
    /// files, `pki/nodes/<node>/...` for per-node ones (see [`operator_path`]).
    pub fn files(&self) -> Vec<PlacedFile> {
        let names = crate::profile::CA_NAMES
            .into_iter()
            .map(|ca| crate::profile::ca_certificate_name(ca).to_owned())
            .chain(self.leaves.keys().cloned());
        let mut files: Vec<PlacedFile> = names
            .flat_map(|name| {
                [
                    PlacedFile {
                        path: operator_path(&name, "crt"),
                        source: FileSource::Certificate(name.clone()),
                        mode: CERTIFICATE_MODE,
                    },
                    PlacedFile {
                        path: operator_path(&name, "key"),
                        source: FileSource::PrivateKey(name),
                        mode: KEY_MODE,
                    },
                ]
            })
            .collect();
        files.push(PlacedFile {
            path: "pki/sa.key".to_owned(),
            source: FileSource::ServiceAccountPrivateKey,
            mode: KEY_MODE,
        });
        files.push(PlacedFile {
            path: "pki/sa.pub".to_owned(),
            source: FileSource::ServiceAccountPublicKey,
            mode: CERTIFICATE_MODE,
        });
        files.sort();
        files
    }
}

fn is_ca(name: &str) -> bool {
    matches!(name, "ca" | "etcd-ca" | "front-proxy-ca")
}

/// The full certificate name: per-node kinds get `/<node>`.
fn full_name(name: &str, node: &str) -> String {
    let per_node = kiln_spec::NODE_CERTIFICATES
        .iter()
        .any(|(kind, _)| *kind == name);
    if per_node {
        format!("{name}/{node}")
    } else {
        name.to_owned()
    }
}

fn certificate_file(name: &str, node: &str) -> PlacedFile {
    let name = full_name(name, node);
    PlacedFile {
        path: format!("pki/{}.crt", kubeadm_stem(&name)),
        source: FileSource::Certificate(name),
        mode: CERTIFICATE_MODE,
    }
}

fn key_file(name: &str) -> PlacedFile {
    PlacedFile {
        path: format!("pki/{}.key", kubeadm_stem(name)),
        source: FileSource::PrivateKey(name.to_owned()),
        mode: KEY_MODE,
    }
}
