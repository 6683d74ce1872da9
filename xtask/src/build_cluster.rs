//! `cargo xtask build-cluster`: evaluate a cluster's graph into the store and write the manifest.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_cluster::Manifest;
use kiln_graph::{EvalOptions, Observer};
use kiln_store::Store;

use crate::common;
use crate::lock;

/// Arguments of `cargo xtask build-cluster`.
#[derive(clap::Args)]
pub struct Args {
    /// The cluster spec (default: examples/two-node.toml).
    #[arg(long)]
    spec: Option<PathBuf>,
    /// Where `manifest.json` and the convenience links go.
    #[arg(long, default_value = "result")]
    out: PathBuf,
    /// The store (default: $KILN_STORE, else $XDG_DATA_HOME/kiln/store, else ~/.local/share/kiln/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Where the cluster's root secrets live, one directory per cluster (default:
    /// `~/.local/share/kiln/secrets`).
    #[arg(long)]
    secrets: Option<PathBuf>,
    /// How many derivations build at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Rebuild every derivation into a scratch store and fail if any output differs.
    /// Fixed-output derivations (the base OS, the Kubernetes binaries) are compared with their
    /// pins instead of rebuilt, unless `--check-fixed`.
    #[arg(long)]
    check: bool,
    /// With `--check`, rebuild the fixed-output derivations too (adds their full build times).
    #[arg(long, requires = "check")]
    check_fixed: bool,
    /// With `--check`, rebuild even the compiles this machine already rebuilt bit for bit
    /// (kept in the store as `reproducible-<name>`); by default they are not rebuilt again.
    #[arg(long, requires = "check")]
    check_again: bool,
    /// Print a JSON summary on standard output.
    #[arg(long)]
    json: bool,
    /// Build only the configuration (PKI, kubeconfigs, units, manifests, network), not the
    /// node images.
    #[arg(long)]
    no_images: bool,
    /// Where to take store paths from instead of building them. Another store on this
    /// machine (a directory): its fixed-output paths (base OS, Kubernetes binaries, busybox)
    /// and compiles, verified against their pins or its recorded content hashes. Or an OCI
    /// registry (`oci://HOST[:PORT]/REPOSITORY`, filled by `cargo xtask push`): any path this
    /// build needs that holds no secret, each blob verified against its digest and the tree
    /// against its content hash (a fixed-output path's against its pin); a path the registry
    /// lacks or serves corrupt is built instead, with a warning. Repeatable, tried in order;
    /// also `$KILN_SUBSTITUTERS` (colon-separated). With every pinned input in the store or a
    /// substituter, the apt sources are not consulted at all.
    #[arg(
        long = "substituter",
        value_name = "STORE|oci://HOST[:PORT]/REPOSITORY"
    )]
    substituters: Vec<String>,
    /// The package set: the directory of package declarations (default: packages/ at the
    /// repository's root). The spec's Kubernetes version must be one it has.
    #[arg(long, value_name = "DIR")]
    packages: Option<PathBuf>,
    /// Take the Kubernetes binaries from this directory (one file per binary) instead of
    /// building them as the package set declares; the directory is hashed, and the build fails
    /// if it changes afterwards.
    #[arg(long, value_name = "DIR", conflicts_with = "kubernetes_release")]
    kubernetes_dir: Option<PathBuf>,
    /// Download the Kubernetes binaries as this JSON file lists them:
    /// `{"version": "v1.20.2", "binaries": {"kubelet": {"url": "...", "sha256": "..."}, ...}}`,
    /// each checked against its SHA-256.
    #[arg(long, value_name = "FILE")]
    kubernetes_release: Option<PathBuf>,
    /// The lock file pinning the inputs from Debian's archive (default: kiln.lock at the
    /// repository's root). A copy describing exactly this build lands in `<out>/kiln.lock`.
    #[arg(long)]
    lock: Option<PathBuf>,
    /// Refuse to build anything but the lock's exact versions: when a locked package can no
    /// longer be had from any apt source, fail naming each one (instead of building the
    /// archive's current version and reporting the move).
    #[arg(long)]
    locked: bool,
    /// One more apt source, as a one-line `deb` entry: a mirror, or a snapshot archive that
    /// still holds the locked versions. Repeatable; the machine's own sources are used too.
    #[arg(long = "apt-source", value_name = "LINE")]
    apt_sources: Vec<String>,
    /// Also build the VM tests' tools disk (`image/test-tools`: kube-bench, and the
    /// conformance images when the package set has the end-to-end suite of the cluster's
    /// Kubernetes version) and the suite itself; none of it goes into a node image.
    #[arg(long, conflicts_with = "no_images")]
    pub test_tools: bool,
    /// With `--test-tools`, leave out the end-to-end suite and what only it needs (the
    /// conformance images and their sample-apiserver): the tools of a VM scenario that runs no
    /// conformance tests, whose recorded pass then does not depend on them.
    #[arg(long, requires = "test_tools")]
    pub without_suite: bool,
}

