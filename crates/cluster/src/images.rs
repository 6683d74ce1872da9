//! Node images: the shared inputs (base OS, initrd, Kubernetes binaries, container images),
//! the shared layers made of them, and per node a small layer of exactly that node's files plus
//! the image that stacks them.

use std::collections::BTreeMap;

use kiln_graph::{DrvId, Graph};
use kiln_image::{
    kubernetes::KubernetesSource,
    lock::Lock,
    os::layer::{LayerCopy, LayerFile, LayerSpec},
    os::node::{CgroupHierarchy, ImageLayer, NodeImageSpec, StateDisk},
    provision::ProvisionFormat,
    resolve::AptSources,
};
use kiln_spec::images::{ComponentImage, ImageProgram, Releases};
use kiln_spec::ini::{IniFile, IniSection};
use kiln_spec::{Component, NodePlan, Plan, Role};

use crate::{Artifacts, ClusterError};

/// The derivation of the base OS, which the nodes run and some images take programs from.
pub(crate) const BASE_OS_ID: &str = "image/base-os";

/// The derivation of Debian's busybox, which the test image is made of (the conformance
/// images' is built from source: [`crate::BUSYBOX_SOURCE_ID`]).
pub(crate) const BUSYBOX_ID: &str = "image/busybox";

/// What the images need besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInputs {
    /// Where the Kubernetes binaries come from.
    pub kubernetes: KubernetesSource,
    /// The inputs from Debian's archive as resolved for this build (`kiln.lock`, with what
    /// moved replaced by what the archive has now: see [`kiln_image::resolve::resolve()`]).
    pub lock: Lock,
    /// The apt sources the base OS and busybox are fetched from.
    pub sources: AptSources,
    /// The packages of kiln's package set a node runs beside Kubernetes (the version's `with`:
    /// containerd, etcd, the CNI plugins...), each built from Go modules and installed in the
    /// package layer (`bin/` to the package's install directory). Empty for Kubernetes 1.20.2,
    /// whose node takes them from Debian's base OS.
    pub userland: Vec<(
        kiln_image::packages::Package,
        kiln_image::packages::PackageVersion,
    )>,
    /// The packages of kiln's package set the cluster runs in pods only (the version's `pods`:
    /// CoreDNS), each built from Go modules for its image and installed on no node. Empty for
    /// Kubernetes 1.20.2.
    pub pod_packages: Vec<(
        kiln_image::packages::Package,
        kiln_image::packages::PackageVersion,
    )>,
}

impl ImageInputs {
    /// The inputs exactly as `lock` pins them, fetched from `sources`, with the Kubernetes
    /// binaries from the lock's Debian source package.
    pub fn locked(lock: &Lock, sources: &AptSources) -> ImageInputs {
        ImageInputs {
            kubernetes: KubernetesSource::Debian {
                lock: lock.kubernetes.clone(),
                sources: sources.clone(),
            },
            lock: lock.clone(),
            sources: sources.clone(),
            userland: Vec::new(),
            pod_packages: Vec::new(),
        }
    }
}

/// The unit that imports kiln's container images into containerd before the kubelet starts,
/// with the `ctr` of the containerd the node runs (beside its `containerd`: Debian's in
/// `/usr/bin` before Kubernetes 1.35, the package set's in `/usr/local/bin` from 1.35) and
/// [`kiln_image::oci::IMAGE_IMPORT_COMMAND`]'s arguments.
fn import_unit(kubernetes: kiln_spec::KubeVersion) -> IniFile {
    let ctr = import_program(kubernetes);
    let arguments = kiln_image::oci::IMAGE_IMPORT_COMMAND[1..].join(" ");
    // Every archive at once: a guest's vCPUs import several faster than one after another
    // (two 50 MB images on two vCPUs under TCG: 16 s together against 27 s in a row), and
    // containerd takes them concurrently. Any failure fails the unit, after every import ended.
    let exec_start = format!(
        "/bin/sh -c 'pids=; for image in /{IMAGES_DIR}/*.tar; do {ctr} {arguments} \"$image\" & pids=\"$pids $!\"; done; \
         status=0; for pid in $pids; do wait \"$pid\" || status=1; done; exit $status'"
    );
    let containerd_unit = kiln_units::Service::Containerd.unit_name();
    IniFile::new(vec![
        IniSection::new("Unit")
            .entry(
                "Description",
                "Import kiln's container images into containerd",
            )
            .entry("Documentation", "https://github.com/kiln-build/kiln")
            .entry("After", containerd_unit.as_str())
            .entry("Requires", containerd_unit.as_str())
            .entry(
                "Before",
                kiln_units::Service::Component(Component::Kubelet).unit_name(),
            ),
        IniSection::new("Service")
            .entry("Type", "oneshot")
            .entry("RemainAfterExit", "yes")
            .entry("ExecStart", exec_start),
        wanted_by(MULTI_USER),
    ])
}

/// The `ctr` the image import runs on a node running Kubernetes `kubernetes`: the one beside
/// that node's `containerd`.
fn import_program(kubernetes: kiln_spec::KubeVersion) -> String {
    let containerd = kiln_units::Service::Containerd.binary(kubernetes);
    match containerd.rsplit_once('/') {
        Some((dir, _)) => format!("{dir}/{}", kiln_image::oci::IMAGE_IMPORT_COMMAND[0]),
        None => kiln_image::oci::IMAGE_IMPORT_COMMAND[0].to_owned(),
    }
}

