//! Shared helpers for kiln-manifests' integration tests: the example plans and a fixed
//! encryption key.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_spec::Plan;

/// The key every test renders with: fixed, so golden files are stable. The real key is
/// derived from the cluster's root secret by the caller.
pub const TEST_KEY: [u8; 32] = [0x42; 32];

/// The repository's examples/ directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example spec, by file stem, as plans.
pub fn example_plans() -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|extension| extension != "toml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("the spec is readable");
        let plan = kiln_spec::load(&source, &path.display().to_string())
            .unwrap_or_else(|errors| panic!("{errors}"))
            .plan;
        let stem = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        plans.insert(stem, plan);
    }
    plans
}

/// The YAML documents of a multi-document file.
pub fn documents(text: &str) -> Vec<&str> {
    text.split("---\n")
        .filter(|document| !document.trim().is_empty())
        .collect()
}
