//! Every rendered Kubernetes object parses back into its k8s-openapi type without losing a
//! field, and kubectl's own Go types decode the static pods, the DaemonSet, CoreDNS's
//! Deployment and the RBAC bindings.
//!
//! kubectl's client-side dry run (`kubectl create --dry-run=client`) needs an API server for
//! discovery even with `--validate=false`, so no cluster-free kubectl command validates
//! against the OpenAPI schema. What runs offline is `--local` mode: `kubectl set resources
//! --local` decodes Pods, DaemonSets and Deployments, and `kubectl set subject --local` decodes
//! ClusterRoleBindings, into kubectl's typed Go structs (a wrong type anywhere fails), which
//! is what this test uses. Validation by a real API server (server-side dry run) is in
//! `apiserver.rs`, opted into with `KILN_KUBERNETES_BIN_DIR`.

mod common;

use std::path::Path;
use std::process::Command;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use serde::Serialize;
use serde::de::DeserializeOwned;

const KUBECTL: &str = "/usr/bin/kubectl";

/// Parses `document` as `T` and checks that writing it back gives the same tree: a field
/// k8s-openapi does not know (a typo, a wrong nesting) would be dropped and show up here.
fn round_trip<T: DeserializeOwned + Serialize>(document: &str) -> T {
    let tree: serde_json::Value = serde_norway::from_str(document).expect("valid YAML");
    let typed: T = serde_norway::from_str(document).expect("parses as its k8s-openapi type");
    let again = serde_json::to_value(&typed).expect("serializes");
    assert_eq!(tree, again, "round trip changed the document:\n{document}");
    typed
}

fn kind(document: &str) -> String {
    let tree: serde_json::Value = serde_norway::from_str(document).expect("valid YAML");
    tree["kind"].as_str().expect("a kind").to_owned()
}

/// Every (example/node/path, document) of every example's YAML manifests and addons.
fn rendered_documents() -> Vec<(String, String)> {
    let mut documents = Vec::new();
    for (example, plan) in kiln_testkit::example_plans() {
        for node in &plan.nodes {
            let files = kiln_manifests::render_node(
                &plan,
                node,
                &common::test_key,
                &common::releases(&plan),
            )
            .expect("renders");
            for file in files {
                if !(file.path.contains("/manifests/") || file.path.contains("/addons/")) {
                    continue;
                }
                let text = String::from_utf8(file.contents).expect("UTF-8");
                for document in common::documents(&text) {
                    documents.push((
                        format!("{example}/{}/{}", node.name, file.path),
                        document.to_owned(),
                    ));
                }
            }
        }
    }
    documents
}

