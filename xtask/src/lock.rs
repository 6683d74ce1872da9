//! `cargo xtask lock`: resolve `kiln.lock`'s inputs against the apt sources as they are today,
//! build what moved, and rewrite the lock; plus what `build-cluster` shares with it: finding and
//! reading the lock, the apt sources, resolving before a build, and recording what was built.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use kiln_graph::{DrvId, Evaluation, Graph, ValidatedGraph};
use kiln_image::{
    lock::Lock,
    resolve::{AptSources, Indices, Policy, Requests, Resolution, Resolver},
};
use kiln_store::Store;

use crate::common;

/// Arguments of `cargo xtask lock`.
#[derive(clap::Args)]
pub struct Args {
    /// The lock file to update (default: kiln.lock at the repository's root).
    #[arg(long)]
    lock: Option<PathBuf>,
    /// One more apt source, as a one-line `deb` entry (a mirror, or a snapshot archive);
    /// repeatable. The machine's own sources are always used too.
    #[arg(long = "apt-source", value_name = "LINE")]
    apt_sources: Vec<String>,
    /// The store the moved inputs are built into (as for build-cluster).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Only print what would change; build and write nothing.
    #[arg(long)]
    dry_run: bool,
}

/// The lock file: `--lock`, else `kiln.lock` at the repository's root.
pub fn lock_path(explicit: Option<PathBuf>) -> PathBuf {
    explicit.unwrap_or_else(|| {
        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
        xtask.parent().unwrap_or(xtask).join("kiln.lock")
    })
}

/// Reads and parses the lock file at `path`.
pub fn read_lock(path: &Path) -> anyhow::Result<Lock> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the lock file {}", path.display()))?;
    Ok(Lock::parse(&text, &path.display().to_string())?)
}

/// The machine's own apt sources and the `--apt-source` lines, those first.
pub fn apt_sources(extra: &[String]) -> anyhow::Result<AptSources> {
    for line in extra {
        if !line.trim_start().starts_with("deb ") {
            anyhow::bail!(
                "--apt-source `{line}`: expected a one-line `deb` entry, such as `deb [trusted=yes] file:/srv/mirror bookworm main`"
            );
        }
    }
    Ok(AptSources::machine(Path::new("/etc/apt"))?.with_lines(extra))
}

/// Resolves `lock` against `sources` (see [`kiln_image::resolve::resolve()`]), saying what it does,
/// and then every package that moved, one a line. The source packages are resolved only when
/// asked for: Kubernetes' with `kubernetes_source`, busybox's (and its C toolchain) with
/// `busybox_source`.
pub fn resolve(
    lock: &Lock,
    sources: &AptSources,
    policy: Policy,
    kubernetes_source: bool,
    busybox_source: bool,
) -> anyhow::Result<Resolution> {
    eprintln!("resolving kiln.lock against the apt sources (apt-get update, then apt's solver)");
    let started = std::time::Instant::now();
    let indices = if kubernetes_source || busybox_source {
        Indices::BinaryAndSource
    } else {
        Indices::Binary
    };
    let resolver = Resolver::new(sources, indices)?;
    let mut requests = Requests::default();
    if !busybox_source {
        requests.busybox_toolchain.clear();
    }
    let resolution =
        kiln_image::resolve::resolve(&resolver, lock, &requests, policy, kubernetes_source)?;
    eprintln!(
        "resolved in {:.1}s: {}",
        started.elapsed().as_secs_f64(),
        if resolution.changes.is_empty() {
            "every locked version is there".to_owned()
        } else {
            format!(
                "{} package(s) differ from kiln.lock",
                resolution.changes.len()
            )
        }
    );
    for change in &resolution.changes {
        eprintln!("  {change}");
    }
    Ok(resolution)
}

/// The derivation ids that the Debian inputs have in a graph: base OS, busybox, busybox from
/// source and the Kubernetes binaries (when built from Debian's source).
pub struct PinnedIds<'a> {
    /// The base OS's id.
    pub base_os: &'a str,
    /// busybox's id.
    pub busybox: &'a str,
    /// The id of busybox built from its source package, when the graph may have it.
    pub busybox_source: Option<&'a str>,
    /// The Kubernetes binaries' id, when they come from Debian's source package.
    pub kubernetes: Option<&'a str>,
}

