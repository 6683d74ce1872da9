//! The cluster DNS add-on: CoreDNS behind the `kube-dns` Service, as kubeadm deploys it, from
//! kiln's own CoreDNS image and with a Corefile that forwards only to the resolvers the spec
//! names.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::RollingUpdateDeployment;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    HTTPGetAction, KeyToPath, PodAffinityTerm, PodAntiAffinity, PodSpec, PodTemplateSpec, Probe,
    ResourceRequirements, SecurityContext, Service, ServiceAccount, ServicePort, ServiceSpec,
    Toleration, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kiln_spec::Plan;
use kiln_spec::images::ComponentImage;

/// The name of CoreDNS's ServiceAccount, ConfigMap and Deployment in `kube-system`.
pub const COREDNS_NAME: &str = "coredns";

/// The name of the Service the kubelets point every pod's resolver at (its address is the
/// plan's `cluster_dns_ip`): `kube-dns`, the name clients and kubeadm expect.
pub const DNS_SERVICE_NAME: &str = "kube-dns";

/// The label CoreDNS's pods carry and the Service selects: `k8s-app=kube-dns`.
pub const APP_LABEL: (&str, &str) = ("k8s-app", "kube-dns");

/// The port CoreDNS's `health` plugin serves `/health` on (its liveness probe).
pub const HEALTH_PORT: u16 = 8080;

/// The port CoreDNS's `ready` plugin serves `/ready` on (its readiness probe): 200 once every
/// plugin is ready, the `kubernetes` plugin having synced with the API.
pub const READY_PORT: u16 = 8181;

/// The port CoreDNS's `prometheus` plugin serves `/metrics` on.
pub const METRICS_PORT: u16 = 9153;

/// CoreDNS's configuration for `plan`: kubeadm's Corefile with the cluster's domain, except
/// where it forwards. kubeadm serves every zone (`.:53`) and forwards other names to the
/// node's `/etc/resolv.conf`, which kiln does not manage. This forwards to
/// `options.upstream_dns`, in order; with none it serves only the cluster's zones (its domain
/// and the reverse zones), so a query for any other name is refused at once (REFUSED, from
/// CoreDNS's server itself, not an error of a plugin) instead of waiting on a resolver, and
/// the `kubernetes` plugin has nothing to fall through to, nor `loop` a forward to watch.
///
/// The Corefile is for the CoreDNS release `coredns` runs. From 1.10.0 (the first whose
/// `cache` plugin takes `disable`) the cache keeps none of the cluster's own answers, as
/// kubeadm's current Corefile; before it, `cache 30` alone, as kubeadm's for Kubernetes 1.20.
///
/// ```
/// use kiln_spec::images::Releases;
///
/// let spec = std::fs::read_to_string("../../examples/two-node.toml").unwrap();
/// let plan = kiln_spec::load(&spec, "two-node.toml").unwrap().plan;
/// let releases = |coredns: &str| Releases { etcd: "3.6.16".into(), coredns: Some(coredns.into()) };
/// let corefile = kiln_manifests::corefile(&plan, &releases("1.15.0").coredns_image().unwrap());
/// assert!(corefile.starts_with("cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {\n"));
/// assert!(corefile.contains("kubernetes cluster.local in-addr.arpa ip6.arpa {"));
/// assert!(corefile.contains("    cache 30 {\n        disable success cluster.local\n"));
/// assert!(!corefile.contains("forward"));
/// let old = kiln_manifests::corefile(&plan, &releases("1.7.0").coredns_image().unwrap());
/// assert!(old.contains("    cache 30\n") && !old.contains("disable"));
/// ```
pub fn corefile(plan: &Plan, coredns: &ComponentImage) -> String {
    let domain = &plan.cluster.domain;
    let forwards = !plan.options.upstream_dns.is_empty();
    let mut out = String::new();
    if forwards {
        out.push_str(".:53 {\n");
    } else {
        let _ = writeln!(out, "{domain}:53 in-addr.arpa:53 ip6.arpa:53 {{");
    }
    out.push_str("    errors\n    health {\n        lameduck 5s\n    }\n    ready\n");
    let _ = writeln!(out, "    kubernetes {domain} in-addr.arpa ip6.arpa {{");
    out.push_str("        pods insecure\n");
    if forwards {
        out.push_str("        fallthrough in-addr.arpa ip6.arpa\n");
    }
    out.push_str("        ttl 30\n    }\n");
    let _ = writeln!(out, "    prometheus :{METRICS_PORT}");
    if forwards {
        let upstreams: Vec<String> = plan
            .options
            .upstream_dns
            .iter()
            .map(ToString::to_string)
            .collect();
        let _ = writeln!(out, "    forward . {} {{", upstreams.join(" "));
        out.push_str("        max_concurrent 1000\n    }\n");
    }
    if release_at_least(&coredns.version, CACHE_DISABLE_RELEASE) {
        let _ = writeln!(
            out,
            "    cache 30 {{\n        disable success {domain}\n        disable denial {domain}\n    }}"
        );
    } else {
        out.push_str("    cache 30\n");
    }
    if forwards {
        out.push_str("    loop\n");
    }
    out.push_str("    reload\n    loadbalance\n}\n");
    out
}

