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
    /// The scenario to run.
    #[arg(long, default_value = "two-node")]
    scenario: String,
    /// Leave the guests running afterwards (also after a failure) and print how to reach them.
    #[arg(long)]
    keep: bool,
    /// The cluster spec to build (default: `examples/<scenario>.toml`).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Use this already-built `result/` directory instead of building the spec.
    #[arg(long, conflicts_with = "spec")]
    result: Option<PathBuf>,
    /// The cluster's kubectl (1.20 for the examples); default: $KILN_KUBECTL.
    #[arg(long)]
    kubectl: Option<PathBuf>,
    /// The store build-cluster uses (default: build-cluster's).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where logs, sockets and kubeconfigs go (default: `target/vm-tests/<scenario>-<time>`).
    #[arg(long)]
    run_dir: Option<PathBuf>,
}

/// What the harness runs on the host, and the Debian packages that provide it.
const VM_TOOLS: &[deps::Tool] = &[
    deps::Tool {
        probe: deps::Probe::Command("qemu-system-x86_64"),
        package: "qemu-system-x86",
    },
    deps::Tool {
        probe: deps::Probe::Command("setpriv"),
        package: "util-linux",
    },
    deps::Tool {
        probe: deps::Probe::Command("sha256sum"),
        package: "coreutils",
    },
];

/// Runs the scenario.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    kiln_vm_tests::install_interrupt_handler()?;
    if !scenario::SCENARIOS.contains(&args.scenario.as_str()) {
        bail!(
            "no scenario {:?}; known: {}",
            args.scenario,
            scenario::SCENARIOS.join(", ")
        );
    }
    let kubectl = args
        .kubectl
        .clone()
        .or_else(|| std::env::var_os("KILN_KUBECTL").map(PathBuf::from))
        .context(
            "no kubectl: pass --kubectl PATH or set KILN_KUBECTL to the cluster's kubectl \
             (1.20.2 for the examples; the machine's newer kubectl does not fit)",
        )?;
    if !kubectl.is_file() {
        bail!("kubectl {} does not exist", kubectl.display());
    }
    deps::ensure(VM_TOOLS)?;

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

    let options = ClusterOptions {
        result_dir,
        kubectl,
        run_dir,
        keep: args.keep,
        accel: None,
    };
    match scenario::run(&args.scenario, &options) {
        Ok(_) => {
            eprintln!("vm-test {}: passed", args.scenario);
            Ok(ExitCode::SUCCESS)
        }
        Err(kiln_vm_tests::Error::Interrupted) => Ok(ExitCode::from(130)),
        Err(error) => Err(error).with_context(|| format!("vm-test {}", args.scenario)),
    }
}

/// Builds the spec into `out` with this program's own `build-cluster`.
fn build(args: &Args, out: &Path) -> anyhow::Result<PathBuf> {
    let spec = args.spec.clone().unwrap_or_else(|| {
        common::default_spec().with_file_name(format!("{}.toml", args.scenario))
    });
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
