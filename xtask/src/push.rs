//! `cargo xtask push`: share a result's store paths through an OCI registry.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use kiln_cluster::Manifest;
use kiln_oci::{KeyLines, Pushed};
use kiln_store::{Store, StoreObject};

use crate::{common, registry};

/// Arguments of `cargo xtask push`.
#[derive(clap::Args)]
pub struct Args {
    /// The registry's repository: `oci://HOST[:PORT]/REPOSITORY`. Credentials come from
    /// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json` or Docker's
    /// `config.json`; plain HTTP only to a loopback address or a registry listed in
    /// `$KILN_INSECURE_REGISTRIES`.
    #[arg(value_name = "oci://HOST[:PORT]/REPOSITORY")]
    repository: String,
    /// The result directory whose store paths are pushed (every output its `manifest.json`
    /// lists, except those that hold secrets).
    #[arg(long, default_value = "result")]
    out: PathBuf,
    /// The store (default: $KILN_STORE, else $XDG_DATA_HOME/kiln/store, else ~/.local/share/kiln/store).
    #[arg(long)]
    store: Option<PathBuf>,
    /// How many paths are sent at once (default: the number of cores).
    #[arg(long)]
    jobs: Option<usize>,
}

/// One path to push.
struct Outgoing {
    id: String,
    name: String,
    object: StoreObject,
}

/// Pushes the result.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let manifest_path = args.out.join("manifest.json");
    let text = std::fs::read_to_string(&manifest_path).with_context(|| {
        format!(
            "reading {} (build first: cargo xtask build-cluster --out {})",
            manifest_path.display(),
            args.out.display()
        )
    })?;
    let manifest = Manifest::from_json(&text)
        .with_context(|| format!("parsing {}", manifest_path.display()))?;
    let store_dir = common::store_dir(args.store.clone())?;
    let store = Store::open(&store_dir)
        .with_context(|| format!("opening the store {}", store_dir.display()))?;
    let client = registry::connect(&args.repository)?;

    // What the graph calls secret stays; the rest must be in the store as the result says.
    let mut outgoing = Vec::new();
    let mut withheld = Vec::new();
    for (id, entry) in &manifest.artifacts {
        let name = store_name(&entry.store_path, &entry.digest)
            .with_context(|| format!("{}: the store path of {id}", manifest_path.display()))?;
        if entry.secret {
            withheld.push((id.clone(), entry.store_path.clone()));
            continue;
        }
        let object = store.get(&entry.digest, &name)?.with_context(|| {
            format!(
                "{id}: {} is not in the store {} (rebuild the result: cargo xtask build-cluster --out {})",
                entry.store_path.display(),
                store_dir.display(),
                args.out.display()
            )
        })?;
        if object.content_hash != entry.content_hash {
            bail!(
                "{id}: {} has the content hash {}, but {} records {}: rebuild the result",
                object.path.display(),
                object.content_hash,
                manifest_path.display(),
                entry.content_hash
            );
        }
        outgoing.push(Outgoing {
            id: id.clone(),
            name,
            object,
        });
    }

    // A guard behind the graph's decision: no pushed path may hold a line of any private key
    // that the withheld paths hold.
    let mut keys = KeyLines::default();
    for (_, path) in &withheld {
        collect_keys(path, &mut keys)?;
    }
    eprintln!(
        "pushing {} store path(s) of {} to {}; withholding {} that hold or are built from secrets \
         (keys, tokens, the encryption key: PKI, kubeconfigs, node bundles, manifests, layers, images)",
        outgoing.len(),
        args.out.display(),
        client.repository(),
        withheld.len()
    );

    let jobs = args
        .jobs
        .unwrap_or_else(|| kiln_graph::EvalOptions::default().jobs)
        .max(1);
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let (sent, present, sent_bytes) = (AtomicUsize::new(0), AtomicUsize::new(0), AtomicU64::new(0));
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let differing: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let total = outgoing.len();
    let status = |seconds: f64| {
        format!(
            "[{seconds:>5.0}s] pushing to {}: {} of {total} paths done, {:.1} MiB sent",
            client.repository(),
            done.load(Ordering::SeqCst),
            client.transferred() as f64 / 1048576.0
        )
    };
    common::with_progress(common::PROGRESS_EVERY, status, || {
        std::thread::scope(|scope| {
            for _ in 0..jobs.clamp(1, total.max(1)) {
                scope.spawn(|| {
                loop {
                    if errors.lock().map(|e| !e.is_empty()).unwrap_or(true) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(path) = outgoing.get(index) else {
                        break;
                    };
                    let began = Instant::now();
                    let result = push_one(&client, path, &keys);
                    let count = done.fetch_add(1, Ordering::SeqCst) + 1;
                    let base = kiln_store::base_name(&path.object.digest, &path.name);
                    match result {
                        Ok(Pushed::Sent(layer)) => {
                            sent.fetch_add(1, Ordering::SeqCst);
                            sent_bytes.fetch_add(layer.size, Ordering::SeqCst);
                            eprintln!(
                                "[{count}/{total}] sent {base} ({:.1} MiB in {:.1}s)",
                                layer.size as f64 / 1048576.0,
                                began.elapsed().as_secs_f64()
                            );
                        }
                        Ok(Pushed::Present) => {
                            present.fetch_add(1, Ordering::SeqCst);
                        }
                        Ok(Pushed::Differs(theirs)) => {
                            let line = format!(
                                "{}: the registry holds {base} with the content hash {theirs}, this \
                                 store {}: a build that is not reproducible (left as it is)",
                                path.id, path.object.content_hash
                            );
                            eprintln!("warning: {line}");
                            if let Ok(mut lines) = differing.lock() {
                                lines.push(line);
                            }
                        }
                        Err(error) => {
                            if let Ok(mut errors) = errors.lock() {
                                errors.push(error.context(format!("pushing {} ({base})", path.id)));
                            }
                        }
                    }
                }
            });
            }
        })
    });
    let errors = errors.into_inner().unwrap_or_default();
    let differing = differing.into_inner().unwrap_or_default();
    let summary = format!(
        "{} sent ({:.1} MiB), {} already there, {} differing, {} withheld (secrets), in {:.1}s",
        sent.into_inner(),
        sent_bytes.into_inner() as f64 / 1048576.0,
        present.into_inner(),
        differing.len(),
        withheld.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(error) = errors.into_iter().next() {
        eprintln!("push stopped: {summary}");
        return Err(error);
    }
    eprintln!("pushed to {}: {summary}", client.repository());
    Ok(ExitCode::SUCCESS)
}

