//! The scenarios: each a list of steps, each step a function over a running [`Cluster`].
//!
//! Commands inside guests go through the root shell on `ttyS1` ([`crate::GuestShell`]) and use
//! only what the base OS has: `sh`, coreutils, grep, find, `socat` (plain TCP and TLS), and
//! busybox. Checks that need no guest tool (refusals by the apiserver and the kubelets) run from
//! the host with kubectl and kubeconfigs derived from kiln's.
//!
//! This module holds the scenarios' step lists; the steps live by kind: the control plane
//! (`control_plane`), the workload and its networking (`workloads`), cluster DNS (`dns`), what
//! must be refused (`refusals`), keys and encryption at rest (`secrets`), and the helpers they
//! share (`common`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kiln_spec::paths;
use serde_json::Value;

use crate::kubectl::{describe, write_forwarded_kubeconfig};
use crate::{Cluster, ClusterOptions, Error, Kubectl, Steps, wait_for};

mod bootstrap;
mod cis;
mod common;
mod conformance;
mod control_plane;
mod dns;
mod refusals;
mod secrets;
mod static_pods;
mod workloads;

use self::bootstrap::*;
pub use self::bootstrap::{
    cluster_info_signed, kube_proxy_daemonset, token_limits, workers_joined,
};
pub use self::cis::{DEVIATIONS, Deviation, cis_benchmark, deviations};
use self::common::*;
pub use self::conformance::{
    CI_SUBSET, CI_SUBSET_PROCS, Suite, SuiteOptions, SuiteReport, conformance_subset, has_suite,
    import_images, run_suite, subset_focus,
};
use self::control_plane::*;
pub use self::control_plane::{
    etcd_healthy, etcd_on_state_disk, load_balancer_health, local_apiserver_ready,
};
pub use self::dns::cluster_dns;
use self::dns::*;
pub use self::refusals::refusals;
use self::secrets::*;
pub use self::secrets::{encryption_at_rest, private_key_scan};
pub use self::static_pods::{StaticPod, static_pods, static_pods_mirrored, static_pods_restart};
pub use self::workloads::{
    Pod, deployment_spread, expose_web, logs_and_exec, nodes_ready, pod_network, service_cluster_ip,
};

/// A scenario `cargo xtask vm-test --scenario` runs: its name there is [`Scenario::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// `two-node`: nodes Ready, pods on every worker, pod and Service networking, cluster DNS,
    /// logs and exec, refusals, the private-key scan and encryption at rest; then the CI subset
    /// of upstream's conformance tests.
    TwoNode,
    /// `ha`: three controllers that are etcd members behind the load balancer, one worker
    /// running pods that resolve names through the cluster DNS; one controller stopped, then
    /// started again.
    Ha,
    /// `static-pods`: the Xen guide's shape, smaller: the control plane and a dedicated etcd
    /// node as static pods, kube-proxy as a static pod on every node; the checks of `two-node`,
    /// every static pod visible as a mirror pod, and each control-plane component restarted by
    /// its kubelet after being killed.
    StaticPods,
    /// `kubeadm`: kubeadm's shape: a static-pod control plane, two workers that join with the
    /// bootstrap token, kube-proxy as a DaemonSet; the checks of `two-node`, every static pod
    /// mirrored, the workers' certificates from approved CSRs, the token's limits and expiry,
    /// `cluster-info` signed for the token, and kube-proxy's DaemonSet on every node.
    Kubeadm,
}

impl Scenario {
    /// Every scenario, in the order `--scenario`'s error lists them.
    pub const ALL: [Scenario; 4] = [
        Scenario::TwoNode,
        Scenario::Ha,
        Scenario::StaticPods,
        Scenario::Kubeadm,
    ];

    /// The scenario's name: `two-node`, `ha`, `static-pods`, `kubeadm`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TwoNode => "two-node",
            Scenario::Ha => "ha",
            Scenario::StaticPods => "static-pods",
            Scenario::Kubeadm => "kubeadm",
        }
    }

    /// Whether the scenario runs upstream's conformance tests (`two-node` does, when the
    /// package set has the suite of its Kubernetes version): only such a scenario's cluster is
    /// built with the end-to-end suite and its images, so a change to those never reruns the
    /// others.
    pub fn runs_conformance(self) -> bool {
        match self {
            Scenario::TwoNode => true,
            Scenario::Ha | Scenario::StaticPods | Scenario::Kubeadm => false,
        }
    }
}