impl Args {
    /// The arguments that build everything, images included, with default jobs and no check.
    pub fn for_node_images(
        spec: Option<PathBuf>,
        out: PathBuf,
        store: Option<PathBuf>,
        secrets: Option<PathBuf>,
    ) -> Args {
        Args {
            spec,
            out,
            store,
            secrets,
            jobs: None,
            check: false,
            check_fixed: false,
            check_again: false,
            json: false,
            no_images: false,
            substituters: Vec::new(),
            packages: None,
            kubernetes_dir: None,
            kubernetes_release: None,
            lock: None,
            locked: false,
            apt_sources: Vec::new(),
            test_tools: false,
            without_suite: false,
        }
    }
}

/// Builds the cluster.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let spec = args.spec.clone().unwrap_or_else(common::default_spec);
    let plan = common::load_plan(&spec)?;
    // A certificate that would be born expired is refused before anything is built. The clock
    // is read only for this check; it never reaches an output.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    kiln_pki::check_not_expired(&plan, i64::try_from(now).unwrap_or(i64::MAX))?;
    // So is an `--out` that is not a result: it would be refused only after the build.
    check_replaceable(&args.out)?;
    let store_dir = common::store_dir(args.store.clone())?;
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store {}", store_dir.display()))?;

    let set = crate::package::read_packages(&crate::package::packages_dir(args.packages.clone()))?;
    let releases = common::releases(&plan, &set, args.lock.clone())?;
    let inputs = common::cluster_inputs(&plan, &spec, args.secrets.clone(), releases)?;
    let cluster = kiln_cluster::cluster_graph(&plan, &inputs)?;
    let substituters = crate::registry::Substituters::from_args(&args.substituters)?;
    let jobs = args
        .jobs
        .unwrap_or_else(|| EvalOptions::default().jobs)
        .max(1);
    let (artifacts, graph, lock, debian_kubernetes) = if args.no_images {
        let graph = cluster.graph.validate()?;
        crate::registry::substitute(&graph, &store, &substituters.registries, jobs)?;
        (cluster.artifacts, graph, None, false)
    } else {
        let images = with_images(&args, &plan, &set, cluster, &store, &substituters, jobs)?;
        (
            images.artifacts,
            images.graph,
            Some(images.lock),
            images.debian_kubernetes,
        )
    };
    if let Some(lock) = &lock {
        lock::prepare_tools(
            &graph,
            &store,
            &lock::PinnedIds {
                base_os: BASE_OS_ID,
                busybox: BUSYBOX_ID,
                busybox_source: Some(kiln_cluster::BUSYBOX_SOURCE_ID),
                kubernetes: Some(KUBERNETES_ID),
            },
            debian_kubernetes.then_some(&lock.kubernetes),
        )?;
    }
    let options = EvalOptions { jobs };

    let observer = common::progress_observer();
    let observer: &dyn Observer = &*observer;
    let evaluation = graph.evaluate(&store, &options, observer)?;
    let manifest = Manifest::new(&plan, &artifacts, &graph, &evaluation);
    // The lock as this build resolved it, with what it built: `<out>/kiln.lock`.
    let built_lock = match &lock {
        Some(lock) => Some(lock::record_outputs(
            lock,
            &lock::PinnedIds {
                base_os: BASE_OS_ID,
                busybox: BUSYBOX_ID,
                busybox_source: Some(kiln_cluster::BUSYBOX_SOURCE_ID),
                kubernetes: debian_kubernetes.then_some(KUBERNETES_ID),
            },
            &evaluation,
        )?),
        None => None,
    };
    write_out(&args.out, &manifest, built_lock.as_ref(), &store)?;

    let mut code = ExitCode::SUCCESS;
    if args.check {
        let scope = common::CheckScope {
            fixed: args.check_fixed,
            again: args.check_again,
        };
        let report = common::check_rebuild(&graph, &store, &evaluation, &options, observer, scope)?;
        if report.mismatches.is_empty() {
            let mut also = Vec::new();
            if report.pinned > 0 {
                also.push(format!(
                    "{} fixed-output ones match their pins (--check-fixed rebuilds them)",
                    report.pinned
                ));
            }
            if report.proven_before > 0 {
                also.push(format!(
                    "{} compiles were rebuilt bit for bit on this machine before and are not \
                     rebuilt again (--check-again rebuilds them)",
                    report.proven_before
                ));
            }
            eprintln!(
                "check: all {} rebuilt derivations bit-for-bit identical{}",
                report.rebuilt,
                also.iter()
                    .map(|text| format!("; {text}"))
                    .collect::<String>()
            );
        } else {
            eprintln!(
                "check: {} of {} derivations differ on rebuild",
                report.mismatches.len(),
                graph.len()
            );
            code = ExitCode::FAILURE;
        }
    }

    let seconds = started.elapsed().as_secs_f64();
    if args.json {
        let summary = serde_json::json!({
            "cluster": plan.cluster.name,
            "derivations": graph.len(),
            "built": evaluation.built,
            "from_store": evaluation.substituted,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "manifest": args.out.join("manifest.json"),
        });
        println!("{summary}");
    } else {
        eprintln!(
            "{}: {} derivations, {} built, {} from the store, in {seconds:.2}s; manifest: {}",
            plan.cluster.name,
            graph.len(),
            evaluation.built,
            evaluation.substituted,
            args.out.join("manifest.json").display()
        );
    }
    // The process ends next: a big cluster's graph, evaluation and manifest (hundreds of
    // thousands of allocations) go with it, instead of being freed one by one (4% of a no-op
    // rebuild of 1000 nodes). The store is dropped as usual: dropping it commits.
    std::mem::forget((graph, evaluation, manifest));
    Ok(code)
}

