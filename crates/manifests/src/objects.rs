//! Kubernetes objects typed through k8s-openapi: static pods, the kube-proxy DaemonSet and the
//! RBAC bindings a cluster needs at bootstrap.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HTTPGetAction,
    HostPathVolumeSource, ObjectFieldSelector, Pod, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecurityContext, ServiceAccount, Toleration, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kiln_spec::images::ComponentImage;
use kiln_spec::images::Releases;
use kiln_spec::{
    ClusterDns, Component, EncryptionProvider, KubeProxyMode, KubeconfigCertificates, NodePlan,
    Plan, Role,
};

use crate::dns::{DnsAddon, dns_addon};

use crate::flags::{Context, Target, render};
use kiln_spec::paths;

pub use kiln_spec::images::IMAGE_REGISTRY;

/// The image of `component` (see [`Releases::component_image`]): `kiln.local/<component>:v<version>`,
/// where the version is the plan's Kubernetes version, or etcd's release for etcd.
pub fn image(plan: &Plan, releases: &Releases, component: Component) -> String {
    releases
        .component_image(plan.cluster.kubernetes_version, component)
        .reference()
}

/// The static pods of `node`, by name: in static-pods mode, etcd on an etcd member and
/// kube-apiserver, kube-controller-manager and kube-scheduler on a control-plane node; and
/// kube-proxy on every node with a kubelet when `options.kube_proxy = "static-pod"`.
///
/// Every pod runs in the host's network namespace with priority class
/// `system-node-critical`, mounts by hostPath what its flags name (read-only, except etcd's
/// data and the audit log; each PKI file on its own, see [`pki_files`]), and has a liveness
/// probe on the component's health endpoint: the API server's `/livez` on its port
/// (`cluster.apiserver_port`), the controller manager's and scheduler's `/healthz` on their
/// secure ports 10257 and 10259 (HTTPS), etcd's `/health` on its loopback metrics port 2381
/// and kube-proxy's `/healthz` on 10256 (HTTP); and a startup probe on the same endpoint, as
/// kubeadm's static pods have (see [`STARTUP_FAILURE_THRESHOLD`]).
pub fn static_pods(plan: &Plan, releases: &Releases, node: &NodePlan) -> Vec<Pod> {
    let mut pods: Vec<Pod> = static_pod_components(plan, node)
        .into_iter()
        .map(|component| static_pod(plan, releases, node, component))
        .collect();
    pods.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    pods
}

/// The components `node` runs as static pods (see [`static_pods`]), in the order
/// etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kube-proxy.
pub fn static_pod_components(plan: &Plan, node: &NodePlan) -> Vec<Component> {
    let mode = plan.cluster.control_plane_mode;
    let mut components = Vec::new();
    if mode == kiln_spec::ControlPlaneMode::StaticPods {
        if node.has(Role::Etcd) {
            components.push(Component::Etcd);
        }
        if node.has(Role::ControlPlane) {
            components.extend([
                Component::KubeApiserver,
                Component::KubeControllerManager,
                Component::KubeScheduler,
            ]);
        }
    }
    if plan.options.kube_proxy == KubeProxyMode::StaticPod && node.runs_kubelet(mode) {
        components.push(Component::KubeProxy);
    }
    components
}

/// The images `node`'s pods run: those of [`pod_components`], then, with
/// `options.cluster_dns = "coredns"`, CoreDNS's on every node with a kubelet its Deployment may
/// be scheduled on (a worker, or a control-plane node, whose taint it tolerates; not an etcd
/// member alone) when `releases` has a CoreDNS.
pub fn pod_images(plan: &Plan, releases: &Releases, node: &NodePlan) -> Vec<ComponentImage> {
    let version = plan.cluster.kubernetes_version;
    let mut images: Vec<ComponentImage> = pod_components(plan, node)
        .into_iter()
        .map(|component| releases.component_image(version, component))
        .collect();
    if plan.options.cluster_dns == ClusterDns::Coredns
        && node.runs_kubelet(plan.cluster.control_plane_mode)
        && (node.has(Role::Worker) || node.has(Role::ControlPlane))
        && let Some(coredns) = releases.coredns_image()
    {
        images.push(coredns);
    }
    images
}

