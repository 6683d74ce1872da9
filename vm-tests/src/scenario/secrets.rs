//! The secrets steps: no node holds a private key it should not, and Secrets are encrypted
//! at rest in etcd (read with the etcd clients these helpers drive from a guest).

use super::*;

/// Step 8: no worker-only node holds a private key that is not one of its own
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
        // Every regular text file under 1 MiB outside the kernel's pseudo file systems that
        // holds a PEM private key or a kubeconfig's embedded one. PEM and kubeconfigs are
        // text: a binary that only holds the header as a string is skipped (`grep -I`), as the
        // base OS's libssh2 (curl's) holds `-----BEGIN OPENSSH PRIVATE KEY-----` for its parser.
        let script = "find / \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o \
                      -type f -size -1024k -print0 2>/dev/null \
                      | xargs -0 grep -l -I -E -e 'PRIVATE KEY-----' -e 'client-key-data:' \
                      2>/dev/null | sort -u | xargs -r sha256sum; true";
        let found = cluster
            .shell(&node)?
            .check(STEP, script, Duration::from_secs(600))?;
        let mut foreign = Vec::new();
        let mut holds = Vec::new();
        // A kubelet that joined with the bootstrap token generated its own key for its CSR:
        // `kubelet-client-<time>.pem` in its certificate directory (step 10 checks what it is).
        let generated = joins_with_token(cluster, &node)
            .then(|| format!("{}/kubelet-client-", paths::KUBELET_CERT_DIR));
        for line in found.lines() {
            let Some((hash, path)) = line.split_once("  ") else {
                continue;
            };
            // The harness's own script and output (also seen in the overlay's upper layer).
            if path.ends_with("/kiln-cmd") || path.ends_with("/kiln-out") {
                continue;
            }
            if own.contains(hash)
                || generated
                    .as_deref()
                    .is_some_and(|prefix| path.contains(prefix))
            {
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

/// Step 9: a Secret created through the API is stored encrypted in etcd: read back with the
/// member's own server certificate, the value is an `k8s:enc:` envelope without the plaintext.
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
    let response = etcd_request(
        cluster,
        &node,
        "POST /v3/kv/range",
        &body,
        ETCD_MEMBER_CLIENT,
    )?;
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
pub(super) struct EtcdClient {
    cert: &'static str,
    key: &'static str,
}

/// The member's own server certificate, which is also a client certificate of the etcd CA
/// (`../shared/reference/pki.md`): what the harness asks a member with, since no node holds
/// `etcd/healthcheck-client`'s key.
pub(super) const ETCD_MEMBER_CLIENT: EtcdClient = EtcdClient {
    cert: "/etc/kubernetes/pki/etcd/server.crt",
    key: "/etc/kubernetes/pki/etcd/server.key",
};

/// A client certificate from the Kubernetes CA that every kubelet node has.
pub(super) const KUBERNETES_CA_CLIENT: EtcdClient = EtcdClient {
    cert: "/etc/kubernetes/pki/kubelet-client.crt",
    key: "/etc/kubernetes/pki/kubelet-client.key",
};

/// A shell script sending one HTTP/1.0 request to etcd on 127.0.0.1:2379 over TLS (verifying
/// etcd's certificate against the etcd CA) with `client`'s certificate.
/// socat's notices (`-d -d`) go to standard error, which the shell returns with the output.
/// `ignoreeof` keeps socat from closing its sending side when the request is written: etcd's
/// JSON gateway cancels a request whose client has closed ("context canceled").
pub(super) fn socat_tls(request: &str, body: &str, client: EtcdClient, notices: bool) -> String {
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

pub(super) fn etcd_request(
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

/// The SHA-256 (hex) of every file under `dir` except its entries called one of `skip`,
/// following links.
pub(super) fn file_hashes(dir: &Path, skip: &[&str]) -> crate::Result<BTreeSet<String>> {
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
