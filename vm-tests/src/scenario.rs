//! The scenarios: each a list of steps, each step a function over a running [`Cluster`].
//!
//! Commands inside guests go through the root shell on `ttyS1` ([`crate::GuestShell`]) and use
//! only what the base OS has: `sh`, coreutils, grep, find, `socat` (plain TCP and TLS), and
//! busybox. Checks that need no guest tool (refusals by the apiserver and the kubelets) run from
//! the host with kubectl and kubeconfigs derived from kiln's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use kiln_manifests::paths;
use serde_json::Value;

use crate::kubectl::{describe, write_forwarded_kubeconfig};
use crate::{Cluster, ClusterOptions, Error, Kubectl, Steps, wait_for};

/// A scenario `cargo xtask vm-test --scenario` runs: its name there is [`Scenario::name`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    /// `two-node`: nodes Ready, pods on every worker, pod and Service networking, cluster DNS,
    /// logs and exec, refusals, the private-key scan and encryption at rest.
    TwoNode,
    /// `ha`: three controllers that are etcd members behind the load balancer, one worker; one
    /// controller stopped, then started again.
    Ha,
}

impl Scenario {
    /// Every scenario, in the order `--scenario`'s error lists them.
    pub const ALL: [Scenario; 2] = [Scenario::TwoNode, Scenario::Ha];

    /// The scenario's name: `two-node`, `ha`.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::TwoNode => "two-node",
            Scenario::Ha => "ha",
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
    let mut steps = Steps::new();
    let mut cluster = steps.run("start the guests", || Cluster::start(options))?;
    eprintln!(
        "run directory {} (accelerator {:?})",
        options.run_dir.display(),
        cluster.accel
    );
    let result = match scenario {
        Scenario::TwoNode => two_node(&mut cluster, &mut steps),
        Scenario::Ha => ha(&mut cluster, &mut steps),
    };
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
    result.map(|()| steps)
}

/// The `two-node` scenario's steps, after the guests were started. A failed step does not
/// stop the steps that do not depend on it (a run costs a quarter of an hour under TCG, so
/// each run reports every failure it can); the first failure is returned.
fn two_node(cluster: &mut Cluster, steps: &mut Steps) -> crate::Result<()> {
    steps.run("boot: every guest's root shell answers", || {
        cluster.wait_booted(BOOT_TIMEOUT)
    })?;
    steps.run("the apiserver is ready", || cluster.wait_api(API_TIMEOUT))?;
    steps.run(
        "bootstrap: the add-ons applied as the break-glass super-admin",
        || cluster.apply_addons(API_TIMEOUT),
    )?;
    let mut failures: Vec<Error> = Vec::new();
    let mut record = |result: crate::Result<()>| {
        if let Err(error) = result {
            if matches!(error, Error::Interrupted) {
                return Err(error);
            }
            failures.push(error);
        }
        Ok(())
    };
    record(
        steps.run("1 nodes Ready, kubelets as system:node:NAME", || {
            nodes_ready(cluster)
        }),
    )?;
    match steps.run("2 deployment web x4 Running on every node", || {
        deployment_spread(cluster)
    }) {
        Ok(pods) => {
            record(steps.run("3 pod IPs reachable across nodes", || {
                pod_network(cluster, &pods)
            }))?;
            record(steps.run("4 ClusterIP answers from every node", || {
                service_cluster_ip(cluster, &pods)
            }))?;
            record(steps.run("5 kubectl logs and exec", || logs_and_exec(cluster, &pods)))?;
            if cluster_dns_rendered(cluster) {
                record(steps.run("5 cluster DNS answers every node's pods", || {
                    cluster_dns(cluster, &pods)
                }))?;
            } else {
                eprintln!(
                    "    (the cluster has no DNS add-on, options.cluster_dns = \"none\": its step is skipped)"
                );
            }
        }
        Err(error) => {
            eprintln!("    (steps 3 to 5 need the pods: skipped)");
            record(Err(error))?;
        }
    }
    record(steps.run("6 refusals", || refusals(cluster)))?;
    record(steps.run("6 no foreign private keys on workers", || {
        private_key_scan(cluster)
    }))?;
    record(steps.run("7 Secrets encrypted at rest in etcd", || {
        encryption_at_rest(cluster)
    }))?;
    if failures.len() > 1 {
        eprintln!("\n{} steps failed:", failures.len());
        for failure in &failures {
            eprintln!("  - {}", first_line(&failure.to_string()));
        }
    }
    match failures.into_iter().next() {
        Some(first) => Err(first),
        None => Ok(()),
    }
}

/// The `ha` scenario's steps: the cluster becomes Ready through the load balancer; with the
/// first control-plane guest stopped, the API stays available through the endpoint and etcd
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

/// Every load-balancer node's plain-HTTP health check (`http://LB/healthz`, asked from a worker
/// on the segment, as an outside health checker would) answers `200` with `ok`: nginx proxies
/// it to an API server over verified TLS, authenticated with the load balancer's own client
/// certificate (the API servers refuse anonymous requests). Retried for two minutes, since
/// nginx tries the API servers in turn.
pub fn load_balancer_health(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "load balancer /healthz";
    let balancers: Vec<(String, String)> = cluster
        .nodes
        .values()
        .filter(|node| node.image.has_role("load-balancer"))
        .filter_map(|node| {
            Some((
                node.image.node().to_owned(),
                node.image.address()?.to_owned(),
            ))
        })
        .collect();
    if balancers.is_empty() {
        return Err(Error::check(STEP, "no load-balancer node"));
    }
    let asker = cluster
        .nodes_with_role("worker")
        .into_iter()
        .next()
        .ok_or_else(|| Error::check(STEP, "no worker to ask from"))?;
    for (name, address) in balancers {
        wait_for(
            &format!("{name}'s /healthz to answer ok"),
            Duration::from_secs(120),
            POLL,
            || {
                let response = http_get(cluster, &asker, &address, 80, "/healthz")
                    .map_err(|error| error.to_string())?;
                let status = response
                    .lines()
                    .map(str::trim)
                    .find(|line| line.starts_with("HTTP/"))
                    .unwrap_or_default();
                let body = http_body(&response);
                if status.split_whitespace().nth(1) == Some("200") && body.trim() == "ok" {
                    eprintln!("    http://{address}/healthz from {asker}: {status}, {body:?}");
                    Ok(())
                } else {
                    Err(format!("{status:?}, body {:?}", body.trim()))
                }
            },
        )?;
    }
    Ok(())
}