/// Where a node's layers put the container images' archives, relative to its root; every
/// `*.tar` there is imported into containerd before the kubelet starts.
const IMAGES_DIR: &str = "usr/share/kiln/images";

/// The unit of [`import_unit`].
const IMPORT_UNIT: &str = "kiln-images.service";

/// systemd's target for a booted node.
const MULTI_USER: &str = "multi-user.target";

/// `[Install]` with `WantedBy=target`.
fn wanted_by(target: &str) -> IniSection {
    IniSection::new("Install").entry("WantedBy", target)
}

/// The kubelet's drop-in: it waits for the images (the sandbox image above all).
fn kubelet_drop_in() -> IniFile {
    IniFile::new(vec![
        IniSection::new("Unit")
            .entry("After", IMPORT_UNIT)
            .entry("Wants", IMPORT_UNIT),
    ])
}

/// The management NIC: when the machine has a second NIC (QEMU's user networking in tests), it
/// takes an address by DHCP but no route, DNS or gateway, and the node does not wait for it.
fn management_network() -> String {
    commented(
        "The management NIC (QEMU user networking with restrict=on): an address, nothing else.",
        vec![
            IniSection::new("Match").entry("Name", "eth1"),
            IniSection::new("Link").entry("RequiredForOnline", "no"),
            IniSection::new("Network")
                .entry("DHCP", "ipv4")
                .entry("LinkLocalAddressing", "no"),
            IniSection::new("DHCPv4")
                .entry("UseRoutes", "no")
                .entry("UseDNS", "no")
                .entry("UseNTP", "no")
                .entry("UseHostname", "no"),
        ],
    )
}

/// A drop-in for the cluster interface of a node without a default route: without one, a
/// connection from the node to a Service IP fails in the route lookup, before kube-proxy's DNAT
/// could send it to a pod, so the Service range is routed onto the cluster interface.
fn service_route(service_cidr: ipnet::Ipv4Net) -> String {
    commented(
        "No default route: Service IPs go out on eth0, where kube-proxy's DNAT takes over.",
        vec![
            IniSection::new("Route")
                .entry("Destination", service_cidr)
                .entry("Scope", "link"),
        ],
    )
}

/// `sections` under a `# comment` line with no blank line between, as these two networkd files
/// have always been written ([`IniFile`]'s comments are a header with a blank line after it,
/// which would change the node layer's bytes).
fn commented(comment: &str, sections: Vec<IniSection>) -> String {
    format!("# {comment}\n{}", IniFile::new(sections).to_text())
}

/// A root shell on the second serial port, only when the kernel command line says
/// `kiln.debug-shell`: for tests and debugging, never in a plain boot.
fn debug_shell_unit() -> IniFile {
    IniFile::new(vec![
        IniSection::new("Unit")
            .entry(
                "Description",
                "kiln debug shell on ttyS1 (kernel command line: kiln.debug-shell)",
            )
            .entry("ConditionKernelCommandLine", "kiln.debug-shell")
            .entry("After", "systemd-user-sessions.service"),
        IniSection::new("Service")
            .entry("ExecStart", "/bin/sh -l")
            .entry("StandardInput", "tty")
            .entry("StandardOutput", "tty")
            .entry("StandardError", "tty")
            .entry("TTYPath", "/dev/ttyS1")
            .entry("TTYReset", "yes")
            .entry("Restart", "always")
            .entry("RestartSec", "1")
            .entry(
                "Environment",
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin TERM=dumb",
            ),
        wanted_by(MULTI_USER),
    ])
}

/// Reports on the console once the default target is reached, with the state of the node's
/// main services: what `cargo xtask run-vm` users see, and what the boot test reads.
fn boot_report_unit(services: &[&str]) -> IniFile {
    let checks: Vec<String> = services
        .iter()
        .map(|service| format!("{service}=$$(systemctl is-active {service})"))
        .collect();
    IniFile::new(vec![
            IniSection::new("Unit")
                .entry("Description", "Report on the console that the node has booted")
                .entry("After", MULTI_USER),
            IniSection::new("Service")
                .entry("Type", "oneshot")
                .entry(
                    "ExecStart",
                    format!(
                        "/bin/sh -c 'echo \"kiln-boot: $$(hostname) reached $$(systemctl get-default) {}\"'",
                        checks.join(" ")
                    ),
                )
                .entry("StandardOutput", "tty")
                .entry("TTYPath", "/dev/console"),
            wanted_by(MULTI_USER),
        ])
}

/// The udev rules of the state disk ([`StateDisk::udev_rules`]) in the node layer: after
/// systemd's `60-persistent-storage.rules`, before `99-systemd.rules` makes the link a device
/// unit.
const STATE_UDEV_RULES: &str = "etc/udev/rules.d/61-kiln-state.rules";

/// The unit of [`state_makefs_unit`].
const STATE_MAKEFS_UNIT: &str = "kiln-state-makefs.service";

