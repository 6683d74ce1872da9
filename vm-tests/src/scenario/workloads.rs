//! The workload steps: nodes Ready, the test Deployment spread over the workers, pod and
//! Service networking, logs and exec.

use super::*;

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
pub(super) fn web_pods(kubectl: &Kubectl) -> crate::Result<Vec<Pod>> {
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
    let ip = expose_web(cluster)?;
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

/// Exposes the `web` Deployment as the `web` Service (port 80 to the pods'
/// [`kiln_spec::images::TEST_PORT`]) and returns its ClusterIP.
pub fn expose_web(cluster: &mut Cluster) -> crate::Result<String> {
    cluster.kubectl.run(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        &format!("--target-port={TEST_PORT}"),
    ])?;
    Ok(cluster
        .kubectl
        .run(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])?
        .trim()
        .to_owned())
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