/// Waits until the apiserver on control-plane node `node` itself reports ready, asked from the
/// node with its controller manager's kubeconfig (which names the local apiserver).
pub fn local_apiserver_ready(
    cluster: &mut Cluster,
    node: &str,
    timeout: Duration,
) -> crate::Result<()> {
    wait_for(
        &format!("{node}'s own apiserver to be ready"),
        timeout,
        POLL,
        || {
            let answer = cluster
                .shell(node)
                .and_then(|shell| {
                    shell.run(
                        "kubectl --kubeconfig /etc/kubernetes/controller-manager.conf \
                         --request-timeout=20s get --raw /readyz 2>&1",
                        Duration::from_secs(60),
                    )
                })
                .map_err(|error| error.to_string())?;
            if answer.status == 0 && answer.output.trim() == "ok" {
                Ok(())
            } else {
                Err(answer.output.trim().to_owned())
            }
        },
    )
}

/// etcd answers `{"health":"true"}` on each of `nodes` (with the healthcheck certificate) and
/// lists `expected_members` members.
pub fn etcd_healthy(
    cluster: &mut Cluster,
    nodes: &[String],
    expected_members: usize,
) -> crate::Result<()> {
    for node in nodes {
        wait_for(
            &format!("etcd on {node} to be healthy with {expected_members} members"),
            CONVERGE_TIMEOUT,
            POLL,
            || {
                let health = etcd_request(cluster, node, "GET /health", "", ETCD_HEALTHCHECK)
                    .map_err(|error| error.to_string())?;
                if !health.contains("\"health\":\"true\"") {
                    return Err(format!("health: {}", http_body(&health)));
                }
                let list = etcd_request(
                    cluster,
                    node,
                    "POST /v3/cluster/member/list",
                    "{}",
                    ETCD_HEALTHCHECK,
                )
                .map_err(|error| error.to_string())?;
                let parsed: Value = serde_json::from_str(http_body(&list).trim())
                    .map_err(|error| format!("member list {list:?}: {error}"))?;
                let names: Vec<String> = parsed["members"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|member| member["name"].as_str().map(str::to_owned))
                    .collect();
                if names.len() == expected_members {
                    eprintln!("    etcd on {node}: healthy, members {names:?}");
                    Ok(())
                } else {
                    Err(format!("members: {}", http_body(&list)))
                }
            },
        )?;
    }
    Ok(())
}

/// On each of `nodes`, etcd's data directory is the node's state disk (ext4, from the disk
/// with the state serial), and holds a member's data: what lets a restarted member rejoin.
/// Returns each node's file system UUID, which stays the same as long as the disk is not
/// formatted again.
pub fn etcd_on_state_disk(
    cluster: &mut Cluster,
    nodes: &[String],
) -> crate::Result<BTreeMap<String, String>> {
    const STEP: &str = "etcd state disk";
    let mut uuids = BTreeMap::new();
    for node in nodes {
        let output = cluster.on(
            node,
            STEP,
            "findmnt -n -o SOURCE,FSTYPE --target /var/lib/etcd; \
             readlink -f /dev/disk/by-id/virtio-kiln-state; \
             stat -c %a /var/lib/etcd; findmnt -n -o UUID --target /var/lib/etcd; \
             ls /var/lib/etcd/member",
        )?;
        let lines: Vec<&str> = output.lines().map(str::trim).collect();
        let [mount, device, mode, uuid, ..] = lines.as_slice() else {
            return Err(Error::check(
                STEP,
                format!("{node}: unexpected answer {output:?}"),
            ));
        };
        let expected = format!("{device} ext4");
        if mount.split_whitespace().collect::<Vec<_>>().join(" ") != expected {
            return Err(Error::check(
                STEP,
                format!("{node}: /var/lib/etcd is on {mount:?}, not the state disk ({expected})"),
            ));
        }
        if *mode != "700" {
            return Err(Error::check(
                STEP,
                format!("{node}: /var/lib/etcd has mode {mode}, not 700"),
            ));
        }
        if !lines.contains(&"wal") || !lines.contains(&"snap") {
            return Err(Error::check(
                STEP,
                format!(
                    "{node}: no etcd member data (wal, snap) in /var/lib/etcd/member: {output:?}"
                ),
            ));
        }
        eprintln!(
            "    {node}: /var/lib/etcd is {expected} (UUID {uuid}), mode 700, with the member's \
             wal and snap"
        );
        uuids.insert(node.clone(), (*uuid).to_owned());
    }
    Ok(uuids)
}

/// The API through the cluster endpoint serves five reads and writes in a row (the load
/// balancer may need a few failed attempts to notice a stopped apiserver).
fn api_available(cluster: &mut Cluster, label: &str) -> crate::Result<()> {
    let kubectl = cluster.kubectl.clone();
    let mut streak = 0;
    let mut attempt = 0;
    wait_for(
        "five API reads and writes in a row through the endpoint",
        Duration::from_secs(300),
        Duration::from_secs(2),
        || {
            attempt += 1;
            let name = format!("kiln-ha-{label}-{attempt}");
            let result = kubectl
                .run_once(&["get", "--raw", "/readyz"])
                .and_then(|_| kubectl.run_once(&["create", "configmap", &name]))
                .and_then(|_| kubectl.run_once(&["get", "configmap", &name, "-o", "name"]));
            match result {
                Ok(_) => {
                    streak += 1;
                    if streak >= 5 {
                        Ok(())
                    } else {
                        Err(format!("{streak} in a row"))
                    }
                }
                Err(error) => {
                    streak = 0;
                    Err(error.to_string())
                }
            }
        },
    )
}

/// A running pod of the test deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Its name (and hostname, which it serves).
    pub name: String,
    /// The node it runs on.
    pub node: String,
    /// Its pod IP.
    pub ip: String,
}

