//! cloud-init user-data and Ignition configs: both carry a layer's tree exactly (every file's
//! bytes and mode, every directory's mode, every link's target), `cloud-init schema` accepts
//! the user-data, and the Ignition config validates against the Ignition 3.3.0 JSON schema
//! (tests/fixtures/ignition-v3_3.schema.json) with python3's jsonschema.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use kiln_graph::{BuildContext, DrvId, NullObserver};
use kiln_image::{
    os::layer::{LayerCopy, LayerFile, LayerSpec},
    provision::{
        CLOUD_INIT_META_DATA, CLOUD_INIT_USER_DATA, IGNITION_CONFIG, ProvisionFormat, TreeEntry,
        cloud_init, ignition, read_tree,
    },
};

const SCHEMA: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/ignition-v3_3.schema.json"
);

const UNIT: &str = "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\n";

/// An input tree like a node's: a unit, a private key, an executable, binary and empty files,
/// a name with a space and a quote.
fn input_tree(dir: &Path) {
    let write = |path: &str, bytes: &[u8], mode: u32| {
        let path = dir.join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(&path, bytes).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    write("etc/systemd/system/kubelet.service", UNIT.as_bytes(), 0o644);
    write("pki/apiserver.key", b"-----BEGIN PRIVATE KEY-----\n", 0o600);
    write("pki/ca.crt", b"-----BEGIN CERTIFICATE-----\n", 0o644);
    write(
        "usr/local/bin/tool",
        b"#!/bin/sh\necho 'hi' \"there\"\n",
        0o755,
    );
    write("var/lib/blob", &[0, 159, 146, 150, 255, b'\n', 0], 0o644);
    write("var/lib/empty", b"", 0o644);
    write("etc/odd name \"quoted\".conf", b"a: 'b'\n#x\n---\n", 0o644);
}

fn spec() -> LayerSpec {
    LayerSpec {
        copies: vec![
            LayerCopy {
                input: "rendered".into(),
                from: "etc".into(),
                to: "etc".into(),
            },
            LayerCopy {
                input: "rendered".into(),
                from: "pki".into(),
                to: "etc/kubernetes/pki".into(),
            },
            LayerCopy {
                input: "rendered".into(),
                from: "usr".into(),
                to: "usr".into(),
            },
            LayerCopy {
                input: "rendered".into(),
                from: "var".into(),
                to: "var".into(),
            },
        ],
        files: vec![LayerFile {
            path: "etc/hostname".into(),
            mode: 0o644,
            contents: "node1\n".into(),
        }],
        symlinks: [(
            "etc/systemd/system/sockets.target.wants/systemd-networkd.socket".to_owned(),
            "/lib/systemd/system/systemd-networkd.socket".to_owned(),
        )]
        .into(),
        dirs: [("etc/kubernetes/pki".to_owned(), 0o700)].into(),
        enable_units: true,
    }
}

/// The tree `spec()` assembles, read back.
fn assembled(scratch: &Path) -> Vec<TreeEntry> {
    let input = scratch.join("input");
    input_tree(&input);
    let tree = scratch.join("tree");
    kiln_image::os::layer::assemble(&spec(), &tree, &|_| Ok(input.clone())).expect("assembles");
    read_tree(&tree).expect("reads")
}

/// Runs the provisioning builder standalone; returns the output directory.
fn build(scratch: &Path, format: ProvisionFormat) -> PathBuf {
    let input = scratch.join("input");
    if !input.exists() {
        input_tree(&input);
    }
    let out = scratch.join(format!("{format:?}"));
    std::fs::create_dir(&out).expect("out");
    let derivation = spec().provision_derivation(
        "node1",
        format,
        "node1-provision",
        [("rendered".to_owned(), DrvId::new("rendered"))],
    );
    let inputs = BTreeMap::from([("rendered".to_owned(), input)]);
    let id = DrvId::new("node/node1/provision");
    let ctx = BuildContext::standalone(&id, &out, &inputs, &NullObserver);
    derivation.builder.build(&ctx).expect("builds");
    out
}

fn strings(value: &serde_norway::Value) -> Vec<String> {
    value
        .as_sequence()
        .expect("a command is a list")
        .iter()
        .map(|arg| arg.as_str().expect("a string").to_owned())
        .collect()
}

/// The tree that cloud-init user-data makes: directories from `bootcmd`, files from
/// `write_files`, links from `runcmd`; and the units it starts.
fn decode_cloud_init(text: &str) -> (Vec<TreeEntry>, Vec<String>) {
    assert!(text.starts_with("#cloud-config\n"));
    let doc: serde_norway::Value = serde_norway::from_str(text).expect("YAML");
    let mut entries = Vec::new();
    for command in doc["bootcmd"].as_sequence().into_iter().flatten() {
        let args = strings(command);
        assert_eq!(args[..3], ["install", "-d", "-m"], "{args:?}");
        entries.push(TreeEntry::Dir {
            path: args[4].strip_prefix('/').expect("absolute").to_owned(),
            mode: u32::from_str_radix(&args[3], 8).expect("octal"),
        });
    }
    for file in doc["write_files"].as_sequence().into_iter().flatten() {
        assert_eq!(file["owner"].as_str(), Some("root:root"));
        assert_eq!(file["encoding"].as_str(), Some("b64"));
        entries.push(TreeEntry::File {
            path: file["path"]
                .as_str()
                .and_then(|p| p.strip_prefix('/'))
                .expect("absolute")
                .to_owned(),
            mode: u32::from_str_radix(file["permissions"].as_str().expect("string"), 8)
                .expect("octal"),
            bytes: BASE64
                .decode(file["content"].as_str().expect("content"))
                .expect("base64"),
        });
    }
    let mut started = Vec::new();
    for command in doc["runcmd"].as_sequence().into_iter().flatten() {
        let args = strings(command);
        match args[0].as_str() {
            "ln" => {
                assert_eq!(args[1], "-sfn");
                entries.push(TreeEntry::Symlink {
                    path: args[3].strip_prefix('/').expect("absolute").to_owned(),
                    target: args[2].clone(),
                });
            }
            "systemctl" if args[1] == "start" => started.extend(args[3..].iter().cloned()),
            "systemctl" => assert_eq!(args[1..], ["daemon-reload"]),
            other => panic!("unexpected command {other}"),
        }
    }
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    (entries, started)
}

/// The tree an Ignition config makes.
fn decode_ignition(text: &str) -> Vec<TreeEntry> {
    let doc: serde_json::Value = serde_json::from_str(text).expect("JSON");
    assert_eq!(doc["ignition"]["version"], "3.3.0");
    let storage = &doc["storage"];
    let path = |node: &serde_json::Value| {
        assert_eq!(node["user"]["id"], 0);
        assert_eq!(node["group"]["id"], 0);
        node["path"]
            .as_str()
            .and_then(|p| p.strip_prefix('/'))
            .expect("absolute")
            .to_owned()
    };
    let mode = |node: &serde_json::Value| {
        u32::try_from(node["mode"].as_u64().expect("integer mode")).expect("u32")
    };
    let mut entries = Vec::new();
    for dir in storage["directories"].as_array().expect("directories") {
        assert_eq!(
            dir["overwrite"], false,
            "an existing directory keeps its files"
        );
        entries.push(TreeEntry::Dir {
            path: path(dir),
            mode: mode(dir),
        });
    }
    for file in storage["files"].as_array().expect("files") {
        assert_eq!(file["overwrite"], true);
        let source = file["contents"]["source"].as_str().expect("source");
        let data = source.strip_prefix("data:;base64,").expect("a data URL");
        entries.push(TreeEntry::File {
            path: path(file),
            mode: mode(file),
            bytes: BASE64.decode(data).expect("base64"),
        });
    }
    for link in storage["links"].as_array().expect("links") {
        assert_eq!(link["hard"], false);
        entries.push(TreeEntry::Symlink {
            path: path(link),
            target: link["target"].as_str().expect("target").to_owned(),
        });
    }
    entries.sort_by(|a, b| a.path().cmp(b.path()));
    entries
}

/// `cloud-init schema` on `user_data`: `Ok` with its output, or `Err` with its complaint.
fn cloud_init_schema(dir: &Path, user_data: &str) -> Result<String, String> {
    let path = dir.join("checked-user-data");
    std::fs::write(&path, user_data).expect("write");
    let output = Command::new("cloud-init")
        .arg("schema")
        .arg("--config-file")
        .arg(&path)
        .output()
        .expect("cloud-init runs (cargo xtask test installs it)");
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

/// python3's jsonschema on `config` against the Ignition 3.3.0 schema.
fn ignition_schema(dir: &Path, config: &str) -> Result<(), String> {
    let path = dir.join("checked.ign");
    std::fs::write(&path, config).expect("write");
    let output = Command::new("python3")
        .args([
            "-c",
            "import json, sys, jsonschema\n\
             schema = json.load(open(sys.argv[1]))\n\
             jsonschema.validators.validator_for(schema).check_schema(schema)\n\
             jsonschema.validate(json.load(open(sys.argv[2])), schema)\n",
            SCHEMA,
        ])
        .arg(&path)
        .output()
        .expect("python3 runs (cargo xtask test installs python3-jsonschema)");
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

#[test]
fn both_formats_carry_the_tree_exactly() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    // The tree is what the layer rules say: a private key 0600 in a 0700 directory.
    assert!(entries.contains(&TreeEntry::Dir {
        path: "etc/kubernetes/pki".into(),
        mode: 0o700
    }));
    assert!(entries.contains(&TreeEntry::File {
        path: "etc/kubernetes/pki/apiserver.key".into(),
        mode: 0o600,
        bytes: b"-----BEGIN PRIVATE KEY-----\n".to_vec(),
    }));
    assert!(entries.iter().any(|e| matches!(e,
        TreeEntry::File { path, mode: 0o755, .. } if path == "usr/local/bin/tool")));

    let (from_cloud_init, started) = decode_cloud_init(&cloud_init("node1", &entries));
    assert_eq!(from_cloud_init, entries);
    assert_eq!(started, ["kubelet.service", "systemd-networkd.socket"]);
    assert_eq!(decode_ignition(&ignition("node1", &entries)), entries);
}

#[test]
fn ignition_adds_the_hostname_only_when_the_tree_has_none() {
    let file = TreeEntry::File {
        path: "etc/motd".into(),
        mode: 0o644,
        bytes: b"hello\n".to_vec(),
    };
    let decoded = decode_ignition(&ignition("node7", std::slice::from_ref(&file)));
    assert_eq!(
        decoded,
        [
            TreeEntry::File {
                path: "etc/hostname".into(),
                mode: 0o644,
                bytes: b"node7\n".to_vec(),
            },
            file,
        ]
    );
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    let config = ignition("another-name", &entries);
    assert!(!config.contains(&BASE64.encode("another-name\n")));
}

#[test]
fn rendering_is_deterministic_and_order_independent() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    let mut reversed = entries.clone();
    reversed.reverse();
    assert_eq!(
        cloud_init("node1", &entries),
        cloud_init("node1", &reversed)
    );
    assert_eq!(ignition("node1", &entries), ignition("node1", &reversed));
}

#[test]
fn the_builder_writes_what_the_renderers_render() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    let out = build(scratch.path(), ProvisionFormat::CloudInit);
    let user_data = std::fs::read_to_string(out.join(CLOUD_INIT_USER_DATA)).expect("user-data");
    assert_eq!(user_data, cloud_init("node1", &entries));
    let meta = std::fs::read_to_string(out.join(CLOUD_INIT_META_DATA)).expect("meta-data");
    assert_eq!(
        meta,
        kiln_image::provision::cloud_init_meta_data("node1", &user_data)
    );
    assert!(meta.contains("local-hostname: \"node1\"\n"), "{meta}");

    let out = build(scratch.path(), ProvisionFormat::Ignition);
    let config = std::fs::read_to_string(out.join(IGNITION_CONFIG)).expect("config.ign");
    assert_eq!(config, ignition("node1", &entries));
}

