//! `cargo xtask build-cluster` and `graph`, run as a user runs them: the real binary, in real
//! directories, with the environment varied. These cover the configuration (`--no-images`);
//! tests/images.rs and tests/boot.rs cover the node images.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{examples, hashes, succeeded, xtask};

/// Builds the example `name` with default options into a fresh directory (store `store`,
/// secrets `s`, result `result`), failing the test if the build fails.
fn build_example(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = examples().join(format!("{name}.toml"));
    let spec = spec.to_str().expect("utf-8 path");
    succeeded(&xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            spec,
            "--store",
            "store",
            "--secrets",
            "s",
        ],
    ));
    dir
}

#[test]
fn same_digests_from_two_directories_with_different_tz_umask_and_lang() {
    let spec = examples().join("ha.toml");
    let spec = spec.to_str().expect("utf-8 path");
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let secrets = tempfile::tempdir().expect("tempdir");
    let secrets = secrets.path().to_str().expect("utf-8 path");
    succeeded(&xtask(
        first.path(),
        "022",
        &[
            ("TZ", "UTC"),
            ("LANG", "C"),
            ("LC_ALL", "C"),
            ("HOME", first.path().to_str().expect("utf-8")),
        ],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            spec,
            "--secrets",
            secrets,
            "--store",
            "store-a",
            "--out",
            "out",
        ],
    ));
    succeeded(&xtask(
        second.path(),
        "077",
        &[
            ("TZ", "Pacific/Kiritimati"),
            ("LANG", "de_DE.UTF-8"),
            ("LC_ALL", "tr_TR.UTF-8"),
            ("HOME", second.path().to_str().expect("utf-8")),
        ],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            spec,
            "--secrets",
            secrets,
            "--store",
            "nested/store-b",
            "--out",
            "elsewhere/result",
            "--jobs",
            "1",
        ],
    ));
    let a = hashes(&first.path().join("out"));
    let b = hashes(&second.path().join("elsewhere/result"));
    assert!(
        a.len() >= 8,
        "the HA example has a derivation per node at least: {a:?}"
    );
    assert_eq!(a, b);
}

#[test]
fn second_build_comes_from_the_store_and_check_passes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "build-cluster",
        "--no-images",
        "--store",
        "store",
        "--secrets",
        "secrets",
        "--json",
    ];
    let first: serde_json::Value =
        serde_json::from_str(&succeeded(&xtask(dir.path(), "022", &[], &args))).expect("json");
    assert_eq!(first["from_store"], 0);
    assert_eq!(first["built"], first["derivations"]);
    let mut again = args.to_vec();
    again.push("--check");
    let second: serde_json::Value =
        serde_json::from_str(&succeeded(&xtask(dir.path(), "022", &[], &again))).expect("json");
    assert_eq!(second["built"], 0);
    assert_eq!(second["from_store"], first["derivations"]);
    // Links in the result point at the store paths the manifest names.
    let link =
        std::fs::read_link(dir.path().join("result/nodes/node1/plan")).expect("node1's plan link");
    assert!(
        link.starts_with(dir.path().join("store")),
        "{}",
        link.display()
    );
}

#[test]
fn store_is_private_and_outputs_read_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    succeeded(&xtask(
        dir.path(),
        "000",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--store",
            "store",
            "--secrets",
            "secrets",
        ],
    ));
    let mode = std::fs::metadata(dir.path().join("store"))
        .expect("store")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
    let plan = dir.path().join("result/cluster/plan/plan.json");
    let mode = std::fs::metadata(&plan)
        .expect("plan.json")
        .permissions()
        .mode();
    assert_eq!(mode & 0o222, 0, "{} is writable: {mode:o}", plan.display());
}

#[test]
fn a_bad_spec_names_file_line_and_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(examples().join("two-node.toml"))
        .expect("example")
        .replace("name = \"node2\"", "name = \"Node2\"")
        .replace("192.168.50.12/24", "192.168.50.11/24");
    std::fs::write(dir.path().join("bad.toml"), source).expect("write");
    let output = xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            "bad.toml",
            "--store",
            "store",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: bad.toml:23:8: nodes[1].name: `Node2` is not a DNS-1123 label"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "error: bad.toml:25:14: nodes[1].addresses[0]: address 192.168.50.11 is used twice"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("\nerror: 2 errors in bad.toml") && !stderr.contains("error: error"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("result").exists(),
        "nothing is written for a bad spec"
    );
}

#[test]
fn refuses_to_replace_a_directory_that_is_not_a_result() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("precious")).expect("mkdir");
    std::fs::write(dir.path().join("precious/notes.txt"), "keep me").expect("write");
    let output = xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--store",
            "store",
            "--secrets",
            "s",
            "--out",
            "precious",
        ],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("not a kiln result directory"));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("precious/notes.txt")).expect("kept"),
        "keep me"
    );
    // Refused before anything is built: no store, no secrets.
    assert!(!dir.path().join("store").exists(), "nothing was built");
    assert!(!dir.path().join("s").exists(), "no root secret was made");
}

