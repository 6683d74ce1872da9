//! `cargo xtask gc`: remove the store paths that no result directory needs.
//!
//! The roots are the result directories `build-cluster` registered (`<store>/.roots/`); each
//! keeps every store path its `manifest.json` names, and the store keeps whatever those reach
//! through symlinks. Fixed-output paths (the base OS, the Kubernetes binaries, busybox: minutes
//! to build again) are kept unless `--include-fixed`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, bail};
use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, Params};
use kiln_store::{Collector, GarbageKind, Root, StoreObject};

use crate::common;

/// Arguments of `cargo xtask gc`.
#[derive(clap::Args)]
pub struct Args {
    /// The store (default: $KILN_STORE, else $XDG_DATA_HOME/kiln/store, else ~/.local/share/kiln/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// Print what would be removed, and remove nothing.
    #[arg(long)]
    dry_run: bool,
    /// Remove unreachable fixed-output paths too (the base OS, the Kubernetes binaries,
    /// busybox), which take minutes to build again.
    #[arg(long)]
    include_fixed: bool,
}

/// Collects the store's garbage.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let store_dir = common::store_dir(args.store)?;
    // Opening a store creates it; a mistyped --store should not.
    if !store_dir.join(".meta").is_dir() {
        bail!("{} is not a kiln store (no .meta/)", store_dir.display());
    }
    let collector = match Collector::try_open(&store_dir)? {
        Some(collector) => collector,
        None => {
            eprintln!(
                "gc: waiting for the builds using {} to finish",
                store_dir.display()
            );
            Collector::open(&store_dir)?
        }
    };
    let verb = if args.dry_run {
        "would remove"
    } else {
        "removing"
    };

    let mut live = Vec::new();
    let mut live_roots = 0;
    for root in collector.roots()? {
        match root_paths(&collector, &root)? {
            Some(paths) => {
                live_roots += 1;
                live.extend(paths);
            }
            None => {
                println!(
                    "{verb} stale root {} (for {})",
                    root.link.display(),
                    root.target.display()
                );
                if !args.dry_run {
                    collector.remove_root(&root)?;
                }
            }
        }
    }
    if live_roots == 0 {
        // Result directories written before kiln registered roots are not roots yet.
        eprintln!(
            "gc: warning: no result directory is registered as a root, so nothing but the \
             fixed-output paths is kept; `cargo xtask build-cluster` registers its --out"
        );
    }
    let fixed: Vec<PathBuf> = collector
        .paths()?
        .into_iter()
        .filter(is_fixed_output)
        .map(|object| object.path)
        .collect();
    if !args.include_fixed {
        live.extend(fixed.iter().cloned());
    }

    let garbage = collector.garbage(&live)?;
    let total: u64 = garbage.iter().map(|piece| piece.bytes).sum();
    let mut done = 0;
    for (index, piece) in garbage.iter().enumerate() {
        // Printed before the deletion, so a long one shows what it is busy with.
        println!(
            "[{}/{}, {} of {}] {verb} {}{} ({})",
            index + 1,
            garbage.len(),
            size(done),
            size(total),
            piece.path.display(),
            if piece.kind == GarbageKind::Leftover {
                " (a leftover)"
            } else {
                ""
            },
            size(piece.bytes)
        );
        if !args.dry_run {
            collector.remove(piece)?;
        }
        done += piece.bytes;
    }
    if !args.dry_run {
        collector.tidy()?;
    }

    let paths = garbage
        .iter()
        .filter(|piece| piece.kind == GarbageKind::Path)
        .count();
    let kept = collector.paths()?.len() - if args.dry_run { paths } else { 0 };
    let fixed_kept = fixed
        .iter()
        .filter(|path| !garbage.iter().any(|piece| &piece.path == *path))
        .count();
    println!(
        "gc: {} {} and {}, {} {}; kept {} ({fixed_kept} fixed-output) for {}",
        if args.dry_run {
            "would remove"
        } else {
            "removed"
        },
        plural(paths, "store path"),
        plural(garbage.len() - paths, "leftover"),
        size(total),
        if args.dry_run { "to free" } else { "freed" },
        plural(kept, "path"),
        plural(live_roots, "root"),
    );
    Ok(ExitCode::SUCCESS)
}