impl std::fmt::Display for Scenario {
    fn fmt(&self, out: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        out.write_str(self.name())
    }
}

impl std::str::FromStr for Scenario {
    type Err = String;

    /// Parses a scenario's [`Scenario::name`]; anything else is an error naming the known ones.
    fn from_str(name: &str) -> Result<Scenario, String> {
        Scenario::ALL
            .into_iter()
            .find(|scenario| scenario.name() == name)
            .ok_or_else(|| {
                let known: Vec<&str> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("no scenario {name:?}; known: {}", known.join(", "))
            })
    }
}

/// The test workload's image: busybox serving its hostname (the pod's name) on port 8080
/// (the image catalog's [`kiln_spec::images::TEST`]).
pub const TEST_IMAGE: kiln_spec::images::ContainerImage = kiln_spec::images::TEST;
/// The port [`TEST_IMAGE`] serves on.
const TEST_PORT: u16 = kiln_spec::images::TEST_PORT;

/// How long the guests may take to boot to their root shells under TCG.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long the apiserver may take to be ready after boot. Three apiservers, each with its
/// etcd member, controller manager and scheduler, starting at once under TCG on two host
/// cores took 5 to 15 minutes (the `ha` scenario): the first start creates the default RBAC
/// objects, and until then `/readyz` fails.
const API_TIMEOUT: Duration = Duration::from_secs(1500);
/// How long any one convergence (nodes Ready, pods Running, a Service answering) may take.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(480);
const POLL: Duration = Duration::from_secs(5);

/// Boots the cluster of `options`, runs `scenario` on it, and prints every step's time.
/// On failure, the last console lines of every guest are printed; with `options.keep` the
/// guests stay up either way and how to reach them is printed.
pub fn run(scenario: Scenario, options: &ClusterOptions) -> crate::Result<Steps> {
    run_with(options, |cluster, steps| match scenario {
        Scenario::TwoNode => two_node(cluster, steps),
        Scenario::Ha => ha(cluster, steps),
        Scenario::StaticPods => static_pod_cluster(cluster, steps),
        Scenario::Kubeadm => kubeadm(cluster, steps),
    })
    .map(|((), steps)| steps)
}

/// Boots the cluster of `options` and runs `body`'s steps on it, as [`run`] does a scenario's:
/// every step's time, the services' report, and on failure the guests' last console lines;
/// with `options.keep` the guests stay up and how to reach them is printed. For a run of
/// steps of its own (`cargo xtask conformance`), with what `body` returns.
pub fn run_with<T>(
    options: &ClusterOptions,
    body: impl FnOnce(&mut Cluster, &mut Steps) -> crate::Result<T>,
) -> crate::Result<(T, Steps)> {
    let mut steps = Steps::new();
    let mut cluster = steps.run("start the guests", || Cluster::start(options))?;
    eprintln!(
        "run directory {} (accelerator {:?})",
        options.run_dir.display(),
        cluster.accel
    );
    let result = body(&mut cluster, &mut steps);
    eprintln!("\nsteps:\n{}", steps.summary());
    if !matches!(result, Err(Error::Interrupted)) {
        eprintln!(
            "services (times in seconds since each guest booted):\n{}",
            cluster.service_report()
        );
    }
    if let Err(error) = &result {
        eprintln!("FAILED: {error}\n\n{}", cluster.consoles(40));
        eprintln!("logs kept in {}", options.run_dir.display());
    }
    if options.keep {
        eprintln!("\nthe guests stay up (--keep):\n{}", cluster.describe());
    }
    result.map(|value| (value, steps))
}

/// Boots the guests, waits for the API and applies the add-ons: what every scenario does first.
pub fn bring_up(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    steps.run("boot: every guest's root shell answers", || {
        cluster.wait_booted(BOOT_TIMEOUT)
    })?;
    steps.run("the apiserver is ready", || cluster.wait_api(API_TIMEOUT))?;
    steps.run(
        "bootstrap: the add-ons applied as the break-glass super-admin",
        || cluster.apply_addons(API_TIMEOUT),
    )?;
    Ok(())
}

/// The failures of a scenario's independent steps: each is kept (a run costs minutes under
/// TCG, so each run reports every failure it can) except an interruption, which ends the run.
#[derive(Default)]
struct Failures(Vec<Error>);

