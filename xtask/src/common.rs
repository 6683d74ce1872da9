//! What several tasks share: finding and loading the spec, and the default locations.

use std::path::{Path, PathBuf};

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, bail};
use kiln_spec::Plan;

/// The spec a task uses when none is given: the two-node example in this repository.
pub fn default_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-node.toml")
}

/// Reads and validates the spec at `path`, printing its warnings; errors carry every diagnostic.
pub fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading the spec {}", path.display()))?;
    match kiln_spec::load(&source, &path.display().to_string()) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                eprintln!("{}", loaded.warnings);
            }
            Ok(loaded.plan)
        }
        Err(diagnostics) => {
            // Diagnostics carry their own `error:` prefixes; the summary goes through main's.
            eprintln!("{diagnostics}");
            let count = diagnostics.errors().count();
            bail!(
                "{count} error{} in {}",
                if count == 1 { "" } else { "s" },
                path.display()
            )
        }
    }
}

/// The store directory: `--store`, else `$KILN_STORE`, else `$XDG_DATA_HOME/kiln/store`, else
/// `~/.local/share/kiln/store`.
pub fn store_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("KILN_STORE").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    Ok(data_dir()
        .context("no store directory: pass --store, or set KILN_STORE, XDG_DATA_HOME or HOME")?
        .join("store"))
}

/// kiln's directory of this user's data on this machine: `$XDG_DATA_HOME/kiln`, else
/// `~/.local/share/kiln`.
pub fn data_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("kiln"));
    }
    let home = std::env::var_os("HOME")
        .filter(|dir| !dir.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set")?;
    Ok(PathBuf::from(home).join(".local/share/kiln"))
}

/// The secrets directory of a cluster, one subdirectory per cluster name under:
///
/// - `--secrets DIR` when given;
/// - else `.kiln-secrets` beside the spec if the cluster's root secret is already there (where
///   kiln kept it before), with a warning that says how to move it;
/// - else `secrets/` in kiln's data directory ([`data_dir`]: `~/.local/share/kiln/secrets`),
///   outside any source tree, so a root secret is never one `git add -f` or a copied checkout
///   away from leaving the machine. One root secret per cluster name and user: two specs with the
///   same cluster name build the same PKI unless `--secrets` separates them.
pub fn secrets_dir(
    explicit: Option<PathBuf>,
    spec: &Path,
    cluster: &str,
) -> anyhow::Result<PathBuf> {
    if let Some(base) = explicit {
        return Ok(base.join(cluster));
    }
    let default = data_dir()?.join("secrets").join(cluster);
    let legacy = spec
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join(".kiln-secrets")
        .join(cluster);
    if legacy.join(crate::secret::ROOT_SECRET_FILE).exists()
        && !default.join(crate::secret::ROOT_SECRET_FILE).exists()
    {
        eprintln!(
            "warning: using the root secret in {} (beside the spec); kiln keeps root secrets in {} now. To move it:\n  mkdir -p -m 0700 {} && mv {} {}",
            legacy.display(),
            default.display(),
            default.parent().unwrap_or(&default).display(),
            legacy.display(),
            default.display()
        );
        return Ok(legacy);
    }
    Ok(default)
}

/// The releases the cluster's images are tagged with besides Kubernetes' own: etcd's is the
/// package set's `with` for the plan's Kubernetes version, or, for a version `set` does not
/// build from Go modules, the base OS's `etcd-server` as the lock (`lock`, default `kiln.lock`)
/// pins it; CoreDNS's is the set's `pods` for that version, if it has one.
pub fn releases(
    plan: &Plan,
    set: &kiln_image::packages::PackageSet,
    lock: Option<PathBuf>,
) -> anyhow::Result<kiln_spec::images::Releases> {
    let wanted = plan.cluster.kubernetes_version.to_string();
    let coredns = crate::package::paired_release(set, &wanted, "coredns").map(str::to_owned);
    if let Some(etcd) = crate::package::paired_release(set, &wanted, "etcd") {
        return Ok(kiln_spec::images::Releases {
            etcd: etcd.to_owned(),
            coredns,
        });
    }
    let lock_file = crate::lock::lock_path(lock);
    let locked = crate::lock::read_lock(&lock_file)?;
    let Some(etcd) = locked
        .base_os
        .packages
        .iter()
        .find(|package| package.name == "etcd-server")
    else {
        anyhow::bail!(
            "no etcd for Kubernetes {wanted}: the package set gives it none (`with` in packages/kubernetes.toml), and the base OS in {} has no etcd-server",
            lock_file.display()
        );
    };
    Ok(kiln_spec::images::Releases {
        etcd: kiln_image::kubernetes::upstream_version(&etcd.version).to_owned(),
        coredns,
    })
}

