//! Which services a node runs, and each one's unit.

use kiln_spec::{Component, ControlPlaneMode, KubeProxyMode, NodePlan, Plan, Role};

use crate::error::Error;
use crate::flags::Flags;
use crate::unit::{
    ExecCommand, Hardening, InstallSection, KillMode, Limit, ProtectSystem, Restart,
    ServiceSection, ServiceType, Unit, UnitSection,
};

/// A service kiln runs under systemd: containerd, or one of the spec's Kubernetes
/// [`Component`]s (whose names, and `options.extra_flags`, are the spec's).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    /// containerd, the container runtime (not a spec component: no `extra_flags`).
    Containerd,
    /// A Kubernetes component as a systemd service: in systemd mode etcd and the control
    /// plane (in static-pods mode they are static pods), the kubelet on every node that runs
    /// one, and kube-proxy with `options.kube_proxy = "systemd"`.
    Component(Component),
}

/// Every [`Service`], in unit-name order.
pub const SERVICES: [Service; 7] = [
    Service::Containerd,
    Service::Component(Component::Etcd),
    Service::Component(Component::KubeApiserver),
    Service::Component(Component::KubeControllerManager),
    Service::Component(Component::KubeProxy),
    Service::Component(Component::KubeScheduler),
    Service::Component(Component::Kubelet),
];

impl Service {
    /// The program's name: `containerd`, or the component's ([`Component::name`]).
    pub fn name(self) -> &'static str {
        match self {
            Self::Containerd => "containerd",
            Self::Component(component) => component.name(),
        }
    }

    /// The unit's file name: `<name>.service`.
    pub fn unit_name(self) -> String {
        format!("{}.service", self.name())
    }

    /// The program's absolute path on a node running Kubernetes `kubernetes`:
    /// `/usr/local/bin/<name>` for the Kubernetes binaries kiln builds, and for containerd and
    /// etcd from [`FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2`](crate::FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2)
    /// on (built from kiln's package set, installed with the Kubernetes binaries); before,
    /// Debian's `/usr/bin/containerd` and `/usr/bin/etcd` (packages `containerd` and
    /// `etcd-server` of the base OS).
    pub fn binary(self, kubernetes: kiln_spec::KubeVersion) -> String {
        match self {
            Self::Containerd | Self::Component(Component::Etcd)
                if kubernetes.minor < crate::FIRST_KUBERNETES_MINOR_ON_CONTAINERD_2 =>
            {
                format!("/usr/bin/{}", self.name())
            }
            _ => format!("/usr/local/bin/{}", self.name()),
        }
    }

    /// The spec's component, whose `options.extra_flags` apply (containerd has none).
    pub fn component(self) -> Option<Component> {
        match self {
            Self::Containerd => None,
            Self::Component(component) => Some(component),
        }
    }
}

/// The services `node` runs under systemd, in unit-name order:
///
/// - a node that runs a kubelet: containerd and the kubelet (in static-pods mode these are
///   its only Kubernetes units: the control plane and etcd are static pods);
/// - in systemd mode, an etcd member: etcd; a control-plane node: kube-apiserver,
///   kube-controller-manager and kube-scheduler;
/// - with `options.kube_proxy = "systemd"`, a node that runs a kubelet: kube-proxy.
pub fn services(plan: &Plan, node: &NodePlan) -> Vec<Service> {
    let systemd = plan.cluster.control_plane_mode == ControlPlaneMode::Systemd;
    let kubelet = node.runs_kubelet(plan.cluster.control_plane_mode);
    SERVICES
        .into_iter()
        .filter(|service| match service {
            Service::Containerd | Service::Component(Component::Kubelet) => kubelet,
            Service::Component(Component::Etcd) => systemd && node.has(Role::Etcd),
            Service::Component(Component::KubeApiserver)
            | Service::Component(Component::KubeControllerManager)
            | Service::Component(Component::KubeScheduler) => {
                systemd && node.has(Role::ControlPlane)
            }
            Service::Component(Component::KubeProxy) => {
                kubelet && plan.options.kube_proxy == KubeProxyMode::Systemd
            }
        })
        .collect()
}

const NETWORK_ONLINE: &str = "network-online.target";

/// What kube-proxy may hold: `CAP_NET_ADMIN` and `CAP_NET_RAW` for iptables, conntrack and its
/// sysctls under `/proc/sys/net`, and `CAP_SYS_RESOURCE` to lower its own OOM score
/// (`oomScoreAdj`).
pub const KUBE_PROXY_CAPABILITIES: &[&str] = &["CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_RESOURCE"];

