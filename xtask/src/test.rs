//! `cargo xtask test`: install what the tests need, then run every test of the workspace.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::Context;

use crate::deps;

/// Arguments of `cargo xtask test`; anything after `--` goes to `cargo test`.
#[derive(clap::Args)]
pub struct Args {
    /// Extra arguments for `cargo test`, for example a test name filter.
    #[arg(last = true)]
    cargo_args: Vec<String>,
}

/// Runs `cargo test --workspace` after installing the independent verifiers it calls.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    deps::ensure("the test suite's tools", deps::TEST_TOOLS)?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    built_binaries(&mut command);
    let status = command
        .args(["test", "--workspace", "--locked"])
        .args(&args.cargo_args)
        .status()
        .context("running cargo test")?;
    if !status.success() {
        return Ok(ExitCode::FAILURE);
    }
    if !args.cargo_args.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    // The flag table, and a live API server given the rendered flags, against every other
    // Kubernetes version the store holds.
    let used = binaries_from_result(Path::new("result/manifest.json"))
        .and_then(|bin| version_of(&bin))
        .or_else(|| {
            std::env::var_os("KILN_KUBERNETES_BIN_DIR").and_then(|dir| version_of(Path::new(&dir)))
        });
    let store = crate::common::store_dir(None)?;
    for (version, bin) in store_kubernetes(&store) {
        if Some(&version) == used.as_ref() {
            continue;
        }
        eprintln!(
            "the flag table against Kubernetes {version} ({})",
            bin.display()
        );
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        // The etcd the package set runs with this version, or (for one built from Debian's
        // source) none, and the test takes the base OS's.
        command.env_remove("KILN_ETCD");
        if let Some(etcd) = package_etcd(&store, &version)? {
            command.env("KILN_ETCD", etcd);
        }
        let status = command
            .args([
                "test",
                "--locked",
                "-p",
                "kiln-manifests",
                "--test",
                "binaries",
                "--test",
                "apiserver",
            ])
            .env("KILN_KUBERNETES_BIN_DIR", &bin)
            .status()
            .context("running cargo test")?;
        if !status.success() {
            return Ok(ExitCode::FAILURE);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The etcd program kiln's package set runs beside Kubernetes `version` (`v1.37.2`), from its
/// build in `store` (`<digest>-etcd-<release>/bin/etcd`); `None` when the set pairs no etcd
/// with that version (one built from Debian's source).
///
/// # Errors
///
/// If the set pairs an etcd with the version but the store has no build of it.
fn package_etcd(store: &Path, version: &str) -> anyhow::Result<Option<PathBuf>> {
    let set = crate::package::read_packages(&crate::package::packages_dir(None))?;
    let Some(release) =
        crate::package::paired_release(&set, version.trim_start_matches('v'), "etcd")
    else {
        return Ok(None);
    };
    let suffix = format!("-etcd-{release}");
    let mut names: Vec<String> = std::fs::read_dir(store)
        .with_context(|| format!("reading {}", store.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(&suffix))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| store.join(name).join("bin/etcd"))
        .find(|program| program.is_file())
        .map(Some)
        .with_context(|| {
            format!(
                "the package set runs Kubernetes {version} with etcd {release}, which {} has no build of (`cargo xtask package build etcd@{release}`)",
                store.display()
            )
        })
}

/// The version a Kubernetes output's `VERSION` file (beside `bin/`) names, such as `v1.37.2`.
fn version_of(bin: &Path) -> Option<String> {
    let text = std::fs::read_to_string(bin.parent()?.join("VERSION")).ok()?;
    Some(text.trim().to_owned())
}

/// One `bin/` directory per Kubernetes version in the store (`*-kubernetes-binaries` and
/// `*-kubernetes-<version>` outputs holding every binary), by version; of several outputs of
/// one version, the first by name.
fn store_kubernetes(store: &Path) -> std::collections::BTreeMap<String, PathBuf> {
    let mut found = std::collections::BTreeMap::new();
    let Ok(entries) = std::fs::read_dir(store) else {
        return found;
    };
    let mut names: Vec<String> = entries
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let Some((_, store_name)) = name.split_once('-') else {
            continue;
        };
        let kubernetes = store_name == kiln_image::kubernetes::KUBERNETES_DERIVATION_NAME
            || store_name
                .strip_prefix("kubernetes-")
                .is_some_and(|version| version.bytes().all(|b| b.is_ascii_digit() || b == b'.'));
        let bin = store.join(&name).join("bin");
        let complete = kiln_image::kubernetes::KUBERNETES_BINARIES
            .iter()
            .all(|binary| bin.join(binary).is_file());
        if kubernetes
            && complete
            && let Some(version) = version_of(&bin)
        {
            found.entry(version).or_insert(bin);
        }
    }
    found
}

/// Points the tests that run the real Kubernetes 1.20.2 binaries (flags against `--help`, a
/// live API server, kubeadm reading kiln's PKI, kubectl) at the binaries `cargo xtask
/// build-cluster` put in the store, found through `result/manifest.json`, unless the caller
/// chose others (`KILN_KUBERNETES_BIN_DIR`, `KILN_KUBECTL`, `KILN_KUBERNETES_STORE`).
fn built_binaries(command: &mut Command) {
    let Some(bin) = binaries_from_result(Path::new("result/manifest.json")) else {
        if std::env::var_os("KILN_KUBERNETES_BIN_DIR").is_none() {
            eprintln!(
                "note: no result/manifest.json with the Kubernetes binaries: run `cargo xtask build-cluster` first, or the real-binary tests are skipped"
            );
        }
        return;
    };
    eprintln!(
        "using the Kubernetes binaries built by build-cluster: {}",
        bin.display()
    );
    if std::env::var_os("KILN_KUBERNETES_BIN_DIR").is_none() {
        command.env("KILN_KUBERNETES_BIN_DIR", &bin);
    }
    if std::env::var_os("KILN_KUBECTL").is_none() {
        command.env("KILN_KUBECTL", bin.join("kubectl"));
    }
    if let (None, Some(etcd)) = (
        std::env::var_os("KILN_ETCD"),
        etcd_from_result(Path::new("result/manifest.json")),
    ) {
        command.env("KILN_ETCD", etcd);
    }
    let store = bin.parent().and_then(Path::parent);
    if let (None, Some(store)) = (std::env::var_os("KILN_KUBERNETES_STORE"), store) {
        command.env("KILN_KUBERNETES_STORE", store);
    }
}

/// The store path of artifact `id` of the result whose manifest is `manifest`, if it has it.
fn result_artifact(manifest: &Path, id: &str) -> Option<PathBuf> {
    let text = std::fs::read_to_string(manifest).ok()?;
    let manifest = kiln_cluster::Manifest::from_json(&text).ok()?;
    Some(manifest.artifacts.get(id)?.store_path.clone())
}

/// The package set's etcd the result's nodes run (`image/package/etcd`), if they run one.
fn etcd_from_result(manifest: &Path) -> Option<PathBuf> {
    let etcd = result_artifact(manifest, "image/package/etcd")?.join("bin/etcd");
    etcd.is_file().then_some(etcd)
}

/// The `bin/` of the result's Kubernetes binaries, if it has them.
fn binaries_from_result(manifest: &Path) -> Option<PathBuf> {
    let bin = result_artifact(manifest, "image/kubernetes-binaries")?.join("bin");
    bin.join("kube-apiserver").is_file().then_some(bin)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The etcd the package set pairs with a version is found in a store by its release; a
    /// version built from Debian's source has none; a missing build is an error naming the
    /// command that makes it.
    #[test]
    fn package_etcd_follows_the_package_set() {
        let store = tempfile::tempdir().expect("tempdir");
        let set = crate::package::read_packages(&crate::package::packages_dir(None))
            .expect("the package set");
        let release = set.version("kubernetes", "1.37.2").expect("1.37.2").with["etcd"].clone();
        let error = package_etcd(store.path(), "v1.37.2").expect_err("no build yet");
        assert!(
            error
                .to_string()
                .contains(&format!("package build etcd@{release}")),
            "{error:#}"
        );
        let bin = store
            .path()
            .join(format!("{}-etcd-{release}/bin", "0".repeat(64)));
        std::fs::create_dir_all(&bin).expect("mkdir");
        std::fs::write(bin.join("etcd"), b"").expect("write");
        assert_eq!(
            package_etcd(store.path(), "v1.37.2").expect("found"),
            Some(bin.join("etcd"))
        );
        assert_eq!(
            package_etcd(store.path(), "v1.20.2").expect("Debian's"),
            None
        );
    }
}