/// The first CoreDNS release (major, minor) whose `cache` plugin takes `disable`.
const CACHE_DISABLE_RELEASE: (u32, u32) = (1, 10);

/// Whether `release` (`MAJOR.MINOR.PATCH`, as the package set's versions are) is `at_least`.
/// A release that does not parse counts as new: kiln's package set holds none.
fn release_at_least(release: &str, at_least: (u32, u32)) -> bool {
    let mut parts = release.split('.').map(str::parse::<u32>);
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor) >= at_least,
        _ => true,
    }
}

/// The objects of the cluster DNS add-on, applied with the others once the API is up.
#[derive(Clone, Debug, PartialEq)]
pub struct DnsAddon {
    /// CoreDNS's identity, `kube-system/coredns`.
    pub service_account: ServiceAccount,
    /// What CoreDNS reads from the API (`kiln:coredns`): Services, EndpointSlices, and the
    /// Endpoints, Pods and Namespaces its `kubernetes` plugin lists.
    pub cluster_role: ClusterRole,
    /// The role bound to the service account.
    pub cluster_role_binding: ClusterRoleBinding,
    /// The Corefile ([`corefile`]).
    pub config_map: ConfigMap,
    /// CoreDNS itself.
    pub deployment: Deployment,
    /// `kube-dns`, at the plan's `cluster_dns_ip`.
    pub service: Service,
}

fn meta(name: &str, namespaced: bool) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespaced.then(|| crate::SYSTEM_NAMESPACE.to_owned()),
        labels: Some(BTreeMap::from([(
            APP_LABEL.0.to_owned(),
            APP_LABEL.1.to_owned(),
        )])),
        ..Default::default()
    }
}