/// `lock` with the content hashes (and the Kubernetes binaries' SHA-256s) of what `evaluation`
/// built or found for the inputs at `ids`: the lock that describes exactly this build.
pub fn record_outputs(
    lock: &Lock,
    ids: &PinnedIds<'_>,
    evaluation: &Evaluation,
) -> anyhow::Result<Lock> {
    let mut recorded = lock.clone();
    let output = |id: &str| evaluation.outputs.get(&DrvId::new(id));
    if let Some(object) = output(ids.base_os) {
        recorded.base_os.content_hash = Some(object.content_hash);
    }
    if let Some(object) = output(ids.busybox) {
        recorded.busybox.content_hash = Some(object.content_hash);
    }
    if let (Some(object), Some(source)) = (
        ids.busybox_source.and_then(output),
        recorded.busybox_source.as_mut(),
    ) && source.content_hash != Some(object.content_hash)
    {
        let path = object.path.join("bin/busybox");
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        source.content_hash = Some(object.content_hash);
        source.binaries = [("busybox".to_owned(), kiln_store::Digest::of(&bytes))].into();
    }
    if let Some(object) = ids.kubernetes.and_then(output) {
        // A pinned build already has its binaries' hashes: reading them again (hundreds of
        // megabytes) would only slow every build down.
        let known = recorded.kubernetes.content_hash == Some(object.content_hash)
            && !recorded.kubernetes.binaries.is_empty();
        if known {
            return Ok(recorded);
        }
        recorded.kubernetes.content_hash = Some(object.content_hash);
        recorded.kubernetes.binaries.clear();
        for name in kiln_image::kubernetes::KUBERNETES_BINARIES {
            let path = object.path.join("bin").join(name);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            recorded
                .kubernetes
                .binaries
                .insert(name.to_owned(), kiln_store::Digest::of(&bytes));
        }
    }
    Ok(recorded)
}

