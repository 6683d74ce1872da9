//! A real etcd and kube-apiserver started with kiln's flags, certificates (from kiln-pki),
//! encryption configuration and audit policy, on loopback only, then kubectl of the same
//! release validating every static pod and bootstrap object against the server.
//!
//! Opt in with `KILN_KUBERNETES_BIN_DIR=<dir>` (kube-apiserver and kubectl of one release)
//! and an etcd binary: `KILN_ETCD` (`cargo xtask test` sets it to the etcd kiln's package set
//! runs with that release), else `<dir>/etcd` or Debian's `/usr/bin/etcd`. The node's address and
//! ports are rewritten to 127.0.0.1 and unused ports, and `/etc/kubernetes` to a temporary
//! directory; everything else is exactly what kiln renders for the binaries' minor version. Both processes are killed by the
//! test, which waits a bounded number of times for the API server.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kiln_spec::Component;

const ETCD_CLIENT_PORT: &str = "23791";
const ETCD_PEER_PORT: &str = "23801";
const ETCD_METRICS_PORT: &str = "23811";
const APISERVER_PORT: &str = "16443";

/// Kills the process when dropped, so a failing assertion leaves nothing running.
struct Running(Child);

impl Running {
    /// Kills the process and waits for it.
    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(path, contents).expect("write");
}

/// `flags` with on-node paths moved under `root`, the node's address replaced by loopback and
/// the well-known ports by this test's; a list that repeats itself after that is deduplicated.
fn localize(flags: Vec<(String, String)>, root: &Path, address: &str) -> Vec<String> {
    let root = root.display().to_string();
    flags
        .into_iter()
        .map(|(name, value)| {
            let value = value
                .replace("/etc/kubernetes", &format!("{root}/etc/kubernetes"))
                .replace("/var/lib/etcd", &format!("{root}/var/lib/etcd"))
                .replace("/var/log/kubernetes", &format!("{root}/var/log/kubernetes"))
                .replace(address, "127.0.0.1")
                .replace(":2379", &format!(":{ETCD_CLIENT_PORT}"))
                .replace(":2380", &format!(":{ETCD_PEER_PORT}"))
                .replace(":2381", &format!(":{ETCD_METRICS_PORT}"));
            let mut parts: Vec<&str> = Vec::new();
            for part in value.split(',') {
                if !parts.contains(&part) {
                    parts.push(part);
                }
            }
            let value = match name.as_str() {
                "secure-port" => APISERVER_PORT.to_owned(),
                _ => parts.join(","),
            };
            format!("--{name}={value}")
        })
        .collect()
}

fn kubectl(program: &Path, kubeconfig: &Path, arguments: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(arguments)
        .output()
        .expect("runs kubectl");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn admin_kubeconfig(path: &Path, pki: &kiln_pki::Pki, user: &str, root: &Path) {
    let ca = pki
        .authorities
        .get(&kiln_spec::CaName::Kubernetes)
        .expect("the Kubernetes CA")
        .certificate_pem();
    let leaf = &pki.leaves[user];
    let dir = root.join("operator");
    write(&dir.join("ca.crt"), ca.as_bytes());
    write(
        &dir.join(format!("{user}.crt")),
        leaf.certificate_pem.as_bytes(),
    );
    write(&dir.join(format!("{user}.key")), leaf.key_pem.as_bytes());
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {dir}/ca.crt\n    server: https://127.0.0.1:{APISERVER_PORT}\n  name: test\ncontexts:\n- context:\n    cluster: test\n    user: {user}\n  name: test\ncurrent-context: test\nusers:\n- name: {user}\n  user:\n    client-certificate: {dir}/{user}.crt\n    client-key: {dir}/{user}.key\n",
        dir = dir.display()
    );
    write(path, text.as_bytes());
}

/// The running etcd member and API server of [`start`], with what the test needs of them.
struct Servers {
    /// The cluster's PKI.
    pki: kiln_pki::Pki,
    /// What kiln rendered for the control-plane node and the member, under the root.
    files: Vec<kiln_manifests::RenderedFile>,
    /// The break-glass super-admin's kubeconfig.
    super_admin: PathBuf,
    _etcd: Running,
    apiserver: Running,
}

