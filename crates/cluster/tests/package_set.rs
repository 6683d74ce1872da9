//! The package set (`packages/*.toml`) and the renderers agree on each Kubernetes version's
//! node userland: the versions built from Go modules run the set's containerd 2.x, etcd and
//! CNI plugins (where the units and containerd's configuration look for them), and the Debian
//! version runs the base OS's.

use kiln_image::packages::{PackageSet, VersionSource};
use kiln_units::{ContainerdVersion, PACKAGE_CNI_BIN_DIR, Service};

fn repository_set() -> PackageSet {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../packages");
    PackageSet::load(&dir).expect("kiln's package set parses")
}

#[test]
fn each_kubernetes_version_runs_the_userland_its_renderers_expect() {
    let set = repository_set();
    let kubernetes = set.package("kubernetes").expect("kubernetes");
    for version in &kubernetes.versions {
        let kube: kiln_spec::KubeVersion = version.version.parse().expect("a version");
        let containerd = ContainerdVersion::for_kubernetes(kube);
        match &version.source {
            VersionSource::Go { .. } => {
                let with = |name: &str| {
                    version
                        .with
                        .get(name)
                        .unwrap_or_else(|| panic!("{kube} runs with {name}"))
                };
                assert_eq!(containerd, ContainerdVersion::V2_4, "{kube}");
                assert!(with("containerd").starts_with("2.4."), "{kube}");
                assert!(with("etcd").starts_with("3."), "{kube}");
                with("cni-plugins");
                for service in [
                    Service::Containerd,
                    Service::Component(kiln_spec::Component::Etcd),
                ] {
                    let installed = set.package(service.name()).expect("declared");
                    assert_eq!(
                        service.binary(kube),
                        format!("/{}/{}", installed.install_dir, service.name()),
                        "{kube}"
                    );
                }
                let cni = set.package("cni-plugins").expect("declared");
                assert_eq!(format!("/{}", cni.install_dir), PACKAGE_CNI_BIN_DIR);
            }
            _ => {
                assert!(
                    version.with.is_empty(),
                    "{kube} takes the base OS's userland"
                );
                assert_eq!(containerd, ContainerdVersion::V1_6, "{kube}");
                assert_eq!(Service::Containerd.binary(kube), "/usr/bin/containerd");
            }
        }
    }
}

