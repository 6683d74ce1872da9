//! Computes `KILN_RECIPE`: the SHA-256 of the source of every crate whose code decides what the
//! cluster's derivations write (the spec, the PKI, the renderers and this crate), and of the
//! workspace's Cargo.lock (the exact versions of their dependencies, serializers included).
//!
//! The cluster graph mixes it into every input-addressed digest, so a change to any renderer
//! gives new store paths instead of reusing outputs the old code wrote. It hashes contents and
//! relative paths only, never timestamps or absolute paths, so it is the same in every checkout.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The crates (directories under crates/) whose code reaches the cluster's outputs.
const RECIPE_CRATES: &[&str] = &[
    "cluster",
    "image",
    "kubeconfig",
    "manifests",
    "netplan",
    "pki",
    "spec",
    "units",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    // Read when the script runs, not compiled in: cargo may reuse this script's binary for a
    // checkout at another path (two worktrees sharing a target directory), and it must hash the
    // sources of the checkout it runs for.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("cargo sets CARGO_MANIFEST_DIR when it runs a build script");
    let crates = Path::new(&manifest_dir).join("..");
    let workspace = crates.join("..");
    let mut hasher = Sha256::new();
    for name in RECIPE_CRATES {
        let root = crates.join(name);
        let mut found = Vec::new();
        files(&root.join("src"), &mut found);
        found.push(root.join("Cargo.toml"));
        found.sort();
        for path in found {
            let relative = path.strip_prefix(&crates).unwrap_or(&path);
            let contents = std::fs::read(&path)
                .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
            hasher.update((relative.as_os_str().len() as u64).to_be_bytes());
            hasher.update(relative.as_os_str().as_encoded_bytes());
            hasher.update((contents.len() as u64).to_be_bytes());
            hasher.update(&contents);
        }
        println!("cargo:rerun-if-changed={}", root.join("src").display());
        println!(
            "cargo:rerun-if-changed={}",
            root.join("Cargo.toml").display()
        );
    }
    let lock = workspace.join("Cargo.lock");
    let contents =
        std::fs::read(&lock).unwrap_or_else(|error| panic!("reading {}: {error}", lock.display()));
    hasher.update(b"Cargo.lock");
    hasher.update((contents.len() as u64).to_be_bytes());
    hasher.update(&contents);
    println!("cargo:rerun-if-changed={}", lock.display());
    let digest = hasher.finalize();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    println!("cargo:rustc-env=KILN_RECIPE={hex}");
}