/// Where the Kubernetes binaries come from: `--kubernetes-dir`, `--kubernetes-release`, or
/// Debian's source package.
fn kubernetes_source(
    args: &Args,
    plan: &kiln_spec::Plan,
    set: &kiln_image::packages::PackageSet,
    lock: &kiln_image::lock::Lock,
    sources: &kiln_image::resolve::AptSources,
) -> anyhow::Result<kiln_image::kubernetes::KubernetesSource> {
    let version = format!("v{}", plan.cluster.kubernetes_version);
    if let Some(dir) = &args.kubernetes_dir {
        let dir = std::path::absolute(dir)?;
        return Ok(kiln_image::kubernetes::KubernetesSource::Path { version, dir });
    }
    if let Some(file) = &args.kubernetes_release {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Release {
            version: String,
            binaries: std::collections::BTreeMap<String, Binary>,
        }
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Binary {
            url: String,
            sha256: String,
        }
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let release: Release = serde_json::from_str(&text)
            .with_context(|| format!("{}: not a release list", file.display()))?;
        let mut binaries = std::collections::BTreeMap::new();
        for (name, binary) in release.binaries {
            let sha256 = binary.sha256.parse().map_err(|_| {
                anyhow::anyhow!(
                    "{}: binaries.{name}.sha256 is not 64 hex digits",
                    file.display()
                )
            })?;
            binaries.insert(
                name,
                kiln_image::kubernetes::ReleaseBinary {
                    url: binary.url,
                    sha256,
                },
            );
        }
        return Ok(kiln_image::kubernetes::KubernetesSource::Release {
            version: release.version,
            binaries,
        });
    }
    let wanted = plan.cluster.kubernetes_version.to_string();
    let package = set.package("kubernetes")?;
    let chosen = set.version("kubernetes", &wanted).map_err(|error| {
        anyhow::anyhow!(
            "{error} (cluster.kubernetes_version in the spec; or pass --kubernetes-dir or --kubernetes-release)"
        )
    })?;
    if chosen.source != kiln_image::packages::VersionSource::Debian {
        return Ok(kiln_image::kubernetes::KubernetesSource::Go {
            package: Box::new(package.clone()),
            version: chosen.clone(),
        });
    }
    let debian = kiln_image::kubernetes::upstream_version(&lock.kubernetes.version);
    if wanted != debian {
        bail!(
            "the package set builds Kubernetes {wanted} from Debian's source package, but kiln.lock pins {} {}, which is {debian}",
            lock.kubernetes.package,
            lock.kubernetes.version
        );
    }
    Ok(kiln_image::kubernetes::KubernetesSource::Debian {
        lock: lock.kubernetes.clone(),
        sources: sources.clone(),
    })
}