/// The sandbox of a service that only programs netfilter (kube-proxy, `kiln-pod-nat`): no new
/// privileges, `/usr`, `/boot` and `/etc` read-only, no home directories, private `/tmp` and
/// devices, kernel logs, clock, host name, cgroups, namespaces, realtime scheduling, setuid files
/// and personality out of reach, the native system-call ABI only, and sockets of the families
/// iptables and the Kubernetes client use. Left open, because iptables may need them: module
/// loading (a netfilter module not yet loaded) and, for kube-proxy, `/proc/sys` (conntrack and
/// `route_localnet`). The capability bounding set is each service's own.
pub(crate) fn netfilter_hardening() -> Hardening {
    Hardening {
        no_new_privileges: true,
        protect_system: ProtectSystem::Full,
        protect_home: true,
        private_tmp: true,
        private_devices: true,
        protect_control_groups: true,
        protect_kernel_logs: true,
        protect_clock: true,
        protect_hostname: true,
        restrict_namespaces: true,
        restrict_realtime: true,
        restrict_suid_sgid: true,
        lock_personality: true,
        native_system_calls_only: true,
        address_families: &["AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"],
        ..Hardening::default()
    }
}
const DOCUMENTATION_KUBERNETES: &str = "https://kubernetes.io/docs/";