impl Failures {
    /// Keeps `result`'s error; `Err` only for an interruption.
    fn record<T>(&mut self, result: crate::Result<T>) -> crate::Result<Option<T>> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(Error::Interrupted) => Err(Error::Interrupted),
            Err(error) => {
                self.0.push(error);
                Ok(None)
            }
        }
    }

    /// Lists the failures if there are several, and returns the first.
    fn finish(self) -> crate::Result<()> {
        if self.0.len() > 1 {
            eprintln!("\n{} steps failed:", self.0.len());
            for failure in &self.0 {
                eprintln!("  - {}", first_line(&failure.to_string()));
            }
        }
        match self.0.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(()),
        }
    }
}

/// The checks of a running cluster that `two-node` and `static-pods` share, steps 1 to 9: nodes
/// Ready, the workload on every worker, pod and Service networking, logs and exec, cluster DNS,
/// refusals, the private-key scan and encryption at rest. A failed step does not stop the steps
/// that do not depend on it.
fn cluster_checks(
    cluster: &mut Cluster,
    steps: &mut Steps,
    failures: &mut Failures,
) -> crate::Result<()> {
    failures.record(
        steps.run("1 nodes Ready, kubelets as system:node:NAME", || {
            nodes_ready(cluster)
        }),
    )?;
    let pods = failures.record(
        steps.run("2 deployment web x4 Running on every worker", || {
            deployment_spread(cluster)
        }),
    )?;
    match pods {
        Some(pods) => {
            failures.record(steps.run("3 pod IPs reachable across nodes", || {
                pod_network(cluster, &pods)
            }))?;
            failures.record(steps.run("4 ClusterIP answers from every node", || {
                service_cluster_ip(cluster, &pods)
            }))?;
            failures
                .record(steps.run("5 kubectl logs and exec", || logs_and_exec(cluster, &pods)))?;
            if cluster_dns_rendered(cluster) {
                failures.record(steps.run("6 cluster DNS answers every node's pods", || {
                    cluster_dns(cluster, &pods)
                }))?;
            } else {
                eprintln!(
                    "    (the cluster has no DNS add-on, options.cluster_dns = \"none\": its step is skipped)"
                );
            }
        }
        None => eprintln!("    (steps 3 to 6 need the pods: skipped)"),
    }
    failures.record(steps.run("7 refusals", || refusals(cluster)))?;
    failures.record(steps.run("8 no foreign private keys on workers", || {
        private_key_scan(cluster)
    }))?;
    failures.record(steps.run("9 Secrets encrypted at rest in etcd", || {
        encryption_at_rest(cluster)
    }))?;
    Ok(())
}

/// The `two-node` scenario's steps, after the guests were started: the checks of a running
/// cluster, then the CI subset of upstream's conformance tests (when kiln's package set has
/// the suite of the cluster's version); the first failure is returned.
fn two_node(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    bring_up(cluster, steps)?;
    let mut failures = Failures::default();
    cluster_checks(cluster, steps, &mut failures)?;
    if has_suite(cluster) {
        failures.record(
            steps.run("10 conformance: the CI subset of upstream's suite", || {
                conformance_subset(cluster)
            }),
        )?;
    } else {
        eprintln!(
            "    (kiln's package set has no end-to-end suite of this Kubernetes version: the conformance step is skipped)"
        );
    }
    failures.finish()
}

/// The `static-pods` scenario's steps: every static pod mirrored, the checks of `two-node`, the
/// CIS benchmark by kube-bench on every node, and then (last, as it takes the control plane
/// down for a while) each control-plane component killed and restarted by its kubelet.
fn static_pod_cluster(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    bring_up(cluster, steps)?;
    let mut failures = Failures::default();
    let mirrored = failures.record(
        steps.run("0 every static pod runs, mirrored in the API", || {
            static_pods_mirrored(cluster)
        }),
    )?;
    cluster_checks(cluster, steps, &mut failures)?;
    failures.record(steps.run("10 CIS benchmark: kube-bench on every node", || {
        cis_benchmark(cluster)
    }))?;
    match mirrored {
        Some(restarts) => {
            failures.record(steps.run("11 killed control-plane components restart", || {
                static_pods_restart(cluster, &restarts)
            }))?;
        }
        None => eprintln!("    (step 11 needs the mirror pods: skipped)"),
    }
    failures.finish()
}

