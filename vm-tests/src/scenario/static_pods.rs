//! The static-pod steps: every manifest kiln put in a node's manifest directory runs as a pod
//! the API server shows (the kubelet's mirror pod), and a killed component is restarted by its
//! kubelet.

use super::*;

/// A static pod kiln rendered: the node whose kubelet runs it and its name there (the manifest's
/// file name without `.yaml`, which kiln gives the pod's `metadata.name`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct StaticPod {
    /// The node.
    pub node: String,
    /// The pod's name in its manifest (`kube-apiserver`).
    pub name: String,
}

impl StaticPod {
    /// The name of its mirror pod in `kube-system`: `<name>-<node>`.
    pub fn mirror(&self) -> String {
        format!("{}-{}", self.name, self.node)
    }
}

/// Every static pod of every node, from the manifests kiln built (`nodes/<node>/manifests`).
pub fn static_pods(cluster: &Cluster) -> crate::Result<Vec<StaticPod>> {
    let mut pods = Vec::new();
    for node in cluster.nodes.keys() {
        let dir = cluster
            .result_dir
            .join("nodes")
            .join(node)
            .join("manifests")
            .join(paths::node_relative(paths::MANIFESTS_DIR));
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry =
                entry.map_err(|error| Error::io(format!("reading {}", dir.display()), error))?;
            let file = entry.file_name();
            if let Some(name) = file.to_str().and_then(|file| file.strip_suffix(".yaml")) {
                pods.push(StaticPod {
                    node: node.clone(),
                    name: name.to_owned(),
                });
            }
        }
    }
    pods.sort();
    Ok(pods)
}

/// The mirror pods in `kube-system` by name: (Ready, the restart count of every container).
fn mirror_pods(kubectl: &Kubectl) -> Result<BTreeMap<String, (bool, u64)>, String> {
    let pods = kubectl
        .json(&["get", "pods", "-n", "kube-system", "-o", "json"])
        .map_err(|error| error.to_string())?;
    Ok(items(&pods)
        .filter(|pod| {
            pod.pointer("/metadata/annotations/kubernetes.io~1config.mirror")
                .is_some()
        })
        .filter_map(|pod| {
            let name = str_at(pod, &["metadata", "name"])?;
            let restarts = pod
                .pointer("/status/containerStatuses")
                .and_then(Value::as_array)
                .map_or(0, |statuses| {
                    statuses
                        .iter()
                        .filter_map(|status| status.get("restartCount").and_then(Value::as_u64))
                        .sum()
                });
            Some((name, (condition(pod, "Ready"), restarts)))
        })
        .collect())
}

/// Waits until every one of `pods` has a Ready mirror pod, and returns their restart counts.
fn wait_mirrored(
    cluster: &Cluster,
    pods: &[StaticPod],
    what: &str,
    restarted: &BTreeMap<String, u64>,
) -> crate::Result<BTreeMap<String, u64>> {
    let kubectl = cluster.kubectl.clone();
    wait_for(what, CONVERGE_TIMEOUT, POLL, || {
        let mirrors = mirror_pods(&kubectl)?;
        let mut missing = Vec::new();
        let mut counts = BTreeMap::new();
        for pod in pods {
            let name = pod.mirror();
            match mirrors.get(&name) {
                Some(&(true, restarts))
                    if restarts > restarted.get(&name).copied().unwrap_or(0)
                        || !restarted.contains_key(&name) =>
                {
                    counts.insert(name, restarts);
                }
                Some(&(ready, restarts)) => {
                    missing.push(format!("{name} (Ready {ready}, restarts {restarts})"))
                }
                None => missing.push(format!("{name} (no mirror pod)")),
            }
        }
        if missing.is_empty() {
            Ok(counts)
        } else {
            Err(format!(
                "waiting for {}\n{}",
                missing.join(", "),
                kubectl
                    .run(&["get", "pods", "-n", "kube-system", "-o", "wide"])
                    .unwrap_or_default()
            ))
        }
    })
}

/// Every static pod kiln rendered runs and is Ready, and the API server shows it as a mirror
/// pod of its node in `kube-system`. Returns the mirror pods' restart counts.
pub fn static_pods_mirrored(cluster: &mut Cluster) -> crate::Result<BTreeMap<String, u64>> {
    let pods = static_pods(cluster)?;
    if pods.is_empty() {
        return Err(Error::check("static pods", "kiln rendered no static pod"));
    }
    let counts = wait_mirrored(
        cluster,
        &pods,
        "every static pod's mirror pod Ready",
        &BTreeMap::new(),
    )?;
    for (name, restarts) in &counts {
        eprintln!("    {name}: Ready, {restarts} restarts");
    }
    Ok(counts)
}

/// Each control-plane component's process (`kube-apiserver`, `kube-controller-manager`,
/// `kube-scheduler`, `etcd`), killed with SIGKILL inside its node, is started again by that
/// node's kubelet: its mirror pod's restart count goes up and it is Ready again, and the API
/// answers again.
pub fn static_pods_restart(
    cluster: &mut Cluster,
    before: &BTreeMap<String, u64>,
) -> crate::Result<()> {
    const STEP: &str = "static pods restart";
    let killed: Vec<StaticPod> = static_pods(cluster)?
        .into_iter()
        .filter(|pod| pod.name != kiln_spec::Component::KubeProxy.name())
        .collect();
    if killed.is_empty() {
        return Err(Error::check(STEP, "no control-plane static pod to kill"));
    }
    for pod in &killed {
        // The program's name is the component's (`/usr/local/bin/kube-apiserver`); pidof
        // matches it exactly, and fails (as then the script does) if nothing matched.
        let script = format!("pids=$(pidof {}) && kill -KILL $pids", pod.name);
        cluster.on(&pod.node, STEP, &script)?;
        eprintln!("    killed {} on {}", pod.name, pod.node);
    }
    let after = wait_mirrored(
        cluster,
        &killed,
        "every killed component restarted and Ready",
        before,
    )?;
    for pod in &killed {
        let name = pod.mirror();
        eprintln!(
            "    {name}: restarts {} -> {}",
            before.get(&name).copied().unwrap_or(0),
            after.get(&name).copied().unwrap_or(0)
        );
    }
    api_available(cluster, "after-restart")
}