/// Writes `lock` to `path` atomically: a temporary file beside it, then a rename.
pub fn write_lock(path: &Path, lock: &Lock) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut file, lock.render().as_bytes())?;
    file.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Updates the lock file.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let path = lock_path(args.lock);
    let old = read_lock(&path)?;
    let sources = apt_sources(&args.apt_sources)?;
    let resolution = resolve(&old, &sources, Policy::Latest, true, true)?;
    if resolution.changes.is_empty() && resolution.lock == old && old.is_complete() {
        eprintln!("{}: up to date with the apt sources", path.display());
        return Ok(ExitCode::SUCCESS);
    }
    if args.dry_run {
        eprintln!("--dry-run: {} left as it is", path.display());
        return Ok(ExitCode::SUCCESS);
    }

    // What moved has no content hash yet: build it (and only it) to learn it.
    let new = resolution.lock;
    let graph = inputs_graph(&new, &sources, |id| match id {
        "base-os" => new.base_os.content_hash.is_none(),
        "busybox" => new.busybox.content_hash.is_none(),
        "busybox-source" => new
            .busybox_source
            .as_ref()
            .is_some_and(|source| source.content_hash.is_none()),
        _ => new.kubernetes.content_hash.is_none(),
    })?;
    let store_dir = common::store_dir(args.store)?;
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store {}", store_dir.display()))?;
    let ids = PinnedIds {
        base_os: "base-os",
        busybox: "busybox",
        busybox_source: Some("busybox-source"),
        kubernetes: Some("kubernetes"),
    };
    prepare_tools(&graph, &store, &ids, Some(&new.kubernetes))?;
    let observer = common::progress_observer();
    let evaluation = graph.evaluate(&store, &kiln_graph::EvalOptions::default(), &*observer)?;
    let recorded = record_outputs(&new, &ids, &evaluation)?;
    // A build now addresses these by the content hashes just learned: file each output under
    // that address too, so the next build finds it instead of building it again.
    let pinned = inputs_graph(&recorded, &sources, |id| {
        evaluation.outputs.contains_key(&DrvId::new(id))
    })?;
    for id in pinned.ids() {
        let (Some(derivation), Some(digest)) = (pinned.derivation(id), pinned.digest(id)) else {
            continue;
        };
        let kiln_graph::Addressing::Fixed { content_hash } = derivation.addressing else {
            continue;
        };
        if store.get(&digest, &derivation.name)?.is_none() {
            let built = &evaluation.outputs[id].path;
            store
                .build_fixed(&digest, &derivation.name, &content_hash, |out| {
                    common::copy_tree(built, out)
                })
                .map_err(|failure| anyhow::anyhow!("filing {id} under its pin: {failure}"))?;
        }
    }
    write_lock(&path, &recorded)?;
    eprintln!(
        "{}: {} change(s) recorded; review them with `git diff {}`",
        path.display(),
        resolution.changes.len(),
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The graph of `lock`'s inputs (`base-os`, `busybox`, `busybox-source` with the `c-toolchain`
/// it is built with, `kubernetes` from Debian's source), fetched from `sources`, holding those
/// whose id `wanted` accepts.
fn inputs_graph(
    lock: &Lock,
    sources: &AptSources,
    wanted: impl Fn(&str) -> bool,
) -> anyhow::Result<ValidatedGraph> {
    let mut graph = Graph::new();
    if wanted("base-os") {
        graph.add(
            "base-os",
            kiln_image::os::base::base_os(&lock.base_os, sources),
        )?;
    }
    if wanted("busybox") {
        graph.add(
            "busybox",
            kiln_image::oci::busybox_static(&lock.busybox, sources)?,
        )?;
    }
    if let Some(source) = &lock.busybox_source
        && wanted("busybox-source")
    {
        graph.add(
            "c-toolchain",
            kiln_image::toolchain::c_toolchain(&source.toolchain, sources)?,
        )?;
        graph.add(
            "busybox-source",
            kiln_image::oci::busybox_source(source, sources, "c-toolchain")?,
        )?;
    }
    if wanted("kubernetes") {
        let kubernetes = kiln_image::kubernetes::KubernetesSource::Debian {
            lock: lock.kubernetes.clone(),
            sources: sources.clone(),
        };
        graph.add(
            "kubernetes",
            kiln_image::kubernetes::kubernetes_binaries(&kubernetes)?,
        )?;
    }
    Ok(graph.validate()?)
}

/// Installs (with apt, from the machine's own sources) the programs the image inputs still to
/// be built need: mksquashfs and mmdebstrap always, Go and friends only when the Kubernetes
/// binaries (at `ids.kubernetes`) are not in the store yet, with exactly the Go toolchain that
/// `source` (when they are built from Debian's source) pins, and the source build's tools
/// when busybox from source (at `ids.busybox_source`) is not.
pub fn prepare_tools(
    graph: &ValidatedGraph,
    store: &Store,
    ids: &PinnedIds<'_>,
    source: Option<&kiln_image::lock::SourceLock>,
) -> anyhow::Result<()> {
    let missing = |id: &str| -> anyhow::Result<bool> {
        let id = DrvId::new(id);
        let (Some(derivation), Some(digest)) = (graph.derivation(&id), graph.digest(&id)) else {
            return Ok(false);
        };
        Ok(store.get(&digest, &derivation.name)?.is_none())
    };
    crate::deps::ensure("the image tools", kiln_image::os::base::IMAGE_TOOLS)?;
    if let Some(busybox) = ids.busybox_source
        && missing(busybox)?
    {
        crate::deps::ensure(
            "busybox's source build's tools",
            &kiln_image::oci::BUSYBOX_BUILD_TOOLS,
        )?;
        crate::deps::ensure(
            "the C toolchain's unpacking tools",
            &kiln_image::toolchain::UNPACK_TOOLS,
        )?;
    }
    if ids.kubernetes.map(missing).transpose()?.unwrap_or(false) {
        crate::deps::ensure(
            "the Kubernetes build's tools",
            &kiln_image::kubernetes::BUILD_TOOLS,
        )?;
        if let Some(source) = source {
            kiln_image::kubernetes::ensure_toolchain(source)?;
        }
    }
    Ok(())
}