/// The `kubeadm` scenario's steps: every static pod mirrored, the checks of `two-node` (the
/// workers Ready once they joined), then the join itself: the workers' certificates, the
/// token's limits, `cluster-info`, and kube-proxy's DaemonSet; last, the CIS benchmark by
/// kube-bench on every node.
fn kubeadm(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    bring_up(cluster, steps)?;
    let mut failures = Failures::default();
    failures.record(
        steps.run("0 every static pod runs, mirrored in the API", || {
            static_pods_mirrored(cluster)
        }),
    )?;
    cluster_checks(cluster, steps, &mut failures)?;
    failures.record(steps.run(
        "10 workers joined: system:node:NAME certificates from approved CSRs",
        || workers_joined(cluster),
    ))?;
    failures.record(steps.run(
        "11 the token creates CSRs only; an expired token is refused",
        || token_limits(cluster),
    ))?;
    failures.record(
        steps.run("12 cluster-info public and signed for the token", || {
            cluster_info_signed(cluster)
        }),
    )?;
    failures.record(steps.run("13 kube-proxy's DaemonSet on every node", || {
        kube_proxy_daemonset(cluster)
    }))?;
    failures.record(steps.run("14 CIS benchmark: kube-bench on every node", || {
        cis_benchmark(cluster)
    }))?;
    failures.finish()
}

