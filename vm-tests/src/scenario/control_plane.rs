//! The control plane's steps: the load balancer's health check, each API server's
//! readiness, etcd's health and its data on the state disk, and the API through the load
//! balancer.

use super::*;

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

/// etcd answers `{"health":"true"}` on each of `nodes` (with the member's own server certificate, a client certificate too) and
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
                let health = etcd_request(cluster, node, "GET /health", "", ETCD_MEMBER_CLIENT)
                    .map_err(|error| error.to_string())?;
                if !health.contains("\"health\":\"true\"") {
                    return Err(format!("health: {}", http_body(&health)));
                }
                let list = etcd_request(
                    cluster,
                    node,
                    "POST /v3/cluster/member/list",
                    "{}",
                    ETCD_MEMBER_CLIENT,
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
pub(super) fn api_available(cluster: &mut Cluster, label: &str) -> crate::Result<()> {
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