/// A list of packages of the set, each with the version wanted.
type Packages = Vec<(
    kiln_image::packages::Package,
    kiln_image::packages::PackageVersion,
)>;

/// The packages a node runs with the spec's Kubernetes version (its `with` in the package
/// set) and those the cluster runs in pods only (its `pods`), or none when the set does not
/// have that version (binaries from `--kubernetes-dir` or `--kubernetes-release`: then the
/// node takes the rest from the base OS).
pub(crate) fn userland(
    set: &kiln_image::packages::PackageSet,
    plan: &kiln_spec::Plan,
) -> anyhow::Result<(Packages, Packages)> {
    let wanted = plan.cluster.kubernetes_version.to_string();
    let Ok(kubernetes) = set.version("kubernetes", &wanted) else {
        return Ok((Vec::new(), Vec::new()));
    };
    let resolve = |pairs: &std::collections::BTreeMap<String, String>| -> anyhow::Result<Packages> {
        let mut packages = Vec::new();
        for (name, version) in pairs {
            packages.push((
                set.package(name)?.clone(),
                set.version(name, version)?.clone(),
            ));
        }
        Ok(packages)
    };
    Ok((resolve(&kubernetes.with)?, resolve(&kubernetes.pods)?))
}

/// The ids of the Debian inputs in the cluster's graph (kiln-cluster's `images.rs`).
const BASE_OS_ID: &str = "image/base-os";
const BUSYBOX_ID: &str = "image/busybox";
const KUBERNETES_ID: &str = "image/kubernetes-binaries";

/// Adds the node images to `cluster`, with the inputs from Debian's archive as the lock pins
/// them. The apt sources are consulted only when a pinned input is neither in the store nor in
/// a substituter: then `kiln.lock` is resolved against them first, and what moved is built at
/// the archive's current version and reported (with `--locked`, refused).
fn with_images(
    args: &Args,
    plan: &kiln_spec::Plan,
    set: &kiln_image::packages::PackageSet,
    cluster: kiln_cluster::ClusterGraph,
    store: &Store,
    substituters: &crate::registry::Substituters,
    jobs: usize,
) -> anyhow::Result<WithImages> {
    let lock_file = lock::lock_path(args.lock.clone());
    let locked = lock::read_lock(&lock_file)?;
    let sources = lock::apt_sources(&args.apt_sources)?;
    let kubernetes = kubernetes_source(args, plan, set, &locked, &sources)?;
    let (userland, pod_packages) = userland(set, plan)?;
    let debian_kubernetes = matches!(
        kubernetes,
        kiln_image::kubernetes::KubernetesSource::Debian { .. }
    );

    // First as locked: if every pinned input is already to be had, the archive is not asked.
    let as_locked = kiln_cluster::ImageInputs {
        kubernetes: kubernetes.clone(),
        lock: locked.clone(),
        sources: sources.clone(),
        userland: userland.clone(),
        pod_packages: pod_packages.clone(),
    };
    let tools = if args.test_tools {
        test_tools(set, plan, !args.without_suite)?
    } else {
        Vec::new()
    };
    // The conformance images' busybox is built from a source package: with the suite among
    // the tools, a lock that does not pin it yet is resolved.
    let busybox_source = tools
        .iter()
        .any(|(package, _)| package.name == kiln_image::oci::E2E_PACKAGE);
    if !busybox_source || locked.busybox_source.is_some() {
        let candidate = cluster
            .clone()
            .with_images(plan, &as_locked)?
            .with_test_tools(plan, &as_locked, &tools)?;
        let graph = candidate.graph.clone().validate()?;
        common::substitute_fixed(&graph, store, &substituters.stores, &[])?;
        crate::registry::substitute(&graph, store, &substituters.registries, jobs)?;
        let mut pinned = vec![BASE_OS_ID, BUSYBOX_ID, kiln_cluster::BUSYBOX_SOURCE_ID];
        if debian_kubernetes {
            pinned.push(KUBERNETES_ID);
        }
        let mut all_present = true;
        for id in pinned {
            let id = kiln_graph::DrvId::new(id);
            if let (Some(derivation), Some(digest)) = (graph.derivation(&id), graph.digest(&id)) {
                let fixed = matches!(derivation.addressing, kiln_graph::Addressing::Fixed { .. });
                all_present &= fixed && store.get(&digest, &derivation.name)?.is_some();
            }
        }
        if all_present {
            return Ok(WithImages {
                artifacts: candidate.artifacts,
                graph,
                lock: locked,
                debian_kubernetes,
            });
        }
    }

    let policy = if args.locked {
        kiln_image::resolve::Policy::Locked
    } else {
        kiln_image::resolve::Policy::PreferLocked
    };
    let resolution = lock::resolve(&locked, &sources, policy, debian_kubernetes, busybox_source)?;
    if !resolution.changes.is_empty() {
        eprintln!(
            "building the archive's current versions of these ({} will record them; `cargo xtask lock` updates {})",
            args.out.join("kiln.lock").display(),
            lock_file.display()
        );
    }
    let kubernetes = match kubernetes {
        kiln_image::kubernetes::KubernetesSource::Debian { sources, .. } => {
            kiln_image::kubernetes::KubernetesSource::Debian {
                lock: resolution.lock.kubernetes.clone(),
                sources,
            }
        }
        other => other,
    };
    let inputs = kiln_cluster::ImageInputs {
        kubernetes,
        lock: resolution.lock.clone(),
        sources,
        userland,
        pod_packages,
    };
    let cluster = cluster
        .with_images(plan, &inputs)?
        .with_test_tools(plan, &inputs, &tools)?;
    let graph = cluster.graph.validate()?;
    common::substitute_fixed(
        &graph,
        store,
        &substituters.stores,
        &[
            BASE_OS_ID,
            BUSYBOX_ID,
            kiln_cluster::BUSYBOX_SOURCE_ID,
            KUBERNETES_ID,
        ],
    )?;
    crate::registry::substitute(&graph, store, &substituters.registries, jobs)?;
    Ok(WithImages {
        artifacts: cluster.artifacts,
        graph,
        lock: resolution.lock,
        debian_kubernetes,
    })
}