/// The components whose images `node` runs in pods: those of its static pods
/// ([`static_pod_components`]) and, with `options.kube_proxy = "daemonset"`, kube-proxy on every
/// node with a kubelet (the DaemonSet tolerates every taint), in the same order.
pub fn pod_components(plan: &Plan, node: &NodePlan) -> Vec<Component> {
    let mut components = static_pod_components(plan, node);
    if plan.options.kube_proxy == KubeProxyMode::Daemonset
        && node.runs_kubelet(plan.cluster.control_plane_mode)
    {
        components.push(Component::KubeProxy);
    }
    components
}

/// What one static pod mounts and probes.
struct PodShape {
    mounts: Vec<Mount>,
    probe: Probe,
    cpu: &'static str,
    privileged: bool,
}

struct Mount {
    name: String,
    path: String,
    kind: &'static str,
    read_only: bool,
}

fn mount(name: &str, path: &str, kind: &'static str) -> Mount {
    Mount {
        name: name.to_owned(),
        path: path.to_owned(),
        kind,
        read_only: true,
    }
}

/// The files under [`paths::PKI_DIR`] that `component` reads on `node`: each one its flags
/// name, and, when kubeconfigs reference their certificates
/// (`options.kubeconfig_certificates = "referenced"`), the three files its kubeconfig names.
/// A static pod mounts exactly these, one hostPath file each, so no pod sees another
/// component's key (the scheduler never sees `sa.key`, kube-proxy never the CA's key).
pub fn pki_files(plan: &Plan, node: &NodePlan, component: Component) -> BTreeSet<String> {
    let prefix = format!("{}/", paths::PKI_DIR);
    let mut files: BTreeSet<String> = render(
        &Context {
            plan,
            target: Target::Node(node),
        },
        component,
    )
    .into_iter()
    .flat_map(|(_, value)| {
        value
            .split(',')
            .filter(|path| path.starts_with(&prefix))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    })
    .collect();
    // The client certificate of the component's kubeconfig, by kubeadm's file name (see
    // `kiln_kubeconfig::Credentials::referenced`).
    if let Some(stem) = kiln_spec::kubeconfig_certificate(component)
        && plan.options.kubeconfig_certificates == KubeconfigCertificates::Referenced
    {
        files.insert(format!("{prefix}ca.crt"));
        files.insert(format!("{prefix}{stem}.crt"));
        files.insert(format!("{prefix}{stem}.key"));
    }
    files
}

/// One read-only hostPath mount per file of [`pki_files`], named after the file
/// (`/etc/kubernetes/pki/etcd/ca.crt` is `pki-etcd-ca-crt`).
fn pki_mounts(plan: &Plan, node: &NodePlan, component: Component) -> Vec<Mount> {
    pki_files(plan, node, component)
        .into_iter()
        .map(|path| {
            let relative = path
                .strip_prefix(paths::PKI_DIR)
                .unwrap_or(&path)
                .trim_start_matches('/');
            let name = format!("pki-{}", relative.replace(['/', '.', '_'], "-"));
            mount(&name, &path, "File")
        })
        .collect()
}

fn probe(scheme: &str, host: String, port: i32, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            host: Some(host),
            path: Some(path.to_owned()),
            port: IntOrString::Int(port),
            scheme: Some(scheme.to_owned()),
            ..Default::default()
        }),
        initial_delay_seconds: Some(10),
        timeout_seconds: Some(15),
        failure_threshold: Some(8),
        ..Default::default()
    }
}

/// How many failed checks of a static pod's startup probe the kubelet allows, ten seconds
/// apart: four minutes, as kubeadm's static pods allow.
pub const STARTUP_FAILURE_THRESHOLD: i32 = 24;

/// The startup probe of a static pod whose liveness probe is `liveness`: the same check, as
/// kubeadm's static pods have it, allowed [`STARTUP_FAILURE_THRESHOLD`] failures ten seconds
/// apart. Until it succeeds the kubelet does not run the liveness probe, so a component whose
/// first start is slow (an API server creating its default objects) is not killed for it.
fn startup_probe(liveness: &Probe) -> Probe {
    Probe {
        failure_threshold: Some(STARTUP_FAILURE_THRESHOLD),
        period_seconds: Some(10),
        ..liveness.clone()
    }
}

