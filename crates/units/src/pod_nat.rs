//! `kiln-pod-nat.service`: the masquerade rule for pod traffic that leaves the pod network.
//!
//! Kubernetes' network model has pods see each other's real addresses, so the CNI bridge does
//! not masquerade (its `ipMasq` would also rewrite traffic to other nodes' pods: it exempts only
//! the node's own pod subnet). Traffic from a pod to anything outside the cluster's pod range
//! still needs the node's address, since nothing else routes back to pod subnets; this oneshot
//! installs that one rule before containerd and the kubelet start, and removes it when stopped.

use kiln_spec::{NodePlan, Plan};

use crate::error::Error;
use crate::unit::{
    ExecCommand, Hardening, InstallSection, Restart, ServiceSection, ServiceType, Unit, UnitSection,
};

/// The pod NAT unit's file name.
pub const POD_NAT_UNIT: &str = "kiln-pod-nat.service";

/// Debian's `iptables` (package `iptables`; the nftables backend by default since Debian 11).
pub const IPTABLES: &str = "/usr/sbin/iptables";

/// The comment that marks kiln's rule in `iptables -t nat -S POSTROUTING`.
pub const POD_NAT_COMMENT: &str = "kiln pod nat";

/// The pod NAT unit of `node`, or `None` for a node without a kubelet (it has no pods).
///
/// The unit runs [`IPTABLES`] with `-t nat` on `POSTROUTING`, for the rule
/// `-s <node's pod subnet> ! -d <cluster pod_cidr> -m comment --comment "kiln pod nat"
/// -j MASQUERADE`:
///
/// - `ExecStartPre=-` deletes the rule (ignoring that it is absent) and `ExecStart=` appends
///   it, so starting again, or after a crash left the rule behind, still leaves exactly one;
/// - `ExecStop=-` deletes it, so `systemctl stop` lifts the NAT;
/// - `Type=oneshot` with `RemainAfterExit=yes` and no restart: the unit is active while the rule
///   is in, and the ordering `Before=containerd.service kubelet.service` holds because a
///   oneshot is started only once its commands have run;
/// - `-w` waits for the xtables lock that kube-proxy also takes.
///
/// Its sandbox is kube-proxy's (iptables may load netfilter modules), with `/proc/sys`
/// read-only and only `CAP_NET_ADMIN` and `CAP_NET_RAW`.
pub fn pod_nat_unit(plan: &Plan, node: &NodePlan) -> Result<Option<Unit>, Error> {
    if !node.runs_kubelet(plan.cluster.control_plane_mode) {
        return Ok(None);
    }
    let pod_subnet = node.pod_subnet.ok_or_else(|| Error::MissingPodSubnet {
        node: node.name.clone(),
    })?;
    let iptables = |operation: &str| {
        let mut arguments: Vec<String> = ["-w", "-t", "nat", operation, "POSTROUTING", "-s"]
            .map(str::to_owned)
            .to_vec();
        arguments.push(pod_subnet.to_string());
        arguments.extend(["!", "-d"].map(str::to_owned));
        arguments.push(plan.cluster.pod_cidr.to_string());
        arguments.extend(
            [
                "-m",
                "comment",
                "--comment",
                POD_NAT_COMMENT,
                "-j",
                "MASQUERADE",
            ]
            .map(str::to_owned),
        );
        ExecCommand::new(IPTABLES, arguments)
    };
    let ignoring_failure = |command: ExecCommand| ExecCommand {
        ignore_failure: true,
        ..command
    };
    let network_online = "network-online.target".to_owned();
    Ok(Some(Unit {
        name: POD_NAT_UNIT.to_owned(),
        unit: UnitSection {
            description: "kiln: masquerade pod traffic that leaves the pod network".to_owned(),
            documentation: vec![
                "https://kubernetes.io/docs/concepts/services-networking/#the-kubernetes-network-model"
                    .to_owned(),
            ],
            after: vec![network_online.clone()],
            before: vec!["containerd.service".to_owned(), "kubelet.service".to_owned()],
            wants: vec![network_online],
            requires: Vec::new(),
        },
        service: ServiceSection {
            service_type: ServiceType::Oneshot,
            exec_start_pre: vec![ignoring_failure(iptables("-D"))],
            exec_start: iptables("-A"),
            exec_stop: vec![ignoring_failure(iptables("-D"))],
            remain_after_exit: true,
            restart: Restart::No,
            restart_sec: 0,
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
            hardening: Hardening {
                protect_kernel_tunables: true,
                capabilities: Some(&["CAP_NET_ADMIN", "CAP_NET_RAW"]),
                ..crate::services::netfilter_hardening()
            },
        },
        install: InstallSection {
            wanted_by: vec!["multi-user.target".to_owned()],
        },
    }))
}