/// The store paths a root keeps: those its directory's `manifest.json` names, or `None` if the
/// root is stale (its directory or manifest is gone, or names no path of this store).
fn root_paths(collector: &Collector, root: &Root) -> anyhow::Result<Option<Vec<PathBuf>>> {
    let manifest = root.target.join("manifest.json");
    let text = match std::fs::read_to_string(&manifest) {
        Ok(text) => text,
        Err(error)
            if matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            return Ok(None);
        }
        Err(error) => {
            return Err(error).with_context(|| format!("reading {}", manifest.display()));
        }
    };
    // A manifest gc cannot read might keep anything alive: stop rather than guess.
    let unreadable = || {
        format!(
            "{} is not a kiln manifest (artifacts.<id>.store_path); move it away or remove the root {}",
            manifest.display(),
            root.link.display()
        )
    };
    let manifest = kiln_cluster::Manifest::from_json(&text).with_context(unreadable)?;
    let paths: Vec<PathBuf> = manifest
        .artifacts
        .into_values()
        .map(|artifact| artifact.store_path)
        .filter(|path| collector.contains(path))
        .collect();
    Ok((!paths.is_empty()).then_some(paths))
}

/// Whether a store path is a fixed-output path: one addressed by its name and content hash
/// alone. Asks kiln-graph, by addressing a one-derivation graph the same way, rather than
/// repeating its digest's encoding here.
fn is_fixed_output(object: &StoreObject) -> bool {
    let id = DrvId::new("fixed");
    let mut graph = Graph::new();
    let derivation =
        Derivation::new(object.name.clone(), Arc::new(NeverBuilt)).fixed(object.content_hash);
    if graph.add(id.clone(), derivation).is_err() {
        return false;
    }
    graph
        .validate()
        .ok()
        .and_then(|graph| graph.digest(&id))
        .is_some_and(|digest| digest == object.digest)
}

/// The builder of [`is_fixed_output`]'s probe: a fixed-output digest never depends on it.
struct NeverBuilt;

impl Builder for NeverBuilt {
    fn kind(&self) -> &str {
        "kiln-xtask.gc-probe"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::none()
    }

    fn build(&self, _ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        Err(BuildError::new("only addressed, never built"))
    }
}

/// `1 store path`, `2 store paths`.
fn plural(count: usize, noun: &str) -> String {
    format!("{count} {noun}{}", if count == 1 { "" } else { "s" })
}

/// A size for people: `812 B`, `12.3 KiB`, `1.1 GiB`.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every fixed-output derivation of the example cluster with images is recognized as one
    /// from its store path's digest, name and content hash, and no input-addressed one is.
    #[test]
    fn fixed_output_paths_are_told_apart_from_their_digests() {
        let spec = common::default_spec();
        let plan = common::load_plan(&spec).expect("the example loads");
        let secrets = tempfile::tempdir().expect("tempdir");
        let set = crate::package::read_packages(&crate::package::packages_dir(None))
            .expect("the package set");
        let releases = common::releases(&plan, &set, None).expect("releases");
        let inputs =
            common::cluster_inputs(&plan, &spec, Some(secrets.path().to_owned()), releases)
                .expect("inputs");
        // The Kubernetes binaries as Debian's, with the CoreDNS the set pairs with the plan's
        // version, whose image the nodes' pods may run.
        let (_, pod_packages) = crate::build_cluster::userland(&set, &plan).expect("declared");
        let cluster = kiln_cluster::cluster_graph(&plan, &inputs)
            .expect("graph")
            .with_images(
                &plan,
                &kiln_cluster::ImageInputs {
                    pod_packages,
                    ..kiln_cluster::ImageInputs::locked(
                        &crate::lock::read_lock(&crate::lock::lock_path(None)).expect("kiln.lock"),
                        &kiln_image::resolve::AptSources::default(),
                    )
                },
            )
            .expect("images");
        let graph = cluster.graph.validate().expect("valid");
        let mut fixed = 0;
        for id in graph.ids() {
            let derivation = graph.derivation(id).expect("derivation");
            let digest = graph.digest(id).expect("digest");
            let (content_hash, expected) = match derivation.addressing {
                kiln_graph::Addressing::Fixed { content_hash } => (content_hash, true),
                // An input-addressed output could have any content; its digest is no pin.
                kiln_graph::Addressing::Inputs => {
                    (kiln_store::Digest::of(id.as_ref().as_bytes()), false)
                }
            };
            let object = StoreObject {
                path: PathBuf::from(id.as_ref()),
                digest,
                name: derivation.name.clone(),
                content_hash,
            };
            assert_eq!(is_fixed_output(&object), expected, "{id}");
            fixed += usize::from(expected);
        }
        assert!(
            fixed >= 3,
            "the base OS, the Kubernetes binaries and busybox: {fixed}"
        );
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(160 * 1024 * 1024), "160.0 MiB");
        assert_eq!(size(3 << 30), "3.0 GiB");
    }
}