/// Step 1: every node registers and becomes Ready, and the apiserver's audit log shows each
/// kubelet updating its own Node's status as `system:node:NAME`.
pub fn nodes_ready(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "nodes Ready";
    let expected: BTreeSet<String> = cluster.nodes_with_role("worker").into_iter().collect();
    let kubectl = cluster.kubectl.clone();
    wait_for("every node Ready", CONVERGE_TIMEOUT, POLL, || {
        let nodes = kubectl
            .json(&["get", "nodes", "-o", "json"])
            .map_err(|error| error.to_string())?;
        let ready: BTreeSet<String> = items(&nodes)
            .filter(|node| condition(node, "Ready"))
            .filter_map(|node| str_at(node, &["metadata", "name"]))
            .collect();
        if expected.is_subset(&ready) {
            Ok(())
        } else {
            Err(format!(
                "Ready: {ready:?}, expected {expected:?}\n{}",
                kubectl
                    .run(&["get", "nodes", "-o", "wide"])
                    .unwrap_or_default()
            ))
        }
    })?;
    // Through a load balancer a kubelet's requests reach any apiserver: count every
    // control-plane node's audit records.
    let control_plane = cluster.nodes_with_role("control-plane");
    for node in &expected {
        let script = format!(
            "grep -F '\"username\":\"system:node:{node}\"' /var/log/kubernetes/audit.log \
             | grep -F '\"resource\":\"nodes\"' | grep -F '\"name\":\"{node}\"' \
             | grep -F '\"subresource\":\"status\"' | grep -c -F '\"code\":200' || true"
        );
        let mut count = 0_u64;
        for server in &control_plane {
            let output = cluster.on(server, STEP, &script)?;
            count += output.trim().parse::<u64>().unwrap_or(0);
        }
        if count == 0 {
            return Err(Error::check(
                STEP,
                format!(
                    "no audit record of {node}'s kubelet updating its status as system:node:{node}"
                ),
            ));
        }
        eprintln!("    {node}: {count} status updates as system:node:{node}");
    }
    Ok(())
}

/// Step 2: `kubectl create deployment web`, scaled to 4: every pod Running and Ready, on every
/// worker node.
pub fn deployment_spread(cluster: &mut Cluster) -> crate::Result<Vec<Pod>> {
    const STEP: &str = "deployment";
    let kubectl = cluster.kubectl.clone();
    kubectl.run(&[
        "create",
        "deployment",
        "web",
        &format!("--image={TEST_IMAGE}"),
    ])?;
    kubectl.run(&["scale", "deployment", "web", "--replicas=4"])?;
    let workers: BTreeSet<String> = cluster.nodes_with_role("worker").into_iter().collect();
    let pods = wait_for(
        "4 web pods Running on every node",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            let pods = web_pods(&kubectl).map_err(|error| error.to_string())?;
            let nodes: BTreeSet<String> = pods.iter().map(|pod| pod.node.clone()).collect();
            if pods.len() == 4 && nodes == workers {
                Ok(pods)
            } else {
                Err(format!(
                    "ready pods: {pods:?}\n{}",
                    kubectl
                        .run(&["get", "pods", "-o", "wide", "-l", "app=web"])
                        .unwrap_or_else(|error| error.to_string())
                ))
            }
        },
    )
    .map_err(|error| Error::check(STEP, error.to_string()))?;
    for pod in &pods {
        eprintln!("    {} on {} at {}", pod.name, pod.node, pod.ip);
    }
    Ok(pods)
}

/// The test deployment's pods that are Running and Ready.
fn web_pods(kubectl: &Kubectl) -> crate::Result<Vec<Pod>> {
    let pods = kubectl.json(&["get", "pods", "-l", "app=web", "-o", "json"])?;
    Ok(items(&pods)
        .filter(|pod| str_at(pod, &["status", "phase"]).as_deref() == Some("Running"))
        .filter(|pod| condition(pod, "Ready"))
        .filter_map(|pod| {
            Some(Pod {
                name: str_at(pod, &["metadata", "name"])?,
                node: str_at(pod, &["spec", "nodeName"])?,
                ip: str_at(pod, &["status", "podIP"])?,
            })
        })
        .collect())
}

/// Step 3: from every node, a pod on another node answers on its pod IP (the static routes
/// between pod subnets), and a pod reaches a pod on another node.
pub fn pod_network(cluster: &mut Cluster, pods: &[Pod]) -> crate::Result<()> {
    const STEP: &str = "pod network";
    let nodes: Vec<String> = cluster.nodes.keys().cloned().collect();
    for node in &nodes {
        let Some(remote) = pods.iter().find(|pod| &pod.node != node) else {
            continue;
        };
        let body = http_from_node(cluster, node, &remote.ip, TEST_PORT)?;
        if body.trim() != remote.name {
            return Err(Error::check(
                STEP,
                format!(
                    "from {node}, {}:{TEST_PORT} ({} on {}) answered {body:?}",
                    remote.ip, remote.name, remote.node
                ),
            ));
        }
        eprintln!("    {node} -> {} on {}: ok", remote.name, remote.node);
    }
    for pod in pods {
        let Some(remote) = pods.iter().find(|other| other.node != pod.node) else {
            continue;
        };
        let body = http_from_pod(&cluster.kubectl, &pod.name, &remote.ip, TEST_PORT)?;
        if body.trim() != remote.name {
            return Err(Error::check(
                STEP,
                format!(
                    "pod {} on {} got {body:?} from {} on {}",
                    pod.name, pod.node, remote.name, remote.node
                ),
            ));
        }
        eprintln!(
            "    pod {} ({}) -> pod {} ({}): ok",
            pod.name, pod.node, remote.name, remote.node
        );
        break;
    }
    Ok(())
}

/// Step 4: `kubectl expose deployment web --port=80 --target-port=8080`; the ClusterIP answers
/// with one of the pods' names from every node (kube-proxy's iptables rules).
pub fn service_cluster_ip(cluster: &mut Cluster, pods: &[Pod]) -> crate::Result<()> {
    const STEP: &str = "ClusterIP";
    cluster.kubectl.run(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        &format!("--target-port={TEST_PORT}"),
    ])?;
    let ip = cluster
        .kubectl
        .run(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?
        .trim()
        .to_owned();
    let names: BTreeSet<&str> = pods.iter().map(|pod| pod.name.as_str()).collect();
    let nodes: Vec<String> = cluster.nodes.keys().cloned().collect();
    for node in &nodes {
        let answered = wait_for(
            &format!("{ip}:80 to answer on {node}"),
            Duration::from_secs(180),
            POLL,
            || match http_from_node(cluster, node, &ip, 80) {
                Ok(body) if names.contains(body.trim()) => Ok(body.trim().to_owned()),
                Ok(body) => Err(format!("answered {body:?}")),
                Err(error) => Err(error.to_string()),
            },
        )
        .map_err(|error| Error::check(STEP, error.to_string()))?;
        eprintln!("    {node} -> {ip}:80 -> {answered}");
    }
    Ok(())
}