/// A static-pod control plane on a version the package set builds gets the component images
/// its static pods and kube-proxy's DaemonSet name, built from the set's programs (and for
/// kube-proxy the base OS), on exactly the nodes that run them.
#[test]
fn static_pod_nodes_carry_the_component_images_their_pods_name() {
    let set = repository_set();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text =
        std::fs::read_to_string(root.join("examples/kubeadm-bootstrap.toml")).expect("the example");
    let plan = kiln_spec::load(&text, "kubeadm-bootstrap.toml")
        .expect("loads")
        .plan;
    let wanted = plan.cluster.kubernetes_version.to_string();
    let kubernetes = set
        .version("kubernetes", &wanted)
        .expect("the set builds it");
    let releases = kiln_spec::images::Releases {
        etcd: kubernetes.with["etcd"].clone(),
        coredns: kubernetes.pods.get("coredns").cloned(),
    };
    let resolve = |pairs: &std::collections::BTreeMap<String, String>| {
        pairs
            .iter()
            .map(|(name, version)| {
                (
                    set.package(name).expect("declared").clone(),
                    set.version(name, version).expect("declared").clone(),
                )
            })
            .collect()
    };
    let userland = resolve(&kubernetes.with);
    let pod_packages = resolve(&kubernetes.pods);
    let lock_text = std::fs::read_to_string(root.join("kiln.lock")).expect("kiln.lock");
    let lock = kiln_image::lock::Lock::parse(&lock_text, "kiln.lock").expect("parses");
    let sources = kiln_image::resolve::AptSources::default();
    let inputs = kiln_cluster::ImageInputs {
        kubernetes: kiln_image::kubernetes::KubernetesSource::Go {
            package: Box::new(set.package("kubernetes").expect("declared").clone()),
            version: kubernetes.clone(),
        },
        lock: lock.clone(),
        sources: sources.clone(),
        userland,
        pod_packages,
    };
    let cluster_inputs = kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
        external_cas: Default::default(),
        releases: releases.clone(),
    };
    let cluster = kiln_cluster::cluster_graph(&plan, &cluster_inputs)
        .expect("graph")
        .with_images(&plan, &inputs)
        .expect("images");
    let graph = cluster.graph.validate().expect("valid");

    // Every node with a kubelet also carries CoreDNS's image: its Deployment may run anywhere.
    let layer = "image/layer/components/etcd+kube-apiserver+kube-controller-manager+kube-scheduler+kube-proxy+coredns";
    let proxy_layer = "image/layer/components/kube-proxy+coredns";
    let images = &cluster.artifacts.cluster["image/component-images"];
    // kube-proxy's image is picked from the base OS, so the images depend on it, and
    // CoreDNS's is the package set's CoreDNS.
    let images_inputs: Vec<&str> = graph
        .derivation(images)
        .expect("the component images")
        .inputs
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(images_inputs, ["base-os", "coredns", "etcd", "kubernetes"]);
    assert!(
        cluster
            .artifacts
            .cluster
            .contains_key("image/package/coredns")
    );
    assert!(cluster.artifacts.cluster.contains_key(layer));
    assert!(cluster.artifacts.cluster.contains_key(proxy_layer));
    let image_inputs = |node: &str| -> Vec<String> {
        let id = &cluster.artifacts.nodes[node]["image"];
        let derivation = graph.derivation(id).expect("the node's image");
        derivation
            .inputs
            .values()
            .map(|id| id.as_str().to_owned())
            .collect()
    };
    assert!(image_inputs("cp").contains(&layer.to_owned()));
    for worker in ["worker-a", "worker-b"] {
        let components: Vec<String> = image_inputs(worker)
            .into_iter()
            .filter(|input| input.starts_with("image/layer/components/"))
            .collect();
        assert_eq!(
            components,
            [proxy_layer],
            "{worker} runs kube-proxy's DaemonSet pod, may run CoreDNS, and no control-plane static pod"
        );
    }
    // Every image a static pod, the DaemonSet or the Deployment names is one the images
    // derivation builds.
    let node = plan.node("cp").expect("cp");
    let pods = kiln_manifests::static_pods(&plan, &releases, node);
    let built: Vec<String> = kiln_manifests::pod_images(&plan, &releases, node)
        .iter()
        .map(kiln_spec::images::ComponentImage::reference)
        .collect();
    assert_eq!(pods.len(), 4);
    let addons = kiln_manifests::addons(&plan, &releases).expect("addons");
    let daemon_set = addons
        .kube_proxy
        .expect("kube-proxy is a DaemonSet")
        .daemon_set;
    let deployment = addons.dns.expect("CoreDNS by default").deployment;
    let daemon_set_images = [
        daemon_set.spec.expect("spec").template,
        deployment.spec.expect("spec").template,
    ]
    .into_iter()
    .map(|template| {
        template.spec.expect("pod").containers[0]
            .image
            .clone()
            .expect("image")
    });
    let mut named: Vec<String> = pods
        .into_iter()
        .map(|pod| {
            pod.spec.expect("spec").containers[0]
                .image
                .clone()
                .expect("image")
        })
        .chain(daemon_set_images)
        .collect();
    assert_eq!(named.len(), 6);
    named.sort();
    let mut built_sorted = built.clone();
    built_sorted.sort();
    assert_eq!(named, built_sorted);

    // Kubernetes from Debian's source: its nodes run Debian's etcd and its binaries are not the
    // package set's static builds, so of these images only CoreDNS's is built, from the set's
    // CoreDNS, which the inputs must then carry.
    let locked = kiln_cluster::ImageInputs::locked(&lock, &sources);
    let error = kiln_cluster::cluster_graph(&plan, &cluster_inputs)
        .expect("graph")
        .with_images(&plan, &locked)
        .expect_err("no CoreDNS among the inputs");
    assert!(format!("{error:?}").contains("CoreDNS"), "{error:?}");
    let debian_kubernetes = set.version("kubernetes", "1.20.2").expect("declared");
    let debian_coredns = &debian_kubernetes.pods["coredns"];
    let debian_inputs = kiln_cluster::ImageInputs {
        pod_packages: vec![(
            set.package("coredns").expect("declared").clone(),
            set.version("coredns", debian_coredns)
                .expect("declared")
                .clone(),
        )],
        ..locked
    };
    let debian = kiln_cluster::cluster_graph(&plan, &cluster_inputs)
        .expect("graph")
        .with_images(&plan, &debian_inputs)
        .expect("images");
    let layers: Vec<&String> = debian
        .artifacts
        .cluster
        .keys()
        .filter(|id| id.starts_with("image/layer/components/"))
        .collect();
    assert_eq!(layers, ["image/layer/components/coredns"]);
    let debian_graph = debian.graph.validate().expect("valid");
    let debian_images_inputs: Vec<&str> = debian_graph
        .derivation(&debian.artifacts.cluster["image/component-images"])
        .expect("the component images")
        .inputs
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(debian_images_inputs, ["coredns", "kubernetes"]);
}

