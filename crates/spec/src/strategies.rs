//! proptest strategies for valid cluster specs and for single invalid mutations of them.
//!
//! [`valid_spec`] generates specs that validate: unique node names and addresses, disjoint
//! networks, at least one control-plane and one etcd node, and an endpoint that fits the
//! number of control-plane nodes. [`invalid_spec`] takes such a spec and breaks exactly one
//! rule, returning the [`Mutation`] with the field path validation must name.
//!
//! ```
//! use proptest::prelude::*;
//! use proptest::test_runner::TestRunner;
//!
//! let mut runner = TestRunner::default();
//! runner
//!     .run(&kiln_spec::strategies::invalid_spec(1..=4), |(spec, mutation)| {
//!         let errors = spec.validate().expect_err("a mutation makes the spec invalid");
//!         prop_assert!(errors.iter().any(|error| error.field == mutation.field));
//!         Ok(())
//!     })
//!     .unwrap();
//! ```

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use proptest::prelude::*;

use crate::plan::runs_kubelet;
use crate::raw::{
    ClusterSpec, ControlPlaneMode, EncryptionProvider, EndpointMode, EndpointSpec, KubeProxyMode,
    KubeconfigCertificates, KubeletCredentials, LeaderElectionSpec, NodeSpec, OptionsSpec, PkiSpec,
    Role, Spec,
};

/// One rule broken on purpose, and the field that validation must name for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mutation {
    /// Which rule was broken.
    pub rule: &'static str,
    /// The field path the error must carry, for example `nodes[1].name`.
    pub field: String,
}

/// The node roles a generated node may have; node 0 always has control-plane, etcd and worker.
fn roles_from_mask(mask: u8) -> Vec<Role> {
    let mut roles = Vec::new();
    if mask & 1 != 0 {
        roles.push(Role::ControlPlane);
    }
    if mask & 2 != 0 {
        roles.push(Role::Etcd);
    }
    if mask & 4 != 0 || roles.is_empty() {
        roles.push(Role::Worker);
    }
    roles
}