/// The VM tests' tools, each `(package, version)` of the package set, that every cluster's
/// tools disk holds: what a scenario judges the cluster with.
const TEST_TOOLS: [(&str, &str); 1] = [("kube-bench", "0.14.1")];

/// The tools of `--test-tools` for `plan`: [`TEST_TOOLS`], and when `suite` is true, the
/// end-to-end suite ([`kiln_image::oci::E2E_PACKAGE`]) of the cluster's Kubernetes version if
/// the package set has it, with the program of its sample-apiserver image
/// ([`kiln_image::oci::SAMPLE_APISERVER_PACKAGE`]).
fn test_tools(
    set: &kiln_image::packages::PackageSet,
    plan: &kiln_spec::Plan,
    suite: bool,
) -> anyhow::Result<
    Vec<(
        kiln_image::packages::Package,
        kiln_image::packages::PackageVersion,
    )>,
> {
    let mut tools = Vec::new();
    for (name, version) in TEST_TOOLS {
        tools.push((
            set.package(name)?.clone(),
            set.version(name, version)?.clone(),
        ));
    }
    let kubernetes = plan.cluster.kubernetes_version.to_string();
    let e2e = kiln_image::oci::E2E_PACKAGE;
    if !suite {
        return Ok(tools);
    }
    if let Ok(version) = set.version(e2e, &kubernetes) {
        tools.push((set.package(e2e)?.clone(), version.clone()));
        let (name, version) = kiln_image::oci::SAMPLE_APISERVER_PACKAGE;
        tools.push((
            set.package(name)?.clone(),
            set.version(name, version)?.clone(),
        ));
    }
    Ok(tools)
}

/// What [`with_images`] gives: the cluster's validated graph with the node images, the lock it
/// was made from, and whether the Kubernetes binaries come from Debian's source (and so are
/// pinned by that lock).
struct WithImages {
    artifacts: kiln_cluster::Artifacts,
    graph: kiln_graph::ValidatedGraph,
    lock: kiln_image::lock::Lock,
    debian_kubernetes: bool,
}

