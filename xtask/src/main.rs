//! kiln's command line: `cargo xtask <task>`. This file only dispatches; each task is a module
//! with a `run`, and the real work lives in the library crates.

mod build_cluster;
mod certs;
mod common;
mod conformance;
mod deps;
mod gc;
mod graph;
mod lock;
mod package;
mod push;
mod registry;
mod run_vm;
mod secret;
mod test;
mod vm_test;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln builds a Kubernetes cluster from one spec: certificates, configuration and node images.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build every artifact of a cluster into the store and write `manifest.json`.
    BuildCluster(build_cluster::Args),
    /// List every certificate with its validity; fail if any expires within the warning horizon.
    Certs(certs::CertsArgs),
    /// Boot a cluster with its test tools in QEMU and run upstream's `[Conformance]` tests
    /// against it (`--focus` for some of them), writing the JUnit report.
    Conformance(conformance::Args),
    /// Remove the store paths that no result directory needs (see README: "Store and garbage
    /// collection").
    Gc(gc::Args),
    /// Print the derivation graph of a cluster as Graphviz dot.
    Graph(graph::Args),
    /// Resolve kiln.lock against the apt sources as they are today, build what moved, and
    /// rewrite the lock, printing each package that changed.
    Lock(lock::Args),
    /// The package set (packages/*.toml): list it, or build one package version into the
    /// store.
    Package(package::Args),
    /// Push a result's store paths (all but those holding secrets) to an OCI registry, as
    /// artifacts other machines substitute from (`build-cluster --substituter oci://...`).
    Push(push::Args),
    /// Build the cluster, then boot one node's image in QEMU with its console on this terminal.
    RunVm(run_vm::Args),
    /// Install what the tests need, then run the whole test suite (the command CI runs).
    Test(test::Args),
    /// Boot a built cluster's node images in QEMU and run a scenario of checks against it.
    VmTest(vm_test::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.task {
        Task::BuildCluster(args) => build_cluster::run(args),
        Task::Certs(args) => certs::run(args),
        Task::Conformance(args) => conformance::run(args),
        Task::Gc(args) => gc::run(args),
        Task::Graph(args) => graph::run(args),
        Task::Lock(args) => lock::run(args),
        Task::Package(args) => package::run(args),
        Task::Push(args) => push::run(args),
        Task::Test(args) => test::run(args),
        Task::RunVm(args) => run_vm::run(args),
        Task::VmTest(args) => vm_test::run(args),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
