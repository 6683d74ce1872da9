//! `cargo xtask graph`: the derivation graph of a cluster as Graphviz dot.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::common;

/// Arguments of `cargo xtask graph`.
#[derive(clap::Args)]
pub struct Args {
    /// The cluster spec (default: examples/two-node.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
}

/// Prints the graph of `--spec` to standard output.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let spec = args.spec.unwrap_or_else(common::default_spec);
    let plan = common::load_plan(&spec)?;
    let graph = kiln_cluster::cluster_graph(&plan)?.graph.validate()?;
    print!("{}", graph.to_dot());
    Ok(ExitCode::SUCCESS)
}