/// Step 5: `kubectl logs` and `kubectl exec` reach a pod on every node (the apiserver verifies
/// each kubelet's serving certificate with the cluster CA).
pub fn logs_and_exec(cluster: &mut Cluster, pods: &[Pod]) -> crate::Result<()> {
    const STEP: &str = "logs and exec";
    let mut seen = BTreeSet::new();
    for pod in pods {
        if !seen.insert(pod.node.clone()) {
            continue;
        }
        cluster
            .kubectl
            .run(&["logs", &pod.name])
            .map_err(|error| Error::check(STEP, error.to_string()))?;
        let hostname = cluster
            .kubectl
            .run(&["exec", &pod.name, "--", "hostname"])
            .map_err(|error| Error::check(STEP, error.to_string()))?;
        if hostname.trim() != pod.name {
            return Err(Error::check(
                STEP,
                format!("exec hostname in {} printed {hostname:?}", pod.name),
            ));
        }
        eprintln!("    logs and exec on {} ({}): ok", pod.name, pod.node);
    }
    Ok(())
}

/// `nslookup name` in `pod`: what it printed, whatever its exit status (it is 1 when any
/// search suffix has no answer).
fn nslookup(kubectl: &Kubectl, pod: &str, name: &str) -> Result<String, String> {
    let output = kubectl
        .output(&["exec", pod, "--", "nslookup", name])
        .map_err(|error| error.to_string())?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// The files kiln rendered at the on-node `path` (one of `kiln_manifests::paths`, such as
/// [`paths::COREDNS_ADDON`]) into the control-plane nodes' manifests, for those nodes that have
/// one.
fn control_plane_manifests(cluster: &Cluster, path: &str) -> Vec<PathBuf> {
    cluster
        .nodes_with_role("control-plane")
        .iter()
        .map(|node| {
            cluster
                .result_dir
                .join("nodes")
                .join(node)
                .join("manifests")
                .join(paths::node_relative(path))
        })
        .filter(|file| file.is_file())
        .collect()
}

/// Whether the cluster DNS forwards to upstream resolvers (its Corefile has `forward`).
fn cluster_dns_forwards(cluster: &Cluster) -> bool {
    control_plane_manifests(cluster, paths::COREDNS_ADDON)
        .iter()
        .any(|file| std::fs::read_to_string(file).is_ok_and(|text| text.contains("forward . ")))
}

/// Whether the API server runs as a static pod (kiln rendered `kube-apiserver.yaml` into a
/// control-plane node's manifest directory).
fn apiserver_is_static_pod(cluster: &Cluster) -> bool {
    !control_plane_manifests(
        cluster,
        &paths::static_pod_manifest(kiln_spec::Component::KubeApiserver.name()),
    )
    .is_empty()
}

/// Whether kiln rendered the cluster DNS add-on (`coredns.yaml` among a control-plane node's
/// add-ons), which it does unless the spec says `options.cluster_dns = "none"` or its
/// Kubernetes predates CoreDNS's EndpointSlices (1.20).
fn cluster_dns_rendered(cluster: &Cluster) -> bool {
    !control_plane_manifests(cluster, paths::COREDNS_ADDON).is_empty()
}

/// Step 5, DNS: CoreDNS becomes ready (its `ready` plugin answers once it has synced with the
/// API), and from a pod on every node, whose `/etc/resolv.conf` the kubelet points at the
/// `kube-dns` Service with the cluster's search path, busybox's `nslookup` (its own resolver,
/// reading that file) resolves the `web` Service's full and short names and the API's
/// `kubernetes` Service's name to their ClusterIPs: the kubelets' `clusterDNS`, kube-proxy's
/// rules for the DNS Service, CoreDNS's image, its RBAC and its `kubernetes` plugin together.
/// A name outside the cluster is refused (REFUSED, not a timeout) unless the spec names
/// upstream resolvers.
pub fn cluster_dns(cluster: &mut Cluster, pods: &[Pod]) -> crate::Result<()> {
    const STEP: &str = "cluster DNS";
    let kubectl = cluster.kubectl.clone();
    let ready = wait_for("CoreDNS to be ready", CONVERGE_TIMEOUT, POLL, || {
        let ready = kubectl
            .run(&[
                "-n",
                "kube-system",
                "get",
                "deployment",
                "coredns",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ])
            .map_err(|error| error.to_string())?;
        match ready.trim().parse::<u32>() {
            Ok(count) if count > 0 => Ok(count),
            _ => Err(format!(
                "no CoreDNS replica is ready:\n{}",
                kubectl
                    .run(&[
                        "-n",
                        "kube-system",
                        "get",
                        "pods",
                        "-o",
                        "wide",
                        "-l",
                        "k8s-app=kube-dns"
                    ])
                    .unwrap_or_else(|error| error.to_string())
            )),
        }
    })
    .map_err(|error| Error::check(STEP, error.to_string()))?;
    eprintln!("    CoreDNS: {ready} replica(s) ready");
    let service_ip = |namespace: &str, name: &str| -> crate::Result<String> {
        Ok(kubectl
            .run(&[
                "-n",
                namespace,
                "get",
                "service",
                name,
                "-o",
                "jsonpath={.spec.clusterIP}",
            ])?
            .trim()
            .to_owned())
    };
    let dns_ip = service_ip("kube-system", "kube-dns")?;
    let web_ip = service_ip("default", "web")?;
    let api_ip = service_ip("default", "kubernetes")?;
    let mut seen = BTreeSet::new();
    for pod in pods {
        if !seen.insert(pod.node.clone()) {
            continue;
        }
        let resolv = kubectl.run(&["exec", &pod.name, "--", "cat", "/etc/resolv.conf"])?;
        if !resolv
            .lines()
            .any(|line| line.split_whitespace().eq(["nameserver", dns_ip.as_str()]))
        {
            return Err(Error::check(
                STEP,
                format!(
                    "{}'s /etc/resolv.conf does not name kube-dns ({dns_ip}):\n{resolv}",
                    pod.name
                ),
            ));
        }
        let Some(domain) = resolv
            .lines()
            .filter_map(|line| line.strip_prefix("search "))
            .flat_map(str::split_whitespace)
            .find_map(|search| search.strip_prefix("default.svc."))
            .map(str::to_owned)
        else {
            return Err(Error::check(
                STEP,
                format!(
                    "{}'s /etc/resolv.conf has no default.svc.<domain> search:\n{resolv}",
                    pod.name
                ),
            ));
        };
        // The Service's full name, the API's, and the Service by its short name through the
        // search path (busybox's nslookup tries every search suffix and prints each answer, so
        // it exits 1 when any suffix has none: the answer is what is checked).
        for (name, ip) in [
            (format!("web.default.svc.{domain}"), &web_ip),
            (format!("kubernetes.default.svc.{domain}"), &api_ip),
            ("web".to_owned(), &web_ip),
        ] {
            let answer = wait_for(
                &format!("{name} to resolve in {}", pod.name),
                Duration::from_secs(120),
                POLL,
                || {
                    let output = nslookup(&kubectl, &pod.name, &name)?;
                    if output
                        .lines()
                        .any(|line| line.trim() == format!("Address: {ip}"))
                    {
                        Ok(output)
                    } else {
                        Err(format!("nslookup {name} printed:\n{output}"))
                    }
                },
            )
            .map_err(|error| Error::check(STEP, error.to_string()))?;
            let server = answer
                .lines()
                .find_map(|line| line.strip_prefix("Server:"))
                .map(str::trim)
                .unwrap_or("?");
            eprintln!(
                "    {} ({}): {name} -> {ip} (server {server})",
                pod.name, pod.node
            );
        }
        // A name outside the cluster, with no upstream resolvers in the spec: CoreDNS refuses it
        // (an answer, not a timeout). A lookup that times out is asked again: UDP through the
        // Service's DNAT loses a query now and then under TCG (the A and AAAA queries race in
        // conntrack), which is the network's doing, not CoreDNS's.
        let outside = "kiln-vm-test.example";
        let refused = wait_for(
            &format!("{outside} to be refused in {}", pod.name),
            Duration::from_secs(60),
            POLL,
            || {
                let output = nslookup(&kubectl, &pod.name, outside)?;
                if output.contains(&format!("can't find {outside}: REFUSED")) {
                    Ok(())
                } else {
                    Err(format!("nslookup {outside} printed:\n{output}"))
                }
            },
        );
        match refused {
            Ok(()) => eprintln!("    {} ({}): {outside} refused", pod.name, pod.node),
            Err(error) if cluster_dns_forwards(cluster) => eprintln!(
                "    {} ({}): {outside} not refused, as the spec forwards to upstream resolvers: {}",
                pod.name,
                pod.node,
                first_line(&error.to_string())
            ),
            Err(error) => return Err(Error::check(STEP, error.to_string())),
        }
    }
    Ok(())
}

/// Step 6: requests that must fail, each for the right reason.
pub fn refusals(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "refusals";
    let admin = admin_json(cluster)?;
    // Every refusal is checked; all that fail are reported together.
    let mut problems: Vec<String> = Vec::new();

    // An anonymous request to the apiserver: 401. (kubectl cannot send one: without
    // credentials kubectl 1.20 asks for a user name, so openssl sends it, verifying the server.)
    let ca = cluster.run_dir.join("kubernetes-ca.crt");
    let ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .and_then(|data| STANDARD.decode(data).ok())
        .ok_or_else(|| Error::check(STEP, "the admin kubeconfig embeds no CA"))?;
    std::fs::write(&ca, ca_data)
        .map_err(|error| Error::io(format!("writing {}", ca.display()), error))?;
    let api_name = admin["clusters"][0]["cluster"]["tls-server-name"]
        .as_str()
        .unwrap_or("kubernetes")
        .to_owned();
    let response = anonymous_get(&ca, cluster.api.1, &api_name, "/api")?;
    if apiserver_is_static_pod(cluster) {
        // A static-pod API server keeps anonymous authentication for the kubelet's
        // unauthenticated probes of /livez (as kubeadm's does): anonymous requests are then
        // refused by RBAC (403, as system:anonymous), and /livez answers them.
        note(
            &mut problems,
            expect_http(
                STEP,
                "an anonymous request to the static-pod apiserver",
                &response,
                403,
            ),
        );
        if !response.contains("system:anonymous") {
            problems.push(format!(
                "the anonymous request's 403 does not name system:anonymous:\n{response}"
            ));
        }
        let livez = anonymous_get(&ca, cluster.api.1, &api_name, "/livez")?;
        note(
            &mut problems,
            expect_http(
                STEP,
                "an anonymous /livez (the kubelet's probe)",
                &livez,
                200,
            ),
        );
    } else {
        note(
            &mut problems,
            expect_http(
                STEP,
                "an anonymous request to the apiserver",
                &response,
                401,
            ),
        );
    }

    // The kubelet API without a client certificate: 401, over a verified TLS connection.
    for name in cluster.nodes_with_role("worker") {
        let port = cluster.host_port(&name, 10250)?;
        let response = anonymous_get(&ca, port, &name, "/pods")?;
        note(
            &mut problems,
            expect_http(
                STEP,
                &format!("{name}'s kubelet API without a client certificate"),
                &response,
                401,
            ),
        );
    }

    // Another node's kubelet credentials modifying a Node object: 403 (NodeRestriction).
    let workers = cluster.nodes_with_role("worker");
    if let [first, .., last] = workers.as_slice() {
        let kubelet_conf = find_file(
            &cluster
                .result_dir
                .join("nodes")
                .join(last)
                .join("kubeconfigs"),
            "kubelet.conf",
        )
        .ok_or_else(|| Error::check(STEP, format!("no kubelet.conf in {last}'s result")))?;
        let kubelet_conf = kubeconfig_on_host(cluster, last, &kubelet_conf)?;
        let target = cluster.run_dir.join(format!("kubelet-{last}.kubeconfig"));
        write_forwarded_kubeconfig(
            &cluster.kubectl.program,
            &kubelet_conf,
            cluster.api.1,
            &target,
        )?;
        let as_node = Kubectl::new(&cluster.kubectl.program, &target);
        let output = as_node.output(&[
            "label",
            "node",
            first,
            "kiln.test/tampered=true",
            "--overwrite",
            "-v=6",
        ])?;
        note(
            &mut problems,
            expect_status(
                STEP,
                &format!("{last}'s kubelet credentials labelling Node {first}"),
                &output,
                403,
            ),
        );
        // The same credentials do reach the apiserver: the refusal is authorization.
        as_node
            .run(&["get", "node", last])
            .map_err(|error| Error::check(STEP, error.to_string()))?;
    }

    // The admin kubeconfig with its CA replaced by another CA: TLS verification fails.
    let other_ca = other_ca(&cluster.result_dir)?;
    let mut wrong_ca = admin.clone();
    for entry in array_mut(&mut wrong_ca, "clusters") {
        entry["cluster"]["certificate-authority-data"] = Value::String(STANDARD.encode(&other_ca));
    }
    let output = kubectl_with(
        cluster,
        "admin-other-ca",
        &wrong_ca,
        &["get", "--raw", "/api"],
    )?;
    let text = describe(&output);
    if output.status.success() || !text.contains("x509") {
        problems.push(format!(
            "the admin kubeconfig with another CA was not refused by TLS: {text}"
        ));
    } else {
        let reason = text
            .lines()
            .find(|line| line.contains("x509"))
            .unwrap_or_default();
        eprintln!("    admin kubeconfig with another CA: refused ({reason})");
    }

    // A certificate issued by the Kubernetes CA, presented to etcd: the handshake is refused.
    // The healthcheck client certificate is the control: same connection, etcd's CA, accepted.
    for node in cluster.nodes_with_role("etcd") {
        let health = etcd_request(cluster, &node, "GET /health", "", ETCD_HEALTHCHECK)?;
        if !health.contains("\"health\":\"true\"") {
            return Err(Error::check(
                STEP,
                format!("etcd on {node} with the healthcheck certificate answered {health:?}"),
            ));
        }
        let refused = cluster.shell(&node)?.run(
            &socat_tls("GET /health", "", KUBERNETES_CA_CLIENT, true),
            Duration::from_secs(60),
        )?;
        // etcd's certificate is trusted (so this is etcd), then etcd drops the connection
        // instead of answering: no HTTP response arrives. Under TLS 1.2 socat reports the
        // handshake's SSL error; under TLS 1.3 the client's side of the handshake completes
        // before etcd checks the client certificate, and etcd closes the connection (socat sees
        // EOF on the TLS socket) where a trusted client gets its `/health` answer.
        let tls_error = refused.output.lines().any(|line| {
            line.contains(" E SSL")
                || line.contains("alert")
                || (line.contains("socket 2 (fd") && line.ends_with("is at EOF"))
        });
        if refused.output.contains("HTTP/1")
            || !tls_error
            || !refused.output.contains("trusting certificate")
        {
            problems.push(format!(
                "etcd on {node} answered a Kubernetes-CA certificate: {}",
                refused.output
            ));
            continue;
        }
        let reason = refused
            .output
            .lines()
            .find(|line| line.contains(" E "))
            .unwrap_or("");
        eprintln!("    etcd on {node}, Kubernetes-CA client certificate: refused ({reason})");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::check(
            STEP,
            format!(
                "{} refusal(s) missing:\n{}",
                problems.len(),
                problems.join("\n")
            ),
        ))
    }
}

