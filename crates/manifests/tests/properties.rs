//! Properties over generated specs: flag paths match the PKI placement, and every rendered
//! flag lies inside its version window.

mod common;

use std::collections::BTreeSet;

use kiln_spec::{
    Component, KubeProxyMode, NEWEST_SUPPORTED_MINOR, OLDEST_SUPPORTED_MINOR, Role,
    strategies::valid_spec,
};
use proptest::prelude::*;

const COMPONENTS: [Component; 6] = [
    Component::Etcd,
    Component::KubeApiserver,
    Component::KubeControllerManager,
    Component::KubeScheduler,
    Component::Kubelet,
    Component::KubeProxy,
];

/// Flags that an independent reading of the changelogs says must be absent from a minor
/// version on: (component, flag, first minor without it).
const REMOVED: &[(Component, &str, u32)] = &[
    (Component::KubeApiserver, "insecure-port", 24),
    (Component::KubeControllerManager, "port", 24),
    (Component::KubeScheduler, "port", 24),
    (Component::Kubelet, "network-plugin", 24),
    (Component::Kubelet, "container-runtime", 27),
    // Removed in 1.35 (kubernetes PR 133779); 1.37.2's kubelet has no such flag. kiln never passed
    // it (the sandbox image is containerd's setting), and must not start to.
    (Component::Kubelet, "pod-infra-container-image", 35),
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn static_pod_pki_paths_are_placed_on_the_node(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        for node in &plan.nodes {
            let placed: BTreeSet<String> = kiln_pki::placement(&plan, node)
                .into_iter()
                .map(|file| format!("/etc/kubernetes/{}", file.path))
                .collect();
            for pod in kiln_manifests::static_pods(&plan, &common::releases(&plan), node) {
                let spec = pod.spec.expect("a spec");
                for argument in spec.containers[0].command.iter().flatten() {
                    let Some((_, value)) = argument.split_once('=') else { continue };
                    for path in value.split(',') {
                        if path.starts_with("/etc/kubernetes/pki/") {
                            prop_assert!(
                                placed.contains(path),
                                "{}: {:?} references {} which kiln_pki does not place there",
                                node.name, pod.metadata.name, path
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_static_pod_mounts_only_the_keys_its_component_holds(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        let referenced =
            plan.options.kubeconfig_certificates == kiln_spec::KubeconfigCertificates::Referenced;
        for node in &plan.nodes {
            let placed: BTreeSet<String> = kiln_pki::placement(&plan, node)
                .into_iter()
                .map(|file| format!("/etc/kubernetes/{}", file.path))
                .collect();
            for pod in kiln_manifests::static_pods(&plan, &common::releases(&plan), node) {
                let name = pod.metadata.name.clone().expect("a name");
                let spec = pod.spec.expect("a spec");
                let mounted: BTreeSet<String> = spec
                    .volumes
                    .iter()
                    .flatten()
                    .filter_map(|volume| volume.host_path.as_ref())
                    .filter(|host| host.path.starts_with("/etc/kubernetes/pki"))
                    .map(|host| {
                        assert_eq!(host.type_.as_deref(), Some("File"), "{name}: {}", host.path);
                        host.path.clone()
                    })
                    .collect();
                for path in &mounted {
                    prop_assert!(placed.contains(path), "{}: {} mounts {} which is not placed", node.name, name, path);
                }
                // Every PKI file the command line names is mounted.
                for argument in spec.containers[0].command.iter().flatten() {
                    let Some((_, value)) = argument.split_once('=') else { continue };
                    for path in value.split(',').filter(|path| path.starts_with("/etc/kubernetes/pki/")) {
                        prop_assert!(mounted.contains(path), "{}: {} does not mount {}", node.name, name, path);
                    }
                }
                // The keys each component may see, from pki.md's table, independent of the
                // renderer's own list.
                let pki = |file: &str| format!("/etc/kubernetes/pki/{file}");
                let kubeconfig_key = |stem: &str| referenced.then(|| pki(&format!("{stem}.key")));
                let expected: BTreeSet<String> = match name.as_str() {
                    "etcd" => [pki("etcd/server.key"), pki("etcd/peer.key")].into_iter().collect(),
                    "kube-apiserver" => [
                        "apiserver.key",
                        "apiserver-kubelet-client.key",
                        "apiserver-etcd-client.key",
                        "front-proxy-client.key",
                        "sa.key",
                    ]
                    .into_iter()
                    .map(pki)
                    .collect(),
                    "kube-controller-manager" => [Some(pki("sa.key")), kubeconfig_key("controller-manager")]
                        .into_iter()
                        .flatten()
                        .chain(plan.pki.controller_manager_signs_csrs.then(|| pki("ca.key")))
                        .collect(),
                    "kube-scheduler" => kubeconfig_key("scheduler").into_iter().collect(),
                    "kube-proxy" => kubeconfig_key("kube-proxy").into_iter().collect(),
                    other => panic!("unexpected static pod {other}"),
                };
                let keys: BTreeSet<String> =
                    mounted.iter().filter(|path| path.ends_with(".key")).cloned().collect();
                prop_assert_eq!(keys, expected, "{}: {}", node.name, name);
                // A referenced kubeconfig's files are mounted.
                if referenced && matches!(name.as_str(), "kube-controller-manager" | "kube-scheduler" | "kube-proxy") {
                    let stem = name.trim_start_matches("kube-");
                    let stem = if stem == "proxy" { "kube-proxy" } else { stem };
                    for file in [pki("ca.crt"), pki(&format!("{stem}.crt"))] {
                        prop_assert!(mounted.contains(&file), "{}: {} does not mount {}", node.name, name, file);
                    }
                }
            }
        }
    }

    #[test]
    fn every_component_flag_and_kubelet_file_is_placed(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        let mode = plan.cluster.control_plane_mode;
        for node in &plan.nodes {
            let placed: BTreeSet<String> = kiln_pki::placement(&plan, node)
                .into_iter()
                .map(|file| format!("/etc/kubernetes/{}", file.path))
                .collect();
            let mut referenced = Vec::new();
            let mut components = Vec::new();
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
            if node.runs_kubelet(mode) {
                components.push(Component::Kubelet);
                if plan.options.kube_proxy != KubeProxyMode::Daemonset {
                    components.push(Component::KubeProxy);
                }
                let config = kiln_manifests::kubelet_configuration(&plan, node);
                referenced.extend([
                    config.tls_cert_file,
                    config.tls_private_key_file,
                    config.authentication.x509.client_ca_file,
                ]);
            }
            for component in components {
                for (_, value) in kiln_manifests::flags(&plan, node, component) {
                    referenced.extend(value.split(',').map(str::to_owned));
                }
            }
            for path in referenced.iter().filter(|path| path.starts_with("/etc/kubernetes/pki/")) {
                prop_assert!(placed.contains(path), "{}: {} is not placed", node.name, path);
            }
        }
    }

    #[test]
    fn rendered_flags_respect_version_windows(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        let minor = plan.cluster.kubernetes_version.minor;
        for node in &plan.nodes {
            for component in COMPONENTS {
                let allowed = kiln_manifests::flag_names(component, minor);
                let extra = plan.options.extra_flags.get(&component);
                for (name, _) in kiln_manifests::flags(&plan, node, component) {
                    if extra.is_some_and(|extra| extra.contains_key(&name)) {
                        continue;
                    }
                    prop_assert!(allowed.contains(&name.as_str()), "1.{}: {} --{}", minor, node.name, name);
                }
            }
        }
    }
}

/// Renders every example at every supported minor version and checks the flags against the
/// table's windows and against [`REMOVED`].
#[test]
fn every_supported_minor_renders_only_flags_valid_for_it() {
    for (example, mut plan) in kiln_testkit::example_plans() {
        for minor in OLDEST_SUPPORTED_MINOR..=NEWEST_SUPPORTED_MINOR {
            plan.cluster.kubernetes_version.minor = minor;
            for node in &plan.nodes {
                for component in COMPONENTS {
                    let flags = kiln_manifests::flags(&plan, node, component);
                    for (name, _) in &flags {
                        let rule = kiln_manifests::flag_table()
                            .iter()
                            .find(|rule| rule.component == component && rule.name == name)
                            .unwrap_or_else(|| panic!("{example}: --{name} is not in the table"));
                        assert!(rule.valid_for(minor), "{example} 1.{minor}: --{name}");
                        for (removed_component, removed, from) in REMOVED {
                            assert!(
                                !(component == *removed_component
                                    && name == removed
                                    && minor >= *from),
                                "{example} 1.{minor}: --{name} was removed in 1.{from}"
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn the_table_is_well_formed() {
    let mut seen = BTreeSet::new();
    for rule in kiln_manifests::flag_table() {
        assert!(
            seen.insert((rule.component, rule.name)),
            "duplicate --{}",
            rule.name
        );
        assert!(rule.first >= OLDEST_SUPPORTED_MINOR, "--{}", rule.name);
        if let Some(last) = rule.last {
            assert!(
                last >= rule.first && last < NEWEST_SUPPORTED_MINOR,
                "--{}",
                rule.name
            );
        }
        assert!(!rule.source.is_empty(), "--{}", rule.name);
        assert!(!rule.name.starts_with('-'), "--{}", rule.name);
    }
}

#[test]
fn version_dependent_files_follow_the_version() {
    let table = [
        (20, "v1beta1"),
        (21, "v1beta1"),
        (22, "v1beta2"),
        (24, "v1beta2"),
        (25, "v1"),
        (32, "v1"),
        (37, "v1"),
    ];
    for (minor, version) in table {
        assert_eq!(
            kiln_manifests::scheduler_config_api_version(minor),
            format!("kubescheduler.config.k8s.io/{version}")
        );
    }
    let mut plan = kiln_testkit::example_plans()
        .remove("two-node")
        .expect("two-node");
    let node = plan.nodes[0].clone();
    for (minor, endpoint) in [(26, false), (27, true), (37, true)] {
        plan.cluster.kubernetes_version.minor = minor;
        let config = kiln_manifests::kubelet_configuration(&plan, &node);
        assert_eq!(
            config.container_runtime_endpoint.is_some(),
            endpoint,
            "1.{minor}"
        );
        let node = &plan.nodes[0];
        let flags = kiln_manifests::flags(&plan, node, Component::Kubelet);
        assert_eq!(
            flags
                .iter()
                .any(|(name, _)| name == "container-runtime-endpoint"),
            !endpoint,
            "1.{minor}"
        );
    }
}

/// With bootstrap tokens, certificate rotation is a flag through 1.26 and a field of the
/// KubeletConfiguration from 1.27; never both, never neither.
#[test]
fn certificate_rotation_moves_from_the_flag_to_the_file() {
    let mut plan = kiln_testkit::example("kubeadm-bootstrap");
    let node = plan
        .nodes
        .iter()
        .find(|node| node.runs_kubelet(plan.cluster.control_plane_mode))
        .expect("a kubelet node")
        .clone();
    for (minor, in_file) in [(20, false), (26, false), (27, true), (37, true)] {
        plan.cluster.kubernetes_version.minor = minor;
        let file = kiln_manifests::kubelet_configuration(&plan, &node).rotate_certificates;
        let flag = kiln_manifests::flags(&plan, &node, Component::Kubelet)
            .into_iter()
            .find(|(name, _)| name == "rotate-certificates")
            .map(|(_, value)| value);
        assert_eq!(file, in_file.then_some(true), "1.{minor}");
        assert_eq!(flag, (!in_file).then(|| "true".to_owned()), "1.{minor}");
    }
    let plain = kiln_testkit::example("two-node");
    assert_eq!(
        kiln_manifests::kubelet_configuration(&plain, &plain.nodes[0]).rotate_certificates,
        None
    );
}

#[test]
fn extra_flags_override_and_stay_sorted() {
    let mut plan = kiln_testkit::example_plans()
        .remove("two-node")
        .expect("two-node");
    plan.options.extra_flags.insert(
        Component::KubeApiserver,
        [
            ("v".to_owned(), "2".to_owned()),
            ("secure-port".to_owned(), "7443".to_owned()),
        ]
        .into_iter()
        .collect(),
    );
    let node = &plan.nodes[0];
    let flags = kiln_manifests::flags(&plan, node, Component::KubeApiserver);
    let names: Vec<&str> = flags.iter().map(|(name, _)| name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
    assert!(flags.contains(&("secure-port".to_owned(), "7443".to_owned())));
    assert!(flags.contains(&("v".to_owned(), "2".to_owned())));
}

#[test]
fn encryption_providers() {
    use kiln_spec::EncryptionProvider;
    let key = [1u8; 32];
    let none = kiln_manifests::encryption_configuration(EncryptionProvider::None, &[(0, key)]);
    assert_eq!(none.resources[0].providers.len(), 1);
    assert!(none.resources[0].providers[0].identity.is_some());
    let secretbox =
        kiln_manifests::encryption_configuration(EncryptionProvider::Secretbox, &[(0, key)]);
    let providers = &secretbox.resources[0].providers;
    assert_eq!(providers.len(), 2);
    let keys = &providers[0]
        .secretbox
        .as_ref()
        .expect("secretbox first")
        .keys;
    assert_eq!(keys[0].name, "key1");
    assert_eq!(
        keys[0].secret,
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    );
    assert!(providers[1].identity.is_some());

    // Rotation: generations [1, 0] give key2 (encrypting) then key1 (still decrypting), each
    // its own generation's key; generation 0 keeps the name its stored values record.
    let rotating = kiln_manifests::encryption_configuration(
        EncryptionProvider::Aescbc,
        &[(1, [2u8; 32]), (0, key)],
    );
    let keys = &rotating.resources[0].providers[0]
        .aescbc
        .as_ref()
        .expect("aescbc first")
        .keys;
    let names: Vec<&str> = keys.iter().map(|key| key.name.as_str()).collect();
    assert_eq!(names, ["key2", "key1"]);
    assert_eq!(
        keys[1].secret,
        "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="
    );
    assert_ne!(keys[0].secret, keys[1].secret);
}

/// `options.encryption_key_generations` reaches the node's encryption configuration in order,
/// each generation with its own key.
#[test]
fn encryption_key_generations_render_in_order() {
    let mut plan = kiln_testkit::example_plans()["two-node"].clone();
    plan.options.encryption_key_generations = vec![3, 0];
    let node = plan.nodes[0].clone();
    let files =
        kiln_manifests::render_node(&plan, &node, &common::test_key, &common::releases(&plan))
            .expect("renders");
    let config = files
        .iter()
        .find(|file| file.path.ends_with("encryption-config.yaml"))
        .expect("an encryption configuration");
    let text = String::from_utf8_lossy(&config.contents);
    let key4 = text.find("name: key4").expect("key4");
    let key1 = text.find("name: key1").expect("key1");
    assert!(key4 < key1, "{text}");
    use base64::Engine as _;
    for generation in [3, 0] {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(common::test_key(generation));
        assert!(text.contains(&encoded), "generation {generation}: {text}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every absolute path a static pod's flags name lies under one of its mounts, and a pod
    /// that mounts a kubeconfig also mounts the PKI directory its referenced certificates
    /// are in.
    #[test]
    fn static_pods_mount_what_their_flags_name(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        for node in &plan.nodes {
            for pod in kiln_manifests::static_pods(&plan, &common::releases(&plan), node) {
                let name = pod.metadata.name.clone().unwrap_or_default();
                let container = &pod.spec.expect("a spec").containers[0];
                let mounts: Vec<String> = container
                    .volume_mounts
                    .iter()
                    .flatten()
                    .map(|mount| mount.mount_path.clone())
                    .collect();
                let covered = |path: &str| {
                    mounts.iter().any(|mount| path == mount || path.starts_with(&format!("{mount}/")))
                };
                for argument in container.command.iter().flatten().skip(1) {
                    let Some((_, value)) = argument.split_once('=') else { continue };
                    for path in value.split(',').filter(|path| path.starts_with('/')) {
                        prop_assert!(covered(path), "{}/{}: {} is not mounted", node.name, name, path);
                    }
                }
                // A kubeconfig that references its certificates needs the cluster CA's; an
                // embedding one needs nothing from the PKI directory.
                let referenced = plan.options.kubeconfig_certificates
                    == kiln_spec::KubeconfigCertificates::Referenced;
                if referenced && mounts.iter().any(|mount| mount.ends_with(".conf")) {
                    prop_assert!(covered("/etc/kubernetes/pki/ca.crt"), "{}/{}: no PKI mount", node.name, name);
                }
            }
        }
    }
}

/// A node with a kubelet that is not a worker registers tainted, by flag before 1.27 and in
/// its KubeletConfiguration from 1.27; a worker registers untainted.
#[test]
fn nodes_that_are_not_workers_register_tainted() {
    let mut tainted = 0;
    for (example, mut plan) in kiln_testkit::example_plans() {
        let nodes = plan.nodes.clone();
        for node in nodes
            .iter()
            .filter(|node| node.runs_kubelet(plan.cluster.control_plane_mode))
        {
            let expected = if node.has(Role::Worker) {
                None
            } else if node.has(Role::ControlPlane) {
                Some(kiln_manifests::CONTROL_PLANE_TAINT)
            } else {
                Some(kiln_manifests::ETCD_TAINT)
            };
            tainted += usize::from(expected.is_some());
            for minor in [20, 26, 27, 37] {
                plan.cluster.kubernetes_version.minor = minor;
                let file = kiln_manifests::kubelet_configuration(&plan, node).register_with_taints;
                let flag = kiln_manifests::flags(&plan, node, Component::Kubelet)
                    .into_iter()
                    .find(|(name, _)| name == "register-with-taints")
                    .map(|(_, value)| value);
                let origin = format!("{example}/{} at 1.{minor}", node.name);
                let wanted = expected.map(|key| format!("{key}:NoSchedule"));
                if minor < kiln_manifests::FILE_ONLY_KUBELET_SETTINGS {
                    assert_eq!(flag, wanted, "{origin}");
                    assert_eq!(file, None, "{origin}");
                } else {
                    assert_eq!(flag, None, "{origin}");
                    let in_file = file.map(|taints| {
                        taints
                            .iter()
                            .map(kiln_manifests::NodeTaint::flag_value)
                            .collect::<Vec<_>>()
                            .join(",")
                    });
                    assert_eq!(in_file, wanted, "{origin}");
                }
            }
        }
    }
    assert!(tainted >= 2, "the examples have tainted nodes: {tainted}");
}