#[test]
fn graph_prints_dot_with_every_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = examples().join("ha.toml");
    let dot = succeeded(&xtask(
        dir.path(),
        "022",
        &[],
        &["graph", "--spec", spec.to_str().expect("utf-8")],
    ));
    assert!(dot.starts_with("digraph"), "{dot}");
    for node in [
        "lb",
        "controller-0",
        "controller-1",
        "controller-2",
        "worker-0",
        "worker-1",
        "worker-2",
    ] {
        assert!(
            dot.contains(&format!("node/{node}/plan")),
            "{node} missing from:\n{dot}"
        );
    }
}

/// Every file below `dir` (following links) that holds a private key: PEM key files, and
/// kubeconfigs that carry one (`client-key-data`, base64 of a PEM key).
fn files_with_private_keys(dir: &Path) -> std::collections::BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, found: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("readable directory") {
            let path = entry.expect("entry").path();
            let meta = std::fs::metadata(&path).expect("metadata (following links)");
            if meta.is_dir() {
                walk(root, &path, found);
                continue;
            }
            let text =
                String::from_utf8_lossy(&std::fs::read(&path).expect("readable file")).into_owned();
            if text.contains("PRIVATE KEY") || text.contains("client-key-data") {
                let relative = path.strip_prefix(root).expect("below root");
                // Drop the artifact directory (pki/, kubeconfigs/): keep the on-node path.
                let on_node: PathBuf = relative.components().skip(1).collect();
                found.insert(on_node.display().to_string());
            }
        }
    }
    let mut found = std::collections::BTreeSet::new();
    walk(dir, dir, &mut found);
    found
}

/// The HA example's nodes hold exactly the private keys of ../shared/reference/pki.md's
/// least-privilege table for their roles (systemd control plane: controllers run no kubelet),
/// plus kiln's one addition: the load balancer's own `/healthz` proxy client key.
#[test]
fn every_node_of_the_ha_example_holds_exactly_its_private_keys() {
    let dir = build_example("ha");
    let controller: Vec<&str> = vec![
        "etc/kubernetes/controller-manager.conf",
        "etc/kubernetes/scheduler.conf",
        "pki/apiserver-etcd-client.key",
        "pki/apiserver-kubelet-client.key",
        "pki/apiserver.key",
        "pki/controller-manager.key",
        "pki/etcd/peer.key",
        "pki/etcd/server.key",
        "pki/front-proxy-client.key",
        "pki/sa.key",
        "pki/scheduler.key",
    ];
    let worker: Vec<&str> = vec![
        "etc/kubernetes/kube-proxy.conf",
        "etc/kubernetes/kubelet.conf",
        "pki/kube-proxy.key",
        "pki/kubelet-client.key",
        "pki/kubelet.key",
    ];
    let nodes = dir.path().join("result/nodes");
    for (node, expected) in [
        ("lb", vec!["pki/healthz-client.key"]),
        ("controller-0", controller.clone()),
        ("controller-1", controller.clone()),
        ("controller-2", controller),
        ("worker-0", worker.clone()),
        ("worker-1", worker.clone()),
        ("worker-2", worker),
    ] {
        let found = files_with_private_keys(&nodes.join(node));
        let expected: std::collections::BTreeSet<String> =
            expected.into_iter().map(str::to_owned).collect();
        assert_eq!(found, expected, "private keys on {node}");
    }
    // "Its own only": each worker's kubelet key is its own, not another node's.
    let key = |node: &str| {
        std::fs::read(nodes.join(node).join("pki/pki/kubelet.key")).expect("kubelet key")
    };
    assert_ne!(key("worker-0"), key("worker-1"));
    let own = std::fs::read(
        dir.path()
            .join("result/cluster/pki/kubelet-serving/worker-0/tls.key"),
    )
    .expect("operator copy");
    assert_eq!(key("worker-0"), own);
}

