//! The two-node example's nodes as cloud-init user-data and as Ignition configs, built from
//! the cluster graph (only what those derivations need, not the images): `cloud-init schema`
//! accepts the user-data, the Ignition 3.3.0 JSON schema accepts the config, both carry the
//! same tree, and that tree holds every file of the node's rendered artifacts, byte for byte,
//! with keys `0600` in a `0700` directory.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
use kiln_image::provision::{CLOUD_INIT_USER_DATA, IGNITION_CONFIG, TreeEntry, read_tree};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../image/tests/fixtures/ignition-v3_3.schema.json"
);

/// Builds, in a fresh store below `dir`, every node's `cloud-init`, `ignition` and rendered
/// artifacts; returns each node's artifact outputs by name.
fn build_two_node(dir: &Path) -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/two-node.toml");
    let text = std::fs::read_to_string(path).expect("the example");
    let plan = kiln_spec::load(&text, "two-node.toml").expect("loads").plan;
    let inputs = kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
        external_cas: BTreeMap::new(),
        releases: kiln_spec::images::Releases {
            etcd: "3.6.16".into(),
            coredns: Some("1.15.0".into()),
        },
    };
    // The package set's CoreDNS, whose image every node's pods may run.
    let set = kiln_image::packages::PackageSet::load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../packages"
    )))
    .expect("kiln's package set parses");
    let coredns = (
        set.package("coredns").expect("declared").clone(),
        set.version("coredns", "1.15.0").expect("declared").clone(),
    );
    let cluster = kiln_cluster::cluster_graph(&plan, &inputs)
        .expect("graph")
        .with_images(
            &plan,
            &kiln_cluster::ImageInputs {
                pod_packages: vec![coredns],
                ..kiln_cluster::ImageInputs::locked(
                    &kiln_image::lock::Lock::parse(include_str!("../../../kiln.lock"), "kiln.lock")
                        .expect("the repository's lock parses"),
                    &kiln_image::resolve::AptSources::default(),
                )
            },
        )
        .expect("images");
    let full = cluster.graph.validate().expect("valid");

    // Only the wanted derivations and what they need: no base OS, no Kubernetes build.
    let wanted = [
        "cloud-init",
        "ignition",
        "units",
        "network",
        "manifests",
        "kubeconfigs",
        "pki",
    ];
    let mut todo: Vec<DrvId> = cluster
        .artifacts
        .nodes
        .values()
        .flat_map(|artifacts| {
            wanted
                .iter()
                .filter_map(|name| artifacts.get(*name).cloned())
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut graph = Graph::with_recipe(kiln_cluster::recipe());
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let derivation = full.derivation(&id).expect("in the graph").clone();
        todo.extend(derivation.inputs.values().cloned());
        graph.add(id, derivation).expect("adds");
    }
    assert!(!seen.iter().any(|id| id.as_str().starts_with("image/")));
    let graph = graph.validate().expect("valid");
    let store = kiln_store::Store::open(&dir.join("store")).expect("store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("builds");
    cluster
        .artifacts
        .nodes
        .iter()
        .map(|(node, artifacts)| {
            let outputs = wanted
                .iter()
                .filter_map(|name| {
                    let id = artifacts.get(*name)?;
                    Some((name.to_string(), evaluation.outputs[id].path.clone()))
                })
                .collect();
            (node.clone(), outputs)
        })
        .collect()
}

fn strings(value: &serde_norway::Value) -> Vec<String> {
    value
        .as_sequence()
        .expect("a list")
        .iter()
        .map(|arg| arg.as_str().expect("a string").to_owned())
        .collect()
}

fn relative(path: &str) -> String {
    path.strip_prefix('/').expect("absolute").to_owned()
}

/// The tree cloud-init user-data makes.
fn decode_cloud_init(text: &str) -> Vec<TreeEntry> {
    let doc: serde_norway::Value = serde_norway::from_str(text).expect("YAML");
    let mut entries = Vec::new();
    for command in doc["bootcmd"].as_sequence().expect("bootcmd") {
        let args = strings(command);
        assert_eq!(args[..3], ["install", "-d", "-m"]);
        entries.push(TreeEntry::Dir {
            path: relative(&args[4]),
            mode: u32::from_str_radix(&args[3], 8).expect("octal"),
        });
    }
    for file in doc["write_files"].as_sequence().expect("write_files") {
        assert_eq!(file["encoding"].as_str(), Some("b64"));
        assert_eq!(file["owner"].as_str(), Some("root:root"));
        entries.push(TreeEntry::File {
            path: relative(file["path"].as_str().expect("path")),
            mode: u32::from_str_radix(file["permissions"].as_str().expect("mode"), 8)
                .expect("octal"),
            bytes: BASE64
                .decode(file["content"].as_str().expect("content"))
                .expect("base64"),
        });
    }
    for command in doc["runcmd"].as_sequence().expect("runcmd") {
        let args = strings(command);
        if args[0] == "ln" {
            entries.push(TreeEntry::Symlink {
                path: relative(&args[3]),
                target: args[2].clone(),
            });
        }
    }
    entries.sort();
    entries
}

/// The tree an Ignition config makes.
fn decode_ignition(text: &str) -> Vec<TreeEntry> {
    let doc: serde_json::Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(doc["ignition"]["version"], "3.3.0");
    let storage = &doc["storage"];
    let path = |node: &serde_json::Value| relative(node["path"].as_str().expect("path"));
    let mode = |node: &serde_json::Value| {
        u32::try_from(node["mode"].as_u64().expect("mode")).expect("u32")
    };
    let mut entries = Vec::new();
    for dir in storage["directories"].as_array().expect("directories") {
        entries.push(TreeEntry::Dir {
            path: path(dir),
            mode: mode(dir),
        });
    }
    for file in storage["files"].as_array().expect("files") {
        let source = file["contents"]["source"].as_str().expect("source");
        entries.push(TreeEntry::File {
            path: path(file),
            mode: mode(file),
            bytes: BASE64
                .decode(source.strip_prefix("data:;base64,").expect("data URL"))
                .expect("base64"),
        });
    }
    for link in storage["links"].as_array().expect("links") {
        entries.push(TreeEntry::Symlink {
            path: path(link),
            target: link["target"].as_str().expect("target").to_owned(),
        });
    }
    entries.sort();
    entries
}

fn run(command: &mut Command) -> Result<String, String> {
    let output = command
        .output()
        .expect("runs (cargo xtask test installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if output.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

#[test]
fn the_two_node_example_as_cloud_init_and_ignition() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let nodes = build_two_node(scratch.path());
    assert_eq!(nodes.len(), 2);
    for (node, outputs) in &nodes {
        let user_data_path = outputs["cloud-init"].join(CLOUD_INIT_USER_DATA);
        let config_path = outputs["ignition"].join(IGNITION_CONFIG);

        let report = run(Command::new("cloud-init")
            .args(["schema", "--config-file"])
            .arg(&user_data_path))
        .unwrap_or_else(|e| panic!("{node}: cloud-init schema: {e}"));
        assert!(report.contains("Valid cloud-config"), "{report}");
        run(Command::new("python3")
            .args([
                "-c",
                "import json, sys, jsonschema\n\
                 jsonschema.validate(json.load(open(sys.argv[2])), json.load(open(sys.argv[1])))\n",
                SCHEMA,
            ])
            .arg(&config_path))
        .unwrap_or_else(|e| panic!("{node}: the Ignition 3.3 schema: {e}"));

        let user_data = std::fs::read_to_string(&user_data_path).expect("user-data");
        let config = std::fs::read_to_string(&config_path).expect("config.ign");
        let tree = decode_cloud_init(&user_data);
        eprintln!(
            "{node}: {} entries; user-data {} bytes, config.ign {} bytes",
            tree.len(),
            user_data.len(),
            config.len()
        );
        assert_eq!(tree, decode_ignition(&config), "{node}: the formats differ");

        let by_path: BTreeMap<&str, &TreeEntry> =
            tree.iter().map(|entry| (entry.path(), entry)).collect();
        assert_eq!(
            by_path.get("etc/hostname"),
            Some(&&TreeEntry::File {
                path: "etc/hostname".into(),
                mode: 0o644,
                bytes: format!("{node}\n").into_bytes(),
            })
        );
        assert!(
            matches!(
                by_path.get("etc/kubernetes/pki"),
                Some(TreeEntry::Dir { mode: 0o700, .. })
            ),
            "{node}: the PKI directory is private"
        );
        // Every rendered file is there with its bytes, private ones 0600.
        let mut keys = 0;
        for (artifact, output) in outputs {
            let (from, to) = match artifact.as_str() {
                "cloud-init" | "ignition" => continue,
                "pki" => ("pki", "etc/kubernetes/pki/"),
                _ => ("", ""),
            };
            for entry in read_tree(&output.join(from)).expect("reads") {
                let TreeEntry::File { path, mode, bytes } = entry else {
                    continue;
                };
                let placed = format!("{to}{path}");
                let Some(TreeEntry::File {
                    mode: placed_mode,
                    bytes: placed_bytes,
                    ..
                }) = by_path.get(placed.as_str())
                else {
                    panic!("{node}: {placed} (from {artifact}) is missing");
                };
                assert_eq!(placed_bytes, &bytes, "{node}: {placed}");
                let expected = if mode & 0o044 == 0 {
                    0o600
                } else if mode & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                assert_eq!(*placed_mode, expected, "{node}: {placed}");
                if placed.ends_with(".key") {
                    assert_eq!(*placed_mode, 0o600, "{node}: {placed} is a key");
                    keys += 1;
                }
            }
        }
        assert!(keys > 0, "{node}: no keys");
        // The units are enabled.
        assert!(
            tree.iter().any(|entry| matches!(entry,
                TreeEntry::Symlink { path, .. }
                    if path == "etc/systemd/system/multi-user.target.wants/kubelet.service")),
            "{node}: the kubelet is enabled"
        );
    }
}