/// Formats the state disk on its first use (`systemd-makefs` leaves a disk that already holds
/// a file system alone). Runs only when the kernel command line says the disk is attached.
fn state_makefs_unit(state: &StateDisk) -> IniFile {
    let device = state.device();
    let device_unit = path_unit_name(&device, "device");
    IniFile::new(vec![
        IniSection::new("Unit")
            .entry("Description", "Format the node's state disk on first use")
            .entry("DefaultDependencies", "no")
            .entry("ConditionKernelCommandLine", StateDisk::CMDLINE_FLAG)
            .entry("BindsTo", device_unit.as_str())
            .entry("After", device_unit.as_str())
            .entry(
                "Before",
                format!("{} shutdown.target", mount_unit_name(&state.mount)),
            )
            .entry("Conflicts", "shutdown.target"),
        IniSection::new("Service")
            .entry("Type", "oneshot")
            .entry("RemainAfterExit", "yes")
            .entry(
                "ExecStart",
                format!("/lib/systemd/systemd-makefs ext4 {device}"),
            ),
    ])
}

/// Mounts the state disk where the node keeps its state; before `local-fs.target`, so every
/// service starts after it.
fn state_mount_unit(state: &StateDisk) -> IniFile {
    IniFile::new(vec![
        IniSection::new("Unit")
            .entry("Description", "The node's state on its persistent disk")
            .entry("ConditionKernelCommandLine", StateDisk::CMDLINE_FLAG)
            .entry("Requires", STATE_MAKEFS_UNIT)
            .entry("After", STATE_MAKEFS_UNIT),
        IniSection::new("Mount")
            .entry("What", state.device())
            .entry("Where", state.mount.as_str())
            .entry("Type", "ext4")
            .entry("Options", "noatime"),
        wanted_by("local-fs.target"),
    ])
}

/// The mount unit's name for `path` (`/var/lib/etcd` → `var-lib-etcd.mount`).
fn mount_unit_name(path: &str) -> String {
    path_unit_name(path, "mount")
}

/// The name of the unit of type `suffix` for the absolute `path`, as `systemd-escape --path
/// --suffix=SUFFIX` gives it: `/dev/disk/by-id/virtio-kiln-state` →
/// `dev-disk-by\x2did-virtio\x2dkiln\x2dstate.device`. Only `-` needs escaping in the paths
/// kiln names (letters, digits, `-`, `_` and `/`, which the tests check against systemd's own
/// escaping).
fn path_unit_name(path: &str, suffix: &str) -> String {
    format!(
        "{}.{suffix}",
        path.trim_matches('/')
            .replace('-', "\\x2d")
            .replace('/', "-")
    )
}

/// The ids of the derivations every node image shares.
struct Shared {
    base_os: DrvId,
    initrd: DrvId,
    kubernetes: DrvId,
    kubernetes_layer: DrvId,
    images_layer: DrvId,
}

/// The package-set compiles the component images are made of, when the set has them.
struct ComponentPackages {
    etcd: Option<DrvId>,
    coredns: Option<DrvId>,
}

/// Adds the image derivations: `image/*` shared ones, and `node/<name>/layer` and
/// `node/<name>/image` per node, with the node's layer also as `node/<name>/cloud-init`
/// (user-data and meta-data) and `node/<name>/ignition` (an Ignition config).
pub(crate) fn add_images(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Plan,
    releases: &Releases,
    inputs: &ImageInputs,
) -> Result<(), ClusterError> {
    let (shared, packages) = add_shared(graph, artifacts, inputs)?;
    let component_layers = add_component_images(
        graph,
        artifacts,
        plan,
        releases,
        ComponentInputs {
            kubernetes: &shared.kubernetes,
            debian_kubernetes: matches!(inputs.kubernetes, KubernetesSource::Debian { .. }),
            etcd: packages.etcd,
            coredns: packages.coredns,
            base_os: &shared.base_os,
        },
    )?;
    for node in &plan.nodes {
        add_node_image(
            graph,
            artifacts,
            plan,
            node,
            &shared,
            component_layers.get(&node.name),
        )?;
    }
    Ok(())
}