/// The graph inputs of the cluster in `plan`: its root secret (created on first use, mode 0600,
/// never copied into the store), the bytes of its external CA files, and `releases` (see
/// [`releases`]).
pub fn cluster_inputs(
    plan: &Plan,
    spec: &Path,
    secrets: Option<PathBuf>,
    releases: kiln_spec::images::Releases,
) -> anyhow::Result<kiln_cluster::ClusterInputs> {
    let dir = secrets_dir(secrets, spec, &plan.cluster.name)?;
    if let Some(base) = dir.parent() {
        ignore_in_git(base)?;
    }
    let root = crate::secret::load_or_create_root_secret(&dir)?;
    let spec_dir = spec.parent().unwrap_or_else(|| Path::new("."));
    let external_cas = kiln_cluster::read_external_cas(plan, spec_dir)?;
    Ok(kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(root),
        external_cas,
        releases,
    })
}

/// Makes a secrets directory ignore itself in git, wherever it is.
fn ignore_in_git(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "# kiln's root secrets: never commit them.\n*\n")
            .with_context(|| format!("writing {}", ignore.display()))?;
    }
    Ok(())
}

/// Copies every fixed-output path the graph needs and `store` lacks from the first substituter
/// that has it. Safe with any substituter: a fixed-output path is verified against its pinned
/// content hash as it enters the store, exactly as if it had been built. Input-addressed paths
/// are never substituted, so that what tests compare is really rebuilt, except two kinds that
/// take minutes to build and whose address does not depend on kiln's code: those of `resolved`
/// (the inputs from Debian's archive built from a resolved set that `kiln.lock` has no content
/// hash for yet, addressed by the exact `.deb` files), and the package set's compiles (which
/// leave the graph's recipe out of their digest, [`kiln_graph::Derivation::ignores_recipe`]:
/// addressed by the pinned module download, the Go release and the recipe in `packages/`).
/// Those are verified against the content hash the substituter recorded; `--check` still
/// rebuilds them.
pub fn substitute_fixed(
    graph: &kiln_graph::ValidatedGraph,
    store: &kiln_store::Store,
    substituters: &[PathBuf],
    resolved: &[&str],
) -> anyhow::Result<usize> {
    let mut copied = 0;
    if substituters.is_empty() {
        return Ok(0);
    }
    for id in graph.ids() {
        let (Some(derivation), Some(digest)) = (graph.derivation(id), graph.digest(id)) else {
            continue;
        };
        let pinned = match derivation.addressing {
            kiln_graph::Addressing::Fixed { content_hash } => Some(content_hash),
            kiln_graph::Addressing::Inputs
                if derivation.ignores_recipe || resolved.contains(&id.as_str()) =>
            {
                None
            }
            kiln_graph::Addressing::Inputs => continue,
        };
        if store.get(&digest, &derivation.name)?.is_some() {
            continue;
        }
        let base = kiln_store::base_name(&digest, &derivation.name);
        let Some(dir) = substituters.iter().find(|dir| {
            let path = dir.join(&base);
            path.is_dir() && path != store.root().join(&base)
        }) else {
            continue;
        };
        let source = dir.join(&base);
        let content_hash = match pinned {
            Some(content_hash) => content_hash,
            None => {
                let Some(object) = kiln_store::Store::open(dir)?.get(&digest, &derivation.name)?
                else {
                    continue;
                };
                object.content_hash
            }
        };
        eprintln!("substituting {} from {}", derivation.name, source.display());
        store
            .build_fixed(&digest, &derivation.name, &content_hash, |out| {
                copy_tree(&source, out)
            })
            .map_err(|failure| anyhow::anyhow!("substituting {}: {failure}", source.display()))?;
        copied += 1;
    }
    Ok(copied)
}

/// What a reproducibility check (`--check`) rebuilds.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckScope {
    /// Rebuild the fixed-output derivations too, instead of comparing them with their pins.
    pub fixed: bool,
    /// Rebuild even the long compiles this machine already rebuilt bit for bit (see
    /// [`check_rebuild`]).
    pub again: bool,
}