/// Refuses an `out` that exists but is not a kiln result directory (no `manifest.json`), so a
/// mistyped `--out` never replaces a directory of the user's.
fn check_replaceable(out: &Path) -> anyhow::Result<()> {
    if out.exists() && !out.join("manifest.json").is_file() {
        bail!(
            "refusing to replace {}: it is not a kiln result directory (no manifest.json)",
            out.display()
        );
    }
    Ok(())
}

/// Replaces `out` with a fresh directory holding `manifest.json` and one link per artifact:
/// `cluster/<artifact>` and `nodes/<node>/<artifact>`, each pointing at its store path, and
/// registers `out` as a garbage-collection root of `store`, so `cargo xtask gc` keeps what
/// its manifest names.
///
/// The replacement is atomic: at every moment `out` is the old result or the new one, never
/// missing (a VM started from `out/...` meanwhile finds its files). An `out` that already
/// holds exactly this result (the same `manifest.json` and `kiln.lock`, every link in place)
/// is left as it is: rewriting thousands of links is most of a no-op rebuild's time.
fn write_out(
    out: &Path,
    manifest: &Manifest,
    lock: Option<&kiln_image::lock::Lock>,
    store: &Store,
) -> anyhow::Result<()> {
    check_replaceable(out)?;
    let manifest_json = manifest.to_json();
    let lock_text = lock.map(kiln_image::lock::Lock::render);
    let mut links = Vec::new();
    let mut link = |relative: PathBuf, id: &str| -> anyhow::Result<()> {
        let target = &manifest
            .artifacts
            .get(id)
            .with_context(|| format!("no output for {id}"))?
            .store_path;
        links.push((relative, target.clone()));
        Ok(())
    };
    for (name, id) in &manifest.cluster_artifacts {
        link(Path::new("cluster").join(name), id)?;
    }
    for (node, artifacts) in &manifest.nodes {
        for (name, id) in artifacts {
            link(Path::new("nodes").join(node).join(name), id)?;
        }
    }
    let parent = match out.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent)?;
    // The root comes before the swap: killed in between, a build leaves a root for the old
    // result (or a stale one, which gc removes), never a new result without a root.
    store
        .add_root(out)
        .with_context(|| format!("registering {} as a root of the store", out.display()))?;
    if holds_result(out, &manifest_json, lock_text.as_deref(), &links) {
        return Ok(());
    }
    let staging = tempfile::Builder::new()
        .prefix(".kiln-result-")
        .tempdir_in(&parent)?;
    std::fs::write(staging.path().join("manifest.json"), &manifest_json)?;
    if let Some(lock_text) = &lock_text {
        std::fs::write(staging.path().join("kiln.lock"), lock_text)?;
    }
    for (relative, target) in &links {
        let path = staging.path().join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::os::unix::fs::symlink(target, &path)
            .with_context(|| format!("linking {}", path.display()))?;
    }
    let staging = staging.keep();
    replace_dir(&staging, out).inspect_err(|_| {
        // Already failing; what is left of the staging directory is only clutter.
        let _ = std::fs::remove_dir_all(&staging);
    })
}

/// Whether `out` already holds this result: its `manifest.json` and `kiln.lock` (or the
/// lack of one) as given, and each link pointing where it should.
fn holds_result(
    out: &Path,
    manifest_json: &str,
    lock_text: Option<&str>,
    links: &[(PathBuf, PathBuf)],
) -> bool {
    let same_file =
        |name: &str, expected: Option<&str>| match (std::fs::read(out.join(name)), expected) {
            (Ok(bytes), Some(expected)) => bytes == expected.as_bytes(),
            (Err(error), None) => error.kind() == std::io::ErrorKind::NotFound,
            _ => false,
        };
    let links_in_place = |links: &[(PathBuf, PathBuf)]| {
        links.iter().all(|(relative, target)| {
            std::fs::read_link(out.join(relative)).is_ok_and(|found| found == *target)
        })
    };
    if !(same_file("manifest.json", Some(manifest_json)) && same_file("kiln.lock", lock_text)) {
        return false;
    }
    // Thousands of links (one per artifact of every node) are read on every core: this is
    // a large part of a no-op rebuild of a big cluster.
    const LINKS_PER_THREAD: usize = 512;
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(links.len() / LINKS_PER_THREAD)
        .max(1);
    if threads == 1 {
        return links_in_place(links);
    }
    std::thread::scope(|scope| {
        let workers: Vec<_> = links
            .chunks(links.len().div_ceil(threads))
            .map(|chunk| scope.spawn(move || links_in_place(chunk)))
            .collect();
        // Every worker is joined (all of them: no short cut), a panic in one passed on.
        let found: Vec<bool> = workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect();
        found.into_iter().all(|in_place| in_place)
    })
}