/// The `ha` scenario's steps: the cluster becomes Ready through the load balancer, its
/// workers run the `web` Deployment and its pods resolve names through the cluster DNS; with
/// the first control-plane guest stopped, the API stays available through the endpoint and etcd
/// stays healthy; started again, the member rejoins.
fn ha(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    steps.run("boot: every guest's root shell answers", || {
        cluster.wait_booted(BOOT_TIMEOUT)
    })?;
    steps.run("the apiserver is ready through the endpoint", || {
        cluster.wait_api(API_TIMEOUT)
    })?;
    steps.run("the load balancer's /healthz proxy answers ok", || {
        load_balancer_health(cluster)
    })?;
    steps.run(
        "bootstrap: the add-ons applied as the break-glass super-admin",
        || cluster.apply_addons(API_TIMEOUT),
    )?;
    steps.run("nodes Ready, kubelets as system:node:NAME", || {
        nodes_ready(cluster)
    })?;
    let pods = steps.run("deployment web x4 Running on every worker", || {
        deployment_spread(cluster)
    })?;
    // Only the workers run kube-proxy here, so the ClusterIP is not asked from every node as in
    // `cluster_checks`; the DNS step reaches the `web` Service from the workers' pods.
    steps.run("cluster DNS answers every worker's pods", || {
        expose_web(cluster)?;
        cluster_dns(cluster, &pods)
    })?;
    let members = cluster.nodes_with_role("etcd");
    steps.run("etcd healthy on every member", || {
        etcd_healthy(cluster, &members, members.len())
    })?;
    let disks = steps.run("etcd's data on every member's state disk", || {
        etcd_on_state_disk(cluster, &members)
    })?;
    let victim = cluster
        .nodes_with_role("control-plane")
        .into_iter()
        .next()
        .ok_or_else(|| Error::check("ha", "no control-plane node"))?;
    let survivors: Vec<String> = members
        .iter()
        .filter(|member| **member != victim)
        .cloned()
        .collect();
    steps.run(&format!("stop {victim}"), || cluster.stop_node(&victim))?;
    steps.run("the API stays available through the endpoint", || {
        api_available(cluster, "without-one")
    })?;
    steps.run("etcd stays healthy on the other members", || {
        etcd_healthy(cluster, &survivors, members.len())
    })?;
    steps.run(
        "the load balancer's /healthz proxy still answers ok",
        || load_balancer_health(cluster),
    )?;
    steps.run(&format!("start {victim} again"), || {
        cluster.start_node(&victim, BOOT_TIMEOUT)
    })?;
    steps.run(
        &format!("{victim} rejoins etcd with the data it kept"),
        || {
            let after = etcd_on_state_disk(cluster, std::slice::from_ref(&victim))?;
            if after.get(&victim) != disks.get(&victim) {
                return Err(Error::check(
                    "rejoin",
                    format!(
                        "{victim}'s state disk was formatted again: UUID {:?}, before {:?}",
                        after.get(&victim),
                        disks.get(&victim)
                    ),
                ));
            }
            etcd_healthy(cluster, &members, members.len())
        },
    )?;
    steps.run(&format!("{victim}'s apiserver is ready again"), || {
        local_apiserver_ready(cluster, &victim, API_TIMEOUT)
    })?;
    steps.run("the API is available with every member", || {
        api_available(cluster, "rejoined")
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::refusals::*;
    use super::*;

    #[test]
    fn reads_statuses_from_kubectl_verbose_logs() {
        assert_eq!(
            response_status(
                "I1122 14:00:00.000000 1 round_trippers.go:445] GET https://127.0.0.1:4000/api?timeout=32s 401 Unauthorized in 3 milliseconds"
            ),
            Some(401)
        );
        assert_eq!(
            response_status(
                "I1122 round_trippers.go:445] PATCH https://127.0.0.1:4000/api/v1/nodes/node1 403 Forbidden in 9 milliseconds"
            ),
            Some(403)
        );
        assert_eq!(
            response_status(
                r#"I1203 08:03:53.051930   12497 round_trippers.go:632] "Response" verb="GET" url="https://127.0.0.1:35325/api/v1/nodes/node1?timeout=30s" status="403 Forbidden" milliseconds=185"#
            ),
            Some(403)
        );
        assert_eq!(
            response_status(
                r#"I1203 round_trippers.go:527] "Request" verb="GET" url="https://127.0.0.1:35325/api" headers=<>"#
            ),
            None
        );
        assert_eq!(
            response_status("I1122 loader.go:375] Config loaded from file"),
            None
        );
    }

    #[test]
    fn http_statuses_are_read_from_the_status_line() {
        let forbidden = "HTTP/1.0 403 Forbidden\r\nContent-Length: 2\r\n\r\n{}";
        assert!(expect_http("s", "w", forbidden, 403).is_ok());
        let error = expect_http("s", "anonymous", forbidden, 401).expect_err("403 is not 401");
        assert!(error.to_string().contains("expected HTTP 401"), "{error}");
        assert!(expect_http("s", "w", "garbage", 401).is_err());
    }

    #[test]
    fn guest_scripts_are_valid_sh() {
        let key = STANDARD.encode("/registry/secrets/default/kiln-vm-test");
        for script in [
            socat_tls("GET /health", "", ETCD_MEMBER_CLIENT, false),
            socat_tls(
                "POST /v3/kv/range",
                &format!("{{\"key\":\"{key}\"}}"),
                KUBERNETES_CA_CLIENT,
                true,
            ),
        ] {
            if let Ok(dir) = std::env::var("KILN_VM_DUMP_SCRIPTS") {
                let count = std::fs::read_dir(&dir).map_or(0, |entries| entries.count());
                std::fs::write(format!("{dir}/{count}.sh"), &script).expect("dump");
            }
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &script])
                .status()
                .expect("sh runs");
            assert!(status.success(), "{script}");
        }
    }

    #[test]
    fn a_node_s_own_files_are_hashed_without_its_image() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (file, contents) in [("pki/kubelet.key", "key"), ("image/layer", "layer")] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, contents).expect("write");
        }
        let hashes = file_hashes(dir.path(), &["image"]).expect("hashes");
        // sha256("key")
        assert_eq!(
            hashes.into_iter().collect::<Vec<_>>(),
            ["2c70e12b7a0646f92279f427c7b38e7334d8e5389cff167a1dc30e73f826b683"]
        );
    }

    #[test]
    fn http_bodies_follow_the_blank_line() {
        assert_eq!(
            http_body("HTTP/1.0 200 OK\r\nContent-Length: 6\r\n\r\nweb-1\n"),
            "web-1\n"
        );
    }

    #[test]
    fn scenarios_are_parsed_by_name_and_nothing_else() {
        for scenario in Scenario::ALL {
            assert_eq!(scenario.name().parse::<Scenario>(), Ok(scenario));
            assert_eq!(scenario.to_string(), scenario.name());
        }
        let error = "three-node"
            .parse::<Scenario>()
            .expect_err("no such scenario");
        assert_eq!(
            error,
            "no scenario \"three-node\"; known: two-node, ha, static-pods, kubeadm"
        );
        assert!("Two-Node".parse::<Scenario>().is_err());
    }
}