/// What [`check_rebuild`] found.
#[derive(Debug)]
pub struct CheckReport {
    /// The derivations whose rebuild differs, each naming the first differing file.
    pub mismatches: Vec<kiln_graph::Mismatch>,
    /// How many derivations were rebuilt.
    pub rebuilt: usize,
    /// How many fixed-output derivations were compared with their pins instead.
    pub pinned: usize,
    /// How many long compiles were not rebuilt, since this machine rebuilt the same derivation
    /// to the same output before.
    pub proven_before: usize,
}

/// Rebuilds the derivations of `graph` (already evaluated into `store` as `evaluation`) into
/// a scratch store, deleted afterwards, and compares each output with the one in `store`,
/// printing every mismatch.
///
/// Fixed-output derivations are compared with their pins unless `scope.fixed`. A derivation
/// whose digest ignores kiln's recipe (a Go compile: minutes, and the same digest across
/// kiln's own changes) that this machine already rebuilt bit for bit is not rebuilt again
/// unless `scope.again`: each identical rebuild of one is recorded in `store` as
/// `<digest>-reproducible-<name>`, under the digest of the derivation's digest and its
/// content hash, so a changed compile or a different output is checked afresh.
pub fn check_rebuild(
    graph: &kiln_graph::ValidatedGraph,
    store: &kiln_store::Store,
    evaluation: &kiln_graph::Evaluation,
    options: &kiln_graph::EvalOptions,
    observer: &dyn kiln_graph::Observer,
    scope: CheckScope,
) -> anyhow::Result<CheckReport> {
    use std::collections::BTreeSet;

    let proof = |id: &kiln_graph::DrvId, derivation: &kiln_graph::Derivation| {
        let output = evaluation.outputs.get(id)?;
        let key = kiln_store::DigestBuilder::new("kiln-reproducible-v1")
            .digest(&output.digest)
            .digest(&output.content_hash)
            .finish();
        Some((
            key,
            format!("reproducible-{}", derivation.name),
            output.content_hash,
        ))
    };
    let (mut pinned, mut proven, mut rebuilt) = (0, BTreeSet::new(), BTreeSet::new());
    for id in graph.ids() {
        let Some(derivation) = graph.derivation(id) else {
            continue;
        };
        if !scope.fixed && derivation.addressing != kiln_graph::Addressing::Inputs {
            pinned += 1;
            continue;
        }
        if !scope.again
            && derivation.ignores_recipe
            && let Some((key, name, _)) = proof(id, derivation)
            && store.get(&key, &name)?.is_some()
        {
            proven.insert(id.clone());
            continue;
        }
        rebuilt.insert(id.clone());
    }
    let select = |id: &kiln_graph::DrvId, _: &kiln_graph::Derivation| rebuilt.contains(id);
    let scratch = tempfile::Builder::new().prefix("kiln-check-").tempdir()?;
    // The scratch store is deleted afterwards: crash durability would only cost fsyncs.
    let scratch_store = kiln_store::Store::open_with(
        &scratch.path().join("store"),
        kiln_store::Durability::ProcessCrashOnly,
    )?;
    let mismatches = graph.check_selected(store, &scratch_store, options, observer, &select)?;
    for mismatch in &mismatches {
        eprintln!("not reproducible: {mismatch}");
    }
    // Record the long compiles that rebuilt identically.
    let differing: BTreeSet<&kiln_graph::DrvId> = mismatches.iter().map(|m| &m.id).collect();
    for id in &rebuilt {
        let Some(derivation) = graph.derivation(id) else {
            continue;
        };
        if !derivation.ignores_recipe || differing.contains(id) {
            continue;
        }
        if let Some((key, name, content_hash)) = proof(id, derivation) {
            store
                .build(&key, &name, |out| {
                    std::fs::write(out.join("content-hash"), format!("{content_hash}\n"))
                })
                .map_err(|failure| anyhow::anyhow!("recording the check of {id}: {failure}"))?;
        }
    }
    store.commit()?;
    Ok(CheckReport {
        mismatches,
        rebuilt: rebuilt.len(),
        pinned,
        proven_before: proven.len(),
    })
}