/// `kubeconfig`, a kubeconfig kiln built for `node`, as kubectl on this machine can read it:
/// each certificate or key it names by its path on the node, in the node's PKI directory
/// (`options.kubeconfig_certificates = "referenced"`), is named by that file in the node's
/// `pki` output instead. A kubeconfig that embeds everything is returned as it is.
fn kubeconfig_on_host(cluster: &Cluster, node: &str, kubeconfig: &Path) -> crate::Result<PathBuf> {
    const STEP: &str = "refusals";
    let mut config = Kubectl::new(&cluster.kubectl.program, kubeconfig)
        .json(&["config", "view", "--raw", "-o", "json"])?;
    let pki_output = cluster.result_dir.join("nodes").join(node).join("pki");
    let node_pki = Path::new(paths::PKI_DIR);
    let mut mapped = 0;
    for (list, item, fields) in [
        ("clusters", "cluster", &["certificate-authority"][..]),
        ("users", "user", &["client-certificate", "client-key"][..]),
    ] {
        for entry in array_mut(&mut config, list) {
            for field in fields {
                let Some(on_node) = entry[item][*field].as_str().map(PathBuf::from) else {
                    continue;
                };
                let Ok(relative) = on_node.strip_prefix(node_pki) else {
                    return Err(Error::check(
                        STEP,
                        format!(
                            "{}: {field} {} is outside the node's PKI directory {}",
                            kubeconfig.display(),
                            on_node.display(),
                            node_pki.display()
                        ),
                    ));
                };
                let on_host = relative
                    .file_name()
                    .and_then(|name| find_file(&pki_output, &name.to_string_lossy()))
                    .filter(|found| found.ends_with(relative))
                    .ok_or_else(|| {
                        Error::check(
                            STEP,
                            format!(
                                "{}: {field} {} is not in {node}'s pki output",
                                kubeconfig.display(),
                                on_node.display()
                            ),
                        )
                    })?;
                entry[item][*field] = Value::String(on_host.display().to_string());
                mapped += 1;
            }
        }
    }
    if mapped == 0 {
        return Ok(kubeconfig.to_path_buf());
    }
    let target = cluster
        .run_dir
        .join(format!("{node}-kubelet-on-host.kubeconfig"));
    let text = serde_json::to_string_pretty(&config)
        .map_err(|error| Error::io("serialising a kubeconfig", std::io::Error::other(error)))?;
    std::fs::write(&target, text)
        .map_err(|error| Error::io(format!("writing {}", target.display()), error))?;
    Ok(target)
}

