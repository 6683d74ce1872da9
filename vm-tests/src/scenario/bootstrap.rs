//! The bootstrap-token steps (`kubeadm`): the workers joined through the CSR API and hold their
//! own `system:node:NAME` certificates, signed by the cluster CA; the token may ask for a
//! certificate and nothing else; an expired token is refused; `cluster-info` is public and
//! signed for the token as `kubeadm join` verifies it; kube-proxy runs as a DaemonSet.
//!
//! Certificates and signatures are checked with the host's `openssl`, not kiln's code.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::refusals::{anonymous_get, array_mut, expect_http, expect_status, http_status, note};
use super::*;
use crate::kubectl::write_private;

/// Whether `node`'s kubelet joins with the bootstrap token: kiln built it a `bootstrap`
/// artifact (its `bootstrap-kubelet.conf`).
pub(super) fn joins_with_token(cluster: &Cluster, node: &str) -> bool {
    cluster
        .result_dir
        .join("nodes")
        .join(node)
        .join("bootstrap")
        .is_dir()
}

/// The nodes whose kubelets join with the bootstrap token, by name.
fn joining_nodes(cluster: &Cluster) -> Vec<String> {
    cluster
        .nodes
        .keys()
        .filter(|node| joins_with_token(cluster, node))
        .cloned()
        .collect()
}

/// kubectl for the forwarded API as `user` (a kubeconfig `user` object), its kubeconfig
/// written as `<run_dir>/<name>.kubeconfig` (0600).
pub(super) fn kubectl_as(cluster: &Cluster, name: &str, user: Value) -> crate::Result<Kubectl> {
    let mut config = admin_json(cluster)?;
    for entry in array_mut(&mut config, "users") {
        entry["user"] = user.clone();
    }
    let path = cluster.run_dir.join(format!("{name}.kubeconfig"));
    let text = serde_json::to_string_pretty(&config)
        .map_err(|error| Error::io("serialising a kubeconfig", std::io::Error::other(error)))?;
    write_private(&path, text.as_bytes())?;
    Ok(Kubectl::new(&cluster.kubectl.program, &path))
}

/// The certificate and key `node`'s kubelet got through its CSR (its
/// `kubelet-client-current.pem`), copied from the guest to `<run_dir>/<node>-kubelet-client.pem`
/// (0600; the guest runs on this machine, so the key never leaves it).
pub(super) fn joined_credential(cluster: &mut Cluster, node: &str) -> crate::Result<PathBuf> {
    const STEP: &str = "joined credential";
    let pem = cluster.on(
        node,
        STEP,
        &format!("cat {}/kubelet-client-current.pem", paths::KUBELET_CERT_DIR),
    )?;
    if !pem.contains("BEGIN CERTIFICATE") || !pem.contains("PRIVATE KEY-----") {
        return Err(Error::check(
            STEP,
            format!(
                "{node}'s {}/kubelet-client-current.pem holds no certificate and key:\n{}",
                paths::KUBELET_CERT_DIR,
                crate::tail_lines(&pem, 5)
            ),
        ));
    }
    let path = cluster.run_dir.join(format!("{node}-kubelet-client.pem"));
    write_private(&path, format!("{}\n", pem.trim_end()).as_bytes())?;
    Ok(path)
}

/// kubectl for the forwarded API with `node`'s joined credential ([`joined_credential`]).
pub(super) fn kubectl_as_joined(cluster: &mut Cluster, node: &str) -> crate::Result<Kubectl> {
    let pem = joined_credential(cluster, node)?.display().to_string();
    kubectl_as(
        cluster,
        &format!("kubelet-{node}-joined"),
        serde_json::json!({"client-certificate": pem, "client-key": pem}),
    )
}

/// Runs the host's `openssl` with `args`, `input` on its standard input; its standard output.
fn openssl(args: &[&str], input: &[u8]) -> crate::Result<Vec<u8>> {
    use std::io::Write;
    use std::process::{Command, Stdio};

    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| Error::io("running openssl", error))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input)
            .map_err(|error| Error::io("writing to openssl", error))?;
    }
    let output = child
        .wait_with_output()
        .map_err(|error| Error::io("running openssl", error))?;
    if !output.status.success() {
        return Err(Error::Command {
            command: format!("openssl {}", args.join(" ")),
            status: output.status.to_string(),
            output: describe(&output),
        });
    }
    Ok(output.stdout)
}

/// `openssl`'s standard output as text.
fn openssl_text(args: &[&str], input: &[u8]) -> crate::Result<String> {
    Ok(String::from_utf8_lossy(&openssl(args, input)?).into_owned())
}

/// The subject of the PEM certificate (or request, `req`) in `pem`, as RFC 2253 text:
/// `CN=system:node:worker-a,O=system:nodes`.
fn subject(kind: &str, pem: &[u8]) -> crate::Result<String> {
    let text = openssl_text(&[kind, "-noout", "-subject", "-nameopt", "RFC2253"], pem)?;
    Ok(text.trim().trim_start_matches("subject=").to_owned())
}