/// Adds what every node image shares: the base OS, the initrd, the Kubernetes binaries, busybox
/// and the container images built from it, the package set's compiles, and the two shared
/// layers (the Kubernetes binaries with the userland packages; the container images).
fn add_shared(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    inputs: &ImageInputs,
) -> Result<(Shared, ComponentPackages), ClusterError> {
    let base_os = DrvId::new(BASE_OS_ID);
    graph.add(
        base_os.clone(),
        kiln_image::os::base::base_os(&inputs.lock.base_os, &inputs.sources),
    )?;
    let initrd = DrvId::new("image/initrd");
    graph.add(
        initrd.clone(),
        kiln_image::os::initrd::initrd(base_os.clone()),
    )?;
    let kubernetes = DrvId::new("image/kubernetes-binaries");
    let kubernetes_modules = DrvId::new("image/kubernetes-modules");
    let derivations =
        kiln_image::kubernetes::kubernetes_derivations(&inputs.kubernetes, &kubernetes_modules)
            .map_err(|error| ClusterError::Assembly {
                what: "the Kubernetes binaries".into(),
                message: error.to_string(),
            })?;
    if let Some(modules) = derivations.modules {
        graph.add(kubernetes_modules, modules)?;
    }
    graph.add(kubernetes.clone(), derivations.binaries)?;
    let busybox = DrvId::new(BUSYBOX_ID);
    let busybox_derivation = kiln_image::oci::busybox_static(&inputs.lock.busybox, &inputs.sources)
        .map_err(|error| ClusterError::Assembly {
            what: "busybox".into(),
            message: error.to_string(),
        })?;
    graph.add(busybox.clone(), busybox_derivation)?;
    let containers = DrvId::new("image/container-images");
    graph.add(
        containers.clone(),
        kiln_image::oci::container_images(
            busybox,
            kiln_image::os::base::IMAGE_EPOCH.unsigned_abs(),
        ),
    )?;

    // The Kubernetes binaries and the packages the node runs with them, in one layer.
    let kubernetes_layer = DrvId::new("image/layer/kubernetes");
    let mut copies = vec![LayerCopy {
        input: "kubernetes".into(),
        from: "bin".into(),
        to: "usr/local/bin".into(),
    }];
    let mut layer_inputs = vec![("kubernetes".to_owned(), kubernetes.clone())];
    let mut packages = ComponentPackages {
        etcd: None,
        coredns: None,
    };
    for (package, version) in &inputs.userland {
        let id = add_package(graph, artifacts, package, version)?;
        copies.push(LayerCopy {
            input: package.name.clone(),
            from: "bin".into(),
            to: package.install_dir.clone(),
        });
        layer_inputs.push((package.name.clone(), id.clone()));
        if package.name == kiln_image::oci::ETCD_PACKAGE {
            packages.etcd = Some(id);
        }
    }
    for (package, version) in &inputs.pod_packages {
        let id = add_package(graph, artifacts, package, version)?;
        if package.name == "coredns" {
            packages.coredns = Some(id);
        }
    }
    let spec = LayerSpec {
        copies,
        ..LayerSpec::default()
    };
    graph.add(
        kubernetes_layer.clone(),
        spec.derivation("kubernetes-layer", layer_inputs),
    )?;
    let images_layer = DrvId::new("image/layer/images");
    let spec = LayerSpec {
        copies: vec![LayerCopy {
            input: "images".into(),
            from: kiln_spec::images::ARCHIVES_DIR.into(),
            to: IMAGES_DIR.into(),
        }],
        ..LayerSpec::default()
    };
    graph.add(
        images_layer.clone(),
        spec.derivation(
            "container-images-layer",
            [("images".to_owned(), containers.clone())],
        ),
    )?;
    for (name, id) in [
        ("image/base-os", &base_os),
        ("image/initrd", &initrd),
        ("image/kubernetes-binaries", &kubernetes),
        ("image/container-images", &containers),
        ("image/layer/kubernetes", &kubernetes_layer),
        ("image/layer/images", &images_layer),
    ] {
        artifacts.cluster.insert(name.to_owned(), id.clone());
    }
    let shared = Shared {
        base_os,
        initrd,
        kubernetes,
        kubernetes_layer,
        images_layer,
    };
    Ok((shared, packages))
}

/// Adds one node's layer (also as its `cloud-init` and `ignition` provisioning data) and its
/// image: its own layer, the shared Kubernetes layer, its `components` layer if it runs static
/// pods, the container images and the base OS.
fn add_node_image(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Plan,
    node: &NodePlan,
    shared: &Shared,
    components: Option<&DrvId>,
) -> Result<(), ClusterError> {
    let node_artifacts = artifacts.nodes.entry(node.name.clone()).or_default();
    let layer_id = DrvId::new(format!("node/{}/layer", node.name));
    let mut layer_inputs = Vec::new();
    for artifact in [
        "units",
        "network",
        "manifests",
        "kubeconfigs",
        "bootstrap",
        "pki",
    ] {
        if let Some(id) = node_artifacts.get(artifact) {
            layer_inputs.push((artifact.to_owned(), id.clone()));
        }
    }
    let state = node.has(Role::Etcd).then(StateDisk::etcd);
    let layer = node_layer(plan, node, state.as_ref(), &layer_inputs);
    // The same files as provisioning data for a stock Ubuntu (cloud-init) or CoreOS
    // (Ignition) machine.
    for (artifact, format) in [
        ("cloud-init", ProvisionFormat::CloudInit),
        ("ignition", ProvisionFormat::Ignition),
    ] {
        let id = DrvId::new(format!("node/{}/{artifact}", node.name));
        graph.add(
            id.clone(),
            layer.clone().provision_derivation(
                node.name.clone(),
                format,
                format!("{}-{artifact}", node.name),
                layer_inputs.clone(),
            ),
        )?;
        node_artifacts.insert(artifact.to_owned(), id);
    }
    graph.add(
        layer_id.clone(),
        layer.derivation(format!("{}-layer", node.name), layer_inputs),
    )?;
    node_artifacts.insert("layer".to_owned(), layer_id.clone());

    let image_id = DrvId::new(format!("node/{}/image", node.name));
    let (memory_mib, cpus) = guest_size(node);
    let mut layers = vec![
        ImageLayer::own("node", "node-layer"),
        ImageLayer::shared("kubernetes", "kubernetes-layer"),
    ];
    let mut image_inputs = vec![
        ("node-layer".to_owned(), layer_id),
        (
            "kubernetes-layer".to_owned(),
            shared.kubernetes_layer.clone(),
        ),
    ];
    if let Some(components) = components {
        layers.push(ImageLayer::shared("components", "components-layer"));
        image_inputs.push(("components-layer".to_owned(), components.clone()));
    }
    layers.extend([
        ImageLayer::shared("images", "images-layer"),
        ImageLayer::shared("base", "base-os"),
    ]);
    image_inputs.extend([
        ("images-layer".to_owned(), shared.images_layer.clone()),
        ("base-os".to_owned(), shared.base_os.clone()),
        ("initrd".to_owned(), shared.initrd.clone()),
    ]);
    let spec = NodeImageSpec {
        cluster: plan.cluster.name.clone(),
        node: node.name.clone(),
        memory_mib,
        cpus,
        addresses: node.addresses.iter().map(ToString::to_string).collect(),
        roles: node
            .roles
            .iter()
            .map(|role| role_name(*role).to_owned())
            .collect(),
        layers,
        state,
        cgroups: if kiln_units::cgroup_v2(plan.cluster.kubernetes_version) {
            CgroupHierarchy::V2
        } else {
            CgroupHierarchy::V1
        },
        xen_guest: plan.options.xen_guest,
    };
    graph.add(image_id.clone(), spec.derivation(image_inputs))?;
    node_artifacts.insert("image".to_owned(), image_id);
    Ok(())
}