/// Records a failed check's message.
fn note(problems: &mut Vec<String>, result: crate::Result<()>) {
    match result {
        Err(Error::Check { message, .. }) => problems.push(message),
        Err(error) => problems.push(error.to_string()),
        Ok(()) => {}
    }
}

/// Step 6, second half: no worker-only node holds a private key that is not one of its own
/// (the files kiln built for that node, compared by content).
pub fn private_key_scan(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "private keys";
    let scanned: Vec<String> = cluster
        .nodes
        .values()
        .filter(|node| node.image.manifest.roles == ["worker"])
        .map(|node| node.image.node().to_owned())
        .collect();
    for node in scanned {
        // The node's artifacts, without its image (the layers hold the same files, packed).
        let own = file_hashes(&cluster.result_dir.join("nodes").join(&node), &["image"])?;
        // Every regular file under 1 MiB outside the kernel's pseudo file systems that holds
        // a PEM private key or a kubeconfig's embedded one.
        let script = "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o \
                      -type f -size -1024k -print0 2>/dev/null \
                      | xargs -0 grep -l -E -e 'PRIVATE KEY-----' -e 'client-key-data:' \
                      2>/dev/null | sort -u | xargs -r sha256sum; true";
        let found = cluster
            .shell(&node)?
            .check(STEP, script, Duration::from_secs(600))?;
        let mut foreign = Vec::new();
        let mut holds = Vec::new();
        for line in found.lines() {
            let Some((hash, path)) = line.split_once("  ") else {
                continue;
            };
            // The harness's own script and output (also seen in the overlay's upper layer).
            if path.ends_with("/kiln-cmd") || path.ends_with("/kiln-out") {
                continue;
            }
            if own.contains(hash) {
                holds.push(path.to_owned());
            } else {
                foreign.push(path.to_owned());
            }
        }
        if !foreign.is_empty() {
            return Err(Error::check(
                STEP,
                format!("{node} holds private keys that are not its own: {foreign:?}"),
            ));
        }
        eprintln!("    {node} holds only its own keys: {holds:?}");
    }
    Ok(())
}