/// The unit of `service`, started with `flags` (see [`crate::flags::default_flags`]).
///
/// Hardening, per component, is what it tolerates:
///
/// - containerd and the kubelet get none. Containers inherit containerd's restrictions
///   (`NoNewPrivileges` would break setuid programs inside every container), and both need
///   the host's mount namespace: `ProtectSystem`, `ProtectHome` and `PrivateTmp` give the
///   service a private mount namespace, so volume mounts made by the kubelet would not
///   propagate to containerd's containers. Both also write `/proc/sys`, cgroups and devices.
/// - etcd, kube-apiserver, kube-controller-manager and kube-scheduler only read their
///   certificates (root-owned, so no capability is needed to read them), listen on ports above
///   1023 and talk over the network: `NoNewPrivileges`, `ProtectSystem=strict` (with
///   `StateDirectory=etcd` for etcd's data and `LogsDirectory=kubernetes` for the audit log),
///   `ProtectHome`, `PrivateTmp`, `PrivateDevices`, `PrivateMounts`, `ProtectKernelTunables`,
///   `ProtectKernelModules`, `ProtectControlGroups`, `ProtectKernelLogs`, `ProtectClock`,
///   `ProtectHostname`, `RestrictNamespaces`, `RestrictRealtime`, `RestrictSUIDSGID`,
///   `LockPersonality`, `SystemCallArchitectures=native`, an empty `CapabilityBoundingSet=`
///   and `RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK`. Left out, because
///   nothing here can run them under systemd to prove they are tolerated:
///   `MemoryDenyWriteExecute` and `SystemCallFilter`.
/// - kube-proxy writes iptables rules and conntrack sysctls under `/proc/sys`, and may load
///   netfilter modules: `NoNewPrivileges`, `ProtectSystem=full`, `ProtectHome`, `PrivateTmp`,
///   `PrivateDevices`, `ProtectControlGroups`, `ProtectKernelLogs`, `ProtectClock`,
///   `ProtectHostname`, `RestrictNamespaces`, `RestrictRealtime`, `RestrictSUIDSGID`,
///   `LockPersonality`, `SystemCallArchitectures=native`, the sealed services' address
///   families, and only [`KUBE_PROXY_CAPABILITIES`]. `ProtectKernelTunables` and
///   `ProtectKernelModules` stay off.
///
/// Every service restarts on failure after 5 seconds and starts after (and wants)
/// `network-online.target`; the kubelet also requires containerd.
pub fn unit(
    service: Service,
    kubernetes: kiln_spec::KubeVersion,
    flags: &Flags,
) -> Result<Unit, Error> {
    check_flags(service, flags)?;
    let exec_start = ExecCommand::new(service.binary(kubernetes), flags.to_arguments());
    let mut unit = Unit {
        name: service.unit_name(),
        unit: UnitSection {
            description: String::new(),
            documentation: vec![DOCUMENTATION_KUBERNETES.to_owned()],
            after: vec![NETWORK_ONLINE.to_owned()],
            before: Vec::new(),
            wants: vec![NETWORK_ONLINE.to_owned()],
            requires: Vec::new(),
        },
        service: ServiceSection {
            service_type: ServiceType::Simple,
            exec_start_pre: Vec::new(),
            exec_start,
            exec_stop: Vec::new(),
            remain_after_exit: false,
            restart: Restart::OnFailure,
            restart_sec: 5,
            delegate: false,
            kill_mode: None,
            limit_nofile: None,
            limit_nproc: None,
            limit_core: None,
            tasks_max: None,
            oom_score_adjust: None,
            state_directory: None,
            state_directory_mode: None,
            logs_directory: None,
            hardening: Hardening::default(),
        },
        install: InstallSection {
            wanted_by: vec!["multi-user.target".to_owned()],
        },
    };
    // The netfilter services' sandbox, and more: nothing on the file system writable but the
    // service's own directories, a private mount table, kernel tunables and modules out of
    // reach, and no capabilities at all. Their address families suit these too (AF_NETLINK:
    // Go's net.Interfaces, which the API server uses to choose addresses).
    let sealed = Hardening {
        protect_system: ProtectSystem::Strict,
        private_mounts: true,
        protect_kernel_tunables: true,
        protect_kernel_modules: true,
        capabilities: Some(&[]),
        ..netfilter_hardening()
    };
    let section = &mut unit.service;
    match service {
        Service::Containerd => {
            // As containerd's own unit, but restarting only on failure like every kiln unit.
            unit.unit.description = "containerd container runtime".to_owned();
            unit.unit.documentation = vec!["https://containerd.io".to_owned()];
            unit.unit.after.push("local-fs.target".to_owned());
            section.service_type = ServiceType::Notify;
            section.exec_start_pre = vec![ExecCommand {
                program: "/usr/sbin/modprobe".to_owned(),
                arguments: vec!["overlay".to_owned()],
                ignore_failure: true,
            }];
            section.delegate = true;
            section.kill_mode = Some(KillMode::Process);
            section.limit_nofile = Some(Limit::Value(1_048_576));
            section.limit_nproc = Some(Limit::Infinity);
            section.limit_core = Some(Limit::Infinity);
            section.tasks_max = Some(Limit::Infinity);
            section.oom_score_adjust = Some(-999);
        }
        Service::Component(Component::Kubelet) => {
            unit.unit.description = "Kubernetes kubelet".to_owned();
            unit.unit.after.push("containerd.service".to_owned());
            unit.unit.requires.push("containerd.service".to_owned());
        }
        Service::Component(Component::Etcd) => {
            unit.unit.description = "etcd key-value store".to_owned();
            unit.unit.documentation = vec!["https://etcd.io/docs/".to_owned()];
            section.service_type = ServiceType::Notify;
            section.limit_nofile = Some(Limit::Value(65_536));
            section.state_directory = Some("etcd".to_owned());
            section.state_directory_mode = Some(0o700);
            section.hardening = sealed;
        }
        Service::Component(Component::KubeApiserver) => {
            unit.unit.description = "Kubernetes API server".to_owned();
            section.limit_nofile = Some(Limit::Value(65_536));
            section.logs_directory = Some("kubernetes".to_owned());
            section.hardening = sealed;
        }
        Service::Component(Component::KubeControllerManager) => {
            unit.unit.description = "Kubernetes controller manager".to_owned();
            section.hardening = sealed;
        }
        Service::Component(Component::KubeScheduler) => {
            unit.unit.description = "Kubernetes scheduler".to_owned();
            section.hardening = sealed;
        }
        Service::Component(Component::KubeProxy) => {
            unit.unit.description = "Kubernetes network proxy".to_owned();
            section.hardening = Hardening {
                capabilities: Some(KUBE_PROXY_CAPABILITIES),
                ..netfilter_hardening()
            };
        }
    }
    Ok(unit)
}

/// Every unit of `node` (one of `plan`'s nodes), in unit-name order: its [`services`] with
/// [`crate::flags::default_flags`], and on a node that runs a kubelet,
/// [`pod_nat_unit`](crate::pod_nat_unit).
pub fn units(plan: &Plan, node: &NodePlan) -> Result<Vec<Unit>, Error> {
    let mut units = services(plan, node)
        .into_iter()
        .map(|service| {
            unit(
                service,
                plan.cluster.kubernetes_version,
                &crate::flags::default_flags(plan, node, service),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    units.extend(crate::pod_nat::pod_nat_unit(plan, node)?);
    units.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(units)
}

fn check_flags(service: Service, flags: &Flags) -> Result<(), Error> {
    for (name, value) in flags.pairs() {
        let reason = if name.is_empty() {
            Some("the name is empty")
        } else if name.starts_with('-') {
            Some("the name starts with '-'")
        } else if !name.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '-' | '_' | '.')
        }) {
            Some("the name has a character other than a letter, digit, '-', '_' or '.'")
        } else if value.chars().any(char::is_control) {
            Some("the value has a line break or control character")
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidFlag {
                unit: service.unit_name(),
                name: name.clone(),
                reason,
            });
        }
    }
    Ok(())
}