/// Valid specs with a node count in `nodes` (at least 1).
pub fn valid_spec(nodes: RangeInclusive<usize>) -> impl Strategy<Value = Spec> {
    let start = (*nodes.start()).max(1);
    let end = (*nodes.end()).max(start);
    (
        "[a-z][a-z0-9]{0,8}",
        crate::OLDEST_SUPPORTED_MINOR..=crate::NEWEST_SUPPORTED_MINOR,
        0u32..=20,
        any::<bool>(),
        0u8..=63,
        16u8..=31,
        0u8..=255,
        prop::collection::vec((0u8..8, "[a-z]{1,6}", any::<bool>()), start..=end),
        (any::<bool>(), 0u8..3, 0u8..3, any::<bool>()),
        (1_600_000_000i64..1_900_000_000, 0u32..3, any::<bool>()),
        prop::option::of((1u32..=10, 0u32..=20, 1u32..=30)),
        prop::option::of(prop::sample::select(vec![6443u16, 8443, 16443])),
    )
        .prop_map(
            |(
                name,
                minor,
                patch,
                systemd,
                pod_octet,
                service_octet,
                node_octet,
                nodes,
                options,
                pki,
                leader_election,
                apiserver_port,
            )| {
                let (local_endpoint, kube_proxy, encryption, referenced) = options;
                // `bootstrap`: workers join with a bootstrap token that expires a year after
                // issue (the controller manager then signs their CSRs).
                let (issued_at, generation, bootstrap) = pki;
                let mode = if systemd {
                    ControlPlaneMode::Systemd
                } else {
                    ControlPlaneMode::StaticPods
                };
                let nodes: Vec<NodeSpec> = nodes
                    .into_iter()
                    .enumerate()
                    .map(|(index, (mask, suffix, gateway))| NodeSpec {
                        name: format!("n{index}-{suffix}"),
                        roles: if index == 0 {
                            vec![Role::ControlPlane, Role::Etcd, Role::Worker]
                        } else {
                            roles_from_mask(mask)
                        },
                        addresses: vec![format!("192.168.{node_octet}.{}/24", 10 + index)],
                        gateway: gateway.then(|| format!("192.168.{node_octet}.1")),
                        dns: Vec::new(),
                        pod_subnet: None,
                    })
                    .collect();
                let control_planes = nodes
                    .iter()
                    .filter(|node| node.roles.contains(&Role::ControlPlane))
                    .count();
                let endpoint = match (control_planes, local_endpoint) {
                    (1, _) => None,
                    (_, true) => Some(EndpointSpec {
                        mode: EndpointMode::Local,
                        host: None,
                        port: None,
                    }),
                    (_, false) => Some(EndpointSpec {
                        mode: EndpointMode::LoadBalancer,
                        host: Some("api.cluster.example".to_owned()),
                        port: Some(8443),
                    }),
                };
                Spec {
                    cluster: ClusterSpec {
                        name,
                        kubernetes_version: format!("1.{minor}.{patch}"),
                        domain: None,
                        service_cidr: Some(format!("172.{service_octet}.0.0/16")),
                        pod_cidr: Some(format!("10.{pod_octet}.0.0/16")),
                        control_plane_mode: Some(mode),
                        endpoint,
                        apiserver_port,
                    },
                    pki: PkiSpec {
                        issued_at: crate::time::to_toml_datetime(issued_at),
                        ca_validity_days: None,
                        leaf_validity_days: None,
                        generation: Some(generation),
                        generations: BTreeMap::new(),
                        expiry_warning_days: None,
                        controller_manager_signs_csrs: bootstrap.then_some(true),
                        bootstrap_token_expires: bootstrap
                            .then(|| crate::time::to_toml_datetime(issued_at + 365 * 86_400)),
                        ca: BTreeMap::new(),
                    },
                    nodes,
                    options: OptionsSpec {
                        encryption_at_rest: Some(
                            [
                                EncryptionProvider::Aescbc,
                                EncryptionProvider::Secretbox,
                                EncryptionProvider::None,
                            ][usize::from(encryption)],
                        ),
                        kube_proxy: Some(
                            [
                                KubeProxyMode::StaticPod,
                                KubeProxyMode::Daemonset,
                                KubeProxyMode::Systemd,
                            ][usize::from(kube_proxy)],
                        ),
                        kubeconfig_certificates: Some(if referenced {
                            KubeconfigCertificates::Referenced
                        } else {
                            KubeconfigCertificates::Embedded
                        }),
                        // Valid by construction: deadline = 2 retry + extra > 1.2 retry, and
                        // the lease is longer than the deadline.
                        leader_election: leader_election.map(|(retry, extra, longer)| {
                            LeaderElectionSpec {
                                lease_duration_seconds: Some(2 * retry + extra + longer),
                                renew_deadline_seconds: Some(2 * retry + extra),
                                retry_period_seconds: Some(retry),
                            }
                        }),
                        kubelet_credentials: bootstrap
                            .then_some(KubeletCredentials::BootstrapToken),
                        ..OptionsSpec::default()
                    },
                }
            },
        )
}

/// The number of rules [`mutate`] knows how to break.
pub const RULES: usize = 15;

