//! Placement against the least-privilege table of shared/reference/pki.md, row by row, for
//! every combination of roles and of the options that change it.

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use kiln_pki::{CERTIFICATE_MODE, FileSource, KEY_MODE, PlacedFile, placement};
use kiln_spec::{ControlPlaneMode, KubeProxyMode, KubeletCredentials, NodePlan, Plan, Role};

const ROLES: [Role; 4] = [
    Role::ControlPlane,
    Role::Etcd,
    Role::Worker,
    Role::LoadBalancer,
];

/// Private keys a node holds, by certificate name.
fn keys(files: &[PlacedFile]) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|file| match &file.source {
            FileSource::PrivateKey(name) => Some(name.clone()),
            FileSource::ServiceAccountPrivateKey => Some("service-account".to_owned()),
            _ => None,
        })
        .collect()
}

fn paths(files: &[PlacedFile]) -> BTreeSet<&str> {
    files.iter().map(|file| file.path.as_str()).collect()
}

/// Every plan variant: each role set on node1 (node2 stays a worker), both control-plane
/// modes, CSR signing on and off, each kube-proxy mode, both kubelet credential modes.
fn variants() -> Vec<(Plan, NodePlan)> {
    let base = common::example("two-node");
    let mut all = Vec::new();
    for mask in 1u8..16 {
        let roles: BTreeSet<Role> = ROLES
            .iter()
            .enumerate()
            .filter(|(bit, _)| mask & (1 << bit) != 0)
            .map(|(_, role)| *role)
            .collect();
        for mode in [ControlPlaneMode::StaticPods, ControlPlaneMode::Systemd] {
            for signs in [false, true] {
                for kube_proxy in [
                    KubeProxyMode::StaticPod,
                    KubeProxyMode::Daemonset,
                    KubeProxyMode::Systemd,
                ] {
                    for credentials in [
                        KubeletCredentials::Issued,
                        KubeletCredentials::BootstrapToken,
                    ] {
                        let mut plan = base.clone();
                        plan.cluster.control_plane_mode = mode;
                        plan.pki.controller_manager_signs_csrs = signs;
                        plan.options.kube_proxy = kube_proxy;
                        plan.options.kubelet_credentials = credentials;
                        plan.nodes[0].roles = roles.clone();
                        let node = plan.nodes[0].clone();
                        all.push((plan, node));
                    }
                }
            }
        }
    }
    all
}