/// The tests share fixed ports: one runs at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Starts `member`'s etcd (alone: its --initial-cluster cut down to itself) and `node`'s API
/// server (its --etcd-servers naming only that member) of `plan`, from the binaries in `bin`
/// and `etcd`, with every file kiln places on and renders for the two nodes under `root`, and
/// waits until the API server is ready.
fn start(
    bin: &Path,
    etcd: &Path,
    plan: &kiln_spec::Plan,
    node: &kiln_spec::NodePlan,
    member: &kiln_spec::NodePlan,
    root: &Path,
) -> Servers {
    let member_address = member.primary_address().to_string();
    let secret = kiln_pki::RootSecret::from_bytes([7; kiln_pki::ROOT_SECRET_LEN]);
    let pki = kiln_pki::issue(plan, &secret, &BTreeMap::new()).expect("a PKI");
    for placed in [node, member] {
        for file in kiln_pki::placement(plan, placed) {
            let contents = pki.contents(&file.source).expect("placed files exist");
            write(
                &root.join("etc/kubernetes").join(&file.path),
                contents.as_bytes(),
            );
        }
    }
    let releases = common::releases(plan);
    let mut files = Vec::new();
    for rendered in [node, member] {
        files.extend(
            kiln_manifests::render_node(plan, rendered, &common::test_key, &releases)
                .expect("renders"),
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path && a.contents == b.contents);
    for file in &files {
        write(&root.join(&file.path), &file.contents);
    }
    std::fs::create_dir_all(root.join("var/log/kubernetes")).expect("mkdir");

    let mut etcd_flags = localize(
        kiln_manifests::flags(plan, member, Component::Etcd),
        root,
        &member_address,
    );
    for flag in &mut etcd_flags {
        if flag.starts_with("--initial-cluster=") {
            *flag = format!(
                "--initial-cluster={}=https://127.0.0.1:{ETCD_PEER_PORT}",
                member.name
            );
        }
    }
    let etcd_log = std::fs::File::create(root.join("etcd.log")).expect("a log");
    let _etcd = Running(
        Command::new(etcd)
            .args(&etcd_flags)
            .stdout(Stdio::null())
            .stderr(etcd_log)
            .spawn()
            .expect("starts etcd"),
    );
    let super_admin = root.join("super-admin.conf");
    admin_kubeconfig(&super_admin, &pki, "super-admin", root);
    let apiserver = start_apiserver(bin, plan, node, root, &super_admin);
    Servers {
        pki,
        files,
        super_admin,
        _etcd,
        apiserver,
    }
}

/// Starts `node`'s API server of `plan` from `bin` with the files under `root` (see [`start`]),
/// and waits until it is ready.
fn start_apiserver(
    bin: &Path,
    plan: &kiln_spec::Plan,
    node: &kiln_spec::NodePlan,
    root: &Path,
    super_admin: &Path,
) -> Running {
    let kubectl_program = bin.join("kubectl");
    let address = node.primary_address().to_string();
    let apiserver_flags = localize(
        kiln_manifests::flags(plan, node, Component::KubeApiserver),
        root,
        &address,
    );
    // The two changes to kiln's flags. ServiceAccount admission would make every Pod wait for
    // a token that only the controller manager (not running here) creates. On a node the
    // kubelet creates mirror pods, which that admission skips.
    let mut apiserver_flags = apiserver_flags;
    for flag in &mut apiserver_flags {
        if flag.starts_with("--etcd-servers=") {
            *flag = format!("--etcd-servers=https://127.0.0.1:{ETCD_CLIENT_PORT}");
        }
    }
    apiserver_flags.push("--disable-admission-plugins=ServiceAccount".to_owned());
    // And the other: the address is rewritten to loopback here, which the API server refuses
    // to publish as the `kubernetes` Service's endpoint from 1.3x on ("may not be in the
    // loopback range"); a node advertises its real address.
    apiserver_flags.push("--endpoint-reconciler-type=none".to_owned());
    let apiserver_log = std::fs::File::create(root.join("apiserver.log")).expect("a log");
    let mut apiserver = Running(
        Command::new(bin.join("kube-apiserver"))
            .args(&apiserver_flags)
            .stdout(Stdio::null())
            .stderr(apiserver_log)
            .spawn()
            .expect("starts kube-apiserver"),
    );

    let mut ready = false;
    for _ in 0..120 {
        if let Ok(Some(status)) = apiserver.0.try_wait() {
            let log = std::fs::read_to_string(root.join("apiserver.log")).unwrap_or_default();
            panic!("kube-apiserver exited with {status}:\n{log}");
        }
        if kubectl(&kubectl_program, super_admin, &["get", "--raw=/readyz"]).0 {
            ready = true;
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = || std::fs::read_to_string(root.join("apiserver.log")).unwrap_or_default();
    assert!(ready, "kube-apiserver never became ready:\n{}", log());
    apiserver
}

#[test]
fn kubectl_validates_kiln_objects_against_a_real_api_server() {
    let Some((dir, etcd)) = binaries() else {
        return;
    };
    eprintln!("the API server check runs etcd {}", etcd.display());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kubectl_program = dir.join("kubectl");
    // xen-static-pods: static pods for everything, kube-proxy among them, audit and aescbc on;
    // validated and rendered for the release of the binaries under test, so the defaults that
    // follow the version do too (CoreDNS 1.7.0's Corefile on 1.20); with EventRateLimit
    // admission added, which kiln configures when the spec lists it.
    let version = kiln_spec::KubeVersion {
        major: 1,
        minor: common::minor_of(&dir.join("kube-apiserver")),
        patch: 0,
    };
    let plans = kiln_testkit::example_plans_at(version);
    let mut plan = plans
        .get("xen-static-pods")
        .expect("xen-static-pods")
        .clone();
    plan.options
        .admission_plugins
        .push(kiln_manifests::EVENT_RATE_LIMIT_PLUGIN.to_owned());
    let plan = &plan;
    let node = plan.node("master").expect("master");
    // The example's etcd runs on three machines of its own; the first one's member runs here,
    // alone (its --initial-cluster cut down to itself), and the API server's --etcd-servers
    // names only it.
    let member = plan
        .nodes
        .iter()
        .find(|node| node.has(kiln_spec::Role::Etcd))
        .expect("an etcd member");
    let work = tempfile::tempdir().expect("a temporary directory");
    let root = work.path();

    let mut servers = start(&dir, &etcd, plan, node, member, root);
    let (pki, files, super_admin) = (&servers.pki, &servers.files, &servers.super_admin);

    // Every static pod and bootstrap object passes the server's validation.
    let mut checked = Vec::new();
    for file in files {
        if !(file.path.contains("/manifests/") || file.path.contains("/addons/")) {
            continue;
        }
        let path = root.join(&file.path);
        let path = path.display().to_string();
        let (ok, text) = kubectl(
            &kubectl_program,
            super_admin,
            &["create", "--dry-run=server", "-f", &path, "-o", "name"],
        );
        assert!(ok, "{}: {text}", file.path);
        let (ok, text) = kubectl(
            &kubectl_program,
            super_admin,
            &["create", "--dry-run=client", "-f", &path, "-o", "json"],
        );
        assert!(ok, "{}: {text}", file.path);
        checked.push(file.path.clone());
    }
    assert!(checked.len() >= 5, "{checked:?}");

    // PodSecurity admission, from the admission configuration kiln wrote (from 1.23, `baseline`
    // by default): outside kube-system a pod on the host's network is refused and the same pod
    // without it admitted (server-side dry runs; nothing is created).
    if let Some(level) = plan.options.pod_security {
        assert_eq!(level, kiln_spec::PodSecurityLevel::Baseline);
        let dry_run = |overrides: &str| {
            kubectl(
                &kubectl_program,
                super_admin,
                &[
                    "run",
                    "pod-security-probe",
                    "--namespace=default",
                    "--image=kiln.local/probe:1",
                    "--restart=Never",
                    "--dry-run=server",
                    &format!("--overrides={overrides}"),
                ],
            )
        };
        let (ok, text) = dry_run(r#"{"apiVersion":"v1","spec":{"hostNetwork":true}}"#);
        assert!(
            !ok && text.contains("violates PodSecurity \"baseline"),
            "a hostNetwork pod: {text}"
        );
        let (ok, text) = dry_run(r#"{"apiVersion":"v1"}"#);
        assert!(ok, "a plain pod: {text}");
    } else {
        assert!(version.minor < kiln_spec::POD_SECURITY_MINOR);
    }

    // EventRateLimit, from the same admission configuration: a namespace's bucket holds 100
    // Events and refills at 50 a second, so of 400 Events created as fast as one kubectl
    // sends them, some are refused with 429 and kiln's message names the namespace's limit.
    let (namespace_limit, _, burst, _) = kiln_manifests::EVENT_RATE_LIMITS[1];
    assert_eq!(namespace_limit, "Namespace");
    let flood: Vec<String> = (0..4 * burst)
        .map(|index| {
            format!(
                "- apiVersion: v1\n  kind: Event\n  metadata:\n    name: flood-{index}\n    namespace: default\n  involvedObject:\n    kind: ConfigMap\n    name: flood\n    namespace: default\n  reason: Flood\n  message: event {index}\n  type: Normal\n"
            )
        })
        .collect();
    let flood_file = root.join("flood.yaml");
    write(
        &flood_file,
        format!("apiVersion: v1\nkind: List\nitems:\n{}", flood.concat()).as_bytes(),
    );
    let (ok, text) = kubectl(
        &kubectl_program,
        super_admin,
        &[
            "create",
            "-f",
            &flood_file.display().to_string(),
            "-o",
            "name",
        ],
    );
    let created = text
        .lines()
        .filter(|line| line.starts_with("event/"))
        .count();
    assert!(
        !ok && text.contains("limit reached on type Namespace for key default"),
        "400 Events at once: {created} created\n{}",
        text.lines().rev().take(5).collect::<Vec<_>>().join("\n")
    );
    assert!(
        created >= burst as usize,
        "a full bucket takes {burst}: {created} created"
    );

    // The RBAC bindings work: the everyday admin (group kiln:cluster-admins, not
    // system:masters) may do anything once rbac.yaml is applied.
    let rbac = root
        .join("etc/kubernetes/addons/rbac.yaml")
        .display()
        .to_string();
    let (ok, text) = kubectl(&kubectl_program, super_admin, &["apply", "-f", &rbac]);
    assert!(ok, "{text}");
    let admin = root.join("admin.conf");
    admin_kubeconfig(&admin, pki, "admin", root);
    let (ok, text) = kubectl(&kubectl_program, &admin, &["auth", "can-i", "*", "*"]);
    assert!(ok && text.trim() == "yes", "admin: {text}");

    // Secrets round-trip through the aescbc provider, and the audit log records the request
    // without its body.
    let (ok, text) = kubectl(
        &kubectl_program,
        &admin,
        &[
            "create",
            "secret",
            "generic",
            "kiln-check",
            "--from-literal=token=sekrit-value",
        ],
    );
    assert!(ok, "{text}");
    let read_secret = || {
        let (ok, text) = kubectl(
            &kubectl_program,
            &admin,
            &[
                "get",
                "secret",
                "kiln-check",
                "-o",
                "jsonpath={.data.token}",
            ],
        );
        assert!(ok && text.trim() == "c2Vrcml0LXZhbHVl", "{text}");
    };
    read_secret();
    let audit =
        std::fs::read_to_string(root.join("var/log/kubernetes/audit.log")).expect("an audit log");
    assert!(
        audit.contains("kiln-check"),
        "the audit log has no event for the Secret"
    );
    assert!(!audit.contains("c2Vrcml0LXZhbHVl") && !audit.contains("sekrit-value"));
    assert!(!audit.contains("\"stage\":\"RequestReceived\""));

    // The Secret is stored encrypted: read it straight from etcd (its JSON gateway, with the
    // API server's etcd client certificate) and look for the aescbc envelope, without the
    // plaintext.
    let pki_dir = root.join("etc/kubernetes/pki");
    let raw_secret = || {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--fail"])
            .arg("--cacert")
            .arg(pki_dir.join("etcd/ca.crt"))
            .arg("--cert")
            .arg(pki_dir.join("apiserver-etcd-client.crt"))
            .arg("--key")
            .arg(pki_dir.join("apiserver-etcd-client.key"))
            .arg(format!("https://127.0.0.1:{ETCD_CLIENT_PORT}/v3/kv/range"))
            // base64("/registry/secrets/default/kiln-check")
            .arg("--data")
            .arg("{\"key\":\"L3JlZ2lzdHJ5L3NlY3JldHMvZGVmYXVsdC9raWxuLWNoZWNr\"}")
            .output()
            .expect("runs curl");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let response: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
        let value = response["kvs"][0]["value"]
            .as_str()
            .expect("the Secret is in etcd");
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(value)
            .expect("base64");
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let stored = raw_secret();
    assert!(stored.starts_with("k8s:enc:aescbc:v1:key1:"), "{stored}");
    assert!(!stored.contains("sekrit-value"));

    // Key rotation as `options.encryption_key_generations` documents it, each step a restart of
    // the API server with what kiln renders for the generations: [1, 0] reads the Secret
    // written under key1 and writes key2; after every Secret is rewritten, [1] alone reads it.
    for (generations, rewrite, prefix) in [
        (vec![1, 0], false, "k8s:enc:aescbc:v1:key1:"),
        (vec![1, 0], true, "k8s:enc:aescbc:v1:key2:"),
        (vec![1], false, "k8s:enc:aescbc:v1:key2:"),
    ] {
        let mut rotated = plan.clone();
        rotated.options.encryption_key_generations = generations.clone();
        let config = kiln_manifests::render_node(
            &rotated,
            node,
            &common::test_key,
            &common::releases(&rotated),
        )
        .expect("renders")
        .into_iter()
        .find(|file| file.path.ends_with("encryption-config.yaml"))
        .expect("an encryption configuration");
        servers.apiserver.stop();
        write(&root.join(&config.path), &config.contents);
        servers.apiserver = start_apiserver(&dir, &rotated, node, root, super_admin);
        read_secret();
        if rewrite {
            let (ok, json) = kubectl(
                &kubectl_program,
                &admin,
                &["get", "secret", "kiln-check", "-o", "json"],
            );
            assert!(ok, "{json}");
            let path = root.join("kiln-check.json");
            write(&path, json.as_bytes());
            let path = path.display().to_string();
            let (ok, text) = kubectl(&kubectl_program, &admin, &["replace", "-f", &path]);
            assert!(ok, "{text}");
        }
        let stored = raw_secret();
        assert!(stored.starts_with(prefix), "{generations:?}: {stored}");
        assert!(!stored.contains("sekrit-value"));
    }

    // The kube-proxy DaemonSet and its objects (kubeadm-bootstrap) pass validation too.
    let kubeadm = &plans["kubeadm-bootstrap"];
    let files = kiln_manifests::render_node(
        kubeadm,
        kubeadm.node("cp").expect("cp is in the plan"),
        &common::test_key,
        &common::releases(kubeadm),
    )
    .expect("renders");
    let daemon_set = files
        .iter()
        .find(|file| file.path.ends_with("addons/kube-proxy.yaml"))
        .expect("a kube-proxy DaemonSet");
    let path = root.join("kube-proxy-daemonset.yaml");
    write(&path, &daemon_set.contents);
    let path = path.display().to_string();
    let (ok, text) = kubectl(
        &kubectl_program,
        super_admin,
        &["create", "--dry-run=server", "-f", &path, "-o", "name"],
    );
    assert!(ok, "{text}");
    assert_eq!(text.lines().count(), 4, "{text}");
}

/// The binaries the live tests run: `KILN_KUBERNETES_BIN_DIR` and an etcd, or `None` (the
/// test says why it is skipped).
fn binaries() -> Option<(PathBuf, PathBuf)> {
    let Some(dir) = std::env::var_os("KILN_KUBERNETES_BIN_DIR").map(PathBuf::from) else {
        eprintln!("KILN_KUBERNETES_BIN_DIR is not set: the API server check is skipped");
        return None;
    };
    let chosen = std::env::var_os("KILN_ETCD").map(PathBuf::from);
    if let Some(etcd) = &chosen {
        assert!(etcd.is_file(), "KILN_ETCD={} is not a file", etcd.display());
    }
    let Some(etcd) = chosen
        .into_iter()
        .chain([dir.join("etcd"), PathBuf::from("/usr/bin/etcd")])
        .find(|path| path.exists())
    else {
        eprintln!("no etcd binary: the API server check is skipped");
        return None;
    };
    Some((dir, etcd))
}

/// A kubeconfig for the test's API server with the cluster CA and `user` (YAML lines under
/// `user:`), written by hand, not by kiln.
fn client_kubeconfig(path: &Path, root: &Path, user: &str) {
    let ca = root.join("etc/kubernetes/pki/ca.crt");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: {}\n    server: https://127.0.0.1:{APISERVER_PORT}\n  name: test\ncontexts:\n- context:\n    cluster: test\n    user: client\n  name: test\ncurrent-context: test\nusers:\n- name: client\n  user: {user}\n",
        ca.display()
    );
    write(path, text.as_bytes());
}

/// The kubeadm example's bootstrap token, against a real API server with kiln's flags: its
/// holder is `system:bootstrap:<id>` in kubeadm's groups, may create CSRs and nothing the test
/// asks beyond (Secrets, Nodes: 403); an anonymous client reads `kube-public/cluster-info`
/// and only that; and a token whose Secret says it expired is refused (401).
#[test]
fn a_bootstrap_token_joins_and_does_nothing_else() {
    let Some((dir, etcd)) = binaries() else {
        return;
    };
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let kubectl_program = dir.join("kubectl");
    let minor = common::minor_of(&dir.join("kube-apiserver"));
    let version = kiln_spec::KubeVersion {
        major: 1,
        minor,
        patch: 0,
    };
    let plans = kiln_testkit::example_plans_at(version);
    let plan = &plans["kubeadm-bootstrap"];
    let node = plan.node("cp").expect("cp");
    let work = tempfile::tempdir().expect("a temporary directory");
    let root = work.path();
    let servers = start(&dir, &etcd, plan, node, node, root);

    let secret = kiln_pki::RootSecret::from_bytes([7; kiln_pki::ROOT_SECRET_LEN]);
    let token = secret.derive_bootstrap_token(plan.pki.generation);
    let ca_pem = servers.pki.authorities[&kiln_spec::CaName::Kubernetes].certificate_pem();
    let objects = kiln_manifests::bootstrap_objects(plan, token.id(), token.secret(), ca_pem)
        .expect("the kubeadm example bootstraps");
    // The file kiln-cluster writes for the operator (`cluster/bootstrap-token`).
    let objects_file = root.join("bootstrap-token.yaml");
    write(
        &objects_file,
        objects.to_yaml().expect("the objects are YAML").as_bytes(),
    );
    let (ok, text) = kubectl(
        &kubectl_program,
        &servers.super_admin,
        &["apply", "-f", &objects_file.display().to_string()],
    );
    assert!(ok, "{text}");

    let joiner = root.join("bootstrap.conf");
    client_kubeconfig(&joiner, root, &format!("\n    token: {}", token.token()));
    let as_joiner = |arguments: &[&str]| kubectl(&kubectl_program, &joiner, arguments);
    let (ok, text) = as_joiner(&[
        "auth",
        "can-i",
        "create",
        "certificatesigningrequests.certificates.k8s.io",
    ]);
    // kubectl adds a warning that CSRs are cluster-scoped after its answer.
    assert!(
        ok && text.lines().next() == Some("yes"),
        "create CSRs: {text}"
    );
    for forbidden in [
        &["get", "secrets", "-n", "kube-system"][..],
        &["get", "nodes"][..],
    ] {
        let (ok, text) = as_joiner(forbidden);
        assert!(!ok && text.contains("Forbidden"), "{forbidden:?}: {text}");
        assert!(
            text.contains(&format!("system:bootstrap:{}", token.id())),
            "{text}"
        );
    }
    if minor >= 28 {
        let (ok, text) = as_joiner(&["auth", "whoami", "-o", "json"]);
        assert!(ok, "{text}");
        let who: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let groups = who["status"]["userInfo"]["groups"].to_string();
        assert!(
            groups.contains("system:bootstrappers")
                && groups.contains(kiln_manifests::BOOTSTRAPPERS_GROUP),
            "{text}"
        );
    }

    // The same token shape, its Secret expired: refused as unauthenticated.
    let expired = serde_json::json!({
        "apiVersion": "v1", "kind": "Secret", "type": "bootstrap.kubernetes.io/token",
        "metadata": {"name": "bootstrap-token-exp000", "namespace": "kube-system"},
        "stringData": {
            "token-id": "exp000", "token-secret": "0123456789abcdef",
            "expiration": "2000-01-01T00:00:00Z",
            "usage-bootstrap-authentication": "true",
            "auth-extra-groups": kiln_manifests::BOOTSTRAPPERS_GROUP
        }
    });
    let expired_file = root.join("expired.json");
    write(&expired_file, expired.to_string().as_bytes());
    let (ok, text) = kubectl(
        &kubectl_program,
        &servers.super_admin,
        &["create", "-f", &expired_file.display().to_string()],
    );
    assert!(ok, "{text}");
    let late = root.join("expired.conf");
    client_kubeconfig(&late, root, "\n    token: exp000.0123456789abcdef");
    let (ok, text) = kubectl(&kubectl_program, &late, &["get", "--raw", "/api"]);
    assert!(
        !ok && text.contains("Unauthorized"),
        "expired token: {text}"
    );

    // Kubernetes 1.20.2 as Debian builds it (Go 1.19) crashes serving cluster-info: its
    // vendored modern-go/reflect2 (before 1.0.2) faults iterating a map under Go 1.18 and
    // later ("fatal error: fault" in mapiterinit, from json-iterator's sortKeysMapEncoder), and
    // the API server exits. Measured here on 2026-12-05; 1.37.2 serves it.
    if minor < 21 {
        eprintln!(
            "Kubernetes 1.{minor}: the anonymous cluster-info read is skipped (the API server crashes serving it)"
        );
        return;
    }
    // Anonymous requests, with curl (kubectl asks for a user name when it has none): the
    // status code and body of GET `path`.
    let anonymous = |path: &str| -> (String, String) {
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--write-out", "\n%{http_code}"])
            .arg("--cacert")
            .arg(root.join("etc/kubernetes/pki/ca.crt"))
            .arg(format!("https://127.0.0.1:{APISERVER_PORT}{path}"))
            .output()
            .expect("runs curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
        let errors = String::from_utf8_lossy(&output.stderr);
        (code.to_owned(), format!("{body}{errors}"))
    };
    let public = format!(
        "/api/v1/namespaces/{}/configmaps",
        kiln_manifests::PUBLIC_NAMESPACE
    );
    let (code, body) = anonymous(&format!("{public}/{}", kiln_manifests::CLUSTER_INFO));
    assert_eq!(code, "200", "anonymous cluster-info: {body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    let kubeconfig = info["data"]["kubeconfig"].as_str().expect("a kubeconfig");
    assert!(
        kubeconfig.contains(&plan.cluster.endpoint.url()),
        "{kubeconfig}"
    );
    // Anything else: RBAC refuses it (403) where the API server takes every anonymous
    // request, and from 1.32, where it takes them only for the listed endpoints, it is not
    // authenticated at all (401).
    let expected = match kiln_manifests::anonymous_access(plan) {
        kiln_manifests::AnonymousAccess::Endpoints(paths) => {
            assert!(
                paths.iter().any(|path| path.ends_with("/cluster-info")),
                "{paths:?}"
            );
            "401"
        }
        kiln_manifests::AnonymousAccess::Unrestricted => "403",
        kiln_manifests::AnonymousAccess::Refused => {
            panic!("a bootstrap-token cluster refuses cluster-info")
        }
    };
    let (code, body) = anonymous(&public);
    assert_eq!(code, expected, "anonymous list of kube-public: {body}");
    let (code, body) = anonymous("/api");
    assert_eq!(code, expected, "anonymous /api: {body}");
    let (code, body) = anonymous("/livez");
    assert_eq!(code, "200", "anonymous /livez: {body}");
}