/// Breaks rule number `rule % RULES` in `spec` (which must be valid) and says which field the
/// error must name. `pick` chooses a node where the rule allows several.
pub fn mutate(spec: &mut Spec, rule: usize, pick: usize) -> Mutation {
    let count = spec.nodes.len();
    let node = pick % count;
    let mode = spec
        .cluster
        .control_plane_mode
        .unwrap_or(ControlPlaneMode::StaticPods);
    let node_octet = spec.nodes[0].addresses[0]
        .split('.')
        .nth(2)
        .unwrap_or("0")
        .to_owned();
    let mutation = |rule: &'static str, field: String| Mutation { rule, field };
    match rule % RULES {
        0 => {
            spec.nodes[node].name = format!("Bad_{node}");
            mutation(
                "node name not a DNS-1123 label",
                format!("nodes[{node}].name"),
            )
        }
        1 => {
            let name = spec.nodes[0].name.clone();
            spec.nodes.push(NodeSpec {
                name,
                roles: vec![Role::Worker],
                addresses: vec![format!("192.168.{node_octet}.250/24")],
                gateway: None,
                dns: Vec::new(),
                pod_subnet: None,
            });
            mutation("duplicate node name", format!("nodes[{count}].name"))
        }
        2 => {
            let address = spec.nodes[node].addresses[0].clone();
            spec.nodes.push(NodeSpec {
                name: "duplicate-address".to_owned(),
                roles: vec![Role::Worker],
                addresses: vec![address],
                gateway: None,
                dns: Vec::new(),
                pod_subnet: None,
            });
            mutation("duplicate address", format!("nodes[{count}].addresses[0]"))
        }
        3 => {
            for node in &mut spec.nodes {
                node.roles.retain(|role| *role != Role::ControlPlane);
                if node.roles.is_empty() {
                    node.roles.push(Role::Worker);
                }
            }
            spec.cluster.endpoint = None;
            mutation("no control-plane node", "nodes".to_owned())
        }
        4 => {
            for node in &mut spec.nodes {
                node.roles.retain(|role| *role != Role::Etcd);
                if node.roles.is_empty() {
                    node.roles.push(Role::Worker);
                }
            }
            mutation("no etcd member", "nodes".to_owned())
        }
        5 => {
            spec.cluster.service_cidr = spec.cluster.pod_cidr.clone();
            mutation(
                "Service range overlaps pod range",
                "cluster.service_cidr".to_owned(),
            )
        }
        6 => {
            spec.nodes[node].addresses[0] = format!("192.168.{node_octet}.0/24");
            mutation(
                "address is its subnet's network address",
                format!("nodes[{node}].addresses[0]"),
            )
        }
        7 => {
            spec.nodes[node].gateway = Some("192.0.2.1".to_owned());
            mutation(
                "gateway outside the node's subnets",
                format!("nodes[{node}].gateway"),
            )
        }
        8 => {
            spec.cluster.kubernetes_version = "1.19.0".to_owned();
            mutation(
                "unsupported Kubernetes version",
                "cluster.kubernetes_version".to_owned(),
            )
        }
        9 => {
            spec.cluster.endpoint = Some(EndpointSpec {
                mode: EndpointMode::LoadBalancer,
                host: None,
                port: Some(8443),
            });
            mutation(
                "load-balancer endpoint without a load balancer",
                "cluster.endpoint.host".to_owned(),
            )
        }
        10 => {
            spec.nodes[0].pod_subnet = Some("10.250.0.0/24".to_owned());
            mutation(
                "pod subnet outside the pod range",
                "nodes[0].pod_subnet".to_owned(),
            )
        }
        11 => {
            // Node 0 always runs a kubelet and is the first to, so its default is the first /24.
            let first = spec
                .cluster
                .pod_cidr
                .as_deref()
                .and_then(|cidr| cidr.split('/').next())
                .unwrap_or("10.0.0.0")
                .to_owned();
            spec.nodes.push(NodeSpec {
                name: "shared-subnet".to_owned(),
                roles: vec![Role::Worker],
                addresses: vec![format!("192.168.{node_octet}.251/24")],
                gateway: None,
                dns: Vec::new(),
                pod_subnet: Some(format!("{first}/24")),
            });
            mutation(
                "pod subnet shared by two nodes",
                format!("nodes[{count}].pod_subnet"),
            )
        }
        12 => {
            let pod_cidr = spec
                .cluster
                .pod_cidr
                .as_deref()
                .unwrap_or("10.0.0.0/16")
                .replace("/16", "/24");
            spec.cluster.pod_cidr = Some(pod_cidr);
            spec.nodes.push(NodeSpec {
                name: "one-too-many".to_owned(),
                roles: vec![Role::Worker],
                addresses: vec![format!("192.168.{node_octet}.252/24")],
                gateway: None,
                dns: Vec::new(),
                pod_subnet: None,
            });
            let second_kubelet = spec
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, node)| runs_kubelet(&node.roles.iter().copied().collect(), mode))
                .nth(1)
                .map_or(0, |(index, _)| index);
            mutation(
                "more nodes than pod subnets",
                format!("nodes[{second_kubelet}].pod_subnet"),
            )
        }
        13 => {
            let deadline = spec
                .options
                .leader_election
                .and_then(|timings| timings.renew_deadline_seconds)
                .unwrap_or(10);
            let timings = spec.options.leader_election.get_or_insert_default();
            timings.lease_duration_seconds = Some(deadline);
            timings.renew_deadline_seconds = Some(deadline);
            mutation(
                "leader lease not longer than its renew deadline",
                "options.leader_election.lease_duration_seconds".to_owned(),
            )
        }
        _ => {
            spec.pki
                .generations
                .insert("no-such-certificate".to_owned(), 1);
            mutation(
                "unknown certificate generation",
                "pki.generations.no-such-certificate".to_owned(),
            )
        }
    }
}

/// A valid spec with exactly one rule broken, and the field the error must name.
pub fn invalid_spec(nodes: RangeInclusive<usize>) -> impl Strategy<Value = (Spec, Mutation)> {
    (valid_spec(nodes), 0..RULES, any::<usize>()).prop_map(|(mut spec, rule, pick)| {
        let mutation = mutate(&mut spec, rule, pick);
        (spec, mutation)
    })
}
