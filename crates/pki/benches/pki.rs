//! How fast the whole PKI is issued: the two-node example, and a generated 1000-node cluster,
//! single-threaded and with leaves issued in parallel (as the graph runs derivations).
//!
//! Run with `cargo bench -p kiln-pki --bench pki`. With `KILN_KUBEADM=/path/to/kubeadm`, the same
//! run also times `kubeadm init phase certs all` for the two-node example's control-plane node,
//! side by side with kiln's whole two-node PKI.

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::collections::BTreeMap;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use kiln_pki::{Authority, IssuedCertificate, RootSecret};
use kiln_spec::{NodeSpec, Plan, Role};

fn example() -> kiln_spec::Spec {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/two-node.toml");
    let source = std::fs::read_to_string(path).expect("the example is readable");
    kiln_spec::parse(&source, "two-node.toml").expect("the example parses")
}

fn plan(spec: &kiln_spec::Spec) -> Plan {
    spec.validate().expect("a valid spec").0
}

/// The two-node example grown to `count` nodes: three control-plane and etcd nodes behind a
/// load balancer, the rest workers.
fn cluster(count: usize) -> Plan {
    let mut spec = example();
    spec.cluster.pod_cidr = Some("10.64.0.0/10".to_owned());
    spec.cluster.endpoint = Some(kiln_spec::EndpointSpec {
        mode: kiln_spec::EndpointMode::LoadBalancer,
        host: Some("api.bench.example".to_owned()),
        port: None,
    });
    spec.nodes = (0..count)
        .map(|index| NodeSpec {
            name: format!("node{index}"),
            roles: if index < 3 {
                vec![Role::ControlPlane, Role::Etcd]
            } else {
                vec![Role::Worker]
            },
            addresses: vec![format!("10.0.{}.{}/16", index / 200, 10 + index % 200)],
            gateway: None,
            dns: Vec::new(),
            pod_subnet: None,
        })
        .collect();
    plan(&spec)
}

/// Issues every leaf of `plan` on `threads` threads, the CAs and service account first.
fn issue_parallel(plan: &Plan, root: &RootSecret, threads: usize) -> usize {
    let authorities: BTreeMap<_, Authority> = kiln_pki::CA_NAMES
        .into_iter()
        .map(|ca| {
            let authority = kiln_pki::issue_authority(&kiln_pki::ca_profile(plan, ca), root)
                .expect("the CA issues");
            (ca, authority)
        })
        .collect();
    let _service_account =
        kiln_pki::issue_service_account(root, plan.pki.generation_of(kiln_pki::SERVICE_ACCOUNT));
    let names: Vec<String> = kiln_spec::certificate_names(plan)
        .into_iter()
        .filter(|name| !kiln_spec::CA_CERTIFICATES.contains(&name.as_str()))
        .collect();
    let chunk = names.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = names
            .chunks(chunk)
            .map(|names| {
                let authorities = &authorities;
                scope.spawn(move || -> Vec<IssuedCertificate> {
                    names
                        .iter()
                        .map(|name| {
                            let profile = kiln_pki::profile(plan, name).expect("a profile");
                            let issuer = &authorities[&profile.issuer.expect("a leaf")];
                            kiln_pki::issue_leaf(&profile, root, issuer).expect("the leaf issues")
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| worker.join().expect("a worker").len())
            .sum()
    })
}

/// kubeadm's certificate phase for node1 of the two-node example, in a fresh directory each time.
fn kubeadm_certs(kubeadm: &Path, two_node: &Plan) {
    let dir = tempfile::tempdir().expect("a scratch directory");
    let node = two_node
        .node("node1")
        .expect("the example's control-plane node");
    let status = std::process::Command::new(kubeadm)
        .args(["init", "phase", "certs", "all", "--cert-dir"])
        .arg(dir.path())
        .args([
            "--apiserver-advertise-address",
            &node.primary_address().to_string(),
        ])
        .args(["--service-cidr", &two_node.cluster.service_cidr.to_string()])
        .args(["--service-dns-domain", &two_node.cluster.domain])
        .args(["--kubernetes-version", "v1.20.2"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("kubeadm runs");
    assert!(status.success(), "kubeadm init phase certs all failed");
}

fn benches(criterion: &mut Criterion) {
    let root = RootSecret::from_bytes([42; 32]);
    let none = BTreeMap::new();

    let two_node = plan(&example());
    let mut group = criterion.benchmark_group("two-node");
    group.bench_function("kiln-whole-pki", |bench| {
        bench.iter(|| kiln_pki::issue(&two_node, &root, &none).expect("issues"));
    });
    match std::env::var_os("KILN_KUBEADM") {
        Some(kubeadm) => {
            let kubeadm = std::path::PathBuf::from(kubeadm);
            group.sample_size(10);
            group.bench_function("kubeadm-init-phase-certs-all-node1", |bench| {
                bench.iter(|| kubeadm_certs(&kubeadm, &two_node));
            });
        }
        None => eprintln!(
            "two-node/kubeadm: not run; set KILN_KUBEADM to a kubeadm 1.20.2 binary to compare"
        ),
    }
    group.finish();

    let thousand = cluster(1000);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let mut group = criterion.benchmark_group("pki/1000-nodes");
    group.sample_size(10);
    group.bench_function("whole/single-threaded", |bench| {
        bench.iter(|| kiln_pki::issue(&thousand, &root, &none).expect("issues"));
    });
    group.bench_function(format!("whole/{threads}-threads"), |bench| {
        bench.iter(|| issue_parallel(&thousand, &root, threads));
    });
    group.bench_function("plan-and-profiles", |bench| {
        bench.iter(|| kiln_pki::profiles(&thousand).len());
    });
    group.finish();
}

criterion_group!(pki, benches);
criterion_main!(pki);
