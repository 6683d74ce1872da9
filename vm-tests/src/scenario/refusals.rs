//! The refusals step: what the API server, the kubelets and etcd must refuse (anonymous
//! requests, other CAs, credentials used for what they are not for), and the helpers that
//! read the answers.

use super::*;

/// Whether the API server runs as a static pod (kiln rendered `kube-apiserver.yaml` into a
/// control-plane node's manifest directory).
pub(super) fn apiserver_is_static_pod(cluster: &Cluster) -> bool {
    !control_plane_manifests(
        cluster,
        &paths::static_pod_manifest(kiln_spec::Component::KubeApiserver.name()),
    )
    .is_empty()
}

/// The API server's minor version, from its own `/version`.
pub(super) fn server_minor(cluster: &Cluster) -> crate::Result<u32> {
    let version = cluster.kubectl.json(&["get", "--raw", "/version"])?;
    version["minor"]
        .as_str()
        .and_then(|minor| minor.trim_end_matches('+').parse().ok())
        .ok_or_else(|| Error::check("refusals", format!("no minor version in {version}")))
}

/// What a static-pod API server answers an anonymous request for anything but its health
/// endpoints: from 1.32 it authenticates anonymous requests only for the endpoints its
/// authentication configuration lists, so anything else is 401; before, RBAC refuses
/// `system:anonymous` (403).
pub(super) fn static_pod_anonymous_status(cluster: &Cluster) -> crate::Result<u16> {
    Ok(if server_minor(cluster)? >= 32 {
        401
    } else {
        403
    })
}

/// Step 7: requests that must fail, each for the right reason.
pub fn refusals(cluster: &mut Cluster) -> crate::Result<()> {
    const STEP: &str = "refusals";
    let admin = admin_json(cluster)?;
    // Every refusal is checked; all that fail are reported together.
    let mut problems: Vec<String> = Vec::new();

    // An anonymous request to the apiserver: 401. (kubectl cannot send one: without
    // credentials kubectl 1.20 asks for a user name, so openssl sends it, verifying the server.)
    let ca = kubernetes_ca(cluster)?;
    let api_name = api_server_name(cluster)?;
    let response = anonymous_get(&ca, cluster.api.1, &api_name, "/api")?;
    if apiserver_is_static_pod(cluster) {
        // A static-pod API server keeps anonymous authentication for the kubelet's
        // unauthenticated probes of /livez (as kubeadm's does): from 1.32 for its health
        // endpoints only (401 for anything else), before that for every request, which RBAC
        // refuses (403, as system:anonymous); /livez answers either way.
        let status = static_pod_anonymous_status(cluster)?;
        note(
            &mut problems,
            expect_http(
                STEP,
                "an anonymous request to the static-pod apiserver",
                &response,
                status,
            ),
        );
        if status == 403 && !response.contains("system:anonymous") {
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
        let as_node = if joins_with_token(cluster, last) {
            // Its credential is the certificate its CSR got, on the node alone.
            kubectl_as_joined(cluster, last)?
        } else {
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
            Kubectl::new(&cluster.kubectl.program, &target)
        };
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

    // PodSecurity admission (from 1.23; the scenarios' specs keep its default, `baseline`): a
    // pod on the host's network is refused in the default namespace, and the same pod without
    // it is admitted. Server-side dry runs: admission runs, nothing is created.
    if server_minor(cluster)? >= kiln_spec::POD_SECURITY_MINOR {
        let image = format!("--image={TEST_IMAGE}");
        let dry_run = |overrides: &str| {
            cluster.kubectl.output(&[
                "run",
                "kiln-pod-security-probe",
                &image,
                "--restart=Never",
                "--dry-run=server",
                &format!("--overrides={overrides}"),
            ])
        };
        let host_network = dry_run(r#"{"apiVersion":"v1","spec":{"hostNetwork":true}}"#)?;
        let text = describe(&host_network);
        if host_network.status.success() || !text.contains("violates PodSecurity \"baseline") {
            problems.push(format!(
                "a pod on the host network was not refused by PodSecurity baseline: {text}"
            ));
        } else {
            let plain = dry_run(r#"{"apiVersion":"v1"}"#)?;
            if plain.status.success() {
                eprintln!(
                    "    PodSecurity: a hostNetwork pod refused (baseline), a plain one admitted"
                );
            } else {
                problems.push(format!(
                    "a plain pod was refused by the same dry run: {}",
                    describe(&plain)
                ));
            }
        }
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
    // The member's own server certificate (a client certificate too) is the control: same
    // connection, etcd's CA, accepted.
    for node in cluster.nodes_with_role("etcd") {
        let health = etcd_request(cluster, &node, "GET /health", "", ETCD_MEMBER_CLIENT)?;
        if !health.contains("\"health\":\"true\"") {
            return Err(Error::check(
                STEP,
                format!("etcd on {node} with its own server certificate answered {health:?}"),
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
    all_or_nothing(STEP, "refusal(s) missing", &problems)
}

/// `kubeconfig`, a kubeconfig kiln built for `node`, as kubectl on this machine can read it:
/// each certificate or key it names by its path on the node, in the node's PKI directory
/// (`options.kubeconfig_certificates = "referenced"`), is named by that file in the node's
/// `pki` output instead. A kubeconfig that embeds everything is returned as it is.
pub(super) fn kubeconfig_on_host(
    cluster: &Cluster,
    node: &str,
    kubeconfig: &Path,
) -> crate::Result<PathBuf> {
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
pub(super) fn note(problems: &mut Vec<String>, result: crate::Result<()>) {
    match result {
        Err(Error::Check { message, .. }) => problems.push(message),
        Err(error) => problems.push(error.to_string()),
        Ok(()) => {}
    }
}

/// `GET path` without credentials to 127.0.0.1:`port`, verifying the server's certificate
/// against `ca` for `server_name` (an address or a DNS name); the raw HTTP response.
pub(super) fn anonymous_get(
    ca: &Path,
    port: u16,
    server_name: &str,
    path: &str,
) -> crate::Result<String> {
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

/// The status code of a raw HTTP `response`'s status line (`HTTP/1.0 403 Forbidden`: 403).
pub(super) fn http_status(response: &str) -> Option<u16> {
    response
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse::<u16>().ok())
}

/// Fails unless the raw HTTP `response` has `status`.
pub(super) fn expect_http(
    step: &str,
    what: &str,
    response: &str,
    status: u16,
) -> crate::Result<()> {
    if http_status(response) != Some(status) {
        return Err(Error::check(
            step,
            format!(
                "{what}: expected HTTP {status}, got:\n{}",
                crate::tail_lines(response, 12)
            ),
        ));
    }
    if status < 400 {
        eprintln!("    {what}: answered {status}");
    } else {
        eprintln!("    {what}: refused with {status}");
    }
    Ok(())
}

pub(super) fn array_mut<'a>(
    config: &'a mut Value,
    key: &str,
) -> impl Iterator<Item = &'a mut Value> {
    config
        .get_mut(key)
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// Runs kubectl (verbose, so the HTTP status is printed) with `config` written as
/// `<run_dir>/<name>.kubeconfig`.
pub(super) fn kubectl_with(
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
pub(super) fn expect_status(
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
pub(super) fn response_status(line: &str) -> Option<u16> {
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
pub(super) fn other_ca(result_dir: &Path) -> crate::Result<Vec<u8>> {
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
pub(super) fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
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
