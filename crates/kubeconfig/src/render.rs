//! Which kubeconfigs exist, whom they name, and rendering them from a plan and a PKI.

use kiln_pki::Pki;
use kiln_spec::{Component, KubeProxyMode, NodePlan, Plan, Role, paths};

use crate::error::Error;
use crate::model::{
    Cluster, Context, Kubeconfig, NamedCluster, NamedContext, NamedUser, Source, User,
};

/// Mode of every kubeconfig file: it names (or holds) a private key.
pub const KUBECONFIG_MODE: u32 = 0o600;

/// One file to write (defined once, in kiln-spec, for every renderer).
pub use kiln_spec::RenderedFile;

/// The kubeconfig files of the kubeconfig table in `shared/reference/pki.md`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KubeconfigKind {
    /// `admin.conf`: `kubernetes-admin`, bound to `cluster-admin`; the operator's.
    Admin,
    /// `super-admin.conf`: `kubernetes-super-admin` in `system:masters`; break-glass, the
    /// operator's.
    SuperAdmin,
    /// `kubelet.conf` of the node `node`: `system:node:<node>`.
    Kubelet {
        /// The node's name.
        node: String,
    },
    /// `controller-manager.conf`: `system:kube-controller-manager`, to the local API server.
    ControllerManager,
    /// `scheduler.conf`: `system:kube-scheduler`, to the local API server.
    Scheduler,
    /// `kube-proxy.conf`: `system:kube-proxy`.
    KubeProxy,
}

/// The certificate of `component`'s kubeconfig ([`kiln_spec::kubeconfig_certificate`]), for
/// the three components that have one for the whole cluster.
fn component_certificate(component: Component) -> String {
    kiln_spec::kubeconfig_certificate(component)
        .unwrap_or_else(|| unreachable!("{component:?} has a kubeconfig of its own"))
        .to_owned()
}

/// The kubeconfigs that belong to the operator, not to any node: their keys are never placed
/// on a node (see `kiln_pki::placement`).
pub const OPERATOR_KINDS: [KubeconfigKind; 2] = [KubeconfigKind::Admin, KubeconfigKind::SuperAdmin];

impl KubeconfigKind {
    /// The file name: `admin.conf`, `kubelet.conf`, ... (a node's kubeconfig is named by
    /// its path in [`kiln_spec::paths`]).
    pub fn file_name(&self) -> &'static str {
        match self {
            Self::Admin => "admin.conf",
            Self::SuperAdmin => "super-admin.conf",
            _ => self
                .on_node()
                .and_then(|path| path.rsplit_once('/'))
                .map_or("", |(_, name)| name),
        }
    }

    /// The absolute on-node path of a node's kubeconfig, from [`kiln_spec::paths`]; `None`
    /// for the operator's, which no node holds.
    fn on_node(&self) -> Option<&'static str> {
        match self {
            Self::Admin | Self::SuperAdmin => None,
            Self::Kubelet { .. } => Some(paths::KUBELET_KUBECONFIG),
            Self::ControllerManager => Some(paths::CONTROLLER_MANAGER_KUBECONFIG),
            Self::Scheduler => Some(paths::SCHEDULER_KUBECONFIG),
            Self::KubeProxy => Some(paths::KUBE_PROXY_KUBECONFIG),
        }
    }

    /// The user, which is the client certificate's common name.
    pub fn user(&self) -> String {
        match self {
            Self::Admin => "kubernetes-admin".to_owned(),
            Self::SuperAdmin => "kubernetes-super-admin".to_owned(),
            Self::Kubelet { node } => format!("system:node:{node}"),
            Self::ControllerManager => "system:kube-controller-manager".to_owned(),
            Self::Scheduler => "system:kube-scheduler".to_owned(),
            Self::KubeProxy => "system:kube-proxy".to_owned(),
        }
    }

    /// The client certificate's name in `kiln_spec::certificate_names`: `admin`,
    /// `kubelet-client/<node>`, ...
    pub fn certificate_name(&self) -> String {
        match self {
            Self::Admin => "admin".to_owned(),
            Self::SuperAdmin => "super-admin".to_owned(),
            Self::Kubelet { node } => format!("kubelet-client/{node}"),
            Self::ControllerManager => component_certificate(Component::KubeControllerManager),
            Self::Scheduler => component_certificate(Component::KubeScheduler),
            Self::KubeProxy => component_certificate(Component::KubeProxy),
        }
    }

    /// The API server URL: the local API server (`https://127.0.0.1:6443`, its
    /// [`kiln_spec::ClusterPlan::apiserver_port`]) for the
    /// controller manager and the scheduler, which run beside it; the cluster's endpoint for
    /// everyone else.
    pub fn server(&self, plan: &Plan) -> String {
        match self {
            Self::ControllerManager | Self::Scheduler => {
                format!("https://127.0.0.1:{}", plan.cluster.apiserver_port)
            }
            _ => plan.cluster.endpoint.url(),
        }
    }

    /// Whether this kubeconfig is the operator's (see [`OPERATOR_KINDS`]).
    pub fn is_operator(&self) -> bool {
        matches!(self, Self::Admin | Self::SuperAdmin)
    }

    /// Where the file goes: on a node, its path in [`kiln_spec::paths`] relative to the node's
    /// root (`etc/kubernetes/kubelet.conf`); for the operator's, `<file>` at the top of the
    /// operator's output (beside its `pki/` directory).
    pub fn path(&self) -> String {
        self.on_node()
            .map_or(self.file_name(), paths::node_relative)
            .to_owned()
    }
}

