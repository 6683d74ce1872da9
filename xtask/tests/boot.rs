//! The two-node example's images boot, as a user boots them: `cargo xtask build-cluster`, then
//! node1 with `cargo xtask run-vm node1` and node2 with its image's own `run-qemu` script, both
//! under TCG, the serial console read until every node reports that it reached its default
//! target with containerd and the kubelet active.
//!
//! The fixed-output inputs (base OS, Kubernetes binaries, busybox) are copied from the user's
//! store when it holds them (`--substituter`), and built otherwise.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::default_store;

/// How long the nodes may take to report, all together. Under TCG on two shared cores a node
/// takes one to three minutes; this is a bound for a hung boot, not a performance assertion.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);

/// A QEMU process killed when dropped, its console captured to a file.
struct Guest {
    name: String,
    child: Child,
    console: PathBuf,
}

impl Guest {
    fn console(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(&self.console) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[test]
fn every_image_of_the_two_node_example_boots_to_its_default_target_with_containerd_and_the_kubelet()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-node.toml");
    let mut build = Command::new(env!("CARGO_BIN_EXE_xtask"));
    build
        .current_dir(dir.path())
        .args(["build-cluster", "--spec"])
        .arg(&spec)
        .args([
            "--store",
            "store",
            "--secrets",
            "secrets",
            "--out",
            "result",
        ]);
    if let Some(store) = default_store().filter(|store| store.is_dir()) {
        build.arg("--substituter").arg(store);
    }
    let output = build.output().expect("the xtask binary runs");
    assert!(
        output.status.success(),
        "build-cluster failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let nodes = ["node1", "node2"];
    let mut guests = Vec::new();
    for node in nodes {
        // The store path itself: `run-vm` below rebuilds and replaces `result/` while the
        // other node starts.
        let image = std::fs::canonicalize(dir.path().join("result/nodes").join(node).join("image"))
            .expect("the image's store path");
        let manifest: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(image.join("manifest.json")).expect("manifest.json"),
        )
        .expect("manifest.json is JSON");
        assert_eq!(manifest["node"], node);
        let console = dir.path().join(format!("{node}.console"));
        let log = std::fs::File::create(&console).expect("console file");
        let mut command = if node == "node1" {
            let mut command = Command::new(env!("CARGO_BIN_EXE_xtask"));
            command
                .current_dir(dir.path())
                .args(["run-vm", node, "--spec"])
                .arg(&spec)
                .args([
                    "--store",
                    "store",
                    "--secrets",
                    "secrets",
                    "--out",
                    "result",
                ]);
            command
        } else {
            Command::new(image.join("run-qemu"))
        };
        let child = command
            .env("KILN_QEMU_ACCEL", "tcg,thread=multi")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("run-vm or run-qemu starts");
        guests.push(Guest {
            name: node.to_owned(),
            child,
            console,
        });
    }

    let started = Instant::now();
    let mut reported = vec![None; guests.len()];
    while reported.iter().any(Option::is_none) {
        for (index, guest) in guests.iter_mut().enumerate() {
            if reported[index].is_some() {
                continue;
            }
            if let Ok(Some(status)) = guest.child.try_wait() {
                panic!(
                    "{}'s QEMU exited ({status}); its console:\n{}",
                    guest.name,
                    tail(&guest.console(), 60)
                );
            }
            let console = guest.console();
            if let Some(line) = console
                .lines()
                .find(|line| line.contains(&format!("kiln-boot: {} reached", guest.name)))
            {
                eprintln!(
                    "{} after {:.0}s: {}",
                    guest.name,
                    started.elapsed().as_secs_f64(),
                    line.trim()
                );
                reported[index] = Some(line.trim().to_owned());
            }
        }
        if started.elapsed() > BOOT_TIMEOUT {
            let consoles: Vec<String> = guests
                .iter()
                .map(|guest| format!("--- {}:\n{}", guest.name, tail(&guest.console(), 40)))
                .collect();
            panic!(
                "not every node reported within {BOOT_TIMEOUT:?}:\n{}",
                consoles.join("\n")
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }

    for (guest, line) in guests.iter().zip(&reported) {
        let line = line.as_deref().unwrap_or_default();
        assert!(
            line.contains("reached multi-user.target")
                && line.contains("containerd=active")
                && line.contains("kubelet=active"),
            "{}: {line}\nits console:\n{}",
            guest.name,
            tail(&guest.console(), 60)
        );
        // Every layer mounted, and systemd, not the initramfs, is PID 1 on the overlay root.
        let console = guest.console();
        for layer in ["node", "kubernetes", "images", "base"] {
            assert!(
                console.contains(&format!("kiln-init: layer {layer} from /dev/vd")),
                "{}: layer {layer} was not mounted:\n{}",
                guest.name,
                tail(&console, 60)
            );
        }
        assert!(console.contains("kiln-init: starting systemd"));
    }
}