fn shape(plan: &Plan, node: &NodePlan, component: Component) -> PodShape {
    let loopback = || "127.0.0.1".to_owned();
    let mut mounts = pki_mounts(plan, node, component);
    match component {
        Component::Etcd => PodShape {
            mounts: mounts
                .into_iter()
                .chain([Mount {
                    read_only: false,
                    ..mount("etcd-data", paths::ETCD_DATA_DIR, "DirectoryOrCreate")
                }])
                .collect(),
            probe: probe("HTTP", loopback(), 2381, "/health"),
            cpu: "100m",
            privileged: false,
        },
        Component::KubeApiserver => {
            if crate::config::admission_configuration(plan).is_some() {
                mounts.push(mount("admission-config", paths::ADMISSION_CONFIG, "File"));
            }
            if crate::config::authentication_configuration(plan).is_some() {
                mounts.push(mount(
                    "authentication-config",
                    paths::AUTHENTICATION_CONFIG,
                    "File",
                ));
            }
            if plan.options.encryption_at_rest != EncryptionProvider::None {
                mounts.push(mount("encryption-config", paths::ENCRYPTION_CONFIG, "File"));
            }
            if plan.options.audit_log {
                mounts.push(mount("audit-policy", paths::AUDIT_POLICY, "File"));
                mounts.push(Mount {
                    read_only: false,
                    ..mount("audit-log", paths::AUDIT_LOG_DIR, "DirectoryOrCreate")
                });
            }
            PodShape {
                mounts,
                probe: probe(
                    "HTTPS",
                    node.primary_address().to_string(),
                    i32::from(plan.cluster.apiserver_port),
                    "/livez",
                ),
                cpu: "250m",
                privileged: false,
            }
        }
        Component::KubeControllerManager => PodShape {
            mounts: {
                mounts.push(mount(
                    "kubeconfig",
                    paths::CONTROLLER_MANAGER_KUBECONFIG,
                    "File",
                ));
                mounts
            },
            probe: probe("HTTPS", loopback(), 10257, "/healthz"),
            cpu: "200m",
            privileged: false,
        },
        Component::KubeScheduler => PodShape {
            mounts: {
                mounts.push(mount("kubeconfig", paths::SCHEDULER_KUBECONFIG, "File"));
                mounts.push(mount("scheduler-config", paths::SCHEDULER_CONFIG, "File"));
                mounts
            },
            probe: probe("HTTPS", loopback(), 10259, "/healthz"),
            cpu: "100m",
            privileged: false,
        },
        Component::KubeProxy | Component::Kubelet => PodShape {
            mounts: mounts
                .into_iter()
                .chain([
                    mount("kubeconfig", paths::KUBE_PROXY_KUBECONFIG, "File"),
                    mount("kube-proxy-config", paths::KUBE_PROXY_CONFIG, "File"),
                    mount("lib-modules", "/lib/modules", "Directory"),
                    Mount {
                        read_only: false,
                        ..mount("xtables-lock", "/run/xtables.lock", "FileOrCreate")
                    },
                ])
                .collect(),
            probe: probe("HTTP", loopback(), 10256, "/healthz"),
            cpu: "100m",
            privileged: true,
        },
    }
}

fn labels(component: Component, tier: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("component".to_owned(), component.name().to_owned()),
        ("tier".to_owned(), tier.to_owned()),
    ])
}

fn command(component: Component, flags: Vec<(String, String)>) -> Vec<String> {
    std::iter::once(component.name().to_owned())
        .chain(
            flags
                .into_iter()
                .map(|(name, value)| format!("--{name}={value}")),
        )
        .collect()
}

