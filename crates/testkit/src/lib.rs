//! kiln-testkit: what kiln's crates share in their tests.
//!
//! - [`example_plans`]: every spec in the repository's `examples/`, validated into plans;
//!   [`example_plans_at`] the same at another Kubernetes version.
//! - [`tool`] and [`run`]: the real programs that check kiln's outputs (openssl, kubectl,
//!   systemd-analyze, netplan, nginx, ...). A missing program fails the test and names the Debian
//!   package; `cargo xtask test` installs them.
//! - [`golden::check_examples`]: golden-file trees, one per example, rewritten only with
//!   `UPDATE_EXPECT=1` ([`golden::check_examples_of`] for plans such as `example_plans_at`'s).
//!
//! ```
//! let plans = kiln_testkit::example_plans();
//! assert!(plans.contains_key("two-node"));
//! assert_eq!(plans["two-node"].nodes.len(), 2);
//! ```
#![forbid(unsafe_code)]

pub mod golden;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_spec::Plan;

/// The repository's `examples/` directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// The repository's lock file, `kiln.lock`, as text (parse it with `kiln_image::lock::Lock::parse`).
pub fn lock_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../kiln.lock");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

/// Every example spec's file stem, path and text, in name order.
fn example_sources() -> Vec<(String, PathBuf, String)> {
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|extension| extension != "toml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("the spec is readable");
        let stem = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        sources.push((stem, path, source));
    }
    sources.sort();
    assert!(sources.len() >= 4, "the four reference examples exist");
    sources
}

/// Every example spec, by file stem, as plans. Fails the test if one does not validate.
pub fn example_plans() -> BTreeMap<String, Plan> {
    example_sources()
        .into_iter()
        .map(|(stem, path, source)| {
            let plan = kiln_spec::load(&source, &path.display().to_string())
                .unwrap_or_else(|errors| panic!("{errors}"))
                .plan;
            (stem, plan)
        })
        .collect()
}

/// Every example spec as plans ([`example_plans`]) with `kubernetes_version` replaced by
/// `version`, for renderers whose output depends on it: each spec is validated again at that
/// version, so the defaults that follow the version do too (`options.cluster_dns`). Fails the
/// test if `version` is not one kiln supports.
pub fn example_plans_at(version: kiln_spec::KubeVersion) -> BTreeMap<String, Plan> {
    assert!(
        version.is_supported(),
        "Kubernetes {version} is not supported"
    );
    example_sources()
        .into_iter()
        .map(|(stem, path, source)| {
            let mut spec = kiln_spec::parse(&source, &path.display().to_string())
                .unwrap_or_else(|errors| panic!("{errors}"));
            spec.cluster.kubernetes_version = version.to_string();
            let (plan, _) = spec
                .validate()
                .unwrap_or_else(|errors| panic!("{} at {version}: {errors:?}", path.display()));
            (stem, plan)
        })
        .collect()
}

/// The example called `name` (`two-node`, `ha`, ...) as a plan.
pub fn example(name: &str) -> Plan {
    example_plans()
        .remove(name)
        .unwrap_or_else(|| panic!("no example called {name}"))
}

/// The path of `program` (found as `kiln_tools::Tool::find` finds it, in the system's
/// directories), failing the test with the Debian package that provides it when it is missing.
/// `cargo xtask test` installs these packages.
pub fn tool(program: &'static str, package: &'static str) -> PathBuf {
    kiln_tools::Tool::program(program, package)
        .find()
        .unwrap_or_else(|| {
            panic!(
                "`{program}` is not installed; this test checks kiln's output with it. \
                 Install the Debian package: apt-get install -y {package} (cargo xtask test does)"
            )
        })
}

/// Extracts the squashfs file system `image` into `into` (which must not exist; its parent
/// is created) with the real `unsquashfs`, failing the test with its error output.
pub fn unsquashfs(image: &Path, into: &Path) {
    std::fs::create_dir_all(into.parent().expect("a parent")).expect("mkdir");
    let output = run(Command::new(tool("unsquashfs", "squashfs-tools"))
        .args(["-quiet", "-no-progress", "-d"])
        .arg(into)
        .arg(image));
    assert!(
        output.status.success(),
        "unsquashfs -d {} {} failed: {}",
        into.display(),
        image.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `command`, returning its output; fails the test if it cannot start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}

/// Writes `contents` to `root/relative` (a leading `/` is ignored), creating parent
/// directories, with `mode`.
pub fn write_file(root: &Path, relative: &str, contents: &[u8], mode: u32) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(relative.trim_start_matches('/'));
    std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
    std::fs::write(&path, contents).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
    path
}