/// Adds package `package` at `version` of kiln's package set, built from Go modules:
/// `image/package/<name>/modules` (the module download) and `image/package/<name>` (the
/// compile), the latter also an artifact. Returns the compile's id.
pub(crate) fn add_package(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    package: &kiln_image::packages::Package,
    version: &kiln_image::packages::PackageVersion,
) -> Result<DrvId, ClusterError> {
    let id = DrvId::new(crate::package_artifact(&package.name));
    let modules = DrvId::new(format!("{id}/modules"));
    let derivations =
        kiln_image::go::go_derivations(package, version, modules.clone()).map_err(|error| {
            ClusterError::Assembly {
                what: format!("package {} {}", package.name, version.version),
                message: error.to_string(),
            }
        })?;
    graph.add(modules, derivations.modules)?;
    graph.add(id.clone(), derivations.build)?;
    artifacts.cluster.insert(id.as_str().to_owned(), id.clone());
    Ok(id)
}

/// What the component images are built from.
struct ComponentInputs<'a> {
    /// The Kubernetes binaries.
    kubernetes: &'a DrvId,
    /// Whether they are built from Debian's source package: then only CoreDNS's image is
    /// built (Debian's binaries are not static builds, and the nodes run the base OS's etcd).
    debian_kubernetes: bool,
    /// The package set's etcd; `None` for Kubernetes built from Debian's source, whose nodes
    /// run the base OS's etcd and whose binaries are not the package set's static builds.
    etcd: Option<DrvId>,
    /// The package set's CoreDNS, if the cluster's version has one.
    coredns: Option<DrvId>,
    /// The base OS, which kube-proxy's image takes iptables and conntrack from.
    base_os: &'a DrvId,
}

/// Adds `image/component-images` (every component image some node's pods run, as
/// [`kiln_manifests::pod_images`] lists them: its static pods', kube-proxy's DaemonSet's and
/// CoreDNS's, from the Kubernetes binaries, the package set's etcd and CoreDNS, and for
/// kube-proxy the base OS) and a shared layer per set of them a node needs, `image/layer/components/<component>+<component>...`, installing the archives
/// where the node's image import finds them. Returns each such node's layer.
///
/// Nothing is added for a plan with no pods of these components. For Kubernetes built from
/// Debian's source (no package-set etcd in `inputs`) only CoreDNS's image is built: its nodes
/// run Debian's etcd, and its binaries are not the package set's static builds, so there are
/// no images of its components (a static-pod control plane on it has none to run).
fn add_component_images(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Plan,
    releases: &Releases,
    inputs: ComponentInputs<'_>,
) -> Result<BTreeMap<String, DrvId>, ClusterError> {
    let mut per_node: BTreeMap<String, Vec<ComponentImage>> = BTreeMap::new();
    for node in &plan.nodes {
        let mut images = kiln_manifests::pod_images(plan, releases, node);
        if inputs.debian_kubernetes {
            images.retain(|image| image.program == ImageProgram::Coredns);
        }
        if !images.is_empty() {
            per_node.insert(node.name.clone(), images);
        }
    }
    let mut layers = BTreeMap::new();
    if per_node.is_empty() {
        return Ok(layers);
    }
    let all: Vec<ComponentImage> = per_node.values().flatten().cloned().collect();
    let images = DrvId::new("image/component-images");
    graph.add(
        images.clone(),
        kiln_image::oci::component_images(
            kiln_image::oci::ComponentImageInputs {
                kubernetes: inputs.kubernetes.clone(),
                etcd: inputs.etcd,
                coredns: inputs.coredns,
                base_os: inputs.base_os.clone(),
            },
            all,
            kiln_image::os::base::IMAGE_EPOCH.unsigned_abs(),
        )
        .map_err(|error| ClusterError::Assembly {
            what: "the component images".into(),
            message: error.to_string(),
        })?,
    )?;
    artifacts
        .cluster
        .insert("image/component-images".to_owned(), images.clone());
    let mut by_set: BTreeMap<Vec<String>, DrvId> = BTreeMap::new();
    for (node, node_images) in per_node {
        let archives: Vec<String> = node_images.iter().map(ComponentImage::archive).collect();
        if let Some(id) = by_set.get(&archives) {
            layers.insert(node, id.clone());
            continue;
        }
        let names: Vec<&str> = node_images
            .iter()
            .map(|image| image.program.name())
            .collect();
        let id = DrvId::new(format!("image/layer/components/{}", names.join("+")));
        let spec = LayerSpec {
            copies: archives
                .iter()
                .map(|archive| LayerCopy {
                    input: "images".into(),
                    from: archive.clone(),
                    // Its place below the builder's ARCHIVES_DIR is its place below IMAGES_DIR,
                    // as for the catalog's images layer.
                    to: format!(
                        "{IMAGES_DIR}{}",
                        archive
                            .strip_prefix(kiln_spec::images::ARCHIVES_DIR)
                            .unwrap_or(archive)
                    ),
                })
                .collect(),
            ..LayerSpec::default()
        };
        graph.add(
            id.clone(),
            spec.derivation(
                format!("components-layer-{}", names.join("+")),
                [("images".to_owned(), images.clone())],
            ),
        )?;
        artifacts.cluster.insert(id.as_str().to_owned(), id.clone());
        by_set.insert(archives, id.clone());
        layers.insert(node, id);
    }
    Ok(layers)
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::ControlPlane => "control-plane",
        Role::Etcd => "etcd",
        Role::Worker => "worker",
        Role::LoadBalancer => "load-balancer",
    }
}