/// Step 10: every joining worker holds a client certificate for `system:node:NAME` in
/// `system:nodes`, signed by the cluster CA, with the key the kubelet generated, and its
/// kubeconfig names it; the API shows each worker's CSR, made with the bootstrap token for
/// that name, approved.
pub fn workers_joined(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "joined";
    let joining = joining_nodes(cluster);
    if joining.is_empty() {
        return Err(Error::check(STEP, "no node joins with the bootstrap token"));
    }
    let ca = kubernetes_ca(cluster)?;
    let ca_arg = ca.display().to_string();
    for node in &joining {
        let path = joined_credential(cluster, node)?;
        let path_arg = path.display().to_string();
        let pem = std::fs::read(&path)
            .map_err(|error| Error::io(format!("reading {}", path.display()), error))?;
        let subject = subject("x509", &pem)?;
        let expected = format!("CN=system:node:{node},O=system:nodes");
        if subject != expected {
            return Err(Error::check(
                STEP,
                format!("{node}'s kubelet certificate is for {subject:?}, not {expected:?}"),
            ));
        }
        let verified = openssl_text(&["verify", "-CAfile", &ca_arg, &path_arg], b"")?;
        if !verified.trim_end().ends_with(": OK") {
            return Err(Error::check(
                STEP,
                format!("{node}'s kubelet certificate is not the cluster CA's: {verified}"),
            ));
        }
        let certificate_key = openssl(&["x509", "-noout", "-pubkey"], &pem)?;
        let private_key = openssl(&["pkey", "-pubout"], &pem)?;
        if certificate_key != private_key {
            return Err(Error::check(
                STEP,
                format!("{node}'s kubelet-client-current.pem: the key is not the certificate's"),
            ));
        }
        let named = cluster.on(
            node,
            STEP,
            &format!(
                "grep -c -F '{}/kubelet-client-current.pem' {} || true",
                paths::KUBELET_CERT_DIR,
                paths::KUBELET_KUBECONFIG
            ),
        )?;
        if named.trim() == "0" || named.trim().is_empty() {
            return Err(Error::check(
                STEP,
                format!(
                    "{node}'s {} does not name the certificate its CSR got",
                    paths::KUBELET_KUBECONFIG
                ),
            ));
        }
        eprintln!("    {node}: {subject}, signed by the cluster CA, in its kubelet.conf");
    }

    let csrs = cluster
        .kubectl
        .json(&["get", "certificatesigningrequests", "-o", "json"])?;
    let mut approved = BTreeSet::new();
    for csr in items(&csrs) {
        let requestor = str_at(csr, &["spec", "username"]).unwrap_or_default();
        let signer = str_at(csr, &["spec", "signerName"]).unwrap_or_default();
        if !requestor.starts_with("system:bootstrap:")
            || signer != "kubernetes.io/kube-apiserver-client-kubelet"
            || !condition(csr, "Approved")
            || str_at(csr, &["status", "certificate"]).is_none()
        {
            continue;
        }
        let request = str_at(csr, &["spec", "request"])
            .and_then(|request| STANDARD.decode(request).ok())
            .unwrap_or_default();
        let subject = subject("req", &request)?;
        approved.insert((subject, requestor));
    }
    for node in &joining {
        let expected = format!("CN=system:node:{node},O=system:nodes");
        if !approved.iter().any(|(subject, _)| *subject == expected) {
            return Err(Error::check(
                STEP,
                format!(
                    "no approved, issued CSR from a bootstrap token for {expected}: {approved:?}\n{}",
                    cluster
                        .kubectl
                        .run(&["get", "certificatesigningrequests"])
                        .unwrap_or_default()
                ),
            ));
        }
    }
    for (subject, requestor) in &approved {
        eprintln!("    CSR for {subject} by {requestor}: approved and issued");
    }
    Ok(())
}