/// `--test-tools`: the tools disk holds kube-bench and, for a version the set has the suite
/// of, the conformance images (from the suite's programs, sample-apiserver, the node images'
/// etcd and base OS, and busybox built from source with the locked C toolchain); no node image depends on any of it; a suite of another version
/// is refused, and so are the suite and sample-apiserver one without the other.
#[test]
fn the_test_tools_are_beside_the_node_images_never_in_them() {
    let set = repository_set();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let text = std::fs::read_to_string(root.join("examples/two-node.toml")).expect("the example");
    let plan = kiln_spec::load(&text, "two-node.toml").expect("loads").plan;
    let wanted = plan.cluster.kubernetes_version.to_string();
    let kubernetes = set
        .version("kubernetes", &wanted)
        .expect("the set builds it");
    let package = |name: &str, version: &str| {
        (
            set.package(name).expect("declared").clone(),
            set.version(name, version).expect("declared").clone(),
        )
    };
    let resolve = |pairs: &std::collections::BTreeMap<String, String>| {
        pairs
            .iter()
            .map(|(name, version)| package(name, version))
            .collect::<Vec<_>>()
    };
    let lock_text = std::fs::read_to_string(root.join("kiln.lock")).expect("kiln.lock");
    let lock = kiln_image::lock::Lock::parse(&lock_text, "kiln.lock").expect("parses");
    let inputs = kiln_cluster::ImageInputs {
        kubernetes: kiln_image::kubernetes::KubernetesSource::Go {
            package: Box::new(set.package("kubernetes").expect("declared").clone()),
            version: kubernetes.clone(),
        },
        lock,
        sources: kiln_image::resolve::AptSources::default(),
        userland: resolve(&kubernetes.with),
        pod_packages: resolve(&kubernetes.pods),
    };
    let cluster_inputs = kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
        external_cas: Default::default(),
        releases: kiln_spec::images::Releases {
            etcd: kubernetes.with["etcd"].clone(),
            coredns: kubernetes.pods.get("coredns").cloned(),
        },
    };
    let with_images = kiln_cluster::cluster_graph(&plan, &cluster_inputs)
        .expect("graph")
        .with_images(&plan, &inputs)
        .expect("images");
    let (sample_apiserver, sample_apiserver_version) = kiln_image::oci::SAMPLE_APISERVER_PACKAGE;
    let tools = [
        package("kube-bench", "0.14.1"),
        package("kubernetes-e2e", &wanted),
        package(sample_apiserver, sample_apiserver_version),
    ];
    let cluster = with_images
        .clone()
        .with_test_tools(&plan, &inputs, &tools)
        .expect("the tools");
    let graph = cluster.graph.validate().expect("valid");
    let artifacts = &cluster.artifacts.cluster;
    let disk = graph
        .derivation(&artifacts[kiln_cluster::TEST_TOOLS_ARTIFACT])
        .expect("the tools disk");
    let disk_inputs: Vec<&str> = disk.inputs.keys().map(String::as_str).collect();
    assert_eq!(disk_inputs, ["conformance-images", "kube-bench"]);
    let images = graph
        .derivation(&artifacts[kiln_cluster::CONFORMANCE_IMAGES_ARTIFACT])
        .expect("the conformance images");
    let images_inputs: Vec<&str> = images.inputs.values().map(|id| id.as_str()).collect();
    assert_eq!(
        images_inputs,
        [
            "image/base-os",
            "image/busybox-source",
            "image/package/kubernetes-e2e",
            "image/package/etcd",
            "image/package/sample-apiserver",
        ]
    );
    // The conformance images' busybox is built from Debian's source with the locked C
    // toolchain; the node images' test image keeps Debian's busybox-static.
    let busybox = graph
        .derivation(&kiln_graph::DrvId::new(kiln_cluster::BUSYBOX_SOURCE_ID))
        .expect("busybox from source");
    let busybox_inputs: Vec<&str> = busybox.inputs.values().map(|id| id.as_str()).collect();
    assert_eq!(busybox_inputs, [kiln_cluster::C_TOOLCHAIN_ID]);
    assert!(
        graph
            .derivation(&kiln_graph::DrvId::new("image/busybox"))
            .is_some()
    );
    // The suite's etcd is the node images' own.
    let images_names: Vec<&str> = images.inputs.keys().map(String::as_str).collect();
    assert_eq!(
        images_names,
        ["base-os", "busybox", "e2e", "etcd", "sample-apiserver"]
    );
    assert!(artifacts.contains_key(&kiln_cluster::package_artifact("kube-bench")));
    // No node image reaches a test tool.
    for node in &plan.nodes {
        let image = &cluster.artifacts.nodes[&node.name]["image"];
        let mut stack = vec![image.clone()];
        let mut seen = std::collections::BTreeSet::new();
        while let Some(id) = stack.pop() {
            assert!(
                !id.as_str().contains("test-tools")
                    && !id.as_str().contains("kubernetes-e2e")
                    && !id.as_str().contains("kube-bench")
                    && !id.as_str().contains("conformance"),
                "{}'s image depends on {id}",
                node.name
            );
            if seen.insert(id.clone()) {
                stack.extend(
                    graph
                        .derivation(&id)
                        .expect("known")
                        .inputs
                        .values()
                        .cloned(),
                );
            }
        }
    }
    // The same node images with or without the tools.
    let without = with_images.graph.clone().validate().expect("valid");
    for node in &plan.nodes {
        let id = &cluster.artifacts.nodes[&node.name]["image"];
        assert_eq!(without.digest(id), graph.digest(id), "{}", node.name);
    }
    // A suite of another version than the cluster's is refused.
    let other = [package("kubernetes-e2e", &wanted)];
    let mut older = plan.clone();
    older.cluster.kubernetes_version = "1.36.3".parse().expect("a version");
    let error = kiln_cluster::cluster_graph(&plan, &cluster_inputs)
        .expect("graph")
        .with_images(&plan, &inputs)
        .expect("images")
        .with_test_tools(&older, &inputs, &other)
        .expect_err("another version");
    assert!(
        format!("{error}").contains("the cluster runs 1.36.3"),
        "{error}"
    );
    // The suite with a lock that has no busybox source is refused, naming the way out.
    let mut unlocked = inputs.clone();
    unlocked.lock.busybox_source = None;
    let error = with_images
        .clone()
        .with_test_tools(&plan, &unlocked, &tools)
        .expect_err("no busybox source");
    assert!(
        format!("{error}").contains("`cargo xtask lock` resolves it"),
        "{error}"
    );
    // The suite without sample-apiserver, and sample-apiserver without the suite, are refused.
    for (tools, expected) in [
        (
            vec![package("kubernetes-e2e", &wanted)],
            "the conformance images need the sample-apiserver package among the tools",
        ),
        (
            vec![package(sample_apiserver, sample_apiserver_version)],
            "sample-apiserver is the program of a conformance image: it needs the end-to-end suite (kubernetes-e2e) among the tools",
        ),
    ] {
        let error = with_images
            .clone()
            .with_test_tools(&plan, &inputs, &tools)
            .expect_err("refused");
        assert!(format!("{error}").contains(expected), "{error}");
    }
}