/// Guest memory (MiB) and CPUs by role: the control plane and etcd need the most.
fn guest_size(node: &NodePlan) -> (u32, u32) {
    if node.has(Role::ControlPlane) || node.has(Role::Etcd) {
        (2048, 2)
    } else if node.has(Role::Worker) {
        (1536, 2)
    } else {
        (512, 1)
    }
}

/// The node's own layer: its rendered files (units, network, manifests, kubeconfigs and the
/// placed PKI under `etc/kubernetes/pki`), its identity ([`identity_files`]), the glue that
/// starts it all ([`glue_files`]) and the units it enables or masks ([`unit_links`]).
fn node_layer(
    plan: &Plan,
    node: &NodePlan,
    state: Option<&StateDisk>,
    inputs: &[(String, DrvId)],
) -> LayerSpec {
    let pki_dir = kiln_spec::paths::node_relative(kiln_spec::paths::PKI_DIR);
    let copies = inputs
        .iter()
        .map(|(input, _)| {
            let (from, to) = if input == "pki" {
                ("pki", pki_dir)
            } else {
                ("", "")
            };
            LayerCopy {
                input: input.clone(),
                from: from.into(),
                to: to.into(),
            }
        })
        .collect();
    let mut files = identity_files(plan, node);
    files.extend(glue_files(plan, node, state));
    let mut dirs = BTreeMap::new();
    if inputs.iter().any(|(input, _)| input == "pki") {
        dirs.insert(pki_dir.to_owned(), 0o700);
    }
    LayerSpec {
        copies,
        files,
        symlinks: unit_links(plan, node),
        dirs,
        enable_units: true,
    }
}

fn layer_file(path: &str, mode: u32, contents: String) -> LayerFile {
    LayerFile {
        path: path.into(),
        mode,
        contents,
    }
}

/// Who the node is: its host name, `/etc/hosts` and a machine id derived from the cluster's
/// and the node's names.
fn identity_files(plan: &Plan, node: &NodePlan) -> Vec<LayerFile> {
    let machine_id = kiln_store::DigestBuilder::new("kiln-machine-id")
        .str(&plan.cluster.name)
        .str(&node.name)
        .finish()
        .to_hex();
    vec![
        layer_file("etc/hostname", 0o644, format!("{}\n", node.name)),
        layer_file(
            "etc/hosts",
            0o644,
            format!(
                "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n{}\t{}\n",
                node.primary_address(),
                node.name
            ),
        ),
        layer_file("etc/machine-id", 0o444, format!("{}\n", &machine_id[..32])),
    ]
}