/// The bootstrap token kiln gave `node`: the token of its `bootstrap-kubelet.conf`.
fn token_of(cluster: &Cluster, node: &str) -> crate::Result<String> {
    const STEP: &str = "bootstrap token";
    let file = cluster
        .result_dir
        .join("nodes")
        .join(node)
        .join("bootstrap")
        .join(paths::node_relative(paths::BOOTSTRAP_KUBELET_KUBECONFIG));
    let config = Kubectl::new(&cluster.kubectl.program, &file)
        .json(&["config", "view", "--raw", "-o", "json"])?;
    config["users"][0]["user"]["token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Error::check(STEP, format!("{} holds no token", file.display())))
}

/// The cluster's bootstrap token, as kiln gave it to the first joining node; an error for
/// `step` if no node joins with it.
fn cluster_token(cluster: &Cluster, step: &str) -> crate::Result<String> {
    let joining = joining_nodes(cluster);
    let node = joining
        .first()
        .ok_or_else(|| Error::check(step, "no node joins with the bootstrap token"))?;
    token_of(cluster, node)
}

/// Step 11: the workers' bootstrap token authenticates as `system:bootstrap:<id>` in kubeadm's
/// groups and may create CSRs, but reading Secrets or listing Nodes is 403; a token whose
/// Secret says it expired is 401.
pub fn token_limits(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "bootstrap token";
    let token = cluster_token(cluster, STEP)?;
    let id = token.split('.').next().unwrap_or_default().to_owned();
    let as_token = kubectl_as(
        cluster,
        "bootstrap-token",
        serde_json::json!({"token": token}),
    )?;
    let can = as_token.output(&[
        "auth",
        "can-i",
        "create",
        "certificatesigningrequests.certificates.k8s.io",
    ])?;
    let answer = String::from_utf8_lossy(&can.stdout);
    if !can.status.success() || answer.lines().next() != Some("yes") {
        return Err(Error::check(
            STEP,
            format!("the token may not create CSRs:\n{}", describe(&can)),
        ));
    }
    eprintln!("    the token may create CSRs");
    let mut problems = Vec::new();
    for (what, arguments) in [
        (
            "the token reading Secrets",
            &["get", "secrets", "-n", "kube-system", "-v=6"][..],
        ),
        ("the token listing Nodes", &["get", "nodes", "-v=6"][..]),
    ] {
        let output = as_token.output(arguments)?;
        note(&mut problems, expect_status(STEP, what, &output, 403));
        let text = describe(&output);
        if !text.contains(&format!("system:bootstrap:{id}")) {
            problems.push(format!(
                "{what}: the refusal does not name system:bootstrap:{id}:\n{}",
                crate::tail_lines(&text, 6)
            ));
        }
    }

    // A second token, valid in form, whose Secret expired: refused before any authorization.
    let (expired_id, expired_secret) = ("kilnxp", "0123456789abcdef");
    let secret_name = format!("bootstrap-token-{expired_id}");
    let _ = cluster
        .kubectl
        .output(&["delete", "secret", "-n", "kube-system", &secret_name]);
    cluster.kubectl.run(&[
        "create",
        "secret",
        "generic",
        &secret_name,
        "-n",
        "kube-system",
        "--type=bootstrap.kubernetes.io/token",
        &format!("--from-literal=token-id={expired_id}"),
        &format!("--from-literal=token-secret={expired_secret}"),
        "--from-literal=expiration=2020-01-01T00:00:00Z",
        "--from-literal=usage-bootstrap-authentication=true",
        &format!(
            "--from-literal=auth-extra-groups={}",
            kiln_manifests::BOOTSTRAPPERS_GROUP
        ),
    ])?;
    let as_expired = kubectl_as(
        cluster,
        "expired-bootstrap-token",
        serde_json::json!({"token": format!("{expired_id}.{expired_secret}")}),
    )?;
    let output = as_expired.output(&[
        "auth",
        "can-i",
        "create",
        "certificatesigningrequests.certificates.k8s.io",
        "-v=6",
    ])?;
    note(
        &mut problems,
        expect_status(STEP, "an expired bootstrap token", &output, 401),
    );
    let _ = cluster
        .kubectl
        .output(&["delete", "secret", "-n", "kube-system", &secret_name]);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::check(STEP, problems.join("\n")))
    }
}