/// Step 7: a Secret created through the API is stored encrypted in etcd: read back with the
/// healthcheck client certificate, the value is an `k8s:enc:` envelope without the plaintext.
pub fn encryption_at_rest(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "encryption at rest";
    let canary = format!("kiln-plaintext-canary-{}", std::process::id());
    cluster.kubectl.run(&[
        "create",
        "secret",
        "generic",
        "kiln-vm-test",
        &format!("--from-literal=canary={canary}"),
    ])?;
    let through_api = cluster.kubectl.run(&[
        "get",
        "secret",
        "kiln-vm-test",
        "-o",
        "jsonpath={.data.canary}",
    ])?;
    if STANDARD.decode(through_api.trim()).ok().as_deref() != Some(canary.as_bytes()) {
        return Err(Error::check(
            STEP,
            format!("the API returned {through_api:?} for the Secret"),
        ));
    }
    let node = cluster
        .nodes_with_role("etcd")
        .into_iter()
        .next()
        .ok_or_else(|| Error::check(STEP, "no etcd member"))?;
    let key = STANDARD.encode("/registry/secrets/default/kiln-vm-test");
    let body = format!("{{\"key\":\"{key}\"}}");
    let response = etcd_request(cluster, &node, "POST /v3/kv/range", &body, ETCD_HEALTHCHECK)?;
    let json = response
        .split_once("\r\n\r\n")
        .map_or(response.as_str(), |(_, body)| body);
    let parsed: Value = serde_json::from_str(json.trim())
        .map_err(|error| Error::check(STEP, format!("etcd answered {response:?}: {error}")))?;
    let value = parsed["kvs"][0]["value"]
        .as_str()
        .and_then(|value| STANDARD.decode(value).ok())
        .ok_or_else(|| Error::check(STEP, format!("etcd has no such key: {parsed}")))?;
    let stored = String::from_utf8_lossy(&value);
    if stored.contains(&canary) || !value.starts_with(b"k8s:enc:") {
        return Err(Error::check(
            STEP,
            format!("etcd stores the Secret readably: {stored:?}"),
        ));
    }
    let envelope: String = stored.split(':').take(4).collect::<Vec<_>>().join(":");
    eprintln!(
        "    etcd holds {} bytes starting {envelope}:, without the plaintext",
        value.len()
    );
    Ok(())
}

/// The etcd client files a request is made with.
struct EtcdClient {
    cert: &'static str,
    key: &'static str,
}

const ETCD_HEALTHCHECK: EtcdClient = EtcdClient {
    cert: "/etc/kubernetes/pki/etcd/healthcheck-client.crt",
    key: "/etc/kubernetes/pki/etcd/healthcheck-client.key",
};

/// A client certificate from the Kubernetes CA that every kubelet node has.
const KUBERNETES_CA_CLIENT: EtcdClient = EtcdClient {
    cert: "/etc/kubernetes/pki/kubelet-client.crt",
    key: "/etc/kubernetes/pki/kubelet-client.key",
};

/// A shell script sending one HTTP/1.0 request to etcd on 127.0.0.1:2379 over TLS (verifying
/// etcd's certificate against the etcd CA) with `client`'s certificate.
/// socat's notices (`-d -d`) go to standard error, which the shell returns with the output.
/// `ignoreeof` keeps socat from closing its sending side when the request is written: etcd's
/// JSON gateway cancels a request whose client has closed ("context canceled").
fn socat_tls(request: &str, body: &str, client: EtcdClient, notices: bool) -> String {
    let notices = if notices { "-d -d " } else { "" };
    format!(
        "body='{body}'\n\
         printf '{request} HTTP/1.0\\r\\nHost: localhost\\r\\nContent-Type: application/json\\r\\n\
         Content-Length: %d\\r\\n\\r\\n%s' \"${{#body}}\" \"$body\" \
         | socat {notices}-T 15 -,ignoreeof OPENSSL:127.0.0.1:2379,cafile=/etc/kubernetes/pki/etcd/ca.crt,\
         cert={},key={},verify=1,commonname=localhost",
        client.cert, client.key
    )
}

fn etcd_request(
    cluster: &mut Cluster,
    node: &str,
    request: &str,
    body: &str,
    client: EtcdClient,
) -> crate::Result<String> {
    cluster.on(
        node,
        "etcd request",
        &socat_tls(request, body, client, false),
    )
}

/// The body of `GET /` to `ip:port`, fetched from inside `node`.
fn http_from_node(cluster: &mut Cluster, node: &str, ip: &str, port: u16) -> crate::Result<String> {
    Ok(http_body(&http_get(cluster, node, ip, port, "/")?))
}

/// The whole response (status line, headers, body) to `GET path` on `ip:port`, fetched from
/// inside `node` with socat.
fn http_get(
    cluster: &mut Cluster,
    node: &str,
    ip: &str,
    port: u16,
    path: &str,
) -> crate::Result<String> {
    let script = format!(
        "printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | socat -T 10 -,ignoreeof TCP:{ip}:{port},connect-timeout=10"
    );
    cluster.on(node, "http", &script)
}

/// The body of `GET /` to `ip:port`, fetched from inside pod `pod` (busybox's nc).
fn http_from_pod(kubectl: &Kubectl, pod: &str, ip: &str, port: u16) -> crate::Result<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} {port}");
    let response = kubectl.run(&["exec", pod, "--", "sh", "-c", &script])?;
    Ok(http_body(&response))
}

fn http_body(response: &str) -> String {
    response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body)
        .to_owned()
}