/// kiln's own glue: the management network and debug shell, the Service route on a node
/// without a gateway, the boot report, the image import on a kubelet node, and the state
/// disk's units.
fn glue_files(plan: &Plan, node: &NodePlan, state: Option<&StateDisk>) -> Vec<LayerFile> {
    let mut files = vec![
        layer_file(
            "etc/systemd/network/90-kiln-management.network",
            0o644,
            management_network(),
        ),
        layer_file(
            "etc/systemd/system/kiln-debug-shell.service",
            0o644,
            debug_shell_unit().to_text(),
        ),
    ];
    if node.gateway.is_none() {
        files.push(layer_file(
            "etc/systemd/network/10-kiln-eth0.network.d/50-kiln-services.conf",
            0o644,
            service_route(plan.cluster.service_cidr),
        ));
    }
    // The boot report names the node's services: kiln's units, and nginx (Debian's unit) on a
    // load balancer.
    let mut services: Vec<&str> = kiln_units::services(plan, node)
        .into_iter()
        .map(kiln_units::Service::name)
        .collect();
    if node.has(Role::LoadBalancer) {
        services.push("nginx");
    }
    files.push(layer_file(
        "etc/systemd/system/kiln-boot-report.service",
        0o644,
        boot_report_unit(&services).to_text(),
    ));
    if node.runs_kubelet(plan.cluster.control_plane_mode) {
        files.push(layer_file(
            &format!("etc/systemd/system/{IMPORT_UNIT}"),
            0o644,
            import_unit(plan.cluster.kubernetes_version).to_text(),
        ));
        files.push(layer_file(
            "etc/systemd/system/kubelet.service.d/10-kiln-images.conf",
            0o644,
            kubelet_drop_in().to_text(),
        ));
    }
    if let Some(state) = state {
        files.push(layer_file(
            &format!("etc/systemd/system/{STATE_MAKEFS_UNIT}"),
            0o644,
            state_makefs_unit(state).to_text(),
        ));
        files.push(layer_file(
            &format!("etc/systemd/system/{}", mount_unit_name(&state.mount)),
            0o644,
            state_mount_unit(state).to_text(),
        ));
        // A fresh file system's root is 0755; etcd wants its data directory private.
        files.push(layer_file(
            "etc/tmpfiles.d/kiln-state.conf",
            0o644,
            format!("d {} 0700 root root -\n", state.mount),
        ));
        // The link to the disk, whichever hypervisor attached it.
        files.push(layer_file(STATE_UDEV_RULES, 0o644, state.udev_rules()));
    }
    files
}

