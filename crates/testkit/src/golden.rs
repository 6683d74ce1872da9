//! Golden-file trees: everything a renderer produces for every example, compared byte for byte.
//!
//! `<golden dir>/<example>/<owner>/<path>` holds each file (the owner is a node's name, or a
//! group such as `_operator`) and `<golden dir>/<example>/modes.txt` each file's mode, one
//! `<owner> <path> <octal mode>` line per file in rendering order. `UPDATE_EXPECT=1` rewrites
//! the tree, removing stale files and examples; review the diff like code.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use kiln_spec::Plan;

/// One rendered file, with the node (or group) it belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoldenFile {
    /// The node's name, or a group such as `_operator`.
    pub owner: String,
    /// The file's path relative to the node's root.
    pub path: String,
    /// The file's bytes.
    pub contents: Vec<u8>,
    /// The file's mode.
    pub mode: u32,
}

fn update() -> bool {
    std::env::var_os("UPDATE_EXPECT").is_some_and(|value| value == "1")
}

/// Every regular file under `dir`, relative to it, sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(next) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else {
                found.push(path.strip_prefix(dir).expect("under dir").to_path_buf());
            }
        }
    }
    found.sort();
    found
}

/// Compares `expected` (relative path to bytes) with `dir`, or with `UPDATE_EXPECT=1` makes
/// `dir` hold exactly `expected`. Returns the differences.
fn check_tree(dir: &Path, expected: &BTreeMap<PathBuf, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    for stale in files_under(dir)
        .into_iter()
        .filter(|path| !expected.contains_key(path))
    {
        if update() {
            std::fs::remove_file(dir.join(&stale)).expect("remove a stale golden file");
        } else {
            problems.push(format!(
                "{}: golden file no longer rendered",
                dir.join(&stale).display()
            ));
        }
    }
    for (relative, contents) in expected {
        let path = dir.join(relative);
        if update() {
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&path, contents).expect("write a golden file");
            continue;
        }
        match std::fs::read(&path) {
            Ok(golden) if golden == *contents => {}
            Ok(golden) => problems.push(format!(
                "{} differs:\n--- golden\n{}\n--- rendered\n{}",
                path.display(),
                String::from_utf8_lossy(&golden),
                String::from_utf8_lossy(contents)
            )),
            Err(error) => problems.push(format!("{}: {error}", path.display())),
        }
    }
    problems
}

/// The golden tree of `files`: each under `<owner>/<path>`, and `modes.txt` with one
/// `<owner> <path> <octal mode>` line per file, in the order given.
pub fn tree(files: Vec<GoldenFile>) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut expected = BTreeMap::new();
    let mut modes = String::new();
    for file in files {
        let _ = writeln!(modes, "{} {} {:o}", file.owner, file.path, file.mode);
        expected.insert(Path::new(&file.owner).join(&file.path), file.contents);
    }
    expected.insert(PathBuf::from("modes.txt"), modes.into_bytes());
    expected
}

/// Renders every example with `render` (example name and plan to files) and compares the
/// result with `golden_dir`; panics listing every difference, unless `UPDATE_EXPECT=1`.
pub fn check_examples(golden_dir: &Path, render: impl Fn(&str, &Plan) -> Vec<GoldenFile>) {
    check_example_trees(golden_dir, |example, plan| tree(render(example, plan)));
}

/// [`check_examples`] over `plans` (for example [`crate::example_plans_at`]'s) instead of
/// the examples as written.
pub fn check_examples_of(
    golden_dir: &Path,
    plans: &BTreeMap<String, Plan>,
    render: impl Fn(&str, &Plan) -> Vec<GoldenFile>,
) {
    check_example_trees_of(golden_dir, plans, |example, plan| {
        tree(render(example, plan))
    });
}

/// Compares, for every example, the exact tree `render` gives (relative path to bytes) with
/// `<golden_dir>/<example>`: files missing, differing or no longer rendered, and directories of
/// examples that no longer exist, are all differences. Panics listing every one, unless
/// `UPDATE_EXPECT=1`, which rewrites the trees. [`check_examples`] is this with [`tree`].
pub fn check_example_trees(
    golden_dir: &Path,
    render: impl Fn(&str, &Plan) -> BTreeMap<PathBuf, Vec<u8>>,
) {
    check_example_trees_of(golden_dir, &crate::example_plans(), render);
}

/// [`check_example_trees`] over `plans` (by example name) instead of the examples as written:
/// for example every example at another Kubernetes version ([`crate::example_plans_at`]).
pub fn check_example_trees_of(
    golden_dir: &Path,
    plans: &BTreeMap<String, Plan>,
    render: impl Fn(&str, &Plan) -> BTreeMap<PathBuf, Vec<u8>>,
) {
    let mut problems = Vec::new();
    for (example, plan) in plans {
        problems.extend(check_tree(
            &golden_dir.join(example),
            &render(example, plan),
        ));
    }
    // A golden directory for an example that no longer exists is stale too.
    if let Ok(entries) = std::fs::read_dir(golden_dir) {
        for entry in entries {
            let path = entry.expect("a directory entry").path();
            let name = path
                .file_name()
                .expect("a name")
                .to_string_lossy()
                .into_owned();
            if !plans.contains_key(&name) {
                if update() {
                    std::fs::remove_dir_all(&path).expect("remove a stale example");
                } else {
                    problems.push(format!("{}: no example {name}.toml", path.display()));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} golden file(s) differ; if the change is intended, rerun with UPDATE_EXPECT=1 and review the diff\n\n{}",
        problems.len(),
        problems.join("\n\n")
    );
}