fn static_pod(plan: &Plan, releases: &Releases, node: &NodePlan, component: Component) -> Pod {
    let name = component.name();
    let shape = shape(plan, node, component);
    let flags = render(
        &Context {
            plan,
            target: Target::Node(node),
        },
        component,
    );
    let tier = if component == Component::KubeProxy {
        "node"
    } else {
        "control-plane"
    };
    Pod {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(crate::SYSTEM_NAMESPACE.to_owned()),
            labels: Some(labels(component, tier)),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: name.to_owned(),
                image: Some(image(plan, releases, component)),
                image_pull_policy: Some("Never".to_owned()),
                command: Some(command(component, flags)),
                startup_probe: Some(startup_probe(&shape.probe)),
                liveness_probe: Some(shape.probe),
                resources: Some(ResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "cpu".to_owned(),
                        Quantity(shape.cpu.to_owned()),
                    )])),
                    ..Default::default()
                }),
                security_context: shape.privileged.then(|| SecurityContext {
                    privileged: Some(true),
                    ..Default::default()
                }),
                volume_mounts: Some(
                    shape
                        .mounts
                        .iter()
                        .map(|mount| VolumeMount {
                            name: mount.name.clone(),
                            mount_path: mount.path.clone(),
                            read_only: mount.read_only.then_some(true),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }],
            host_network: Some(true),
            priority_class_name: Some("system-node-critical".to_owned()),
            volumes: Some(
                shape
                    .mounts
                    .iter()
                    .map(|mount| Volume {
                        name: mount.name.clone(),
                        host_path: Some(HostPathVolumeSource {
                            path: mount.path.clone(),
                            type_: Some(mount.kind.to_owned()),
                        }),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

/// The objects applied once the API server is up (the files of [`paths::ADDONS_DIR`] on a
/// control-plane node): kiln's RBAC bindings, kube-proxy's DaemonSet with
/// `options.kube_proxy = "daemonset"`, and the cluster DNS with `options.cluster_dns =
/// "coredns"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Addons {
    /// The RBAC bindings every kiln cluster needs ([`rbac_bindings`]).
    pub rbac: Vec<ClusterRoleBinding>,
    /// kube-proxy's DaemonSet and what it needs, when kube-proxy runs as one.
    pub kube_proxy: Option<KubeProxyAddon>,
    /// The cluster DNS, when kiln deploys it.
    pub dns: Option<DnsAddon>,
}

/// kube-proxy as a DaemonSet (`options.kube_proxy = "daemonset"`).
#[derive(Clone, Debug, PartialEq)]
pub struct KubeProxyAddon {
    /// Its identity, `kube-system/kube-proxy`.
    pub service_account: ServiceAccount,
    /// `system:node-proxier` bound to the service account (`kiln:node-proxier`).
    pub cluster_role_binding: ClusterRoleBinding,
    /// Its KubeProxyConfiguration.
    pub config_map: ConfigMap,
    /// kube-proxy on every node with a kubelet.
    pub daemon_set: DaemonSet,
}

fn binding(name: &str, role: &str, subject: Subject) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: role.to_owned(),
        },
        subjects: Some(vec![subject]),
    }
}

/// The RBAC bindings every kiln cluster needs: the API server's kubelet-client identity
/// (user `kube-apiserver-kubelet-client`) to `system:kubelet-api-admin`, and the admins'
/// group `kiln:cluster-admins` to `cluster-admin` (the break-glass super-admin alone is in
/// `system:masters`).
pub fn rbac_bindings() -> Vec<ClusterRoleBinding> {
    let rbac = Some("rbac.authorization.k8s.io".to_owned());
    vec![
        binding(
            "kiln:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            Subject {
                api_group: rbac.clone(),
                kind: "User".to_owned(),
                name: "kube-apiserver-kubelet-client".to_owned(),
                namespace: None,
            },
        ),
        binding(
            "kiln:cluster-admins",
            "cluster-admin",
            Subject {
                api_group: rbac,
                kind: "Group".to_owned(),
                name: "kiln:cluster-admins".to_owned(),
                namespace: None,
            },
        ),
    ]
}