#[test]
fn the_formats_have_distinct_digests() {
    let derivation = |format| {
        spec()
            .provision_derivation("node1", format, "p", [])
            .builder
            .params()
    };
    assert_ne!(
        derivation(ProvisionFormat::CloudInit),
        derivation(ProvisionFormat::Ignition)
    );
    assert_ne!(
        spec()
            .provision_derivation("node1", ProvisionFormat::Ignition, "p", [])
            .builder
            .params(),
        spec()
            .provision_derivation("node2", ProvisionFormat::Ignition, "p", [])
            .builder
            .params(),
    );
}

#[test]
fn cloud_init_schema_accepts_the_user_data() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    let user_data = cloud_init("node1", &entries);
    let report = cloud_init_schema(scratch.path(), &user_data).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.contains("Valid cloud-config"), "{report}");
}

#[test]
fn cloud_init_schema_catches_a_violation() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    // A list where cloud-init wants a string, and permissions as a list.
    let broken = cloud_init("node1", &entries)
        .replace("hostname: \"node1\"", "hostname: [\"node1\"]")
        .replace("permissions: \"0644\"", "permissions: [\"0644\"]");
    let error = cloud_init_schema(scratch.path(), &broken).expect_err("invalid");
    assert!(error.contains("hostname"), "{error}");
}

#[test]
fn the_ignition_config_validates_against_the_3_3_schema() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    ignition_schema(scratch.path(), &ignition("node1", &entries)).unwrap_or_else(|e| panic!("{e}"));
}

#[test]
fn the_ignition_schema_catches_a_violation() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let entries = assembled(scratch.path());
    let config = ignition("node1", &entries);
    // A mode as an octal string, as a hand-written config might have it.
    let broken = config.replacen("\"mode\": 420", "\"mode\": \"0644\"", 1);
    assert_ne!(broken, config);
    let error = ignition_schema(scratch.path(), &broken).expect_err("invalid");
    assert!(error.contains("'0644' is not of type"), "{error}");
    // A link without its target.
    let broken = config.replacen("\"target\": ", "\"targetx\": ", 1);
    let error = ignition_schema(scratch.path(), &broken).expect_err("invalid");
    assert!(error.contains("'target' is a required property"), "{error}");
}

#[test]
fn read_tree_refuses_what_it_cannot_carry() {
    let scratch = tempfile::tempdir().expect("tempdir");
    let fifo = scratch.path().join("fifo");
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let error = read_tree(scratch.path()).expect_err("a fifo");
    assert!(error.to_string().contains("fifo"), "{error}");
}
