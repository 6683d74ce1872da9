//! `cargo xtask package`: the package set (`packages/*.toml`): list it, or build one package
//! version into the store.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_graph::{DrvId, EvalOptions, Graph};
use kiln_image::packages::{PackageSet, VersionSource};
use kiln_store::Store;

use crate::{common, lock};

/// Arguments of `cargo xtask package`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
    /// The directory of package declarations (default: packages/ at the repository's root).
    #[arg(long, global = true)]
    packages: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum Command {
    /// List every package with its versions and where each comes from.
    List,
    /// Build one version of a package into the store and print its store path.
    Build(BuildArgs),
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The package and version, as `NAME@VERSION` (such as `kubernetes@1.37.2`).
    package: String,
    /// The store (default: $KILN_STORE, else $XDG_DATA_HOME/kiln/store, else
    /// ~/.local/share/kiln/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Then rebuild the compile into a scratch store and fail if any byte differs.
    #[arg(long)]
    check: bool,
    /// Also build the packages this version runs with (its `with` and `pods`), printing each
    /// path.
    #[arg(long)]
    with: bool,
    /// The lock file (for a version built from Debian's source; default: kiln.lock).
    #[arg(long)]
    lock: Option<PathBuf>,
}

/// Runs `cargo xtask package`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let set = read_packages(&packages_dir(args.packages))?;
    match args.command {
        Command::List => {
            for package in set.packages() {
                println!("{}: {}", package.name, package.description);
                let mut versions: Vec<_> = package.versions.iter().collect();
                versions.sort_by_key(|version| std::cmp::Reverse(version.numeric()));
                for version in versions {
                    let source = match &version.source {
                        VersionSource::Go { toolchain, .. } => {
                            format!("Go modules, Go {toolchain}")
                        }
                        VersionSource::Debian if package.name == "kubernetes" => {
                            "Debian's source package, as kiln.lock pins it".to_owned()
                        }
                        VersionSource::Debian => {
                            "Debian's archive, in the base OS as kiln.lock pins it".to_owned()
                        }
                        _ => "another source".to_owned(),
                    };
                    println!("  {} ({source})", version.version);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Build(build) => build_package(&set, build),
    }
}

/// `packages/` at the repository's root, or `explicit`.
pub fn packages_dir(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
        xtask.parent().unwrap_or(xtask).join("packages")
    })
}

/// The package set in `dir` (see [`PackageSet::load`]).
pub fn read_packages(dir: &Path) -> anyhow::Result<PackageSet> {
    PackageSet::load(dir).with_context(|| format!("reading the package set {}", dir.display()))
}

/// The release of package `name` that the package set runs beside Kubernetes `kubernetes`
/// (`1.37.2`, no `v`): its `with` or `pods` entry, or `None` when the set does not build that
/// version or pairs nothing called `name` with it.
pub fn paired_release<'a>(set: &'a PackageSet, kubernetes: &str, name: &str) -> Option<&'a str> {
    let version = set.version("kubernetes", kubernetes).ok()?;
    version
        .with
        .get(name)
        .or_else(|| version.pods.get(name))
        .map(String::as_str)
}

fn build_package(set: &PackageSet, args: BuildArgs) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let Some((name, version)) = args.package.split_once('@') else {
        bail!(
            "`{}`: give the package as NAME@VERSION, such as kubernetes@1.37.2",
            args.package
        );
    };
    let version = set.version(name, version)?;
    let mut wanted = vec![(name.to_owned(), version.version.clone())];
    if args.with {
        wanted.extend(
            version
                .with
                .iter()
                .chain(&version.pods)
                .map(|(name, version)| (name.clone(), version.clone())),
        );
    }
    let mut graph = Graph::new();
    let mut targets = Vec::new();
    for (name, version) in &wanted {
        let package = set.package(name)?;
        let version = set.version(name, version)?;
        let target = DrvId::new(format!("package/{name}"));
        add_package(&mut graph, &target, package, version, &args)?;
        targets.push((format!("{name} {}", version.version), target));
    }
    let graph = graph.validate()?;
    let store = Store::open(&common::store_dir(args.store)?)?;
    let observer = common::progress_observer();
    let options = EvalOptions::default();
    let evaluation = graph.evaluate(&store, &options, observer.as_ref())?;
    eprintln!(
        "{}: {} built, {} from the store, in {:.2}s",
        args.package,
        evaluation.built,
        evaluation.substituted,
        started.elapsed().as_secs_f64()
    );
    for (what, target) in &targets {
        let output = &evaluation.outputs[target];
        if targets.len() == 1 {
            println!("{}", output.path.display());
        } else {
            println!("{what}: {}", output.path.display());
        }
    }

    if args.check {
        // An explicit package check always rebuilds the compile.
        let scope = common::CheckScope {
            fixed: false,
            again: true,
        };
        let report = common::check_rebuild(
            &graph,
            &store,
            &evaluation,
            &options,
            observer.as_ref(),
            scope,
        )?;
        if !report.mismatches.is_empty() {
            return Ok(ExitCode::FAILURE);
        }
        eprintln!("check: the rebuild is bit-for-bit identical");
    }
    Ok(ExitCode::SUCCESS)
}

/// Adds the derivations of `version` of `package` to `graph`, the output at `target`.
fn add_package(
    graph: &mut Graph,
    target: &DrvId,
    package: &kiln_image::packages::Package,
    version: &kiln_image::packages::PackageVersion,
    args: &BuildArgs,
) -> anyhow::Result<()> {
    let name = &package.name;
    match &version.source {
        VersionSource::Debian => {
            let locked = lock::read_lock(&lock::lock_path(args.lock.clone()))?;
            let sources = lock::apt_sources(&[])?;
            let debian = kiln_image::kubernetes::upstream_version(&locked.kubernetes.version);
            if name != "kubernetes" {
                bail!(
                    "{name} {} comes with the base OS from Debian's archive (kiln.lock's [base-os]); there is nothing to build on its own",
                    version.version
                );
            }
            if debian != version.version {
                bail!(
                    "{name} {} comes from Debian's source package, but kiln.lock pins {} {} (upstream {debian})",
                    version.version,
                    locked.kubernetes.package,
                    locked.kubernetes.version
                );
            }
            crate::deps::ensure(
                "the Kubernetes build's tools",
                &kiln_image::kubernetes::BUILD_TOOLS,
            )?;
            kiln_image::kubernetes::ensure_toolchain(&locked.kubernetes)?;
            graph.add(
                target.clone(),
                kiln_image::kubernetes::kubernetes_binaries(
                    &kiln_image::kubernetes::KubernetesSource::Debian {
                        lock: locked.kubernetes.clone(),
                        sources,
                    },
                )?,
            )?;
        }
        _ => {
            let modules = DrvId::new(format!("{target}/modules"));
            let derivations = kiln_image::go::go_derivations(package, version, modules.clone())?;
            graph.add(modules, derivations.modules)?;
            graph.add(target.clone(), derivations.build)?;
        }
    }
    Ok(())
}
