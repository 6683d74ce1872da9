//! Properties over generated specs: each node runs exactly the services its roles and the
//! control-plane mode call for, and every file a default flag names is one kiln puts on that
//! node (certificates from `kiln_pki::placement`, kubeconfigs from `kiln_kubeconfig`).

use std::collections::BTreeSet;

use kiln_spec::{
    Component, ControlPlaneMode, KubeProxyMode, KubeletCredentials, Plan, Role,
    strategies::valid_spec,
};
use kiln_units::Service;
use proptest::prelude::*;

/// The services the roles and mode call for, written out independently of the crate.
fn expected_services(plan: &Plan, node: &kiln_spec::NodePlan) -> BTreeSet<Service> {
    let mode = plan.cluster.control_plane_mode;
    let mut services = BTreeSet::new();
    let kubelet = node.has(Role::Worker)
        || (mode == ControlPlaneMode::StaticPods
            && (node.has(Role::ControlPlane) || node.has(Role::Etcd)));
    if kubelet {
        services.extend([Service::Containerd, Service::Component(Component::Kubelet)]);
        if plan.options.kube_proxy == KubeProxyMode::Systemd {
            services.insert(Service::Component(Component::KubeProxy));
        }
    }
    if mode == ControlPlaneMode::Systemd {
        if node.has(Role::Etcd) {
            services.insert(Service::Component(Component::Etcd));
        }
        if node.has(Role::ControlPlane) {
            services.extend([
                Service::Component(Component::KubeApiserver),
                Service::Component(Component::KubeControllerManager),
                Service::Component(Component::KubeScheduler),
            ]);
        }
    }
    services
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn services_and_flag_paths_match_the_node(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        for node in &plan.nodes {
            let services: BTreeSet<Service> = kiln_units::services(&plan, node).into_iter().collect();
            prop_assert_eq!(&services, &expected_services(&plan, node), "{}", node.name);

            let placed: BTreeSet<String> = kiln_pki::placement(&plan, node)
                .into_iter()
                .map(|file| format!("/etc/kubernetes/{}", file.path))
                .collect();
            let mut kubeconfigs: BTreeSet<String> = kiln_kubeconfig::node_kinds(&plan, node)
                .iter()
                .map(|kind| format!("/{}", kind.path()))
                .collect();
            if plan.options.kubelet_credentials == KubeletCredentials::BootstrapToken
                && !node.roles.contains(&Role::ControlPlane)
                && !node.roles.contains(&Role::Etcd)
            {
                // A worker's bootstrap kubeconfig carries a token (rendered elsewhere); the
                // kubelet writes kubelet.conf itself once its CSR is signed. Control-plane and
                // etcd kubelets keep the kubelet.conf kiln issues.
                kubeconfigs.insert("/etc/kubernetes/bootstrap-kubelet.conf".to_owned());
                kubeconfigs.insert("/etc/kubernetes/kubelet.conf".to_owned());
            }
            for service in &services {
                let flags = kiln_units::default_flags(&plan, node, *service);
                let unit = kiln_units::unit(*service, plan.cluster.kubernetes_version, &flags).expect("a unit");
                prop_assert_eq!(unit.service.exec_start.arguments.len(), flags.pairs().len());
                for (name, value) in flags.pairs() {
                    if value.starts_with("/etc/kubernetes/pki/") {
                        prop_assert!(placed.contains(value), "{} --{}={} is not placed on {}", service.name(), name, value, node.name);
                    } else if value.starts_with("/etc/kubernetes/") && value.ends_with(".conf") {
                        prop_assert!(kubeconfigs.contains(value), "{} --{}={} is not a kubeconfig of {}", service.name(), name, value, node.name);
                    }
                }
            }
            if services.contains(&Service::Component(Component::Kubelet)) {
                let flags = kiln_units::default_flags(&plan, node, Service::Component(Component::Kubelet));
                // The kubelet's cgroup driver is containerd's, in the file and (through 1.26)
                // on the command line.
                let containerd = kiln_units::ContainerdVersion::for_kubernetes(plan.cluster.kubernetes_version);
                let config = kiln_units::containerd_config(containerd).expect("a configuration");
                let systemd_cgroup = config.runtimes().runtimes["runc"].options.systemd_cgroup;
                let file = kiln_manifests::kubelet_configuration(&plan, node);
                prop_assert_eq!(file.cgroup_driver == "systemd", systemd_cgroup);
                let on_command_line =
                    plan.cluster.kubernetes_version.minor < kiln_manifests::FILE_ONLY_KUBELET_SETTINGS;
                if on_command_line {
                    prop_assert_eq!(flags.get("cgroup-driver") == Some("systemd"), systemd_cgroup);
                } else {
                    prop_assert_eq!(flags.get("cgroup-driver"), None);
                }
                prop_assert_eq!(
                    flags.get("pod-manifest-path").is_some(),
                    on_command_line && plan.cluster.control_plane_mode == ControlPlaneMode::StaticPods
                );
            }
        }
    }

    #[test]
    fn every_kubelet_node_masquerades_exactly_what_leaves_the_pod_range(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        for node in &plan.nodes {
            let units = kiln_units::units(&plan, node).expect("units");
            let names: Vec<&str> = units.iter().map(|unit| unit.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            prop_assert_eq!(&names, &sorted, "units are in name order");
            let pod_nat: Vec<&kiln_units::Unit> =
                units.iter().filter(|unit| unit.name == kiln_units::POD_NAT_UNIT).collect();
            if !node.runs_kubelet(plan.cluster.control_plane_mode) {
                prop_assert!(pod_nat.is_empty(), "{} has no pods to masquerade", node.name);
                continue;
            }
            prop_assert_eq!(pod_nat.len(), 1, "{}", node.name);
            let service = &pod_nat[0].service;
            // The rule, written out independently: from this node's pods to outside pod_cidr.
            let rule = |operation: &str| -> Vec<String> {
                let subnet = node.pod_subnet.expect("a kubelet node has a pod subnet").to_string();
                let cidr = plan.cluster.pod_cidr.to_string();
                ["-w", "-t", "nat", operation, "POSTROUTING", "-s", subnet.as_str(), "!", "-d", cidr.as_str(),
                 "-m", "comment", "--comment", "kiln pod nat", "-j", "MASQUERADE"]
                    .map(str::to_owned)
                    .to_vec()
            };
            let command = |command: &kiln_units::ExecCommand| {
                (command.program.clone(), command.arguments.clone(), command.ignore_failure)
            };
            let iptables = kiln_units::IPTABLES.to_owned();
            prop_assert_eq!(command(&service.exec_start), (iptables.clone(), rule("-A"), false));
            // Idempotent: any earlier copy goes first; stopping removes it, present or not.
            let pre: Vec<_> = service.exec_start_pre.iter().map(command).collect();
            prop_assert_eq!(pre, vec![(iptables.clone(), rule("-D"), true)]);
            let stop: Vec<_> = service.exec_stop.iter().map(command).collect();
            prop_assert_eq!(stop, vec![(iptables, rule("-D"), true)]);
            prop_assert!(service.remain_after_exit);
            let before = &pod_nat[0].unit.before;
            prop_assert!(before.contains(&"kubelet.service".to_owned()) && before.contains(&"containerd.service".to_owned()));
        }
    }
}

#[test]
fn extra_flags_replace_defaults_in_place_and_bad_flags_are_refused() {
    let source = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/two-node.toml"
    ))
    .expect("the example");
    let source = format!(
        "{source}\n[options.extra_flags.kubelet]\nnode-ip = \"192.168.50.99\"\nv = \"2\"\n"
    );
    let plan = kiln_spec::load(&source, "two-node.toml")
        .expect("valid")
        .plan;
    let node = plan.node("node2").expect("node2");
    let defaults = kiln_units::default_flags(&plan, node, Service::Component(Component::Kubelet));
    let names: Vec<&str> = defaults
        .pairs()
        .iter()
        .map(|(name, _)| name.as_str())
        .collect();
    assert_eq!(defaults.get("node-ip"), Some("192.168.50.99"));
    assert_eq!(names.last(), Some(&"v"));
    assert_eq!(names.iter().filter(|name| **name == "node-ip").count(), 1);

    for (name, value) in [("", "x"), ("--v", "2"), ("a b", "x"), ("v", "2\n--evil=1")] {
        let flags = kiln_units::Flags::from_pairs(&[(name.to_owned(), value.to_owned())]);
        let error = kiln_units::unit(
            Service::Component(Component::Kubelet),
            "1.20.2".parse().expect("a version"),
            &flags,
        )
        .expect_err("refused");
        assert!(
            error.to_string().starts_with("kubelet.service: flag"),
            "{error}"
        );
    }
}
