//! Benchmarks of the foundation: parse, validate and plan a spec and build its validated graph,
//! for 3, 100 and 1000 nodes; a no-op rebuild (everything already in the store) of 1000 nodes;
//! and rendering every node's configuration (network, units, kubeconfigs) for 1000 nodes.
//!
//! Run: `cargo bench -p kiln-cluster --bench cluster`

// criterion_group! generates an undocumented public function.
#![allow(missing_docs)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use kiln_graph::{EvalOptions, NullObserver};

/// An HA-shaped spec with `nodes` nodes: three control-plane/etcd nodes, a load balancer, and
/// workers for the rest.
fn spec(nodes: usize) -> String {
    let mut text = String::from(
        "[cluster]\nname = \"bench\"\nkubernetes_version = \"1.20.2\"\nservice_cidr = \"10.32.0.0/16\"\n\
         pod_cidr = \"10.64.0.0/14\"\ncontrol_plane_mode = \"systemd\"\n\n[cluster.endpoint]\nmode = \"load-balancer\"\n\n\
         [pki]\nissued_at = 2026-01-01T00:00:00Z\n",
    );
    for index in 0..nodes {
        let roles = match index {
            0 => "[\"load-balancer\"]",
            1..=3 => "[\"control-plane\", \"etcd\"]",
            _ => "[\"worker\"]",
        };
        let _ = write!(
            text,
            "\n[[nodes]]\nname = \"node-{index}\"\nroles = {roles}\naddresses = [\"172.16.{}.{}/16\"]\n",
            index / 250,
            index % 250 + 1
        );
    }
    text
}

fn plan_and_graph(c: &mut Criterion) {
    let mut group = c.benchmark_group("plan_and_graph");
    for nodes in [3usize, 100, 1000] {
        let source = spec(nodes.max(4));
        let inputs = inputs();
        group.bench_with_input(BenchmarkId::from_parameter(nodes), &source, |b, source| {
            b.iter(|| {
                let plan = kiln_spec::load(black_box(source), "bench.toml")
                    .expect("valid")
                    .plan;
                let graph = kiln_cluster::cluster_graph(&plan, &inputs)
                    .expect("graph")
                    .graph
                    .validate()
                    .expect("valid graph");
                black_box(graph.len())
            });
        });
    }
    group.finish();
}

fn noop_rebuild(c: &mut Criterion) {
    let source = spec(1000);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = kiln_store::Store::open(&dir.path().join("store")).expect("store");
    let options = EvalOptions::default();
    let inputs = inputs();
    {
        let plan = kiln_spec::load(&source, "bench.toml").expect("valid").plan;
        let graph = kiln_cluster::cluster_graph(&plan, &inputs)
            .expect("graph")
            .graph
            .validate()
            .expect("valid graph");
        graph
            .evaluate(&store, &options, &NullObserver)
            .expect("first build");
    }
    c.bench_function("noop_rebuild/1000", |b| {
        b.iter(|| {
            // The whole command's work: load the spec, plan, assemble, validate, find all in the store.
            let plan = kiln_spec::load(black_box(&source), "bench.toml")
                .expect("valid")
                .plan;
            let graph = kiln_cluster::cluster_graph(&plan, &inputs)
                .expect("graph")
                .graph
                .validate()
                .expect("valid graph");
            let evaluation = graph
                .evaluate(&store, &options, &NullObserver)
                .expect("no-op");
            assert_eq!(evaluation.built, 0);
            black_box(evaluation.substituted)
        });
    });
}

/// Every renderer's output for every node, as bytes in memory: what the graph's render
/// derivations compute, without the store. Kubeconfigs reference their certificates by path,
/// so this measures rendering, not certificate issuance (the PKI bench measures that).
/// Each renderer is also timed alone, to show where the time goes.
fn render_all(c: &mut Criterion) {
    let plan = kiln_spec::load(&spec(1000), "bench.toml")
        .expect("valid")
        .plan;
    let network = |plan: &kiln_spec::Plan, node: &kiln_spec::NodePlan| -> usize {
        kiln_netplan::render_node(plan, node)
            .expect("network")
            .iter()
            .map(|f| f.contents.len())
            .sum()
    };
    let units = |plan: &kiln_spec::Plan, node: &kiln_spec::NodePlan| -> usize {
        kiln_units::render_node(plan, node)
            .expect("units")
            .iter()
            .map(|f| f.contents.len())
            .sum()
    };
    let kubeconfigs = |plan: &kiln_spec::Plan, node: &kiln_spec::NodePlan| -> usize {
        kiln_kubeconfig::node_kinds(plan, node)
            .iter()
            .map(|kind| {
                let credentials = kiln_kubeconfig::Credentials::referenced(kind);
                kiln_kubeconfig::render_file(plan, kind, credentials)
                    .expect("kubeconfig")
                    .contents
                    .len()
            })
            .sum()
    };
    let mut group = c.benchmark_group("render_all/1000");
    group.sample_size(10);
    group.bench_function("network", |b| {
        b.iter(|| black_box(plan.nodes.iter().map(|n| network(&plan, n)).sum::<usize>()))
    });
    group.bench_function("network/netplan-yaml", |b| {
        b.iter(|| {
            black_box(
                plan.nodes
                    .iter()
                    .map(|n| {
                        kiln_netplan::netplan(&plan, n)
                            .expect("yaml")
                            .contents
                            .len()
                    })
                    .sum::<usize>(),
            )
        })
    });
    group.bench_function("network/networkd", |b| {
        b.iter(|| {
            black_box(
                plan.nodes
                    .iter()
                    .map(|n| {
                        kiln_netplan::networkd(&plan, n)
                            .expect("ini")
                            .contents
                            .len()
                    })
                    .sum::<usize>(),
            )
        })
    });
    group.bench_function("network/routes-only", |b| {
        b.iter(|| {
            black_box(
                plan.nodes
                    .iter()
                    .map(|n| kiln_netplan::pod_routes(&plan, n).expect("routes").len())
                    .sum::<usize>(),
            )
        })
    });
    group.bench_function("units", |b| {
        b.iter(|| black_box(plan.nodes.iter().map(|n| units(&plan, n)).sum::<usize>()))
    });
    group.bench_function("kubeconfigs", |b| {
        b.iter(|| {
            black_box(
                plan.nodes
                    .iter()
                    .map(|n| kubeconfigs(&plan, n))
                    .sum::<usize>(),
            )
        })
    });
    group.bench_function("everything", |b| {
        b.iter(|| {
            black_box(
                plan.nodes
                    .iter()
                    .map(|n| network(&plan, n) + units(&plan, n) + kubeconfigs(&plan, n))
                    .sum::<usize>(),
            )
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = plan_and_graph, noop_rebuild, render_all
}
criterion_main!(benches);

/// A fixed root secret: digests then depend on the spec alone.
fn inputs() -> kiln_cluster::ClusterInputs {
    kiln_cluster::ClusterInputs {
        root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
        external_cas: Default::default(),
        releases: kiln_spec::images::Releases {
            etcd: "3.6.16".into(),
            coredns: Some("1.15.0".into()),
        },
    }
}