/// Where a kubeconfig's CA, client certificate and client key come from.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// The PEM texts themselves, embedded in the file.
    Embedded {
        /// The cluster CA certificate.
        ca_pem: String,
        /// The client certificate.
        certificate_pem: String,
        /// The client's private key.
        key_pem: String,
    },
    /// Paths to the PEM files.
    Referenced {
        /// The cluster CA certificate.
        ca_path: String,
        /// The client certificate.
        certificate_path: String,
        /// The client's private key.
        key_path: String,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Embedded {
                ca_pem,
                certificate_pem,
                ..
            } => formatter
                .debug_struct("Embedded")
                .field("ca_pem", ca_pem)
                .field("certificate_pem", certificate_pem)
                .field("key_pem", &"[redacted]")
                .finish(),
            Self::Referenced {
                ca_path,
                certificate_path,
                key_path,
            } => formatter
                .debug_struct("Referenced")
                .field("ca_path", ca_path)
                .field("certificate_path", certificate_path)
                .field("key_path", key_path)
                .finish(),
        }
    }
}

impl Credentials {
    /// The credentials of `kind` taken from `pki`, to embed.
    pub fn embedded(pki: &Pki, kind: &KubeconfigKind) -> Result<Self, Error> {
        let file = kind.file_name();
        let missing = |name: &str| Error::MissingCertificate {
            name: name.to_owned(),
            file,
        };
        let name = kind.certificate_name();
        let ca_pem = pki
            .authorities
            .get(&kiln_spec::CaName::Kubernetes)
            .ok_or_else(|| missing("ca"))?
            .certificate_pem()
            .to_owned();
        let leaf = pki.leaves.get(&name).ok_or_else(|| missing(&name))?;
        Ok(Self::Embedded {
            ca_pem,
            certificate_pem: leaf.certificate_pem.clone(),
            key_pem: leaf.key_pem.clone(),
        })
    }

    /// The credentials of `kind` by path.
    ///
    /// Node kubeconfigs name the absolute on-node paths of `kiln_pki::placement`
    /// (`/etc/kubernetes/pki/kubelet-client.crt`). The operator's kubeconfigs name the
    /// operator's output layout relative to the kubeconfig (`pki/admin.crt`, see
    /// `kiln_pki::operator_path`), which kubectl resolves against the file's directory, since
    /// no node holds the admin keys.
    pub fn referenced(kind: &KubeconfigKind) -> Self {
        let name = kind.certificate_name();
        if kind.is_operator() {
            Self::Referenced {
                ca_path: kiln_pki::operator_path("ca", "crt"),
                certificate_path: kiln_pki::operator_path(&name, "crt"),
                key_path: kiln_pki::operator_path(&name, "key"),
            }
        } else {
            let on_node = |name: &str, extension: &str| {
                format!(
                    "{}/{}.{extension}",
                    paths::PKI_DIR,
                    kiln_pki::kubeadm_stem(name)
                )
            };
            Self::Referenced {
                ca_path: on_node("ca", "crt"),
                certificate_path: on_node(&name, "crt"),
                key_path: on_node(&name, "key"),
            }
        }
    }
}

/// The kubeconfig `kind` of `plan`'s cluster with `credentials`: one cluster named after the
/// plan's cluster, one user named after the certificate's common name, and the context
/// `<user>@<cluster>`, which is current.
pub fn kubeconfig(plan: &Plan, kind: &KubeconfigKind, credentials: Credentials) -> Kubeconfig {
    let cluster_name = plan.cluster.name.clone();
    let user_name = kind.user();
    let context_name = format!("{user_name}@{cluster_name}");
    let (authority, certificate, key) = match credentials {
        Credentials::Embedded {
            ca_pem,
            certificate_pem,
            key_pem,
        } => (
            Source::Embedded(ca_pem),
            Source::Embedded(certificate_pem),
            Source::Embedded(key_pem),
        ),
        Credentials::Referenced {
            ca_path,
            certificate_path,
            key_path,
        } => (
            Source::Path(ca_path),
            Source::Path(certificate_path),
            Source::Path(key_path),
        ),
    };
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Cluster {
                server: kind.server(plan),
                certificate_authority: authority,
            },
        }],
        users: vec![NamedUser {
            name: user_name.clone(),
            user: User::Certificate {
                client_certificate: certificate,
                client_key: key,
            },
        }],
        contexts: vec![NamedContext {
            name: context_name.clone(),
            context: Context {
                cluster: cluster_name,
                user: user_name,
            },
        }],
        current_context: context_name,
    }
}