/// kubeadm reads a control-plane node's pki directory as kiln lays it out: every certificate
/// found, each under its own CA, none missing. It runs with the kubeadm `cargo xtask test` finds
/// beside the binaries build-cluster put in the store (`KILN_KUBERNETES_BIN_DIR`), in the
/// kubeadm configuration API that release reads; without them the test says so and checks
/// nothing.
#[test]
fn kubeadm_reads_a_control_plane_pki_directory() {
    let Some(bin) = std::env::var_os("KILN_KUBERNETES_BIN_DIR") else {
        eprintln!(
            "kubeadm check not run: set KILN_KUBERNETES_BIN_DIR to a directory of Kubernetes binaries"
        );
        return;
    };
    let kubeadm = PathBuf::from(bin).join("kubeadm");
    let version = Command::new(&kubeadm)
        .args(["version", "-o", "short"])
        .output()
        .expect("kubeadm runs");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let parsed: kiln_spec::KubeVersion = version
        .parse()
        .unwrap_or_else(|error| panic!("kubeadm version {version:?}: {error}"));
    // v1beta2 until 1.21, v1beta3 from 1.22, v1beta4 from 1.31 (kubeadm's own API history).
    let api = match parsed.minor {
        ..=21 => "v1beta2",
        22..=30 => "v1beta3",
        _ => "v1beta4",
    };
    // kubeadm's own shape: a control-plane node that is also the etcd member (the Xen example's
    // control plane has no etcd keys: its members run on machines of their own).
    let dir = build_example("kubeadm-bootstrap");
    let node_pki = dir.path().join("result/nodes/cp/pki/pki");
    // kubeadm with an external etcd CA wants `etcd/healthcheck-client`, whose key no kiln node
    // holds (full access to etcd, and nothing on the node reads it): kubeadm reads the node's
    // directory with that one pair added from the operator's output.
    assert!(
        !node_pki.join("etcd/healthcheck-client.key").exists(),
        "the control plane holds etcd's healthcheck client key"
    );
    let pki = dir.path().join("kubeadm-pki");
    copy_tree(&node_pki, &pki);
    let operator = dir
        .path()
        .join("result/cluster/pki/etcd-healthcheck-client");
    for (from, to) in [("tls.crt", "crt"), ("tls.key", "key")] {
        std::fs::copy(
            operator.join(from),
            pki.join(format!("etcd/healthcheck-client.{to}")),
        )
        .expect("copy the healthcheck client pair");
    }
    let config = dir.path().join("kubeadm.yaml");
    std::fs::write(
        &config,
        format!(
            "apiVersion: kubeadm.k8s.io/{api}\nkind: ClusterConfiguration\nkubernetesVersion: {version}\ncertificatesDir: {}\n",
            pki.display()
        ),
    )
    .expect("write the kubeadm config");
    let output = Command::new(&kubeadm)
        .args(["certs", "check-expiration", "--config"])
        .arg(&config)
        .output()
        .expect("kubeadm runs");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for (certificate, authority) in [
        ("apiserver", "ca"),
        ("apiserver-etcd-client", "etcd-ca"),
        ("apiserver-kubelet-client", "ca"),
        ("etcd-healthcheck-client", "etcd-ca"),
        ("etcd-peer", "etcd-ca"),
        ("etcd-server", "etcd-ca"),
        ("front-proxy-client", "front-proxy-ca"),
    ] {
        let row = text
            .lines()
            .find(|line| line.split_whitespace().next() == Some(certificate))
            .unwrap_or_else(|| panic!("kubeadm lists no {certificate}:\n{text}"));
        assert!(
            row.split_whitespace().any(|word| word == authority),
            "{certificate} not under {authority}: {row}"
        );
    }
    for line in text.lines().filter(|line| line.contains("MISSING")) {
        // Only the kubeconfigs kubeadm looks for in /etc/kubernetes may be missing here.
        assert!(
            line.trim_end().ends_with(".conf"),
            "kubeadm misses a certificate: {line}"
        );
    }
}

