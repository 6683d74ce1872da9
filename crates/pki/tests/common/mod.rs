//! Shared helpers for kiln-pki's integration tests: example plans, a fixed root secret, and
//! writing a PKI to a directory.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kiln_pki::{Pki, RootSecret};
use kiln_spec::Plan;

/// The root secret every test issues with, unless it tests the secret itself.
pub fn root() -> RootSecret {
    RootSecret::from_bytes(*b"kiln-pki tests: fixed root bytes")
}

/// The repository's examples/ directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example spec, by file stem, as plans.
pub fn example_plans() -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    let mut entries: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("examples/ is readable")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| {
            path.extension()
                .is_some_and(|extension| extension == "toml")
        })
        .collect();
    entries.sort();
    for path in entries {
        plans.insert(
            path.file_stem()
                .expect("a file name")
                .to_string_lossy()
                .into_owned(),
            load(&path),
        );
    }
    assert!(plans.len() >= 4, "the four reference examples exist");
    plans
}

/// The plan of the spec at `path`.
pub fn load(path: &Path) -> Plan {
    let source = std::fs::read_to_string(path).expect("the spec is readable");
    kiln_spec::load(&source, &path.display().to_string())
        .unwrap_or_else(|errors| panic!("{errors}"))
        .plan
}

/// The plan of the example `name` (`two-node`, `ha`, ...).
pub fn example(name: &str) -> Plan {
    load(&examples_dir().join(format!("{name}.toml")))
}

/// Issues `plan` with kiln's own CAs.
pub fn issue(plan: &Plan, root: &RootSecret) -> Pki {
    kiln_pki::issue(plan, root, &BTreeMap::new()).expect("the plan issues")
}

/// Writes every file of `pki` in the operator layout under `dir`.
pub fn write(pki: &Pki, dir: &Path) {
    for file in pki.files() {
        let path = dir.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, pki.contents(&file.source).expect("contents")).expect("write");
    }
}
