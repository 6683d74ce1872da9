//! `cargo xtask test`: install what the tests need, then run every test of the workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::deps;

/// Arguments of `cargo xtask test`; anything after `--` goes to `cargo test`.
#[derive(clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test`, for example a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Runs `cargo test --workspace` after installing the independent verifiers it calls.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    deps::ensure(deps::TEST_TOOLS)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    built_binaries(&mut command);
    let status = command
        .args(["test", "--workspace", "--locked"])
        .args(&args.cargo_args)
        .status()
        .context("running cargo test")?;
    Ok(if status.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Points the tests that run the real Kubernetes 1.20.2 binaries (flags against `--help`, a
/// live API server, kubeadm reading kiln's PKI, kubectl) at the binaries `cargo xtask
/// build-cluster` put in the store, found through `result/manifest.json`, unless the caller
/// chose others (`KILN_KUBERNETES_BIN_DIR`, `KILN_KUBECTL`, `KILN_KUBERNETES_STORE`).
fn built_binaries(command: &mut Command) {
    let Some(bin) = binaries_from_result(Path::new("result/manifest.json")) else {
        if std::env::var_os("KILN_KUBERNETES_BIN_DIR").is_none() {
            eprintln!(
                "note: no result/manifest.json with the Kubernetes binaries: run `cargo xtask build-cluster` first, or the real-binary tests are skipped"
            );
        }
        return;
    };
    eprintln!(
        "using the Kubernetes binaries built by build-cluster: {}",
        bin.display()
    );
    if std::env::var_os("KILN_KUBERNETES_BIN_DIR").is_none() {
        command.env("KILN_KUBERNETES_BIN_DIR", &bin);
    }
    if std::env::var_os("KILN_KUBECTL").is_none() {
        command.env("KILN_KUBECTL", bin.join("kubectl"));
    }
    let store = bin.parent().and_then(Path::parent);
    if let (None, Some(store)) = (std::env::var_os("KILN_KUBERNETES_STORE"), store) {
        command.env("KILN_KUBERNETES_STORE", store);
    }
}

fn binaries_from_result(manifest: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let manifest: serde_json::Value = serde_json::from_str(&text).ok()?;
    let path = manifest["artifacts"]["image/kubernetes-binaries"]["store_path"].as_str()?;
    let bin = PathBuf::from(path).join("bin");
    bin.join("kube-apiserver").is_file().then_some(bin)
}