/// The units the node enables or masks as symbolic links: systemd-networkd and the
/// multi-user target everywhere, containerd masked where no kubelet runs, nginx on a load
/// balancer.
fn unit_links(plan: &Plan, node: &NodePlan) -> BTreeMap<String, String> {
    let mut symlinks = BTreeMap::new();
    for (link, target) in [
        // A server: no graphical target.
        (
            "etc/systemd/system/default.target",
            "/lib/systemd/system/multi-user.target",
        ),
        (
            "etc/systemd/system/multi-user.target.wants/systemd-networkd.service",
            "/lib/systemd/system/systemd-networkd.service",
        ),
        (
            "etc/systemd/system/sockets.target.wants/systemd-networkd.socket",
            "/lib/systemd/system/systemd-networkd.socket",
        ),
        (
            "etc/systemd/system/network-online.target.wants/systemd-networkd-wait-online.service",
            "/lib/systemd/system/systemd-networkd-wait-online.service",
        ),
    ] {
        symlinks.insert(link.to_owned(), target.to_owned());
    }
    if !node.runs_kubelet(plan.cluster.control_plane_mode) {
        // Debian's containerd package enables its unit, so the base OS would start a container
        // runtime on every node. A node without a kubelet has no containers to run: masked,
        // it is neither started nor startable. (A kubelet node runs kiln's containerd unit.)
        symlinks.insert(
            "etc/systemd/system/containerd.service".to_owned(),
            "/dev/null".to_owned(),
        );
    }
    if node.has(Role::LoadBalancer) {
        // The base OS leaves the package's nginx disabled; the load balancer runs it with the
        // configuration rendered for it (`etc/nginx/nginx.conf`).
        symlinks.insert(
            "etc/systemd/system/multi-user.target.wants/nginx.service".to_owned(),
            "/lib/systemd/system/nginx.service".to_owned(),
        );
    }
    symlinks
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::process::Command;

    use super::*;

    /// `systemd-escape`, the reference for unit names derived from paths.
    fn systemd_escape(suffix: &str, path: &str) -> String {
        let output = Command::new("systemd-escape")
            .args(["--path", &format!("--suffix={suffix}"), path])
            .output()
            .expect("systemd-escape (package systemd) runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout)
            .expect("utf-8")
            .trim()
            .to_owned()
    }

    #[test]
    fn state_unit_names_are_systemd_s_own() {
        let state = StateDisk::etcd();
        assert_eq!(
            mount_unit_name(&state.mount),
            systemd_escape("mount", &state.mount)
        );
        let device_unit = systemd_escape("device", &state.device());
        assert_eq!(device_unit, "dev-disk-kiln-state.device");
        let makefs = state_makefs_unit(&state).to_text();
        assert!(
            makefs.contains(&format!("BindsTo={device_unit}\n")),
            "{makefs}"
        );
        assert!(makefs.contains("Before=var-lib-etcd.mount "), "{makefs}");
    }

    /// Writes `units` into a scratch root (with stubs for the programs they run) and returns
    /// what `systemd-analyze verify` says: (success, messages).
    fn verify(units: &[(&str, String)], programs: &[&str]) -> (bool, String) {
        verify_with(units, &[], programs)
    }

    /// [`verify`], with `others` (units and drop-ins under `etc/systemd/system/`) written too but
    /// not named to `systemd-analyze verify`: what the verified units refer to.
    fn verify_with(
        units: &[(&str, String)],
        others: &[(&str, String)],
        programs: &[&str],
    ) -> (bool, String) {
        let root = tempfile::tempdir().expect("tempdir");
        let write = |path: &str, contents: &[u8], mode: u32| {
            use std::os::unix::fs::PermissionsExt;
            let path = root.path().join(path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, contents).expect("write");
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        for (name, text) in units.iter().chain(others) {
            write(
                &format!("etc/systemd/system/{name}"),
                text.as_bytes(),
                0o644,
            );
        }
        for program in programs {
            write(program, b"#!/bin/sh\nexit 0\n", 0o755);
        }
        let output = Command::new("systemd-analyze")
            .arg("verify")
            .arg(format!("--root={}", root.path().display()))
            .args(units.iter().map(|(name, _)| Path::new(name)))
            .output()
            .expect("systemd-analyze (package systemd) runs");
        let mut messages = String::from_utf8_lossy(&output.stderr).into_owned();
        messages.push_str(&String::from_utf8_lossy(&output.stdout));
        (output.status.success(), messages)
    }

    #[test]
    fn systemd_analyze_verifies_the_state_disk_units() {
        let state = StateDisk::etcd();
        let units = [
            (STATE_MAKEFS_UNIT, state_makefs_unit(&state).to_text()),
            ("var-lib-etcd.mount", state_mount_unit(&state).to_text()),
        ];
        let (success, messages) = verify(&units, &["/lib/systemd/systemd-makefs"]);
        assert!(
            success && messages.trim().is_empty(),
            "systemd-analyze verify complains:\n{messages}"
        );
        // The check can fail: a mount unit named for another path is refused.
        let misnamed = [("var-lib-other.mount", state_mount_unit(&state).to_text())];
        let (success, messages) = verify(&misnamed, &[]);
        assert!(
            !success,
            "verify accepted a misnamed mount unit: {messages}"
        );
    }

    /// The units of systemd's own that the node units order against or depend on.
    const SYSTEMD_UNITS: [&str; 6] = [
        "basic.target",
        "local-fs.target",
        "multi-user.target",
        "shutdown.target",
        "sysinit.target",
        "systemd-user-sessions.service",
    ];

    /// What the node units of Kubernetes `version` name besides themselves, as files under
    /// `etc/systemd/system/`: the kubelet's drop-in, containerd (stubbed) and systemd's own
    /// units (stubs, since `--root` hides the host's); and the programs they all run.
    fn node_unit_surroundings(
        version: kiln_spec::KubeVersion,
    ) -> (Vec<(&'static str, String)>, Vec<String>) {
        let containerd = kiln_units::Service::Containerd.binary(version);
        let kubelet = kiln_units::Service::Component(Component::Kubelet).binary(version);
        let ctr = import_program(version);
        assert!(
            ctr.starts_with('/'),
            "containerd's path is absolute: {containerd}"
        );
        let mut others = vec![
            (
                "kubelet.service.d/10-kiln-images.conf",
                kubelet_drop_in().to_text(),
            ),
            (
                "containerd.service",
                format!("[Service]\nExecStart={containerd}\n"),
            ),
        ];
        others.extend(SYSTEMD_UNITS.map(|name| {
            let service = if name.ends_with(".service") {
                "[Service]\nExecStart=/bin/sh\n"
            } else {
                ""
            };
            (
                name,
                format!("[Unit]\nDescription=stub of {name}\n{service}"),
            )
        }));
        (others, vec!["/bin/sh".into(), containerd, kubelet, ctr])
    }

    #[test]
    fn systemd_analyze_verifies_the_node_units() {
        for version in ["1.20.2", "1.37.2"] {
            let version: kiln_spec::KubeVersion = version.parse().expect("a version");
            let kubelet = kiln_units::Service::Component(Component::Kubelet).binary(version);
            let units = [
                (IMPORT_UNIT, import_unit(version).to_text()),
                ("kiln-debug-shell.service", debug_shell_unit().to_text()),
                (
                    "kiln-boot-report.service",
                    boot_report_unit(&["containerd", "kubelet"]).to_text(),
                ),
                // The kubelet, stubbed, with kiln's drop-in among the others.
                (
                    "kubelet.service",
                    format!("[Service]\nExecStart={kubelet}\n"),
                ),
            ];
            let (others, programs) = node_unit_surroundings(version);
            let programs: Vec<&str> = programs.iter().map(String::as_str).collect();
            let (success, messages) = verify_with(&units, &others, &programs);
            assert!(
                success && messages.trim().is_empty(),
                "systemd-analyze verify complains about the units for {version}:\n{messages}"
            );
        }
        // The check can fail: with everything else there, the import unit is refused when the
        // shell it runs is missing.
        let version = "1.37.2".parse().expect("a version");
        let units = [(IMPORT_UNIT, import_unit(version).to_text())];
        let (others, programs) = node_unit_surroundings(version);
        let programs: Vec<&str> = programs
            .iter()
            .map(String::as_str)
            .filter(|program| *program != "/bin/sh")
            .collect();
        let (success, messages) = verify_with(&units, &others, &programs);
        assert!(
            !success && messages.contains("/bin/sh"),
            "verify accepted a unit whose program is missing: {messages}"
        );
    }
}
