//! The package set (`packages/*.toml`) and the renderers agree on each Kubernetes version's
//! node userland: the versions built from Go modules run the set's containerd 2.x, etcd and
//! CNI plugins (where the units and containerd's configuration look for them), and the Debian
//! version runs the base OS's.

use kiln_image::{PackageSet, VersionSource};
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
                for service in [Service::Containerd, Service::Etcd] {
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
