//! `cargo xtask build-cluster` and `graph`, run as a user runs them: the real binary, in real
//! directories, with the environment varied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Runs the xtask binary through `sh` so that the umask can be set, in `dir`, with `env`.
fn xtask(dir: &Path, umask: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(dir)
        .env_remove("KILN_STORE");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the xtask binary runs")
}

fn stdout(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Every artifact's digest and content hash from a result directory's manifest.
fn hashes(result: &Path) -> BTreeMap<String, (String, String)> {
    let text =
        std::fs::read_to_string(result.join("manifest.json")).expect("manifest.json written");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    manifest["artifacts"]
        .as_object()
        .expect("artifacts map")
        .iter()
        .map(|(id, entry)| {
            let field = |name: &str| entry[name].as_str().expect("hex digest").to_owned();
            (id.clone(), (field("digest"), field("content_hash")))
        })
        .collect()
}

#[test]
fn same_digests_from_two_directories_with_different_tz_umask_and_lang() {
    let spec = examples().join("ha.toml");
    let spec = spec.to_str().expect("utf-8 path");
    let first = tempfile::tempdir().expect("tempdir");
    let second = tempfile::tempdir().expect("tempdir");
    let secrets = tempfile::tempdir().expect("tempdir");
    let secrets = secrets.path().to_str().expect("utf-8 path");
    stdout(&xtask(
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
    stdout(&xtask(
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
        "--store",
        "store",
        "--secrets",
        "secrets",
        "--json",
    ];
    let first: serde_json::Value =
        serde_json::from_str(&stdout(&xtask(dir.path(), "022", &[], &args))).expect("json");
    assert_eq!(first["from_store"], 0);
    assert_eq!(first["built"], first["derivations"]);
    let mut again = args.to_vec();
    again.push("--check");
    let second: serde_json::Value =
        serde_json::from_str(&stdout(&xtask(dir.path(), "022", &[], &again))).expect("json");
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
    stdout(&xtask(
        dir.path(),
        "000",
        &[],
        &["build-cluster", "--store", "store", "--secrets", "secrets"],
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
        &["build-cluster", "--spec", "bad.toml", "--store", "store"],
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
}

#[test]
fn graph_prints_dot_with_every_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = examples().join("ha.toml");
    let dot = stdout(&xtask(
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
