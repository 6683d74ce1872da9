//! Shared helpers for kiln-units' integration tests: example plans and the real programs that
//! check our output.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_spec::Plan;

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
    assert!(plans.len() >= 4, "the four reference examples exist");
    plans
}

/// The path of the program `program`, failing the test with the Debian package that provides it
/// when it is missing. `cargo xtask test` installs these packages.
pub fn tool(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "`{program}` is not installed; this test checks kiln-units' output with it. \
         Install the Debian package: apt-get install -y {package}"
    );
}

/// Runs `command` and returns its output; fails the test if it cannot start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

/// Writes `contents` to `root/relative`, creating parent directories, with `mode`.
pub fn write_file(root: &Path, relative: &str, contents: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(relative.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, contents).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}