fn http_probe(port: u16, path: &str) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::Int(i32::from(port)),
            scheme: Some("HTTP".to_owned()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The cluster DNS add-on of `plan`, running `image`: kubeadm's CoreDNS objects (two replicas
/// that prefer different nodes, tolerating the control plane's taint; `dnsPolicy: Default`;
/// only `NET_BIND_SERVICE`, a read-only root, kubeadm's probes and resources) with kiln's
/// image, which is never pulled (`imagePullPolicy: Never`: every node with a kubelet carries
/// it), and kiln's names for what is kiln's own (the role and binding `kiln:coredns`).
pub fn dns_addon(plan: &Plan, image: &ComponentImage) -> DnsAddon {
    let app = BTreeMap::from([(APP_LABEL.0.to_owned(), APP_LABEL.1.to_owned())]);
    let role_name = "kiln:coredns";
    let rule = |group: &str, resources: &[&str]| PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(resources.iter().map(|name| (*name).to_owned()).collect()),
        verbs: vec!["list".to_owned(), "watch".to_owned()],
        ..Default::default()
    };
    let port = |name: &str, number: u16, protocol: &str| ContainerPort {
        name: Some(name.to_owned()),
        container_port: i32::from(number),
        protocol: Some(protocol.to_owned()),
        ..Default::default()
    };
    let service_port = |name: &str, number: u16, protocol: &str| ServicePort {
        name: Some(name.to_owned()),
        port: i32::from(number),
        protocol: Some(protocol.to_owned()),
        target_port: Some(IntOrString::Int(i32::from(number))),
        ..Default::default()
    };
    let quantity = |text: &str| Quantity(text.to_owned());
    let mut service_meta = meta(DNS_SERVICE_NAME, true);
    if let Some(labels) = service_meta.labels.as_mut() {
        labels.insert("kubernetes.io/name".to_owned(), "CoreDNS".to_owned());
    }
    service_meta.annotations = Some(BTreeMap::from([
        ("prometheus.io/port".to_owned(), METRICS_PORT.to_string()),
        ("prometheus.io/scrape".to_owned(), "true".to_owned()),
    ]));
    DnsAddon {
        service_account: ServiceAccount {
            metadata: meta(COREDNS_NAME, true),
            ..Default::default()
        },
        cluster_role: ClusterRole {
            metadata: meta(role_name, false),
            rules: Some(vec![
                rule("", &["endpoints", "services", "pods", "namespaces"]),
                rule("discovery.k8s.io", &["endpointslices"]),
            ]),
            ..Default::default()
        },
        cluster_role_binding: ClusterRoleBinding {
            metadata: meta(role_name, false),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: role_name.to_owned(),
            },
            subjects: Some(vec![Subject {
                api_group: None,
                kind: "ServiceAccount".to_owned(),
                name: COREDNS_NAME.to_owned(),
                namespace: Some(crate::SYSTEM_NAMESPACE.to_owned()),
            }]),
        },
        config_map: ConfigMap {
            metadata: meta(COREDNS_NAME, true),
            data: Some(BTreeMap::from([(
                "Corefile".to_owned(),
                corefile(plan, image),
            )])),
            ..Default::default()
        },
        deployment: Deployment {
            metadata: meta(COREDNS_NAME, true),
            spec: Some(DeploymentSpec {
                replicas: Some(2),
                selector: LabelSelector {
                    match_labels: Some(app.clone()),
                    ..Default::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".to_owned()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_unavailable: Some(IntOrString::Int(1)),
                        ..Default::default()
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(app),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        affinity: Some(Affinity {
                            pod_anti_affinity: Some(PodAntiAffinity {
                                preferred_during_scheduling_ignored_during_execution: Some(vec![
                                    WeightedPodAffinityTerm {
                                        weight: 100,
                                        pod_affinity_term: PodAffinityTerm {
                                            label_selector: Some(LabelSelector {
                                                match_expressions: Some(vec![
                                                    LabelSelectorRequirement {
                                                        key: APP_LABEL.0.to_owned(),
                                                        operator: "In".to_owned(),
                                                        values: Some(vec![APP_LABEL.1.to_owned()]),
                                                    },
                                                ]),
                                                ..Default::default()
                                            }),
                                            topology_key: "kubernetes.io/hostname".to_owned(),
                                            ..Default::default()
                                        },
                                    },
                                ]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        containers: vec![Container {
                            name: COREDNS_NAME.to_owned(),
                            image: Some(image.reference()),
                            image_pull_policy: Some("Never".to_owned()),
                            args: Some(vec![
                                "-conf".to_owned(),
                                "/etc/coredns/Corefile".to_owned(),
                            ]),
                            ports: Some(vec![
                                port("dns", 53, "UDP"),
                                port("dns-tcp", 53, "TCP"),
                                port("metrics", METRICS_PORT, "TCP"),
                            ]),
                            resources: Some(ResourceRequirements {
                                limits: Some(BTreeMap::from([(
                                    "memory".to_owned(),
                                    quantity("170Mi"),
                                )])),
                                requests: Some(BTreeMap::from([
                                    ("cpu".to_owned(), quantity("100m")),
                                    ("memory".to_owned(), quantity("70Mi")),
                                ])),
                                ..Default::default()
                            }),
                            liveness_probe: Some(Probe {
                                initial_delay_seconds: Some(60),
                                timeout_seconds: Some(5),
                                success_threshold: Some(1),
                                failure_threshold: Some(5),
                                ..http_probe(HEALTH_PORT, "/health")
                            }),
                            readiness_probe: Some(http_probe(READY_PORT, "/ready")),
                            security_context: Some(SecurityContext {
                                allow_privilege_escalation: Some(false),
                                capabilities: Some(Capabilities {
                                    add: Some(vec!["NET_BIND_SERVICE".to_owned()]),
                                    drop: Some(vec!["ALL".to_owned()]),
                                }),
                                read_only_root_filesystem: Some(true),
                                ..Default::default()
                            }),
                            volume_mounts: Some(vec![VolumeMount {
                                name: "config-volume".to_owned(),
                                mount_path: "/etc/coredns".to_owned(),
                                read_only: Some(true),
                                ..Default::default()
                            }]),
                            ..Default::default()
                        }],
                        dns_policy: Some("Default".to_owned()),
                        node_selector: Some(BTreeMap::from([(
                            "kubernetes.io/os".to_owned(),
                            "linux".to_owned(),
                        )])),
                        priority_class_name: Some("system-cluster-critical".to_owned()),
                        service_account_name: Some(COREDNS_NAME.to_owned()),
                        tolerations: Some(vec![
                            Toleration {
                                key: Some("CriticalAddonsOnly".to_owned()),
                                operator: Some("Exists".to_owned()),
                                ..Default::default()
                            },
                            Toleration {
                                key: Some("node-role.kubernetes.io/control-plane".to_owned()),
                                effect: Some("NoSchedule".to_owned()),
                                ..Default::default()
                            },
                        ]),
                        volumes: Some(vec![Volume {
                            name: "config-volume".to_owned(),
                            config_map: Some(ConfigMapVolumeSource {
                                name: COREDNS_NAME.to_owned(),
                                items: Some(vec![KeyToPath {
                                    key: "Corefile".to_owned(),
                                    path: "Corefile".to_owned(),
                                    ..Default::default()
                                }]),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            status: None,
        },
        service: Service {
            metadata: service_meta,
            spec: Some(ServiceSpec {
                cluster_ip: Some(plan.cluster.cluster_dns_ip.to_string()),
                ports: Some(vec![
                    service_port("dns", 53, "UDP"),
                    service_port("dns-tcp", 53, "TCP"),
                    service_port("metrics", METRICS_PORT, "TCP"),
                ]),
                selector: Some(BTreeMap::from([(
                    APP_LABEL.0.to_owned(),
                    APP_LABEL.1.to_owned(),
                )])),
                ..Default::default()
            }),
            status: None,
        },
    }
}
