//! `cargo xtask conformance`: build a cluster with its test tools, boot it in QEMU, and run
//! upstream's `[Conformance]` tests (the end-to-end suite of the cluster's own Kubernetes
//! version) against it, writing the suite's JUnit and JSON reports.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use kiln_vm_tests::scenario;

use crate::vm_test::{self, ClusterArgs};

/// Arguments of `cargo xtask conformance`.
#[derive(clap::Args)]
pub struct Args {
    /// Run only the `[Conformance]` tests whose full names match this regular expression
    /// (ginkgo's `--focus`; default: all of them).
    #[arg(long, value_name = "REGEX")]
    focus: Option<String>,
    /// Leave out the tests whose full names match this regular expression (ginkgo's `--skip`).
    #[arg(long, value_name = "REGEX")]
    skip: Option<String>,
    /// Run exactly the CI subset (the tests the `two-node` scenario runs), instead of
    /// `--focus`.
    #[arg(long, conflicts_with = "focus")]
    ci_subset: bool,
    /// Where the JUnit report (`junit.xml`), ginkgo's JSON report and the suite's log go
    /// (default: `conformance/` in the run directory).
    #[arg(long, value_name = "DIR")]
    report_dir: Option<PathBuf>,
    /// Only list the tests that would run (ginkgo's `--dry-run`); the cluster is still booted,
    /// as the suite starts by checking it.
    #[arg(long)]
    dry_run: bool,
    /// How many test processes (ginkgo's `--procs`): 1 runs one test at a time; more run the
    /// tests not labelled `Serial` in that many processes, then the `Serial` ones one at a
    /// time. `--ci-subset` defaults to CI's (`CI_SUBSET_PROCS`, 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=16))]
    parallel: Option<u32>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

/// Runs the suite; fails if a test that ran did not pass, or if none ran.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    // The default cluster: the `two-node` scenario's spec (the README's example on this
    // machine's scale), unless --spec or --result says otherwise.
    let prepared = vm_test::prepare(
        &args.cluster,
        "conformance",
        scenario::Scenario::TwoNode,
        true,
    )?;
    let options = &prepared.options;
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| options.run_dir.join("conformance"));
    let suite = scenario::SuiteOptions {
        focus: if args.ci_subset {
            Some(scenario::subset_focus(scenario::CI_SUBSET))
        } else {
            args.focus.clone()
        },
        skip: args.skip.clone(),
        report_dir,
        dry_run: args.dry_run,
        parallel: args.parallel.unwrap_or(if args.ci_subset {
            scenario::CI_SUBSET_PROCS
        } else {
            1
        }),
    };

    let report = match scenario::run_with(options, |cluster, steps| {
        scenario::bring_up(cluster, steps)?;
        steps.run("nodes Ready", || scenario::nodes_ready(cluster))?;
        let e2e = scenario::Suite::of(cluster)?;
        steps.run("conformance images into every kubelet's containerd", || {
            scenario::import_images(cluster, &e2e)
        })?;
        steps.run("the [Conformance] tests", || {
            scenario::run_suite(cluster, &e2e, &suite)
        })
    }) {
        Ok((report, _steps)) => report,
        Err(kiln_vm_tests::Error::Interrupted) => return Ok(ExitCode::from(130)),
        Err(error) => return Err(error).context("conformance"),
    };
    eprintln!("\n{}", report.describe());
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if report.ran() == 0 {
        anyhow::bail!("no conformance test ran (focus {:?})", suite.focus);
    }
    Ok(if report.failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