/// Every bootstrap object of the plan (see [`Addons`]). The DaemonSet's kube-proxy reaches
/// the API server at the control-plane endpoint (`KUBERNETES_SERVICE_HOST` and `_PORT` set
/// explicitly, since the `kubernetes` Service needs kube-proxy to be reachable) with its
/// service-account token, and reads its configuration from the ConfigMap `kube-proxy`.
///
/// # Errors
///
/// [`crate::Error::Encode`] if kube-proxy's configuration cannot be encoded, and
/// [`crate::Error::NoCoredns`] if the plan asks for CoreDNS and `releases` has none.
pub fn addons(plan: &Plan, releases: &Releases) -> Result<Addons, crate::Error> {
    let kube_proxy = if plan.options.kube_proxy == KubeProxyMode::Daemonset {
        let meta = || ObjectMeta {
            name: Some("kube-proxy".to_owned()),
            namespace: Some(crate::SYSTEM_NAMESPACE.to_owned()),
            labels: Some(BTreeMap::from([(
                "k8s-app".to_owned(),
                "kube-proxy".to_owned(),
            )])),
            ..Default::default()
        };
        let config = crate::yaml(
            "kube-proxy configuration",
            &crate::config::kube_proxy_configuration(plan, None),
        )?;
        Some(KubeProxyAddon {
            service_account: ServiceAccount {
                metadata: meta(),
                ..Default::default()
            },
            cluster_role_binding: binding(
                "kiln:node-proxier",
                "system:node-proxier",
                Subject {
                    api_group: None,
                    kind: "ServiceAccount".to_owned(),
                    name: "kube-proxy".to_owned(),
                    namespace: Some(crate::SYSTEM_NAMESPACE.to_owned()),
                },
            ),
            config_map: ConfigMap {
                metadata: meta(),
                data: Some(BTreeMap::from([("config.conf".to_owned(), config)])),
                ..Default::default()
            },
            daemon_set: kube_proxy_daemon_set(plan, releases, meta()),
        })
    } else {
        None
    };
    let dns = match plan.options.cluster_dns {
        ClusterDns::Coredns => {
            let image = releases
                .coredns_image()
                .ok_or_else(|| crate::Error::NoCoredns {
                    kubernetes: plan.cluster.kubernetes_version.to_string(),
                })?;
            Some(dns_addon(plan, &image))
        }
        ClusterDns::None => None,
    };
    Ok(Addons {
        rbac: rbac_bindings(),
        kube_proxy,
        dns,
    })
}

fn kube_proxy_daemon_set(plan: &Plan, releases: &Releases, metadata: ObjectMeta) -> DaemonSet {
    let selector = BTreeMap::from([("k8s-app".to_owned(), "kube-proxy".to_owned())]);
    let flags = render(
        &Context {
            plan,
            target: Target::DaemonSet,
        },
        Component::KubeProxy,
    );
    let env = |name: &str, value: String| EnvVar {
        name: name.to_owned(),
        value: Some(value),
        value_from: None,
    };
    let host_path = |name: &str, path: &str, kind: &str| Volume {
        name: name.to_owned(),
        host_path: Some(HostPathVolumeSource {
            path: path.to_owned(),
            type_: Some(kind.to_owned()),
        }),
        ..Default::default()
    };
    let volume_mount = |name: &str, path: &str, read_only: bool| VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    };
    DaemonSet {
        metadata,
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector.clone()),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "kube-proxy".to_owned(),
                        image: Some(image(plan, releases, Component::KubeProxy)),
                        image_pull_policy: Some("Never".to_owned()),
                        command: Some(command(Component::KubeProxy, flags)),
                        env: Some(vec![
                            env(
                                "KUBERNETES_SERVICE_HOST",
                                plan.cluster.endpoint.host.clone(),
                            ),
                            env(
                                "KUBERNETES_SERVICE_PORT",
                                plan.cluster.endpoint.port.to_string(),
                            ),
                            EnvVar {
                                name: "NODE_NAME".to_owned(),
                                value: None,
                                value_from: Some(EnvVarSource {
                                    field_ref: Some(ObjectFieldSelector {
                                        api_version: None,
                                        field_path: "spec.nodeName".to_owned(),
                                    }),
                                    ..Default::default()
                                }),
                            },
                        ]),
                        liveness_probe: Some(probe(
                            "HTTP",
                            "127.0.0.1".to_owned(),
                            10256,
                            "/healthz",
                        )),
                        security_context: Some(SecurityContext {
                            privileged: Some(true),
                            ..Default::default()
                        }),
                        volume_mounts: Some(vec![
                            volume_mount("kube-proxy-config", "/var/lib/kube-proxy", true),
                            volume_mount("lib-modules", "/lib/modules", true),
                            volume_mount("xtables-lock", "/run/xtables.lock", false),
                        ]),
                        ..Default::default()
                    }],
                    host_network: Some(true),
                    priority_class_name: Some("system-node-critical".to_owned()),
                    service_account_name: Some("kube-proxy".to_owned()),
                    tolerations: Some(vec![Toleration {
                        operator: Some("Exists".to_owned()),
                        ..Default::default()
                    }]),
                    volumes: Some(vec![
                        Volume {
                            name: "kube-proxy-config".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: "kube-proxy".to_owned(),
                                ..Default::default()
                            }),
                            ..Default::default()
                        },
                        host_path("lib-modules", "/lib/modules", "Directory"),
                        host_path("xtables-lock", "/run/xtables.lock", "FileOrCreate"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        status: None,
    }
}