/// Step 12: `kube-public/cluster-info` is readable without credentials (and nothing else in
/// `kube-public` is), it holds the cluster CA, and its `jws-kubeconfig-<id>` (added by the
/// controller manager's bootstrap signer) is the token's HS256 signature of its kubeconfig, as
/// `kubeadm join --discovery-token` verifies it: checked with `openssl dgst -hmac`.
pub fn cluster_info_signed(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "cluster-info";
    let token = cluster_token(cluster, STEP)?;
    let (id, secret) = token
        .split_once('.')
        .ok_or_else(|| Error::check(STEP, format!("a token without a dot: {}", token.len())))?;
    let ca = kubernetes_ca(cluster)?;
    let api_name = api_server_name(cluster)?;
    let port = cluster.api.1;
    let path = format!(
        "/api/v1/namespaces/{}/configmaps/{}",
        kiln_manifests::PUBLIC_NAMESPACE,
        kiln_manifests::CLUSTER_INFO
    );
    let signature_key = format!("jws-kubeconfig-{id}");
    let data = wait_for(
        "cluster-info signed by the bootstrap signer",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            let response = anonymous_get(&ca, port, &api_name, &path).map_err(|e| e.to_string())?;
            if http_status(&response) != Some(200) {
                return Err(format!(
                    "an anonymous read of cluster-info:\n{}",
                    crate::tail_lines(&response, 12)
                ));
            }
            let body: Value =
                serde_json::from_str(http_body(&response).trim()).map_err(|e| e.to_string())?;
            if body["data"][&signature_key].is_string() {
                Ok(body["data"].clone())
            } else {
                Err(format!("no {signature_key} yet: {}", body["data"]))
            }
        },
    )?;
    let kubeconfig = data["kubeconfig"].as_str().unwrap_or_default();
    let signature = data[&signature_key].as_str().unwrap_or_default();

    // The CA a joining node pins: the cluster CA.
    let config: Value = {
        let file = cluster.run_dir.join("cluster-info.kubeconfig");
        std::fs::write(&file, kubeconfig)
            .map_err(|error| Error::io(format!("writing {}", file.display()), error))?;
        Kubectl::new(&cluster.kubectl.program, &file)
            .json(&["config", "view", "--raw", "-o", "json"])?
    };
    let embedded = config["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .and_then(|data| STANDARD.decode(data).ok())
        .unwrap_or_default();
    let ca_pem = std::fs::read(&ca)
        .map_err(|error| Error::io(format!("reading {}", ca.display()), error))?;
    if embedded != ca_pem {
        return Err(Error::check(
            STEP,
            "cluster-info's CA is not the cluster CA",
        ));
    }

    // A detached JWS: `<header>..<signature>`, over `<header>.<base64url(kubeconfig)>`.
    let (header, mac) = signature.split_once("..").ok_or_else(|| {
        Error::check(
            STEP,
            format!("{signature_key} is not a detached JWS: {signature}"),
        )
    })?;
    let header_json: Value = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| Error::check(STEP, format!("the JWS header {header:?} is not JSON")))?;
    if header_json["alg"] != "HS256" || header_json["kid"] != id {
        return Err(Error::check(
            STEP,
            format!("the JWS header is {header_json}, not HS256 for key {id}"),
        ));
    }
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(kubeconfig));
    let hmac = |key: &str| -> crate::Result<String> {
        let mac = openssl(
            &["dgst", "-sha256", "-hmac", key, "-binary"],
            signing_input.as_bytes(),
        )?;
        Ok(URL_SAFE_NO_PAD.encode(mac))
    };
    if hmac(secret)? != mac {
        return Err(Error::check(
            STEP,
            format!("{signature_key} is not the token's signature of cluster-info"),
        ));
    }
    if hmac("0000000000000000")? == mac {
        return Err(Error::check(STEP, "the signature check accepts any key"));
    }
    eprintln!("    cluster-info: read anonymously, holds the cluster CA, signed for token {id}");

    let listing = anonymous_get(
        &ca,
        port,
        &api_name,
        &format!(
            "/api/v1/namespaces/{}/configmaps",
            kiln_manifests::PUBLIC_NAMESPACE
        ),
    )?;
    let status = refusals::static_pod_anonymous_status(cluster)?;
    expect_http(
        STEP,
        "an anonymous list of kube-public's ConfigMaps",
        &listing,
        status,
    )
}

/// Step 13: kube-proxy runs as kiln's DaemonSet, one Ready pod on every node, and kiln rendered
/// no kube-proxy static pod.
pub fn kube_proxy_daemonset(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "kube-proxy DaemonSet";
    if let Some(pod) = static_pods(cluster)?
        .into_iter()
        .find(|pod| pod.name == "kube-proxy")
    {
        return Err(Error::check(
            STEP,
            format!("{} has a kube-proxy static pod", pod.node),
        ));
    }
    let kubectl = cluster.kubectl.clone();
    let (ready, nodes) = wait_for(
        "kube-proxy Ready on every node",
        CONVERGE_TIMEOUT,
        POLL,
        || {
            let nodes = kubectl
                .json(&["get", "nodes", "-o", "json"])
                .map_err(|error| error.to_string())?;
            let count = items(&nodes).count() as u64;
            let set = kubectl
                .json(&[
                    "get",
                    "daemonset",
                    "kube-proxy",
                    "-n",
                    "kube-system",
                    "-o",
                    "json",
                ])
                .map_err(|error| error.to_string())?;
            let status = |field: &str| set["status"][field].as_u64().unwrap_or(0);
            let (desired, ready) = (status("desiredNumberScheduled"), status("numberReady"));
            if count > 0 && desired == count && ready == count {
                Ok((ready, count))
            } else {
                Err(format!(
                    "{ready} of {desired} kube-proxy pods Ready, {count} nodes\n{}",
                    kubectl
                        .run(&["get", "pods", "-n", "kube-system", "-o", "wide"])
                        .unwrap_or_default()
                ))
            }
        },
    )?;
    eprintln!("    kube-proxy DaemonSet: {ready} of {nodes} nodes Ready");
    Ok(())
}
