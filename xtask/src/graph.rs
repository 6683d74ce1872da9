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
    // The graph's shape does not depend on the root secret, and printing it must not create
    // one: a placeholder secret stands in.
    let inputs = kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes(
            [0; kiln_pki::ROOT_SECRET_LEN],
        )),
        external_cas: kiln_cluster::read_external_cas(
            &plan,
            spec.parent().unwrap_or_else(|| std::path::Path::new(".")),
        )?,
        releases: common::releases(
            &plan,
            &crate::package::read_packages(&crate::package::packages_dir(None))?,
            None,
        )?,
    };
    let graph = kiln_cluster::cluster_graph(&plan, &inputs)?
        .graph
        .validate()?;
    print!("{}", graph.to_dot());
    Ok(ExitCode::SUCCESS)
}
