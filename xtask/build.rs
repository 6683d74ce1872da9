//! Computes `KILN_VM_HARNESS`: the SHA-256 of the source of what `cargo xtask vm-test` runs on
//! the host besides the images (the kiln-vm-tests crate, its specs, and the xtask's `vm-test`
//! command) and of the workspace's Cargo.lock. A scenario's pass is recorded under a key that
//! includes it, so a changed harness reruns every scenario. Contents and relative paths only,
//! never timestamps or absolute paths, so it is the same in every checkout.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The files and directories (relative to the workspace) whose contents make the harness.
const HARNESS: &[&str] = &[
    "vm-tests/src",
    "vm-tests/specs",
    "vm-tests/Cargo.toml",
    "xtask/src/vm_test.rs",
    "Cargo.lock",
];

/// The files under `path` (or `path` itself), leaving out hidden entries: a `.kiln-secrets/`
/// beside a spec (where kiln kept root secrets before they moved to its data directory) must
/// neither reach the hash nor change it.
fn files(path: &Path, out: &mut Vec<PathBuf>) {
    match std::fs::read_dir(path) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if !entry.file_name().as_encoded_bytes().starts_with(b".") {
                    files(&entry.path(), out);
                }
            }
        }
        Err(_) => out.push(path.to_path_buf()),
    }
}

fn main() {
    // Read when the script runs, not compiled in (see kiln-cluster's build script).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .expect("cargo sets CARGO_MANIFEST_DIR when it runs a build script");
    let workspace = Path::new(&manifest_dir).join("..");
    let mut found = Vec::new();
    for entry in HARNESS {
        let path = workspace.join(entry);
        println!("cargo:rerun-if-changed={}", path.display());
        files(&path, &mut found);
    }
    found.sort();
    let mut hasher = Sha256::new();
    for path in found {
        let relative = path.strip_prefix(&workspace).unwrap_or(&path);
        let contents = std::fs::read(&path)
            .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        hasher.update((relative.as_os_str().len() as u64).to_be_bytes());
        hasher.update(relative.as_os_str().as_encoded_bytes());
        hasher.update((contents.len() as u64).to_be_bytes());
        hasher.update(&contents);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    println!("cargo:rustc-env=KILN_VM_HARNESS={hex}");
}
