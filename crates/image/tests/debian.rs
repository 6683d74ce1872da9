//! The Debian source, built for real: about ten minutes, so it runs only
//! with `KILN_BUILD_KUBERNETES=1`, or when the binaries are already in the
//! store (`KILN_KUBERNETES_STORE`, by default one under Cargo's target
//! directory that later runs reuse). The build must reproduce the pinned
//! content hash, and the binaries must run and report v1.20.2.

use std::path::PathBuf;
use std::process::Command;

use kiln_graph::{DrvId, EvalOptions, Graph, LineProgress};
use kiln_image::{
    kubernetes::{KUBERNETES_DERIVATION_NAME, KubernetesSource, kubernetes_binaries},
    lock::Lock,
    resolve::AptSources,
};
use kiln_store::{Digest, Store};

fn store_dir() -> PathBuf {
    std::env::var_os("KILN_KUBERNETES_STORE").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("kubernetes-store"),
        PathBuf::from,
    )
}

fn run(program: &std::path::Path, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .expect("run the command");
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn debian_binaries_reproduce_the_pinned_hash_and_run() {
    let lock = Lock::parse(&kiln_testkit::lock_text(), "kiln.lock").expect("kiln.lock parses");
    let mut graph = Graph::new();
    graph
        .add(
            "kubernetes",
            kubernetes_binaries(&KubernetesSource::Debian {
                lock: lock.kubernetes.clone(),
                sources: AptSources::machine("/etc/apt".as_ref()).expect("apt sources"),
            })
            .expect("describe the derivation"),
        )
        .expect("add the derivation");
    let graph = graph.validate().expect("validate the graph");
    let id = DrvId::from("kubernetes");
    let store = Store::open(&store_dir()).expect("open the store");
    let present = store
        .get(
            &graph.digest(&id).expect("the derivation is in the graph"),
            KUBERNETES_DERIVATION_NAME,
        )
        .expect("look up the store")
        .is_some();
    if !present && std::env::var("KILN_BUILD_KUBERNETES").as_deref() != Ok("1") {
        eprintln!(
            "skipped: the Kubernetes binaries are not in {} and KILN_BUILD_KUBERNETES=1 is not set",
            store_dir().display()
        );
        return;
    }

    // A fresh build is verified against the pinned content hash by the graph.
    let evaluation = graph
        .evaluate(
            &store,
            &EvalOptions::default(),
            &LineProgress::new(std::io::stderr()),
        )
        .expect("evaluate the graph");
    let output = &evaluation.outputs[&id];
    assert_eq!(Some(output.content_hash), lock.kubernetes.content_hash);
    assert_eq!(lock.kubernetes.binaries.len(), 7);
    for (name, sha256) in &lock.kubernetes.binaries {
        let bytes = std::fs::read(output.path.join("bin").join(name)).expect("read a file");
        assert_eq!(Digest::of(&bytes), *sha256, "{name}");
    }
    assert_eq!(
        std::fs::read_to_string(output.path.join("VERSION")).expect("read a file"),
        "v1.20.2\n"
    );

    let bin = output.path.join("bin");
    assert_eq!(
        run(&bin.join("kubeadm"), &["version", "-o", "short"]).trim(),
        "v1.20.2"
    );
    let client = run(&bin.join("kubectl"), &["version", "--client", "-o", "json"]);
    for expected in [
        r#""gitVersion": "v1.20.2""#,
        r#""gitCommit": "faecb196815e248d3ecfb03c680a4507229c2a56""#,
        r#""gitTreeState": "clean""#,
        r#""buildDate": "2025-06-08T22:40:27Z""#,
    ] {
        assert!(client.contains(expected), "{expected} not in {client}");
    }
    for server in [
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kubelet",
        "kube-proxy",
    ] {
        assert_eq!(
            run(&bin.join(server), &["--version"]).trim(),
            "Kubernetes v1.20.2",
            "{server}"
        );
    }
}
