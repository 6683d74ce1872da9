//! The bootstrap token's derivations, built from the kubeadm example: the operator's objects and
//! each worker's `bootstrap-kubelet.conf` carry the same token, derived from the root secret;
//! both are 0600 (0400 in the store); nodes whose kubelets do not join hold neither.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use kiln_graph::{EvalOptions, NullObserver};

/// The permission bits of `path`; the store takes every file's write bits away (a 0600 file is
/// 0400 there).
fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

#[test]
fn the_kubeadm_example_s_workers_join_with_the_token_its_objects_declare() {
    let root = env!("CARGO_MANIFEST_DIR");
    let text = std::fs::read_to_string(format!("{root}/../../examples/kubeadm-bootstrap.toml"))
        .expect("the example");
    let plan = kiln_spec::load(&text, "kubeadm-bootstrap.toml")
        .expect("valid")
        .plan;
    let secret = kiln_pki::RootSecret::from_bytes([7; 32]);
    let token = secret.derive_bootstrap_token(plan.pki.generation);
    let inputs = kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(secret),
        external_cas: Default::default(),
        releases: kiln_spec::images::Releases {
            etcd: "3.6.16".into(),
            coredns: Some("1.15.0".into()),
        },
    };
    let cluster = kiln_cluster::cluster_graph(&plan, &inputs).expect("a graph");
    let graph = cluster.graph.validate().expect("valid");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = kiln_store::Store::open(&dir.path().join("store")).expect("store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("built");
    let manifest = kiln_cluster::Manifest::new(&plan, &cluster.artifacts, &graph, &evaluation);

    let objects_path = manifest.artifacts[&manifest.cluster_artifacts["bootstrap-token"]]
        .store_path
        .join(kiln_cluster::BOOTSTRAP_TOKEN_FILE);
    assert_eq!(mode(&objects_path), 0o400);
    let objects = std::fs::read_to_string(&objects_path).expect("objects");
    let ca = std::fs::read_to_string(
        manifest.artifacts[&manifest.cluster_artifacts["pki/ca"]]
            .store_path
            .join(kiln_cluster::CERTIFICATE_FILE),
    )
    .expect("the CA");
    let documents: Vec<serde_json::Value> = objects
        .split("---\n")
        .map(|document| serde_norway::from_str(document).expect("YAML"))
        .collect();
    let kinds: Vec<&str> = documents
        .iter()
        .map(|document| document["kind"].as_str().expect("a kind"))
        .collect();
    assert_eq!(
        kinds,
        [
            "Secret",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "ConfigMap",
            "Role",
            "RoleBinding"
        ]
    );
    let data = &documents[0]["stringData"];
    assert_eq!(
        documents[0]["metadata"]["name"],
        format!("bootstrap-token-{}", token.id())
    );
    assert_eq!(data["token-id"], token.id());
    assert_eq!(data["token-secret"], token.secret());
    assert_eq!(data["expiration"], "2027-01-01T00:00:00Z");
    let cluster_info: serde_json::Value =
        serde_norway::from_str(documents[4]["data"]["kubeconfig"].as_str().expect("text"))
            .expect("a kubeconfig");
    use base64::Engine as _;
    let embedded = base64::engine::general_purpose::STANDARD
        .decode(
            cluster_info["clusters"][0]["cluster"]["certificate-authority-data"]
                .as_str()
                .expect("the CA"),
        )
        .expect("base64");
    assert_eq!(String::from_utf8(embedded).expect("PEM"), ca);

    for node in &plan.nodes {
        let joins = plan.kubelet_bootstraps(node);
        let artifacts = &manifest.nodes[&node.name];
        assert_eq!(artifacts.contains_key("bootstrap"), joins, "{}", node.name);
        if !joins {
            continue;
        }
        let path = manifest.artifacts[&artifacts["bootstrap"]].store_path.join(
            kiln_spec::paths::node_relative(kiln_spec::paths::BOOTSTRAP_KUBELET_KUBECONFIG),
        );
        assert_eq!(mode(&path), 0o400, "{}", path.display());
        let kubeconfig: serde_json::Value =
            serde_norway::from_str(&std::fs::read_to_string(&path).expect("the kubeconfig"))
                .expect("YAML");
        assert_eq!(kubeconfig["users"][0]["user"]["token"], token.token());
        assert_eq!(
            kubeconfig["clusters"][0]["cluster"]["server"],
            plan.cluster.endpoint.url()
        );
        // The joining node holds the token in this file alone: not in its other artifacts.
        for (artifact, id) in artifacts {
            if artifact == "bootstrap" {
                continue;
            }
            let found = std::process::Command::new("grep")
                .args(["-rlF", token.secret()])
                .arg(&manifest.artifacts[id].store_path)
                .output()
                .expect("grep runs");
            assert!(found.stdout.is_empty(), "{artifact}: {:?}", found);
        }
    }
    assert!(
        plan.nodes.iter().any(|node| plan.kubelet_bootstraps(node)),
        "the example has joining workers"
    );
}