/// Moves the directory `new` to `out`. An existing `out` is exchanged with `new` in one
/// `renameat2(RENAME_EXCHANGE)` and then deleted from where `new` was, so `out` never goes
/// missing. Only where the kernel or file system cannot exchange (`EINVAL`, `ENOSYS`) is the
/// old `out` removed before the rename, leaving a moment without it.
fn replace_dir(new: &Path, out: &Path) -> anyhow::Result<()> {
    use rustix::fs::{CWD, RenameFlags, renameat_with};
    use rustix::io::Errno;

    let moved = || {
        std::fs::rename(new, out)
            .with_context(|| format!("moving the result into {}", out.display()))
    };
    match renameat_with(CWD, new, CWD, out, RenameFlags::EXCHANGE) {
        Ok(()) => std::fs::remove_dir_all(new)
            .with_context(|| format!("removing the old result, now at {}", new.display())),
        // Nothing to exchange with: the first build into `out`.
        Err(Errno::NOENT) if std::fs::symlink_metadata(out).is_err() => moved(),
        Err(Errno::INVAL | Errno::NOSYS) => {
            std::fs::remove_dir_all(out)
                .with_context(|| format!("removing the old {}", out.display()))?;
            moved()
        }
        Err(error) => Err(std::io::Error::from(error))
            .with_context(|| format!("exchanging {} with {}", new.display(), out.display())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    #[test]
    fn the_suite_is_among_the_test_tools_unless_left_out() {
        let set = crate::package::read_packages(&crate::package::packages_dir(None))
            .expect("the package set");
        let spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vm-tests/specs/two-node.toml");
        let plan = common::load_plan(&spec).expect("the two-node spec");
        let names = |suite: bool| -> Vec<String> {
            test_tools(&set, &plan, suite)
                .expect("the tools")
                .into_iter()
                .map(|(package, version)| format!("{}@{}", package.name, version.version))
                .collect()
        };
        let e2e = format!(
            "{}@{}",
            kiln_image::oci::E2E_PACKAGE,
            plan.cluster.kubernetes_version
        );
        let (sample_apiserver, version) = kiln_image::oci::SAMPLE_APISERVER_PACKAGE;
        let sample_apiserver = format!("{sample_apiserver}@{version}");
        let with = names(true);
        assert!(with.contains(&e2e), "{with:?}");
        assert!(with.contains(&sample_apiserver), "{with:?}");
        let without = names(false);
        assert_eq!(without, vec!["kube-bench@0.14.1".to_owned()]);
        assert_eq!(with[..1], without[..]);
    }

    #[test]
    fn without_suite_needs_test_tools() {
        use clap::Parser;

        #[derive(clap::Parser)]
        struct Command {
            #[command(flatten)]
            args: Args,
        }
        let parse = |line: &[&str]| {
            Command::try_parse_from(std::iter::once("build-cluster").chain(line.iter().copied()))
        };
        let error = parse(&["--without-suite"]).err().expect("refused");
        assert!(error.to_string().contains("--test-tools"), "{error}");
        let args = parse(&["--test-tools", "--without-suite"])
            .expect("parsed")
            .args;
        assert!(args.test_tools && args.without_suite);
    }

    fn manifest(cluster: &str) -> Manifest {
        Manifest {
            cluster: cluster.to_owned(),
            artifacts: BTreeMap::new(),
            cluster_artifacts: BTreeMap::new(),
            nodes: BTreeMap::new(),
        }
    }

    #[test]
    fn an_unchanged_result_is_left_in_place_and_a_changed_one_replaced() {
        use std::os::unix::fs::MetadataExt;

        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let out = dir.path().join("result");
        let mut result = manifest("same");
        result.artifacts.insert(
            "node/a/units".into(),
            kiln_cluster::ArtifactEntry {
                store_path: dir.path().join("store/x-a-units"),
                digest: kiln_store::Digest::of(b"d"),
                content_hash: kiln_store::Digest::of(b"c"),
                secret: false,
            },
        );
        result.nodes.insert(
            "a".into(),
            BTreeMap::from([("units".to_owned(), "node/a/units".to_owned())]),
        );
        let inode = |path: &Path| std::fs::symlink_metadata(path).expect("stat").ino();
        write_out(&out, &result, None, &store).expect("first");
        let first = inode(&out);
        write_out(&out, &result, None, &store).expect("again");
        assert_eq!(inode(&out), first, "the same result stays in place");

        // A link changed behind kiln's back is put right by a replacement.
        let link = out.join("nodes/a/units");
        std::fs::remove_file(&link).expect("remove");
        std::os::unix::fs::symlink("/elsewhere", &link).expect("link");
        write_out(&out, &result, None, &store).expect("repaired");
        assert_ne!(inode(&out), first);
        assert_eq!(
            std::fs::read_link(&link).expect("link"),
            dir.path().join("store/x-a-units")
        );
        // So is one whose kiln.lock differs (here: one appeared).
        let repaired = inode(&out);
        std::fs::write(out.join("kiln.lock"), "stale").expect("write");
        write_out(&out, &result, None, &store).expect("without a lock");
        assert_ne!(inode(&out), repaired);
        assert!(!out.join("kiln.lock").exists());
    }

    #[test]
    fn a_wrong_link_among_thousands_is_found() {
        // Enough links for every core to read a share (`holds_result` splits them).
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("result");
        std::fs::create_dir_all(out.join("nodes")).expect("mkdir");
        std::fs::write(out.join("manifest.json"), "{}").expect("manifest");
        let links: Vec<(PathBuf, PathBuf)> = (0..3000)
            .map(|index| {
                (
                    PathBuf::from(format!("nodes/{index}")),
                    PathBuf::from(format!("/store/{index}")),
                )
            })
            .collect();
        for (relative, target) in &links {
            std::os::unix::fs::symlink(target, out.join(relative)).expect("link");
        }
        assert!(holds_result(&out, "{}", None, &links));
        for wrong in [0, 1500, 2999] {
            let path = out.join(&links[wrong].0);
            std::fs::remove_file(&path).expect("remove");
            std::os::unix::fs::symlink("/elsewhere", &path).expect("link");
            assert!(!holds_result(&out, "{}", None, &links), "link {wrong}");
            std::fs::remove_file(&path).expect("remove");
            std::os::unix::fs::symlink(&links[wrong].1, &path).expect("link");
        }
        assert!(holds_result(&out, "{}", None, &links));
        assert!(!holds_result(&out, "{ }", None, &links), "another manifest");
    }

    #[test]
    fn replacing_a_result_never_leaves_it_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let out = dir.path().join("result");
        write_out(&out, &manifest("first"), None, &store).expect("first result");
        let done = AtomicBool::new(false);
        let (reads, missing) = std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let (mut reads, mut missing) = (0u64, 0u64);
                while !done.load(Ordering::Relaxed) {
                    match std::fs::read_to_string(out.join("manifest.json")) {
                        Ok(_) => reads += 1,
                        Err(_) => missing += 1,
                    }
                }
                (reads, missing)
            });
            for round in 0..300 {
                write_out(&out, &manifest(&format!("round{round}")), None, &store)
                    .expect("replace");
            }
            done.store(true, Ordering::Relaxed);
            reader.join().expect("reader")
        });
        assert!(reads > 0);
        assert_eq!(
            missing, 0,
            "manifest.json was missing in {missing} of {reads} reads"
        );
        let text = std::fs::read_to_string(out.join("manifest.json")).expect("manifest");
        assert!(text.contains("round299"), "{text}");
        // The old results and staging directories are gone; one root names the result.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");
        let roots: Vec<_> = std::fs::read_dir(dir.path().join("store/.roots"))
            .expect("roots")
            .map(|entry| std::fs::read_link(entry.expect("entry").path()).expect("a link"))
            .collect();
        let canonical = std::fs::canonicalize(dir.path()).expect("canonical");
        assert_eq!(roots, [canonical.join("result")]);
    }

    #[test]
    fn a_directory_that_is_not_a_result_is_not_replaced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(&dir.path().join("store")).expect("store");
        let out = dir.path().join("precious");
        std::fs::create_dir(&out).expect("mkdir");
        std::fs::write(out.join("notes.txt"), "mine").expect("write");
        let error = write_out(&out, &manifest("x"), None, &store).expect_err("refused");
        assert!(error.to_string().contains("not a kiln result"), "{error}");
        assert!(out.join("notes.txt").exists());
    }
}
