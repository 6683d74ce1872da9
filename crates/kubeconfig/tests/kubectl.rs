//! kubectl reads every kubeconfig kiln renders, embedded and referenced, for every node of
//! every example, and means by it what kiln meant.

mod common;

use std::path::Path;
use std::process::Command;

use kiln_spec::KubeconfigCertificates;
use serde_json::Value;

/// kubectl's view of `file`: `kubectl config view --raw -o json`.
fn kubectl_view(kubectl: &Path, file: &Path) -> Value {
    let output = kiln_testkit::run(
        Command::new(kubectl)
            .args(["config", "view", "--raw", "-o", "json", "--kubeconfig"])
            .arg(file),
    );
    assert!(
        output.status.success(),
        "kubectl config view {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}

/// What kiln meant: its YAML as JSON. kubectl prints paths as written.
fn our_view(yaml: &[u8]) -> Value {
    serde_norway::from_slice(yaml).expect("our YAML parses")
}

fn check_file(kubectl: &Path, dir: &Path, file: &kiln_kubeconfig::RenderedFile, label: &str) {
    let path = dir.join(common::file_name(&file.path));
    std::fs::write(&path, &file.contents).expect("write the kubeconfig");
    let theirs = kubectl_view(kubectl, &path);
    let ours = our_view(&file.contents);
    for key in ["clusters", "users", "contexts", "current-context"] {
        assert_eq!(
            theirs[key],
            ours[key],
            "{label}: kubectl reads `{key}` differently\n--- ours\n{}",
            String::from_utf8_lossy(&file.contents)
        );
    }
    assert!(!ours["clusters"].as_array().expect("clusters").is_empty());

    let output = kiln_testkit::run(
        Command::new(kubectl)
            .args(["config", "get-contexts", "-o", "name", "--kubeconfig"])
            .arg(&path),
    );
    assert!(
        output.status.success(),
        "{label}: kubectl config get-contexts failed"
    );
    let contexts = String::from_utf8(output.stdout).expect("UTF-8");
    assert_eq!(
        contexts.trim(),
        ours["current-context"].as_str().expect("a current context"),
        "{label}: kubectl lists other contexts"
    );
}

#[test]
fn kubectl_reads_every_kubeconfig_as_kiln_means_it() {
    let kubectl = kiln_testkit::tool("kubectl", "kubernetes-client");
    let mut checked = 0;
    for (example, plan) in kiln_testkit::example_plans() {
        let pki = common::pki(&plan);
        for mode in [
            KubeconfigCertificates::Embedded,
            KubeconfigCertificates::Referenced,
        ] {
            let plan = common::with_certificates(&plan, mode);
            let mut groups = vec![(
                "operator".to_owned(),
                kiln_kubeconfig::render_operator(&plan, &pki).expect("operator kubeconfigs"),
            )];
            for node in &plan.nodes {
                let files =
                    kiln_kubeconfig::render_node(&plan, node, &pki).expect("node kubeconfigs");
                groups.push((node.name.clone(), files));
            }
            for (owner, files) in groups {
                let dir = tempfile::tempdir().expect("a temporary directory");
                for file in &files {
                    let label = format!("{example}/{owner}/{} ({mode:?})", file.path);
                    check_file(&kubectl, dir.path(), file, &label);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 40, "only {checked} kubeconfigs were checked");
}

#[test]
fn every_kubeconfig_reads_back_into_the_same_model() {
    // The model reads back exactly what it writes, for every file of every example.
    for (example, plan) in kiln_testkit::example_plans() {
        let pki = common::pki(&plan);
        for mode in [
            KubeconfigCertificates::Embedded,
            KubeconfigCertificates::Referenced,
        ] {
            let plan = common::with_certificates(&plan, mode);
            for node in &plan.nodes {
                for kind in kiln_kubeconfig::node_kinds(&plan, node) {
                    let credentials = match mode {
                        KubeconfigCertificates::Embedded => {
                            kiln_kubeconfig::Credentials::embedded(&pki, &kind).expect("in the PKI")
                        }
                        KubeconfigCertificates::Referenced => {
                            kiln_kubeconfig::Credentials::referenced(&kind)
                        }
                    };
                    let config = kiln_kubeconfig::kubeconfig(&plan, &kind, credentials);
                    let yaml = config.to_yaml().expect("YAML");
                    assert_eq!(
                        kiln_kubeconfig::Kubeconfig::from_yaml(&yaml).expect("reads back"),
                        config,
                        "{example}/{}/{}",
                        node.name,
                        kind.file_name()
                    );
                }
            }
        }
    }
}

#[test]
fn kubectl_resolves_the_operators_referenced_files_next_to_the_kubeconfig() {
    // `kubectl config view --flatten` reads every referenced file, resolving relative paths
    // against the kubeconfig's directory, and embeds it: the operator's referenced admin.conf
    // must find exactly the PKI files of the operator's output beside it.
    let kubectl = kiln_testkit::tool("kubectl", "kubernetes-client");
    let plan = common::with_certificates(
        &kiln_testkit::example_plans()["two-node"],
        KubeconfigCertificates::Referenced,
    );
    let pki = common::pki(&plan);
    let output = tempfile::tempdir().expect("the operator's output");
    for file in pki.files() {
        let path = output.path().join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a parent")).expect("mkdir");
        std::fs::write(&path, pki.contents(&file.source).expect("contents")).expect("write");
    }
    let elsewhere = tempfile::tempdir().expect("another working directory");
    for file in kiln_kubeconfig::render_operator(&plan, &pki).expect("operator kubeconfigs") {
        let path = output.path().join(&file.path);
        std::fs::write(&path, &file.contents).expect("write the kubeconfig");
        let result = kiln_testkit::run(
            Command::new(&kubectl)
                .current_dir(elsewhere.path())
                .args([
                    "config",
                    "view",
                    "--flatten",
                    "--raw",
                    "-o",
                    "json",
                    "--kubeconfig",
                ])
                .arg(&path),
        );
        assert!(
            result.status.success(),
            "{}: kubectl cannot flatten: {}",
            file.path,
            String::from_utf8_lossy(&result.stderr)
        );
        let flat: Value = serde_json::from_slice(&result.stdout).expect("JSON");
        let yaml = serde_norway::to_string(&flat).expect("YAML");
        let config = kiln_kubeconfig::Kubeconfig::from_yaml(&yaml).expect("a kiln kubeconfig");
        let kind = kiln_kubeconfig::OPERATOR_KINDS
            .into_iter()
            .find(|kind| kind.file_name() == file.path)
            .expect("an operator kubeconfig");
        let expected = kiln_kubeconfig::kubeconfig(
            &plan,
            &kind,
            kiln_kubeconfig::Credentials::embedded(&pki, &kind).expect("in the PKI"),
        );
        assert_eq!(config, expected, "{}", file.path);
    }
}
