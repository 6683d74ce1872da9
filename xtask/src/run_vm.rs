//! `cargo xtask run-vm NODE`: builds the cluster (a no-op when it is built) and boots one
//! node's image in QEMU with the serial console on this terminal (Ctrl-A X quits QEMU).

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

use crate::build_cluster;

/// Arguments of `cargo xtask run-vm`.
#[derive(clap::Args)]
pub struct Args {
    /// The node to boot.
    node: String,
    /// The cluster spec (default: examples/two-node.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Where `manifest.json` and the links go.
    #[arg(long, default_value = "result")]
    out: PathBuf,
    /// The store (default as for build-cluster).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where the cluster's root secrets live, one directory per cluster (default:
    /// `~/.local/share/kiln/secrets`).
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// Forward 127.0.0.1:PORT on this machine to the guest's PORT (repeatable), e.g. 6443.
    #[arg(long = "forward", value_name = "PORT")]
    forwards: Vec<u16>,
    /// Extra QEMU arguments, after `--`.
    #[arg(last = true)]
    qemu_args: Vec<String>,
}

/// Builds, then replaces this process with QEMU.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let build = build_cluster::Args::for_node_images(
        args.spec.clone(),
        args.out.clone(),
        args.store.clone(),
        args.secrets.clone(),
    );
    let code = build_cluster::run(build)?;
    if code != ExitCode::SUCCESS {
        return Ok(code);
    }
    let manifest_path = args.out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let manifest = kiln_cluster::Manifest::from_json(&text)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    let Some(image) = manifest.node_artifact(&args.node, "image") else {
        let nodes: Vec<&String> = manifest.nodes.keys().collect();
        bail!(
            "no node {:?} with an image in this cluster; its nodes: {nodes:?}",
            args.node
        );
    };
    let image = &image.store_path;
    let accel = std::env::var("KILN_QEMU_ACCEL").unwrap_or_else(|_| accelerator().to_owned());
    let forwards: Vec<String> = args
        .forwards
        .iter()
        .map(|port| format!("hostfwd=tcp:127.0.0.1:{port}-:{port}"))
        .collect();
    eprintln!(
        "booting {} ({}) with -accel {accel}; Ctrl-A X quits",
        args.node,
        image.display()
    );
    let error = Command::new(image.join("run-qemu"))
        .env("KILN_QEMU_ACCEL", &accel)
        .env("KILN_QEMU_HOSTFWD", forwards.join(","))
        .args(&args.qemu_args)
        .exec();
    Err(error).context("starting QEMU (install it with `apt-get install qemu-system-x86`)")
}

/// `tcg,thread=multi` unless KVM is usable and asked for with `KILN_KVM=1`: on machines with
/// nested virtualisation, /dev/kvm exists but guests hang in early boot, so KVM is never
/// assumed.
fn accelerator() -> &'static str {
    let asked = std::env::var("KILN_KVM").is_ok_and(|value| value == "1");
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if asked && usable {
        "kvm"
    } else {
        "tcg,thread=multi"
    }
}
