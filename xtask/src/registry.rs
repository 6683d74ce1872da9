//! OCI registries as kiln's shared cache: connecting with the user's credentials, and
//! substituting store paths from them (`--substituter oci://...`). `cargo xtask push` is in
//! `push.rs`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use kiln_oci::{Client, Pulled, Repository};

/// The environment variable naming the registries (`HOST[:PORT]`, comma-separated) kiln may
/// talk plain HTTP to although they are not on a loopback address.
pub const INSECURE_REGISTRIES: &str = "KILN_INSECURE_REGISTRIES";

/// A client for `reference` (`oci://HOST[:PORT]/REPOSITORY`), with the credentials container
/// tools would use for its registry, plain HTTP if it is on a loopback address or listed in
/// `$KILN_INSECURE_REGISTRIES`.
pub fn connect(reference: &str) -> anyhow::Result<Client> {
    let mut repository = Repository::parse(reference)?;
    let registry = repository.registry();
    let insecure = std::env::var(INSECURE_REGISTRIES).unwrap_or_default();
    if insecure
        .split(',')
        .map(str::trim)
        .any(|entry| !entry.is_empty() && entry == registry)
    {
        repository = repository.insecure();
    }
    let files = kiln_oci::credential_files(|name| std::env::var_os(name));
    let mut credentials = None;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("reading {}", file.display()));
            }
        };
        if let Some(found) = kiln_oci::credentials_in(&text, file, &registry)? {
            credentials = Some(found);
            break;
        }
    }
    let searched: Vec<String> = files
        .iter()
        .map(|file| file.display().to_string())
        .collect();
    let searched = if searched.is_empty() {
        "no credential file: neither $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR, $DOCKER_CONFIG nor $HOME is set".to_owned()
    } else {
        searched.join(", ")
    };
    Ok(Client::new(repository, credentials, &searched))
}

/// The substituters of a build: other stores (directories) and registries (`oci://`), from
/// `--substituter` and `$KILN_SUBSTITUTERS` (colon-separated; an `oci://` entry keeps its
/// port's colon).
pub struct Substituters {
    /// Other stores on this machine.
    pub stores: Vec<PathBuf>,
    /// Registries.
    pub registries: Vec<Client>,
}

impl Substituters {
    /// The substituters named on the command line (`explicit`), then in `$KILN_SUBSTITUTERS`.
    pub fn from_args(explicit: &[String]) -> anyhow::Result<Substituters> {
        let mut all: Vec<String> = explicit.to_vec();
        if let Ok(list) = std::env::var("KILN_SUBSTITUTERS") {
            all.extend(kiln_oci::split_substituters(&list));
        }
        let mut substituters = Substituters {
            stores: Vec::new(),
            registries: Vec::new(),
        };
        for entry in all {
            if entry.starts_with(kiln_oci::SCHEME) {
                substituters
                    .registries
                    .push(connect(&entry).with_context(|| format!("the substituter {entry}"))?);
            } else {
                substituters.stores.push(PathBuf::from(entry));
            }
        }
        Ok(substituters)
    }
}

/// Fetches from the first registry that has it every derivation of `graph` that `store` lacks,
/// except those that hold secrets (which are never pushed, and never asked for), `jobs` at a
/// time. Each is verified as it enters the store (`kiln_oci::pull_path`: every blob's digest,
/// then the tree's content hash, a fixed-output path's against its pin). A registry that fails
/// for a path (unreachable, a corrupt blob, a mismatch) is reported and the path left to be
/// built. Returns how many paths were added.
pub fn substitute(
    graph: &kiln_graph::ValidatedGraph,
    store: &kiln_store::Store,
    registries: &[Client],
    jobs: usize,
) -> anyhow::Result<usize> {
    if registries.is_empty() {
        return Ok(0);
    }
    let secret: BTreeSet<&kiln_graph::DrvId> = graph.secret_ids();
    let mut wanted = Vec::new();
    for id in graph.ids() {
        if secret.contains(id) {
            continue;
        }
        let (Some(derivation), Some(digest)) = (graph.derivation(id), graph.digest(id)) else {
            continue;
        };
        if store.get(&digest, &derivation.name)?.is_some() {
            continue;
        }
        let pinned = match derivation.addressing {
            kiln_graph::Addressing::Fixed { content_hash } => Some(content_hash),
            kiln_graph::Addressing::Inputs => None,
        };
        wanted.push((derivation.name.clone(), digest, pinned));
    }
    if wanted.is_empty() {
        return Ok(0);
    }
    let started = Instant::now();
    eprintln!(
        "asking {} for {} path(s) this store lacks",
        registries
            .iter()
            .map(|client| client.repository().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        wanted.len()
    );
    let next = AtomicUsize::new(0);
    let added = AtomicUsize::new(0);
    // Only how many warnings there were is kept: each is printed as it happens.
    let failed = AtomicUsize::new(0);
    let warn = |line: &str| {
        eprintln!("{line}");
        failed.fetch_add(1, Ordering::SeqCst);
    };
    let total = wanted.len();
    // A registry that cannot be reached is asked nothing more in this build.
    let down: Vec<AtomicBool> = registries.iter().map(|_| AtomicBool::new(false)).collect();
    let finished = AtomicUsize::new(0);
    let status = |seconds: f64| {
        let received: u64 = registries.iter().map(Client::transferred).sum();
        format!(
            "[{seconds:>5.0}s] substituting: {} of {total} paths asked, {} added, {:.1} MiB received",
            finished.load(Ordering::SeqCst),
            added.load(Ordering::SeqCst),
            received as f64 / 1048576.0
        )
    };
    crate::common::with_progress(crate::common::PROGRESS_EVERY, status, || {
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, total) {
                scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some((name, digest, pinned)) = wanted.get(index) else {
                        break;
                    };
                    let base = kiln_store::base_name(digest, name);
                    for (client, down) in registries.iter().zip(&down) {
                        if down.load(Ordering::SeqCst) {
                            continue;
                        }
                        let began = Instant::now();
                        match kiln_oci::pull_path(client, store, digest, name, pinned.as_ref()) {
                            Ok(Pulled::Added(_)) => {
                                let count = added.fetch_add(1, Ordering::SeqCst) + 1;
                                eprintln!(
                                    "[{count}/{total}] substituted {base} from {} in {:.1}s",
                                    client.repository(),
                                    began.elapsed().as_secs_f64()
                                );
                                break;
                            }
                            Ok(Pulled::Missing) => {}
                            Err(error @ kiln_oci::OciError::Transport { .. }) => {
                                if !down.swap(true, Ordering::SeqCst) {
                                    let line = format!(
                                        "warning: {} cannot be reached ({error}); building what it would have given",
                                        client.repository()
                                    );
                                    warn(&line);
                                }
                            }
                            Err(error) => {
                                let line = format!(
                                    "warning: not substituting {base} from {}: {error}; it will be built instead",
                                    client.repository()
                                );
                                warn(&line);
                            }
                        }
                    }
                    finished.fetch_add(1, Ordering::SeqCst);
                }
            });
            }
        })
    });
    let added = added.into_inner();
    let failed = failed.into_inner();
    eprintln!(
        "substituted {added} of {total} path(s) from the registries in {:.1}s{}",
        started.elapsed().as_secs_f64(),
        if failed > 0 {
            format!(" ({failed} refused: see the warnings above)")
        } else {
            String::new()
        }
    );
    Ok(added)
}