/// Copies the tree `from` into the existing directory `to`: files, directories and symbolic links.
pub fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
        } else if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_tree(&source, &target)?;
        } else {
            std::fs::copy(&source, &target)?;
        }
    }
    Ok(())
}

/// The observer a build reports progress to: on a terminal every step; in a log (CI, `| tee`)
/// only what takes time, at least once a minute (`kiln_graph::LogProgress`).
pub fn progress_observer() -> Box<dyn kiln_graph::Observer> {
    use std::io::IsTerminal;
    if std::io::stderr().is_terminal() {
        Box::new(kiln_graph::LineProgress::new(std::io::stderr()))
    } else {
        Box::new(kiln_graph::LogProgress::new(std::io::stderr()))
    }
}

/// How often [`with_progress`] reports when nothing else does.
pub const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs `work` while a line from `status` (given the seconds since the start) is printed to
/// standard error every `every` seconds, until `work` returns: progress for transfers and other
/// long steps that report nothing on their own for a while, on a terminal and in a log alike.
pub fn with_progress<T>(
    every: std::time::Duration,
    status: impl Fn(f64) -> String + Sync,
    work: impl FnOnce() -> T,
) -> T {
    let started = std::time::Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut next = every;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if started.elapsed() >= next {
                    eprintln!("{}", status(started.elapsed().as_secs_f64()));
                    next += every;
                }
            }
        });
        let result = work();
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        result
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    use kiln_graph::{
        BuildContext, BuildError, Builder, Derivation, EvalOptions, Graph, NullObserver, Params,
    };

    use super::*;

    static DRIFT: AtomicU32 = AtomicU32::new(0);

    /// A long compile's stand-in: its digest ignores the recipe; `drift` makes each build
    /// write something new (a nondeterministic compile).
    struct Compile {
        runs: Arc<AtomicU32>,
        drift: bool,
    }

    impl Builder for Compile {
        fn kind(&self) -> &str {
            "kiln-xtask-tests.compile"
        }
        fn version(&self) -> u32 {
            1
        }
        fn params(&self) -> Params {
            Params::of(&self.drift)
        }
        fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            // A drifting compile writes something new on every build, in any graph.
            let contents = if self.drift {
                DRIFT.fetch_add(1, Ordering::SeqCst)
            } else {
                0
            };
            let path = ctx.out().join("binary");
            std::fs::write(&path, contents.to_string())
                .map_err(|error| BuildError::io(&path, error))
        }
    }

    fn check(drift: bool, store: &kiln_store::Store, again: bool) -> (CheckReport, u32) {
        let runs = Arc::new(AtomicU32::new(0));
        let mut graph = Graph::new();
        graph
            .add(
                "compile",
                Derivation::new(
                    "compile",
                    Arc::new(Compile {
                        runs: Arc::clone(&runs),
                        drift,
                    }),
                )
                .ignoring_recipe(),
            )
            .expect("add");
        let graph = graph.validate().expect("valid");
        let options = EvalOptions::default();
        let evaluation = graph
            .evaluate(store, &options, &NullObserver)
            .expect("build");
        let scope = CheckScope {
            fixed: false,
            again,
        };
        let report = check_rebuild(&graph, store, &evaluation, &options, &NullObserver, scope)
            .expect("check");
        (report, runs.load(Ordering::SeqCst))
    }

    #[test]
    fn a_compile_rebuilt_bit_for_bit_once_is_not_rebuilt_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = kiln_store::Store::open(&dir.path().join("store")).expect("store");
        let (first, runs) = check(false, &store, false);
        assert!(first.mismatches.is_empty());
        assert_eq!((first.rebuilt, first.proven_before, runs), (1, 0, 2));
        let (second, runs) = check(false, &store, false);
        assert_eq!((second.rebuilt, second.proven_before, runs), (0, 1, 0));
        let (forced, runs) = check(false, &store, true);
        assert_eq!((forced.rebuilt, forced.proven_before, runs), (1, 0, 1));
    }

    #[test]
    fn a_compile_that_differs_is_never_taken_as_proven() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = kiln_store::Store::open(&dir.path().join("store")).expect("store");
        for _ in 0..2 {
            let (report, _) = check(true, &store, false);
            assert_eq!(report.mismatches.len(), 1);
            assert_eq!((report.rebuilt, report.proven_before), (1, 0));
        }
    }
}
