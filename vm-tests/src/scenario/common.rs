//! Helpers the steps share: HTTP from a node or a pod, the admin's view of the API as JSON,
//! and reading kubectl's JSON.

use super::*;

/// The files kiln rendered at the on-node `path` (one of `kiln_spec::paths`, such as
/// [`paths::COREDNS_ADDON`]) into the control-plane nodes' manifests, for those nodes that have
/// one.
pub(super) fn control_plane_manifests(cluster: &Cluster, path: &str) -> Vec<PathBuf> {
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

/// The body of `GET /` to `ip:port`, fetched from inside `node`.
pub(super) fn http_from_node(
    cluster: &mut Cluster,
    node: &str,
    ip: &str,
    port: u16,
) -> crate::Result<String> {
    Ok(http_body(&http_get(cluster, node, ip, port, "/")?))
}

/// The whole response (status line, headers, body) to `GET path` on `ip:port`, fetched from
/// inside `node` with socat.
pub(super) fn http_get(
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
pub(super) fn http_from_pod(
    kubectl: &Kubectl,
    pod: &str,
    ip: &str,
    port: u16,
) -> crate::Result<String> {
    let script = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 {ip} {port}");
    let response = kubectl.run(&["exec", pod, "--", "sh", "-c", &script])?;
    Ok(http_body(&response))
}

pub(super) fn http_body(response: &str) -> String {
    response
        .split_once("\r\n\r\n")
        .map_or(response, |(_, body)| body)
        .to_owned()
}

/// The forwarded admin kubeconfig as JSON.
pub(super) fn admin_json(cluster: &Cluster) -> crate::Result<Value> {
    let text = std::fs::read_to_string(&cluster.kubectl.kubeconfig).map_err(|error| {
        Error::io(
            format!("reading {}", cluster.kubectl.kubeconfig.display()),
            error,
        )
    })?;
    serde_json::from_str(&text)
        .map_err(|error| Error::io("parsing the admin kubeconfig", std::io::Error::other(error)))
}

pub(super) fn items(list: &Value) -> impl Iterator<Item = &Value> {
    list["items"].as_array().into_iter().flatten()
}

pub(super) fn str_at(value: &Value, path: &[&str]) -> Option<String> {
    path.iter()
        .try_fold(value, |value, key| value.get(key))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Whether an object's `status.conditions` has `kind` with status `True`.
pub(super) fn condition(object: &Value, kind: &str) -> bool {
    object["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|condition| condition["type"] == kind && condition["status"] == "True")
}

pub(super) fn first_line(text: &str) -> &str {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .unwrap_or("")
}

/// The cluster CA's certificate, from the admin kubeconfig, written as
/// `<run_dir>/kubernetes-ca.crt`.
pub(super) fn kubernetes_ca(cluster: &Cluster) -> crate::Result<PathBuf> {
    let admin = admin_json(cluster)?;
    let ca = cluster.run_dir.join("kubernetes-ca.crt");
    let ca_data = admin["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .and_then(|data| STANDARD.decode(data).ok())
        .ok_or_else(|| Error::check("kubernetes CA", "the admin kubeconfig embeds no CA"))?;
    std::fs::write(&ca, ca_data)
        .map_err(|error| Error::io(format!("writing {}", ca.display()), error))?;
    Ok(ca)
}

/// The name the API server's certificate is verified for through the forwarded port: the
/// admin kubeconfig's `tls-server-name`, or `kubernetes`.
pub(super) fn api_server_name(cluster: &Cluster) -> crate::Result<String> {
    let admin = admin_json(cluster)?;
    Ok(admin["clusters"][0]["cluster"]["tls-server-name"]
        .as_str()
        .unwrap_or("kubernetes")
        .to_owned())
}

/// `text` cut to at most `limit` characters, with `...` when cut (a `ps` line found by a check
/// is a whole command line; a test's failure message can be pages).
pub(super) fn shortened(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// `Ok` if a step found no `problems`; otherwise one [`Error::check`] of `step` saying how many
/// `what` there are and listing each on its own line.
pub(super) fn all_or_nothing(step: &str, what: &str, problems: &[String]) -> crate::Result<()> {
    if problems.is_empty() {
        return Ok(());
    }
    Err(Error::check(
        step,
        format!("{} {what}:\n  {}", problems.len(), problems.join("\n  ")),
    ))
}
