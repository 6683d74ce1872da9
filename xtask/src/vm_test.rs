//! `cargo xtask vm-test`: build a cluster with node images, boot it in QEMU, and run a scenario
//! of checks against it (the work lives in kiln-vm-tests).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use kiln_vm_tests::{ClusterOptions, scenario};

use crate::{common, deps};

/// Arguments of `cargo xtask vm-test`.
#[derive(clap::Args)]
pub struct Args {
    /// The scenario to run: two-node or ha.
    #[arg(long, default_value = "two-node")]
    scenario: scenario::Scenario,
    /// Leave the guests running afterwards (also after a failure) and print how to reach them.
    #[arg(long)]
    keep: bool,
    /// The cluster spec to build (default: `vm-tests/specs/<scenario>.toml` if there is one,
    /// else `examples/<scenario>.toml`).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Use this already-built `result/` directory instead of building the spec.
    #[arg(long, conflicts_with = "spec")]
    result: Option<PathBuf>,
    /// The cluster's kubectl (of its Kubernetes version); default: $KILN_KUBECTL, else the kubectl
    /// the build put in the store with the other Kubernetes binaries.
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// The store build-cluster uses (default: build-cluster's).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where logs, sockets and kubeconfigs go (default: `target/vm-tests/<scenario>-<time>`).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// vCPUs for every guest (default: what each image asks for).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=64))]
    cpus: Option<u32>,
}

/// What the harness runs on the host, and the Debian packages that provide it.
const VM_TOOLS: &[kiln_tools::Tool] = &[
    kiln_tools::Tool::program("qemu-system-x86_64", "qemu-system-x86"),
    kiln_tools::Tool::program("setpriv", "util-linux"),
    kiln_tools::Tool::program("sha256sum", "coreutils"),
];

/// Runs the scenario.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    kiln_vm_tests::install_interrupt_handler()?;
    deps::ensure("the VM tests' tools", VM_TOOLS)?;

    let run_dir = match &args.run_dir {
        Some(dir) => dir.clone(),
        None => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../target/vm-tests")
                .join(format!("{}-{now}", args.scenario))
        }
    };
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    let run_dir = run_dir
        .canonicalize()
        .with_context(|| format!("resolving {}", run_dir.display()))?;

    let result_dir = match &args.result {
        Some(dir) => dir.clone(),
        None => build(&args, &run_dir.join("result"))?,
    };

    // The cluster's own kubectl: --kubectl, $KILN_KUBECTL, else the one the build put in the
    // store with the rest of the Kubernetes binaries.
    let kubectl = match args
        .kubectl
        .clone()
        .or_else(|| std::env::var_os("KILN_KUBECTL").map(PathBuf::from))
    {
        Some(kubectl) => kubectl,
        None => built_kubectl(&result_dir)?,
    };
    if !kubectl.is_file() {
        bail!("kubectl {} does not exist", kubectl.display());
    }
    let options = ClusterOptions {
        result_dir,
        kubectl,
        run_dir,
        keep: args.keep,
        accel: None,
        cpus: args.cpus,
    };
    match scenario::run(args.scenario, &options) {
        Ok(_) => {
            eprintln!("vm-test {}: passed", args.scenario);
            Ok(ExitCode::SUCCESS)
        }
        Err(kiln_vm_tests::Error::Interrupted) => Ok(ExitCode::from(130)),
        Err(error) => Err(error).with_context(|| format!("vm-test {}", args.scenario)),
    }
}

/// The kubectl among the Kubernetes binaries of the build in `result`.
fn built_kubectl(result: &Path) -> anyhow::Result<PathBuf> {
    let path = result.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = kiln_cluster::Manifest::from_json(&text)
        .with_context(|| format!("reading {}", path.display()))?;
    let binaries = manifest
        .artifacts
        .get("image/kubernetes-binaries")
        .context("the build has no Kubernetes binaries: pass --kubectl PATH")?;
    Ok(binaries.store_path.join("bin/kubectl"))
}

/// The spec a scenario builds by default: the VM tests' own (`vm-tests/specs/<scenario>.toml`,
/// an example made to fit this machine) if there is one, else `examples/<scenario>.toml`.
fn scenario_spec(scenario: scenario::Scenario) -> PathBuf {
    let own = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../vm-tests/specs")
        .join(format!("{scenario}.toml"));
    if own.is_file() {
        own
    } else {
        common::default_spec().with_file_name(format!("{scenario}.toml"))
    }
}

/// Builds the spec into `out` with this program's own `build-cluster`.
fn build(args: &Args, out: &Path) -> anyhow::Result<PathBuf> {
    let spec = args
        .spec
        .clone()
        .unwrap_or_else(|| scenario_spec(args.scenario));
    let program = std::env::current_exe().context("finding the xtask program")?;
    let mut command = Command::new(program);
    command
        .arg("build-cluster")
        .arg("--spec")
        .arg(&spec)
        .arg("--out")
        .arg(out);
    if let Some(store) = &args.store {
        command.arg("--store").arg(store);
    }
    eprintln!("==> build-cluster --spec {}", spec.display());
    let status = command.status().context("running build-cluster")?;
    if !status.success() {
        bail!("build-cluster --spec {} failed ({status})", spec.display());
    }
    Ok(out.to_path_buf())
}