#[test]
fn every_row_of_the_least_privilege_table_holds() {
    for (plan, node) in variants() {
        let files = placement(&plan, &node);
        let keys = keys(&files);
        let paths = paths(&files);
        let context = format!(
            "roles {:?}, {:?}, signs CSRs {}, kube-proxy {:?}, {:?}: {keys:?}",
            node.roles,
            plan.cluster.control_plane_mode,
            plan.pki.controller_manager_signs_csrs,
            plan.options.kube_proxy,
            plan.options.kubelet_credentials,
        );
        let control_plane = node.has(Role::ControlPlane);
        let etcd = node.has(Role::Etcd);
        let kubelet = node.runs_kubelet(plan.cluster.control_plane_mode);
        let kube_proxy = kubelet && plan.options.kube_proxy != KubeProxyMode::Daemonset;
        let has = |name: &str| keys.contains(name);

        // Row: ca.key only on a control plane whose controller manager signs CSRs.
        assert_eq!(
            has("ca"),
            control_plane && plan.pki.controller_manager_signs_csrs,
            "{context}"
        );
        // Row: etcd/ca.key and front-proxy-ca.key never.
        assert!(!has("etcd-ca") && !has("front-proxy-ca"), "{context}");
        // Row: sa.key on control planes.
        assert_eq!(has("service-account"), control_plane, "{context}");
        // Rows: the apiserver's keys, controller-manager and scheduler keys on control planes.
        for name in [
            "apiserver",
            "apiserver-kubelet-client",
            "apiserver-etcd-client",
            "front-proxy-client",
            "controller-manager",
            "scheduler",
        ] {
            assert_eq!(has(name), control_plane, "{name}: {context}");
        }
        // No node holds etcd's healthcheck client key (full access to etcd; nothing reads it).
        assert!(!has("etcd-healthcheck-client"), "{context}");
        // Row: etcd server/peer keys on etcd members, their own only.
        for kind in ["etcd-server", "etcd-peer"] {
            assert_eq!(
                has(&format!("{kind}/{}", node.name)),
                etcd,
                "{kind}: {context}"
            );
        }
        // Row: kubelet client and serving keys on kubelet nodes, their own only (the client key
        // only where kiln issues kubelet credentials: with bootstrap tokens, on the control-plane
        // and etcd nodes, whose kubelets run the static pods the API needs, as kubeadm's).
        let issued =
            plan.options.kubelet_credentials == KubeletCredentials::Issued || control_plane || etcd;
        assert_eq!(
            has(&format!("kubelet-serving/{}", node.name)),
            kubelet,
            "{context}"
        );
        assert_eq!(
            has(&format!("kubelet-client/{}", node.name)),
            kubelet && issued,
            "{context}"
        );
        // Row: kube-proxy key wherever kube-proxy runs from the node.
        assert_eq!(has("kube-proxy"), kube_proxy, "{context}");
        // Row: admin and super-admin keys never.
        assert!(!has("admin") && !has("super-admin"), "{context}");
        // Own only: nothing per-node of another node.
        for file in &files {
            if let Some((_, owner)) = file.source.certificate_name().split_once('/') {
                assert_eq!(owner, node.name, "{context}");
            }
        }
        // Nothing else: the keys are exactly those of the rows above.
        let expected_keys = usize::from(control_plane) * 7
            + usize::from(control_plane && plan.pki.controller_manager_signs_csrs)
            + usize::from(etcd) * 2
            + usize::from(kubelet)
            + usize::from(kubelet && issued)
            + usize::from(kube_proxy);
        assert_eq!(keys.len(), expected_keys, "{context}");

        // Public certificates where they are read.
        assert_eq!(
            paths.contains("pki/ca.crt"),
            control_plane || kubelet,
            "{context}"
        );
        assert_eq!(
            paths.contains("pki/etcd/ca.crt"),
            control_plane || etcd,
            "{context}"
        );
        assert_eq!(
            paths.contains("pki/front-proxy-ca.crt"),
            control_plane,
            "{context}"
        );
        assert_eq!(paths.contains("pki/sa.pub"), control_plane, "{context}");
        // Modes: 0600 for secrets, 0644 for the rest; every key beside its certificate.
        for file in &files {
            let mode = if file.source.is_private() {
                0o600
            } else {
                0o644
            };
            assert_eq!(file.mode, mode, "{}: {context}", file.path);
            if let FileSource::PrivateKey(name) = &file.source {
                let certificate = file.path.replace(".key", ".crt");
                assert!(paths.contains(certificate.as_str()), "{name}: {context}");
            }
        }
        // A load balancer alone, not in front of the API (the endpoint here is node1), gets nothing.
        if node.roles == BTreeSet::from([Role::LoadBalancer]) {
            assert!(files.is_empty(), "{context}");
        }
    }
}

#[test]
fn the_endpoint_load_balancer_gets_the_ca_certificate_and_its_health_check_pair_only() {
    let plan = common::example("ha");
    let balancer = plan
        .node("lb")
        .expect("the HA example has a load balancer node")
        .clone();
    assert_eq!(
        plan.cluster.endpoint.load_balancer_nodes,
        vec!["lb".to_owned()]
    );
    let files = placement(&plan, &balancer);
    let paths: Vec<(&str, u32)> = files
        .iter()
        .map(|file| (file.path.as_str(), file.mode))
        .collect();
    assert_eq!(
        paths,
        vec![
            ("pki/ca.crt", CERTIFICATE_MODE),
            ("pki/healthz-client.crt", CERTIFICATE_MODE),
            ("pki/healthz-client.key", KEY_MODE),
        ]
    );
    assert_eq!(
        keys(&files),
        BTreeSet::from(["healthz-client/lb".to_owned()])
    );
    // Its identity can authenticate and nothing more: no group, a client certificate.
    let profile = kiln_pki::profile(&plan, "healthz-client/lb").expect("issued for lb");
    assert_eq!(profile.common_name, "kiln:healthz-client:lb");
    assert_eq!(profile.organization, None);
    assert_eq!(profile.usage, kiln_pki::Usage::Client);
}

#[test]
fn every_placed_file_exists_in_the_issued_pki() {
    for plan in common::example_plans().values() {
        let pki = common::issue(plan, &common::root());
        for node in &plan.nodes {
            for file in placement(plan, node) {
                assert!(
                    pki.contents(&file.source).is_some(),
                    "{}: {file:?}",
                    node.name
                );
            }
        }
    }
}

#[test]
fn examples_place_these_files() {
    let mut listing = String::new();
    for (example, plan) in common::example_plans() {
        for node in &plan.nodes {
            let roles: Vec<String> = node.roles.iter().map(|role| format!("{role:?}")).collect();
            writeln!(listing, "{example} {} ({})", node.name, roles.join(", ")).expect("write");
            for file in placement(&plan, node) {
                writeln!(
                    listing,
                    "  {:o} {:<36} {:?}",
                    file.mode, file.path, file.source
                )
                .expect("write");
            }
        }
    }
    expect_test::expect_file!["golden/placement.txt"].assert_eq(&listing);
}
