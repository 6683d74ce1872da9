//! kiln's systemd units: containerd, the kubelet, etcd and (in systemd mode) the control
//! plane and kube-proxy as in Kubernetes The Hard Way, and containerd's `config.toml`, all
//! rendered from a [`kiln_spec::Plan`].
//!
//! Every node that runs a kubelet also gets `kiln-pod-nat.service` ([`pod_nat_unit`]), the
//! iptables rule that masquerades pod traffic leaving the cluster's pod range (pods see each
//! other's real addresses: the CNI bridge does no NAT).
//!
//! Units are typed ([`Unit`]: `[Unit]`, `[Service]`, `[Install]` with typed directives) and
//! written by an ordered INI writer ([`Unit::to_ini`]), never by formatting text. Every
//! component's unit restarts on failure after 5 seconds and orders itself after
//! `network-online.target`; the kubelet requires containerd. Which sandboxing each component gets, and why containerd and
//! the kubelet get none, is described in [`unit()`].
//!
//! Component flags are an input ([`Flags`]); [`default_flags`] gives those of kiln-manifests'
//! version-aware flag table for the plan's Kubernetes version. containerd's configuration
//! follows the containerd release that runs beside it ([`ContainerdVersion`]).
//!
//! The crate is pure: functions take a plan and one of its nodes (the caller finds it once, with
//! [`kiln_spec::Plan::node`]) and return typed values or
//! [`RenderedFile`]s (node-relative path, bytes, mode), byte-for-byte reproducible.
//!
//! ```
//! let source = r#"
//! [cluster]
//! name = "two-node"
//! kubernetes_version = "1.20.2"
//! control_plane_mode = "systemd"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! "#;
//! let plan = kiln_spec::load(source, "two-node.toml").expect("a valid spec").plan;
//!
//! let files = kiln_units::render_node(&plan, plan.node("node1").expect("node1 is in the plan"))?;
//! let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
//! assert_eq!(
//!     paths,
//!     [
//!         "etc/containerd/config.toml",
//!         "etc/systemd/system/containerd.service",
//!         "etc/systemd/system/etcd.service",
//!         "etc/systemd/system/kiln-pod-nat.service",
//!         "etc/systemd/system/kube-apiserver.service",
//!         "etc/systemd/system/kube-controller-manager.service",
//!         "etc/systemd/system/kube-proxy.service",
//!         "etc/systemd/system/kube-scheduler.service",
//!         "etc/systemd/system/kubelet.service",
//!     ]
//! );
//!
//! // Flags are typed and replaceable; the unit is written from them.
//! let node = plan.node("node1").expect("node1");
//! let mut flags = kiln_units::default_flags(&plan, node, kiln_units::Service::Component(kiln_spec::Component::Kubelet));
//! assert_eq!(flags.get("container-runtime"), Some("remote"));
//! flags.set("v", "2");
//! let kubelet = kiln_units::unit(kiln_units::Service::Component(kiln_spec::Component::Kubelet), plan.cluster.kubernetes_version, &flags)?.to_ini();
//! assert!(kubelet.contains("Requires=containerd.service\n"));
//! assert!(kubelet.contains("ExecStart=/usr/local/bin/kubelet \\\n"));
//! assert!(kubelet.contains("\n  --kubeconfig=/etc/kubernetes/kubelet.conf \\\n"));
//! assert!(kubelet.ends_with("  --v=2\nRestart=on-failure\nRestartSec=5\n\n[Install]\nWantedBy=multi-user.target\n"));
//!
//! // containerd's configuration matches the kubelet's cgroup driver, in the file format of
//! // the containerd that runs beside the plan's Kubernetes: version 2 for containerd 1.x,
//! // version 4 for containerd 2.4 (from Kubernetes 1.36).
//! let containerd = kiln_units::ContainerdVersion::for_kubernetes(plan.cluster.kubernetes_version);
//! assert_eq!(containerd, kiln_units::ContainerdVersion::V1_6);
//! let config = kiln_units::containerd_config(containerd)?;
//! assert_eq!(config.version(), 2);
//! assert!(config.runtimes().runtimes["runc"].options.systemd_cgroup);
//! assert!(config.to_toml()?.contains("SystemdCgroup = true"));
//! let config = kiln_units::containerd_config(kiln_units::ContainerdVersion::V2_4)?;
//! assert!(config.to_toml()?.starts_with("version = 4\n"));
//! # Ok::<(), kiln_units::Error>(())
//! ```
#![forbid(unsafe_code)]

mod containerd;
mod error;
pub mod flags;
mod pod_nat;
mod services;
mod unit;

pub use containerd::{
    CNI_BIN_DIR, CNI_CONF_DIR, CONTAINERD_CONFIG, ContainerdConfig, ContainerdConfigV2,
    ContainerdConfigV3, ContainerdVersion, CriCni, CriCniV3, CriContainerd, CriImages, CriPlugin,
    CriRuntime, FIRST_KUBERNETES_MINOR_ON_CGROUP_V2, FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2,
    PACKAGE_CNI_BIN_DIR, PinnedImages, Plugins, PluginsV3, RuncOptions, Runtime, SANDBOX_IMAGE,
    cgroup_v2, containerd_config,
};
pub use error::Error;
pub use flags::{Flags, default_flags};
pub use pod_nat::{IPTABLES, POD_NAT_COMMENT, POD_NAT_UNIT, pod_nat_unit};
pub use services::{KUBE_PROXY_CAPABILITIES, SERVICES, Service, services, unit, units};
pub use unit::{
    ExecCommand, Hardening, InstallSection, KillMode, Limit, ProtectSystem, Restart,
    ServiceSection, ServiceType, Unit, UnitSection,
};

/// Mode of the files this crate renders other than units (containerd's configuration).
pub const FILE_MODE: u32 = 0o644;

/// Mode of every unit file: systemd, which reads them, runs as root, and nobody else needs
/// to read a component's command line (the CIS benchmark asks 0600 of `kubelet.service`).
pub const UNIT_MODE: u32 = 0o600;

/// Where unit files go, relative to the node's root.
pub const UNIT_DIR: &str = "etc/systemd/system";

/// One file to write (defined once, in kiln-spec, for every renderer).
pub use kiln_spec::RenderedFile;

/// Every file of `node` (one of `plan`'s nodes), sorted by path: its units with [`default_flags`], and
/// containerd's configuration where containerd runs, for the containerd that runs beside the
/// plan's Kubernetes version ([`ContainerdVersion::for_kubernetes`]).
pub fn render_node(
    plan: &kiln_spec::Plan,
    node: &kiln_spec::NodePlan,
) -> Result<Vec<RenderedFile>, Error> {
    let units = units(plan, node)?;
    let mut files: Vec<RenderedFile> = units
        .iter()
        .map(|unit| RenderedFile {
            path: format!("{UNIT_DIR}/{}", unit.name),
            contents: unit.to_ini().into_bytes(),
            mode: UNIT_MODE,
        })
        .collect();
    if units
        .iter()
        .any(|unit| unit.name == Service::Containerd.unit_name())
    {
        files.push(RenderedFile {
            path: CONTAINERD_CONFIG.trim_start_matches('/').to_owned(),
            contents: containerd_config(ContainerdVersion::for_kubernetes(
                plan.cluster.kubernetes_version,
            ))?
            .to_toml()?
            .into_bytes(),
            mode: FILE_MODE,
        });
    }
    files.sort();
    Ok(files)
}