/// The forwarded admin kubeconfig as JSON.
fn admin_json(cluster: &Cluster) -> crate::Result<Value> {
    let text = std::fs::read_to_string(&cluster.kubectl.kubeconfig).map_err(|error| {
        Error::io(
            format!("reading {}", cluster.kubectl.kubeconfig.display()),
            error,
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|error| Error::io("parsing the admin kubeconfig", std::io::Error::other(error)))
}

/// `GET path` without credentials to 127.0.0.1:`port`, verifying the server's certificate
/// against `ca` for `server_name` (an address or a DNS name); the raw HTTP response.
fn anonymous_get(ca: &Path, port: u16, server_name: &str, path: &str) -> crate::Result<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let verify = if server_name.parse::<std::net::IpAddr>().is_ok() {
        "-verify_ip"
    } else {
        "-verify_hostname"
    };
    let mut child = Command::new("timeout")
        .args([
            "30",
            "openssl",
            "s_client",
            "-quiet",
            "-verify_return_error",
        ])
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args([verify, server_name, "-servername", server_name, "-CAfile"])
        .arg(ca)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::io("running openssl s_client", error))?;
    if let Some(mut stdin) = child.stdin.take() {
        let request = format!("GET {path} HTTP/1.0\r\nHost: {server_name}\r\n\r\n");
        stdin
            .write_all(request.as_bytes())
            .map_err(|error| Error::io("writing to openssl s_client", error))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| Error::io("running openssl s_client", error))?;
    let response = String::from_utf8_lossy(&output.stdout).into_owned();
    if response.is_empty() {
        return Err(Error::Command {
            command: format!("openssl s_client -connect 127.0.0.1:{port} ({server_name})"),
            status: output.status.to_string(),
            output: describe(&output),
        });
    }
    Ok(response)
}

/// Fails unless the raw HTTP `response` has `status`.
fn expect_http(step: &str, what: &str, response: &str, status: u16) -> crate::Result<()> {
    let got = response
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok());
    if got != Some(status) {
        return Err(Error::check(
            step,
            format!(
                "{what}: expected HTTP {status}, got:\n{}",
                crate::tail_lines(response, 12)
            ),
        ));
    }
    eprintln!("    {what}: refused with {status}");
    Ok(())
}

fn array_mut<'a>(config: &'a mut Value, key: &str) -> impl Iterator<Item = &'a mut Value> {
    config
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Runs kubectl (verbose, so the HTTP status is printed) with `config` written as
/// `<run_dir>/<name>.kubeconfig`.
fn kubectl_with(
    cluster: &Cluster,
    name: &str,
    config: &Value,
    args: &[&str],
) -> crate::Result<std::process::Output> {
    let path = cluster.run_dir.join(format!("{name}.kubeconfig"));
    let text = serde_json::to_string_pretty(config)
        .map_err(|error| Error::io("serialising a kubeconfig", std::io::Error::other(error)))?;
    std::fs::write(&path, text)
        .map_err(|error| Error::io(format!("writing {}", path.display()), error))?;
    let mut args = args.to_vec();
    args.push("-v=6");
    Kubectl::new(&cluster.kubectl.program, &path).output(&args)
}

/// Fails unless kubectl's verbose log shows the request answered with `status`.
fn expect_status(
    step: &str,
    what: &str,
    output: &std::process::Output,
    status: u16,
) -> crate::Result<()> {
    let log = String::from_utf8_lossy(&output.stderr);
    let statuses: Vec<u16> = log.lines().filter_map(response_status).collect();
    if output.status.success() || !statuses.contains(&status) {
        return Err(Error::check(
            step,
            format!(
                "{what}: expected HTTP {status}, got {statuses:?}:\n{}",
                describe(output)
            ),
        ));
    }
    eprintln!("    {what}: refused with {status}");
    Ok(())
}

/// The status of a kubectl `-v=6` response line: kubectl 1.20 writes
/// `GET https://... 401 Unauthorized in 3 milliseconds`, later releases log it structured,
/// `"Response" verb="GET" url="https://..." status="403 Forbidden" milliseconds=185`.
fn response_status(line: &str) -> Option<u16> {
    if let Some((_, after)) = line.split_once("\"Response\" ") {
        let status = after.split_once(" status=\"")?.1;
        return status.split_whitespace().next()?.parse().ok();
    }
    let after_url = line.split_once(" https://")?.1;
    let mut words = after_url.split_whitespace().skip(1);
    let code = words.next()?.parse().ok()?;
    Some(code)
}

/// A CA certificate that is not the Kubernetes CA (the etcd CA kiln built).
fn other_ca(result_dir: &Path) -> crate::Result<Vec<u8>> {
    let candidates = [result_dir.join("cluster/pki/etcd-ca/tls.crt")];
    let path = candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .or_else(|| {
            find_file(&result_dir.join("nodes"), "ca.crt")
                .filter(|path| path.parent().is_some_and(|dir| dir.ends_with("etcd")))
        })
        .ok_or_else(|| Error::check("refusals", "no etcd CA certificate in the result"))?;
    std::fs::read(&path).map_err(|error| Error::io(format!("reading {}", path.display()), error))
}

/// The first file called `name` under `dir` (following links), depth first in name order.
fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if let Some(found) = find_file(&path, name) {
                return Some(found);
            }
        } else if path.file_name().is_some_and(|file| file == name) {
            return Some(path);
        }
    }
    None
}

/// The SHA-256 (hex) of every file under `dir` except its entries called one of `skip`,
/// following links.
fn file_hashes(dir: &Path, skip: &[&str]) -> crate::Result<BTreeSet<String>> {
    let mut hashes = BTreeSet::new();
    let mut stack: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|error| Error::io(format!("listing {}", dir.display()), error))?
        .filter_map(|entry| entry.ok())
        .filter(|entry| !skip.iter().any(|name| entry.file_name() == *name))
        .map(|entry| entry.path())
        .collect();
    while let Some(path) = stack.pop() {
        if path.is_dir() {
            let entries = std::fs::read_dir(&path)
                .map_err(|error| Error::io(format!("listing {}", path.display()), error))?;
            stack.extend(entries.filter_map(|entry| entry.ok().map(|entry| entry.path())));
        } else if path.is_file() {
            let output = std::process::Command::new("sha256sum")
                .arg(&path)
                .output()
                .map_err(|error| Error::io("running sha256sum", error))?;
            if let Some(hash) = String::from_utf8_lossy(&output.stdout)
                .split_whitespace()
                .next()
            {
                hashes.insert(hash.to_owned());
            }
        }
    }
    Ok(hashes)
}

fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

fn str_at(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether an object's `status.conditions` has `kind` with status `True`.
fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == kind && condition["status"] == "True")
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

#[cfg(test)]
mod tests {
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
            socat_tls("GET /health", "", ETCD_HEALTHCHECK, false),
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
        assert_eq!(error, "no scenario \"three-node\"; known: two-node, ha");
        assert!("Two-Node".parse::<Scenario>().is_err());
    }
}