#[test]
fn every_object_round_trips_through_k8s_openapi() {
    let mut kinds = std::collections::BTreeSet::new();
    for (origin, document) in rendered_documents() {
        let kind = kind(&document);
        match kind.as_str() {
            "Pod" => {
                let pod: Pod = round_trip(&document);
                let spec = pod.spec.expect("a spec");
                assert_eq!(spec.host_network, Some(true), "{origin}");
                assert_eq!(
                    spec.priority_class_name.as_deref(),
                    Some("system-node-critical"),
                    "{origin}"
                );
                let container = &spec.containers[0];
                assert!(container.liveness_probe.is_some(), "{origin}");
                let image = container.image.as_deref().expect("an image");
                assert!(image.starts_with("kiln.local/"), "{origin}: {image}");
            }
            "DaemonSet" => {
                round_trip::<DaemonSet>(&document);
            }
            "ClusterRoleBinding" => {
                round_trip::<ClusterRoleBinding>(&document);
            }
            "ServiceAccount" => {
                round_trip::<ServiceAccount>(&document);
            }
            "ConfigMap" => {
                let map: ConfigMap = round_trip(&document);
                let data = map.data.expect("data");
                if let Some(corefile) = data.get("Corefile") {
                    let server = corefile.lines().next().unwrap_or_default();
                    assert!(
                        server.ends_with(":53 {") && corefile.contains("\n    kubernetes "),
                        "{origin}: {corefile}"
                    );
                } else {
                    let config = &data["config.conf"];
                    let parsed: kiln_manifests::KubeProxyConfiguration =
                        serde_norway::from_str(config).expect("a KubeProxyConfiguration");
                    assert_eq!(parsed.mode, "iptables");
                }
            }
            "ClusterRole" => {
                round_trip::<ClusterRole>(&document);
            }
            "Deployment" => {
                let deployment: Deployment = round_trip(&document);
                let pod = deployment.spec.expect("spec").template.spec.expect("pod");
                let image = pod.containers[0].image.as_deref().expect("an image");
                assert!(
                    image.starts_with("kiln.local/coredns:v"),
                    "{origin}: {image}"
                );
            }
            "Service" => {
                let service: Service = round_trip(&document);
                assert_eq!(
                    service.metadata.name.as_deref(),
                    Some(kiln_manifests::DNS_SERVICE_NAME)
                );
            }
            other => panic!("{origin}: unexpected kind {other}"),
        }
        kinds.insert(kind);
    }
    let expected = [
        "ClusterRole",
        "ClusterRoleBinding",
        "ConfigMap",
        "DaemonSet",
        "Deployment",
        "Pod",
        "Service",
        "ServiceAccount",
    ];
    assert_eq!(
        kinds.iter().map(String::as_str).collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn bootstrap_bindings_are_the_ones_pki_md_requires() {
    let bindings = kiln_manifests::rbac_bindings();
    let pairs: Vec<(String, String, String)> = bindings
        .iter()
        .map(|binding| {
            let subject = &binding.subjects.as_ref().expect("subjects")[0];
            (
                subject.kind.clone(),
                subject.name.clone(),
                binding.role_ref.name.clone(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [
            (
                "User".to_owned(),
                "kube-apiserver-kubelet-client".to_owned(),
                "system:kubelet-api-admin".to_owned()
            ),
            (
                "Group".to_owned(),
                "kiln:cluster-admins".to_owned(),
                "cluster-admin".to_owned()
            ),
        ]
    );
}

fn kubectl(arguments: &[&str], file: &Path) -> serde_json::Value {
    let output = Command::new(KUBECTL)
        .args(arguments)
        .arg("-f")
        .arg(file)
        .args(["-o", "json"])
        // No kubeconfig: --local must not need a cluster.
        .env("KUBECONFIG", "/dev/null")
        .output()
        .expect("runs /usr/bin/kubectl");
    assert!(
        output.status.success(),
        "kubectl {arguments:?} {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("kubectl prints JSON")
}

#[test]
fn kubectl_decodes_pods_daemon_sets_deployments_and_bindings() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let mut checked = 0;
    for (index, (origin, document)) in rendered_documents().into_iter().enumerate() {
        let path = directory.path().join(format!("{index}.yaml"));
        std::fs::write(&path, &document).expect("write");
        let ours: serde_json::Value = serde_norway::from_str(&document).expect("YAML");
        match kind(&document).as_str() {
            "Pod" => {
                let decoded = kubectl(
                    &["set", "resources", "--local", "--requests=memory=64Mi"],
                    &path,
                );
                let command = "/spec/containers/0/command";
                assert_eq!(decoded.pointer(command), ours.pointer(command), "{origin}");
                let volumes = "/spec/volumes";
                assert_eq!(decoded.pointer(volumes), ours.pointer(volumes), "{origin}");
                checked += 1;
            }
            "DaemonSet" | "Deployment" => {
                let decoded = kubectl(
                    &["set", "resources", "--local", "--requests=memory=64Mi"],
                    &path,
                );
                for field in ["command", "args", "securityContext", "livenessProbe"] {
                    let pointer = format!("/spec/template/spec/containers/0/{field}");
                    assert_eq!(
                        decoded.pointer(&pointer),
                        ours.pointer(&pointer),
                        "{origin}"
                    );
                }
                let tolerations = "/spec/template/spec/tolerations";
                assert_eq!(
                    decoded.pointer(tolerations),
                    ours.pointer(tolerations),
                    "{origin}"
                );
                checked += 1;
            }
            "ClusterRoleBinding" => {
                let decoded = kubectl(&["set", "subject", "--local", "--user=kiln-check"], &path);
                assert_eq!(decoded["roleRef"], ours["roleRef"], "{origin}");
                checked += 1;
            }
            _ => {}
        }
    }
    assert!(checked > 10, "only {checked} objects checked");
}
