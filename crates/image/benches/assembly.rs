//! Benchmark: layer assembly (`kiln_image::os::layer::assemble_linked` then `LinkedTree::pack`, what a
//! layer derivation does) against a plain `cp -r` of the same trees, several runs of each in one
//! process, medians reported; beside them the former layer path (`kiln_image::os::layer::assemble`, a tree
//! of copies, then `kiln_image::os::base::squashfs`); and the shared against the per-node bytes of a built
//! cluster's images (from their `manifest.json`).
//!
//! Run it on a cluster built with images:
//!
//! ```text
//! cargo xtask build-cluster --spec examples/ha.toml --out /tmp/ha
//! KILN_BENCH_RESULT=/tmp/ha cargo bench -p kiln-image --bench assembly
//! ```
//!
//! `KILN_BENCH_NODE` picks the node whose rendered trees are assembled (default: the first
//! node directory with a `pki`), `KILN_BENCH_RUNS` the runs of each (default 5). The scratch
//! trees go to the temporary directory (`TMPDIR`): on the store's file system, as a layer
//! build's are, the assembled tree is hard links; elsewhere, copies (the report says which).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use kiln_graph::BuildError;
use kiln_image::{
    os::base::{IMAGE_EPOCH, squashfs},
    os::layer::{LayerCopy, LayerSpec, LinkedTree, assemble, assemble_linked},
};

/// One thing to assemble: a layer spec over named inputs.
struct Case {
    name: String,
    spec: LayerSpec,
    inputs: BTreeMap<String, PathBuf>,
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it with no env: say how.
    let Some(result) = std::env::var_os("KILN_BENCH_RESULT").map(PathBuf::from) else {
        eprintln!(
            "assembly benchmark not run: set KILN_BENCH_RESULT to a result directory built with \
             images (cargo xtask build-cluster --spec examples/ha.toml --out DIR)"
        );
        return ExitCode::SUCCESS;
    };
    let runs: usize = std::env::var("KILN_BENCH_RUNS")
        .ok()
        .and_then(|runs| runs.parse().ok())
        .unwrap_or(5)
        .max(1);
    let node = std::env::var("KILN_BENCH_NODE").ok().unwrap_or_else(|| {
        first_node_with_pki(&result).expect("a node directory with a pki in the result")
    });

    let cases = [kubernetes_case(&result), node_case(&result, &node)];
    println!("# image assembly vs cp -r, {runs} runs each, median (min..max)");
    println!(
        "{:<22} {:>12} {:>8} {:>24} {:>24} {:>24} {:>8} {:>24} {:>8}",
        "layer",
        "bytes",
        "files",
        "cp -r",
        "assemble",
        "assemble+pack",
        "speed",
        "before: copies+squashfs",
        "speed"
    );
    for case in &cases {
        bench(case, runs);
    }
    println!();
    shared_report(&result);
    ExitCode::SUCCESS
}

fn first_node_with_pki(result: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(result.join("nodes"))
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("pki").exists())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect();
    names.sort();
    names.into_iter().next()
}

/// The Kubernetes binaries layer, as `kiln-cluster` specifies it.
fn kubernetes_case(result: &Path) -> Case {
    let binaries = result.join("cluster/image/kubernetes-binaries");
    Case {
        name: "kubernetes".into(),
        spec: LayerSpec {
            copies: vec![LayerCopy {
                input: "kubernetes".into(),
                from: "bin".into(),
                to: "usr/local/bin".into(),
            }],
            ..LayerSpec::default()
        },
        inputs: BTreeMap::from([("kubernetes".to_owned(), resolve(&binaries))]),
    }
}

/// A node's rendered trees, copied as its node layer copies them (the generated files and
/// links of the real layer are left out: `cp -r` has nothing to compare them with).
fn node_case(result: &Path, node: &str) -> Case {
    let mut copies = Vec::new();
    let mut inputs = BTreeMap::new();
    for artifact in ["units", "network", "manifests", "kubeconfigs", "pki"] {
        let path = result.join("nodes").join(node).join(artifact);
        if !path.exists() {
            continue;
        }
        let (from, to) = if artifact == "pki" {
            ("pki", "etc/kubernetes/pki")
        } else {
            ("", "")
        };
        copies.push(LayerCopy {
            input: artifact.into(),
            from: from.into(),
            to: to.into(),
        });
        inputs.insert(artifact.to_owned(), resolve(&path));
    }
    Case {
        name: format!("node {node}"),
        spec: LayerSpec {
            copies,
            dirs: BTreeMap::from([("etc/kubernetes/pki".to_owned(), 0o700)]),
            enable_units: true,
            ..LayerSpec::default()
        },
        inputs,
    }
}

