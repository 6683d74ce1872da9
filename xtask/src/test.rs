//! `cargo xtask test`: install what the tests need, then run every test of the workspace.

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
    let status = Command::new(cargo)
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