/// The kubeconfigs `node` receives, in file-name order:
///
/// - `controller-manager.conf` and `scheduler.conf` on control-plane nodes;
/// - `kubelet.conf` where a kubelet runs, unless it bootstraps with a token
///   ([`Plan::kubelet_bootstraps`]: the kubelet then writes its own after its CSR is signed);
/// - `kube-proxy.conf` where kube-proxy runs outside a DaemonSet (every kubelet node).
pub fn node_kinds(plan: &Plan, node: &NodePlan) -> Vec<KubeconfigKind> {
    let kubelet = node.runs_kubelet(plan.cluster.control_plane_mode);
    let mut kinds = Vec::new();
    if node.has(Role::ControlPlane) {
        kinds.push(KubeconfigKind::ControllerManager);
    }
    if kubelet && plan.options.kube_proxy != KubeProxyMode::Daemonset {
        kinds.push(KubeconfigKind::KubeProxy);
    }
    if kubelet && !plan.kubelet_bootstraps(node) {
        kinds.push(KubeconfigKind::Kubelet {
            node: node.name.clone(),
        });
    }
    if node.has(Role::ControlPlane) {
        kinds.push(KubeconfigKind::Scheduler);
    }
    kinds
}

/// The kubeconfig files of `node` (one of `plan`'s nodes), sorted by path, embedding or referencing
/// certificates as `plan.options.kubeconfig_certificates` says.
pub fn render_node(plan: &Plan, node: &NodePlan, pki: &Pki) -> Result<Vec<RenderedFile>, Error> {
    render(plan, &node_kinds(plan, node), pki)
}

/// The operator's kubeconfig files (`admin.conf`, `super-admin.conf`), sorted by path,
/// embedding or referencing certificates as `plan.options.kubeconfig_certificates` says.
pub fn render_operator(plan: &Plan, pki: &Pki) -> Result<Vec<RenderedFile>, Error> {
    render(plan, &OPERATOR_KINDS, pki)
}

/// One kubeconfig as a file.
pub fn render_file(
    plan: &Plan,
    kind: &KubeconfigKind,
    credentials: Credentials,
) -> Result<RenderedFile, Error> {
    let yaml = kubeconfig(plan, kind, credentials).to_yaml()?;
    Ok(RenderedFile {
        path: kind.path(),
        contents: yaml.into_bytes(),
        mode: KUBECONFIG_MODE,
    })
}

fn render(plan: &Plan, kinds: &[KubeconfigKind], pki: &Pki) -> Result<Vec<RenderedFile>, Error> {
    let mut files = kinds
        .iter()
        .map(|kind| {
            let credentials = match plan.options.kubeconfig_certificates {
                kiln_spec::KubeconfigCertificates::Embedded => Credentials::embedded(pki, kind)?,
                kiln_spec::KubeconfigCertificates::Referenced => Credentials::referenced(kind),
            };
            render_file(plan, kind, credentials)
        })
        .collect::<Result<Vec<_>, Error>>()?;
    files.sort();
    Ok(files)
}

/// The user name of the bootstrap kubeconfig, as kubeadm names it.
pub const BOOTSTRAP_USER: &str = "tls-bootstrap-token-user";

/// The kubelet's bootstrap kubeconfig (`bootstrap-kubelet.conf`, at
/// [`paths::BOOTSTRAP_KUBELET_KUBECONFIG`]) for a node whose kubelet joins with a bootstrap
/// token ([`Plan::kubelet_bootstraps`]): the cluster endpoint, verified against the cluster CA
/// (`ca_pem` embedded, or the node's `/etc/kubernetes/pki/ca.crt`, as
/// `options.kubeconfig_certificates` says), and the user [`BOOTSTRAP_USER`] with `token`
/// (`<id>.<secret>`) and nothing else. Mode 0600: the token lets its holder ask for a node's
/// certificate.
pub fn render_bootstrap_kubelet(
    plan: &Plan,
    ca_pem: &str,
    token: &str,
) -> Result<RenderedFile, Error> {
    let file = paths::BOOTSTRAP_KUBELET_KUBECONFIG;
    let authority = match plan.options.kubeconfig_certificates {
        kiln_spec::KubeconfigCertificates::Embedded => Source::Embedded(ca_pem.to_owned()),
        kiln_spec::KubeconfigCertificates::Referenced => {
            Source::Path(format!("{}/ca.crt", paths::PKI_DIR))
        }
    };
    let cluster_name = plan.cluster.name.clone();
    let context_name = format!("{BOOTSTRAP_USER}@{cluster_name}");
    let config = Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Cluster {
                server: plan.cluster.endpoint.url(),
                certificate_authority: authority,
            },
        }],
        users: vec![NamedUser {
            name: BOOTSTRAP_USER.to_owned(),
            user: User::Token(token.to_owned()),
        }],
        contexts: vec![NamedContext {
            name: context_name.clone(),
            context: Context {
                cluster: cluster_name,
                user: BOOTSTRAP_USER.to_owned(),
            },
        }],
        current_context: context_name,
    };
    Ok(RenderedFile {
        path: paths::node_relative(file).to_owned(),
        contents: config.to_yaml()?.into_bytes(),
        mode: KUBECONFIG_MODE,
    })
}