fn resolve(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Bytes and regular files below `dir`.
fn tree_size(dir: &Path) -> (u64, u64) {
    let mut total = (0, 0);
    for entry in std::fs::read_dir(dir).expect("readable") {
        let path = entry.expect("entry").path();
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.is_dir() {
            let (bytes, files) = tree_size(&path);
            total = (total.0 + bytes, total.1 + files);
        } else if meta.is_file() {
            total = (total.0 + meta.len(), total.1 + 1);
        }
    }
    total
}

/// `cp -r` of each copy's source to its target below `tree`, as a user would do it by hand.
fn cp_r(case: &Case, tree: &Path) {
    std::fs::create_dir(tree).expect("mkdir");
    for copy in &case.spec.copies {
        let source = case.inputs[&copy.input].join(&copy.from);
        let target = tree.join(&copy.to);
        let status = if copy.to.is_empty() {
            // The input's root merges into the tree's root: copy its entries.
            let mut command = Command::new("cp");
            command.arg("-r");
            for entry in std::fs::read_dir(&source).expect("readable") {
                command.arg(entry.expect("entry").path());
            }
            command.arg(&target).status()
        } else {
            std::fs::create_dir_all(target.parent().expect("a parent")).expect("mkdir -p");
            Command::new("cp")
                .arg("-r")
                .arg(&source)
                .arg(&target)
                .status()
        };
        assert!(status.expect("cp runs").success(), "cp -r failed");
    }
}

fn input(case: &Case) -> impl Fn(&str) -> Result<PathBuf, BuildError> + '_ {
    |name: &str| {
        case.inputs
            .get(name)
            .cloned()
            .ok_or_else(|| BuildError::new(format!("no input {name}")))
    }
}

/// What a layer derivation does: a tree of hard links, packed with the layer's modes.
fn assemble_linked_case(case: &Case, tree: &Path) -> LinkedTree {
    assemble_linked(&case.spec, tree, &input(case)).expect("assemble")
}

/// The former layer path: a tree of copies with the layer's modes, packed as it is.
fn assemble_copies_case(case: &Case, tree: &Path) {
    assemble(&case.spec, tree, &input(case)).expect("assemble");
}

fn bench(case: &Case, runs: usize) {
    let scratch = tempfile::Builder::new()
        .prefix("kiln-bench-")
        .tempdir()
        .expect("tempdir");
    let mut copy_times = Vec::new();
    let mut assemble_times = Vec::new();
    let mut layer_times = Vec::new();
    let mut before_times = Vec::new();
    let mut size = (0, 0);
    let mut image_bytes = 0;
    let mut linked_files = 0;
    // One untimed round first warms the page cache for all. Every timed step starts after a
    // `sync`, so that none pays for the previous step's writeback, and the three methods take
    // turns going first.
    for run in 0..=runs {
        let copied = scratch.path().join(format!("cp-{run}"));
        let tree = scratch.path().join(format!("tree-{run}"));
        let image = scratch.path().join(format!("layer-{run}.squashfs"));
        let before_tree = scratch.path().join(format!("before-{run}"));
        let before_image = scratch.path().join(format!("before-{run}.squashfs"));
        let mut copy_time = Duration::ZERO;
        let mut layer_time = (Duration::ZERO, Duration::ZERO);
        let mut before_time = Duration::ZERO;
        for turn in 0..3 {
            sync();
            let started = Instant::now();
            match (run + turn) % 3 {
                0 => {
                    cp_r(case, &copied);
                    copy_time = started.elapsed();
                }
                1 => {
                    let linked = assemble_linked_case(case, &tree);
                    let assembled = started.elapsed();
                    linked.pack(&image).expect("mksquashfs");
                    layer_time = (assembled, started.elapsed());
                    linked_files = linked.linked_files();
                }
                _ => {
                    assemble_copies_case(case, &before_tree);
                    squashfs(&before_tree, &before_image, IMAGE_EPOCH, false, true)
                        .expect("mksquashfs");
                    before_time = started.elapsed();
                }
            }
        }

        if run == 0 {
            size = tree_size(&copied);
            assert_eq!(size, tree_size(&tree), "cp -r and assemble placed the same");
            image_bytes = std::fs::metadata(&image).expect("image").len();
        } else {
            copy_times.push(copy_time);
            assemble_times.push(layer_time.0);
            layer_times.push(layer_time.1);
            before_times.push(before_time);
        }
        for path in [&copied, &tree, &before_tree] {
            make_writable(path);
            std::fs::remove_dir_all(path).expect("clean up");
        }
        for path in [&image, &before_image] {
            std::fs::remove_file(path).expect("clean up");
        }
    }
    let copy = summary(&mut copy_times);
    let assembly = summary(&mut assemble_times);
    let layer = summary(&mut layer_times);
    let before = summary(&mut before_times);
    let speed = |summary: &Summary| copy.median.as_secs_f64() / summary.median.as_secs_f64();
    println!(
        "{:<22} {:>12} {:>8} {:>24} {:>24} {:>24} {:>7.2}x {:>24} {:>7.2}x",
        case.name,
        size.0,
        size.1,
        copy.text,
        assembly.text,
        layer.text,
        speed(&layer),
        before.text,
        speed(&before),
    );
    println!(
        "{:<22} squashfs image: {image_bytes} bytes; {linked_files} of {} files hard-linked; \
         speed = cp -r median / median (target >= 0.5); assemble alone: {:.2}x",
        "",
        size.1,
        speed(&assembly),
    );
}