/// Without `--secrets`, the root secret goes to kiln's data directory (mode 0600 in a 0700
/// directory), not beside the spec; a root secret already beside the spec, where kiln kept it
/// before, is used with a warning naming both places, and the cluster it gives is the one
/// `--secrets` pointing there gives.
#[test]
fn the_root_secret_lives_in_the_data_directory_not_beside_the_spec() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let specs = dir.path().join("specs");
    std::fs::create_dir_all(&specs).expect("mkdir");
    std::fs::copy(
        examples().join("two-node.toml"),
        specs.join("two-node.toml"),
    )
    .expect("copy");
    let spec = specs.join("two-node.toml");
    let spec = spec.to_str().expect("utf-8 path");
    let data_home = data.to_str().expect("utf-8 path");
    let build = |out: &str, extra: &[&str]| {
        let mut arguments = vec![
            "build-cluster",
            "--no-images",
            "--spec",
            spec,
            "--store",
            "store",
            "--out",
            out,
        ];
        arguments.extend(extra);
        xtask(
            dir.path(),
            "022",
            &[("XDG_DATA_HOME", data_home)],
            &arguments,
        )
    };
    let cluster = kiln_testkit::example_plans()["two-node"]
        .cluster
        .name
        .clone();
    succeeded(&build("first", &[]));
    let secret = data.join("kiln/secrets").join(&cluster).join("root.secret");
    let mode = |path: &Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(&secret), 0o600, "{}", secret.display());
    assert_eq!(mode(secret.parent().expect("a directory")), 0o700);
    assert!(
        !specs.join(".kiln-secrets").exists(),
        "a root secret was written beside the spec"
    );

    // A root secret beside the spec from before: used, with a warning, as `--secrets` would.
    let kept = dir.path().join("kept.secret");
    std::fs::copy(&secret, &kept).expect("keep the secret");
    std::fs::remove_dir_all(data.join("kiln/secrets")).expect("rm");
    let legacy = specs.join(".kiln-secrets");
    std::fs::create_dir_all(legacy.join(&cluster)).expect("mkdir");
    std::fs::set_permissions(&legacy, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    std::fs::set_permissions(
        legacy.join(&cluster),
        std::fs::Permissions::from_mode(0o700),
    )
    .expect("chmod");
    std::fs::copy(&kept, legacy.join(&cluster).join("root.secret")).expect("copy");
    let output = build("legacy", &[]);
    succeeded(&output);
    let errors = String::from_utf8_lossy(&output.stderr);
    assert!(
        errors.contains("warning: using the root secret in") && errors.contains("mv "),
        "{errors}"
    );
    assert!(!secret.exists(), "the legacy secret was copied, not used");
    let legacy_dir = legacy.to_str().expect("utf-8 path");
    succeeded(&build("explicit", &["--secrets", legacy_dir]));
    let ca = |out: &str| {
        std::fs::read(dir.path().join(out).join("cluster/pki/ca/tls.crt")).expect("the CA")
    };
    assert_eq!(ca("legacy"), ca("explicit"));
    assert_eq!(
        ca("legacy"),
        ca("first"),
        "the same root secret gives the same CA"
    );
}

/// Copies the tree at `from` to `to` (directories and regular files).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("an entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("a type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A spec whose certificates would already be expired is refused before anything is built.
#[test]
fn a_build_whose_certificates_would_be_born_expired_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(examples().join("two-node.toml"))
        .expect("example")
        .replace(
            "issued_at = 2026-01-01T00:00:00Z",
            "issued_at = 2001-01-01T00:00:00Z",
        );
    assert!(
        source.contains("2001-01-01"),
        "the example's issued_at moved"
    );
    std::fs::write(dir.path().join("old.toml"), source).expect("write");
    let output = xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            "old.toml",
            "--store",
            "store",
            "--secrets",
            "s",
        ],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("expire"), "{stderr}");
    assert!(
        !dir.path().join("result").exists(),
        "nothing is written for a refused build"
    );
    assert!(
        !dir.path().join("store").exists(),
        "the store is not even opened"
    );
}

#[test]
fn a_log_gets_the_plan_and_the_summary_not_a_line_per_derivation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = examples().join("ha.toml");
    let spec = spec.to_str().expect("utf-8 path");
    // `output()` pipes stderr, as CI and `| tee` do: no terminal.
    let output = xtask(
        dir.path(),
        "022",
        &[],
        &[
            "build-cluster",
            "--no-images",
            "--spec",
            spec,
            "--store",
            "store",
            "--secrets",
            "s",
        ],
    );
    succeeded(&output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    let derivations = lines
        .last()
        .and_then(|summary| {
            summary
                .split_once(": ")?
                .1
                .split_once(" derivations")?
                .0
                .parse::<usize>()
                .ok()
        })
        .expect("the summary line counts the derivations");
    // The plan, with the log's elapsed-time prefix (a terminal's progress has none).
    assert!(
        lines[0].starts_with('[')
            && lines[0].ends_with(&format!(
                "] 0 derivations from the store, {derivations} to build"
            )),
        "{stderr}"
    );
    // Quick derivations are not listed one by one: a few lines, not one or two per derivation.
    assert!(lines.len() < derivations / 2, "{stderr}");
}

#[test]
fn a_kubernetes_version_the_package_set_lacks_is_refused_naming_those_it_has() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(examples().join("two-node.toml"))
        .expect("example")
        .replace(
            "kubernetes_version = \"1.37.2\"",
            "kubernetes_version = \"1.31.0\"",
        );
    assert!(source.contains("\"1.31.0\""), "the example's version moved");
    std::fs::write(dir.path().join("old.toml"), source).expect("write");
    let output = xtask(
        dir.path(),
        "022",
        &[],
        &["build-cluster", "--spec", "old.toml", "--store", "store"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: kiln has no kubernetes 1.31.0; it has 1.37.2, ")
            && stderr.contains(", 1.20.2 (cluster.kubernetes_version in the spec"),
        "{stderr}"
    );
    assert!(!dir.path().join("result").exists(), "nothing is written");
    let listed = succeeded(&xtask(dir.path(), "022", &[], &["package", "list"]));
    assert!(
        listed.contains("kubernetes: ") && listed.contains("  1.37.2 (Go modules, Go 1.26.8)"),
        "{listed}"
    );
}