/// Checks one path for key lines, then pushes it.
fn push_one(client: &kiln_oci::Client, path: &Outgoing, keys: &KeyLines) -> anyhow::Result<Pushed> {
    if let Some(file) = kiln_oci::find_key_lines(&path.object.path, keys)? {
        return Err(kiln_oci::OciError::HoldsKey {
            path: path.object.path.clone(),
            file: file.display().to_string(),
        }
        .into());
    }
    Ok(kiln_oci::push_path(client, &path.name, &path.object)?)
}

/// The name part of a store path `<digest hex>-<name>`.
fn store_name(store_path: &Path, digest: &kiln_store::Digest) -> anyhow::Result<String> {
    let base = store_path
        .file_name()
        .and_then(|name| name.to_str())
        .with_context(|| format!("{} has no file name", store_path.display()))?;
    let prefix = format!("{}-", digest.to_hex());
    base.strip_prefix(&prefix)
        .map(str::to_owned)
        .with_context(|| format!("{} is not named {prefix}<name>", store_path.display()))
}

/// Adds the private keys of every small file under `path` (PEM files, and what embeds them
/// such as kubeconfigs, are small; images are not read) to `keys`.
fn collect_keys(path: &Path, keys: &mut KeyLines) -> anyhow::Result<()> {
    const SMALL: u64 = 1 << 20;
    let mut stack = vec![path.to_owned()];
    while let Some(path) = stack.pop() {
        let metadata = match std::fs::symlink_metadata(&path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("reading {}", path.display())),
        };
        if metadata.is_dir() {
            for entry in
                std::fs::read_dir(&path).with_context(|| format!("listing {}", path.display()))?
            {
                stack.push(entry?.path());
            }
        } else if metadata.is_file() && metadata.len() <= SMALL {
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            keys.add_pem(&bytes);
        }
    }
    Ok(())
}