fn sync() {
    let status = Command::new("sync").status().expect("sync runs");
    assert!(status.success(), "sync failed");
}

/// Copies of store trees keep their read-only directories; make them removable.
fn make_writable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return;
    };
    if meta.is_dir() {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
        for entry in std::fs::read_dir(path).expect("readable").flatten() {
            make_writable(&entry.path());
        }
    }
}

struct Summary {
    median: Duration,
    text: String,
}

fn summary(times: &mut [Duration]) -> Summary {
    times.sort();
    let median = times[times.len() / 2];
    let ms = |time: Duration| time.as_secs_f64() * 1000.0;
    Summary {
        median,
        text: format!(
            "{:.1} ms ({:.1}..{:.1})",
            ms(median),
            ms(times[0]),
            ms(times[times.len() - 1])
        ),
    }
}

/// Shared against per-node bytes of every node image in the result, from `manifest.json`.
fn shared_report(result: &Path) {
    println!("# shared vs per-node bytes (layers, from manifest.json)");
    println!(
        "{:<16} {:>14} {:>12} {:>10}",
        "node", "shared", "per-node", "per-node %"
    );
    let mut nodes: Vec<PathBuf> = std::fs::read_dir(result.join("nodes"))
        .expect("nodes/")
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.join("image/manifest.json").is_file())
        .collect();
    nodes.sort();
    let mut shared_files = BTreeMap::new();
    let mut per_node_total = 0u64;
    for node in &nodes {
        let image = node.join("image");
        let text = std::fs::read_to_string(image.join("manifest.json")).expect("manifest.json");
        let manifest: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let (mut shared, mut own) = (0u64, 0u64);
        for layer in manifest["layers"].as_array().expect("layers") {
            let bytes = layer["bytes"].as_u64().expect("bytes");
            if layer["shared"].as_bool().expect("shared") {
                shared += bytes;
                let file = resolve(&image.join(layer["file"].as_str().expect("file")));
                shared_files.insert(file, bytes);
            } else {
                own += bytes;
            }
        }
        per_node_total += own;
        #[allow(clippy::cast_precision_loss)]
        let percent = own as f64 * 100.0 / (shared + own) as f64;
        println!(
            "{:<16} {shared:>14} {own:>12} {percent:>9.4}%",
            node.file_name().expect("a name").to_string_lossy()
        );
    }
    let stored_shared: u64 = shared_files.values().sum();
    println!(
        "cluster: {} images; shared layers stored once: {} files, {stored_shared} bytes; \
         per-node layers: {per_node_total} bytes in all",
        nodes.len(),
        shared_files.len()
    );
}
