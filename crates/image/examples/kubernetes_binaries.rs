//! Builds (or finds) the Kubernetes binaries in a store through the real
//! graph and store, printing progress, the output's path and content hash,
//! each binary's SHA-256, and the wall time. The Debian source and its pin
//! come from the repository's `kiln.lock`, fetched from the machine's apt
//! sources.
//!
//! ```text
//! cargo run --release -p kiln-image --example kubernetes_binaries -- <store-dir>           # Debian source
//! cargo run --release -p kiln-image --example kubernetes_binaries -- <store-dir> path <dir> # a directory
//! cargo run --release -p kiln-image --example kubernetes_binaries -- <store-dir> seed <dir>
//! ```
//!
//! `seed` adds binaries built elsewhere (a directory of them, such as a
//! source tree's `_output/bin`) under the Debian source's store path: the
//! path of a fixed-output derivation depends only on its name and content
//! hash, so any builder may fill it, and the store checks the pin.

use std::process::ExitCode;
use std::time::Instant;

use kiln_graph::{DrvId, EvalOptions, Graph, LineProgress};
use kiln_image::{
    kubernetes::{BUILD_TOOLS, KUBERNETES_BINARIES, KubernetesSource, kubernetes_binaries},
    lock::Lock,
    resolve::AptSources,
};
use kiln_store::{Digest, Store};
use sha2::{Digest as _, Sha256};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let lock_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../kiln.lock");
    let lock = Lock::parse(&std::fs::read_to_string(lock_file)?, lock_file)?;
    let pinned = lock
        .kubernetes
        .content_hash
        .ok_or("kiln.lock records no content hash for the Kubernetes source")?;
    let (store_dir, source) = match args.as_slice() {
        [store] => (
            store,
            KubernetesSource::Debian {
                lock: lock.kubernetes.clone(),
                sources: AptSources::machine("/etc/apt".as_ref())?,
            },
        ),
        [store, kind, dir] if kind == "path" => (
            store,
            KubernetesSource::Path {
                version: "v1.20.2".to_owned(),
                dir: dir.into(),
            },
        ),
        [store, kind, dir] if kind == "seed" => (
            store,
            KubernetesSource::Path {
                version: "v1.20.2".to_owned(),
                dir: dir.into(),
            },
        ),
        _ => return Err("usage: kubernetes_binaries <store-dir> [path|seed <dir>]".into()),
    };
    let seed = args.get(1).is_some_and(|kind| kind == "seed");
    if matches!(source, KubernetesSource::Debian { .. }) {
        // The one step that changes the machine, done explicitly.
        kiln_tools::install(&BUILD_TOOLS)?;
        eprintln!("pinned content hash: {pinned}");
    }

    let started = Instant::now();
    let mut graph = Graph::new();
    let mut derivation = kubernetes_binaries(&source)?;
    if seed {
        derivation = derivation.fixed(pinned);
    }
    graph.add("kubernetes", derivation)?;
    let graph = graph.validate()?;
    let store = Store::open(store_dir.as_ref())?;
    let progress = LineProgress::new(std::io::stderr());
    let evaluation = graph.evaluate(&store, &EvalOptions::default(), &progress)?;
    let output = &evaluation.outputs[&DrvId::from("kubernetes")];

    println!("path: {}", output.path.display());
    println!("content hash: {}", output.content_hash);
    for name in KUBERNETES_BINARIES {
        let bytes = std::fs::read(output.path.join("bin").join(name))?;
        let sha256 = Digest::from_bytes(Sha256::digest(&bytes).into());
        println!("{name}: {sha256}");
    }
    println!(
        "built {}, from the store {}, in {:.1}s wall",
        evaluation.built,
        evaluation.substituted,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
