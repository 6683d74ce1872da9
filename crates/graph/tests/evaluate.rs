//! Tests of evaluation and checking: dependency order at several job
//! counts, substitution, failures, fixed outputs, reproducibility checks,
//! progress events, and the builder-facing API.

mod support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use expect_test::expect;
use kiln_graph::{
    BuildContext, BuildError, Derivation, DrvId, EvalError, EvalOptions, Event, Graph,
    LineProgress, NullObserver, ValidatedGraph,
};
use kiln_store::{Digest, Store, tree_hash};

use support::{Behavior, Log, Recorder, TestBuilder, concat_derivation, concat_graph};

/// A cluster-shaped graph: a CA, certificates, per-node plans, an image.
const CLUSTER: &[(&str, &[(&str, &str)])] = &[
    ("pki/ca", &[]),
    ("pki/etcd-ca", &[]),
    ("pki/apiserver", &[("ca", "pki/ca")]),
    ("pki/etcd-peer/n1", &[("ca", "pki/etcd-ca")]),
    ("pki/etcd-peer/n2", &[("ca", "pki/etcd-ca")]),
    (
        "kubeconfig/admin",
        &[("ca", "pki/ca"), ("cert", "pki/apiserver")],
    ),
    (
        "node/n1/plan",
        &[
            ("ca", "pki/ca"),
            ("peer", "pki/etcd-peer/n1"),
            ("api", "pki/apiserver"),
        ],
    ),
    (
        "node/n2/plan",
        &[("ca", "pki/ca"), ("peer", "pki/etcd-peer/n2")],
    ),
    // Two input names for one derivation are allowed.
    (
        "image/n1",
        &[("plan", "node/n1/plan"), ("plan-again", "node/n1/plan")],
    ),
    ("image/n2", &[("plan", "node/n2/plan")]),
    (
        "cluster",
        &[
            ("n1", "image/n1"),
            ("n2", "image/n2"),
            ("admin", "kubeconfig/admin"),
        ],
    ),
];

/// Input names and the ids they refer to.
type Inputs<'a> = &'a [(&'a str, &'a str)];

fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open");
    (dir, store)
}

fn jobs(jobs: usize) -> EvalOptions {
    EvalOptions { jobs }
}

fn derivation_of(graph: &ValidatedGraph, id: &str) -> (Digest, String) {
    let id = DrvId::from(id);
    (
        graph.digest(&id).expect("digest"),
        graph.derivation(&id).expect("derivation").name.clone(),
    )
}

#[test]
fn builds_in_dependency_order_with_one_or_several_jobs() {
    let mut content_hashes = Vec::new();
    for job_count in [1, 4] {
        let log = Arc::new(Log::default());
        let graph = concat_graph(CLUSTER, &log).validate().expect("valid");
        let (_dir, store) = temp_store();
        let evaluation = graph
            .evaluate(&store, &jobs(job_count), &NullObserver)
            .expect("evaluate");
        assert_eq!(
            (evaluation.built, evaluation.substituted),
            (CLUSTER.len(), 0)
        );
        assert_eq!(evaluation.outputs.len(), CLUSTER.len());

        // Each builder read its inputs (it fails otherwise), and finished after them.
        let finished = log.finished();
        assert_eq!(finished.len(), CLUSTER.len());
        let position: BTreeMap<&DrvId, usize> =
            finished.iter().enumerate().map(|(i, id)| (id, i)).collect();
        for id in graph.ids() {
            for (_, input) in graph.inputs(id) {
                assert!(
                    position[input] < position[id],
                    "{input} before {id} with {job_count} jobs"
                );
            }
        }
        for (id, object) in &evaluation.outputs {
            assert_eq!(Some(object.path.clone()), graph.store_path(&store, id));
            assert_eq!(object.content_hash, tree_hash(&object.path).expect("hash"));
        }
        content_hashes.push(
            evaluation
                .outputs
                .values()
                .map(|object| object.content_hash)
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        content_hashes[0], content_hashes[1],
        "outputs do not depend on jobs"
    );
}

#[test]
fn a_second_evaluation_substitutes_everything() {
    let log = Arc::new(Log::default());
    let graph = concat_graph(CLUSTER, &log).validate().expect("valid");
    let (_dir, store) = temp_store();
    let first = graph
        .evaluate(&store, &jobs(2), &NullObserver)
        .expect("first");
    let recorder = Recorder::default();
    let second = graph.evaluate(&store, &jobs(2), &recorder).expect("second");
    assert_eq!((second.built, second.substituted), (0, CLUSTER.len()));
    assert_eq!(log.runs(), CLUSTER.len(), "no builder ran the second time");
    assert_eq!(second.outputs, first.outputs);
    let lines = recorder.lines();
    assert_eq!(
        lines[0],
        format!("planned {} cached {}", CLUSTER.len(), CLUSTER.len())
    );
    assert_eq!(lines.len(), 1 + CLUSTER.len());
    assert!(
        lines[1..]
            .iter()
            .all(|line| line.starts_with("substituted "))
    );

    // A partly built store builds only what is missing.
    let (digest, name) = derivation_of(&graph, "image/n2");
    store.remove_path(&digest, &name).expect("remove");
    let (digest, name) = derivation_of(&graph, "cluster");
    store.remove_path(&digest, &name).expect("remove");
    let third = graph
        .evaluate(&store, &jobs(2), &NullObserver)
        .expect("third");
    assert_eq!((third.built, third.substituted), (2, CLUSTER.len() - 2));
    assert_eq!(third.outputs, first.outputs);
}

#[test]
fn events_describe_the_evaluation() {
    let log = Arc::new(Log::default());
    let mut graph = Graph::new();
    graph
        .add("a", concat_derivation("a", &[], Behavior::Concat, &log))
        .expect("add");
    graph
        .add(
            "b",
            concat_derivation(
                "b",
                &[("a", "a")],
                Behavior::Report("halfway".to_owned()),
                &log,
            ),
        )
        .expect("add");
    let graph = graph.validate().expect("valid");
    let (_dir, store) = temp_store();
    let recorder = Recorder::default();
    graph
        .evaluate(&store, &jobs(1), &recorder)
        .expect("evaluate");
    expect![[r#"
        planned 2 cached 0
        started a
        finished a
        started b
        message b: halfway
        finished b"#]]
    .assert_eq(&recorder.lines().join("\n"));
}

#[test]
fn a_failing_builder_stops_the_evaluation_and_is_named() {
    let log = Arc::new(Log::default());
    let mut graph = Graph::new();
    let spec: &[(&str, Inputs<'_>, Behavior)] = &[
        ("a", &[], Behavior::Concat),
        (
            "b",
            &[("a", "a")],
            Behavior::Fail("compiler exploded".to_owned()),
        ),
        ("c", &[("b", "b")], Behavior::Concat),
        // Ready from the start, but after `b` in topological order.
        ("z", &[], Behavior::Concat),
    ];
    for (id, inputs, behavior) in spec {
        graph
            .add(*id, concat_derivation(id, inputs, behavior.clone(), &log))
            .expect("add");
    }
    let graph = graph.validate().expect("valid");
    let (_dir, store) = temp_store();
    let recorder = Recorder::default();
    let error = graph
        .evaluate(&store, &jobs(1), &recorder)
        .expect_err("b fails");
    assert!(matches!(&error, EvalError::Build { id, .. } if id.as_str() == "b"));
    assert_eq!(error.to_string(), "building b failed: compiler exploded");
    assert_eq!(
        log.finished(),
        [DrvId::from("a")],
        "nothing starts after a failure"
    );
    assert!(
        recorder
            .lines()
            .contains(&"failed b: compiler exploded".to_owned())
    );
    for id in ["b", "c", "z"] {
        let (digest, name) = derivation_of(&graph, id);
        assert_eq!(store.get(&digest, &name).expect("get"), None, "{id}");
    }
    assert_eq!(
        std::fs::read_dir(store.root().join(".tmp"))
            .expect("ls")
            .count(),
        0,
        "the failed build's directory is gone"
    );
}

#[test]
fn a_panicking_builder_fails_its_derivation() {
    for job_count in [1, 3] {
        let log = Arc::new(Log::default());
        let mut graph = concat_graph(&[("a", &[]), ("b", &[]), ("c", &[])], &log);
        graph
            .add(
                "boom",
                concat_derivation(
                    "boom",
                    &[("a", "a")],
                    Behavior::Panic("kaboom".to_owned()),
                    &log,
                ),
            )
            .expect("add");
        let graph = graph.validate().expect("valid");
        let (_dir, store) = temp_store();
        let error = graph
            .evaluate(&store, &jobs(job_count), &NullObserver)
            .expect_err("panics");
        assert_eq!(
            error.to_string(),
            "building boom failed: builder panicked: kaboom"
        );
    }
}

/// A graph with a fixed-output download (whose recipe is `params`) and a user of it.
fn fixed_graph(params: &str, contents: &[u8], promised: Digest, log: &Arc<Log>) -> ValidatedGraph {
    let mut graph = Graph::new();
    graph
        .add(
            "download",
            Derivation::new(
                "image.raw",
                Arc::new(TestBuilder::new(
                    params,
                    Behavior::Write(contents.to_vec()),
                    log,
                )),
            )
            .fixed(promised),
        )
        .expect("add");
    graph
        .add(
            "user",
            concat_derivation("user", &[("image", "download")], Behavior::Concat, log),
        )
        .expect("add");
    graph.validate().expect("valid")
}

fn content_hash_of(contents: &[u8]) -> Digest {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("out"), contents).expect("write");
    tree_hash(dir.path()).expect("hash")
}

#[test]
fn fixed_outputs_are_verified() {
    let promised = content_hash_of(b"the image");
    let log = Arc::new(Log::default());

    let (_dir, store) = temp_store();
    let wrong = fixed_graph("mirror-a", b"a corrupted image", promised, &log);
    let error = wrong
        .evaluate(&store, &jobs(2), &NullObserver)
        .expect_err("wrong content");
    let actual = content_hash_of(b"a corrupted image");
    assert!(matches!(
        &error,
        EvalError::FixedOutputMismatch { id, expected, actual: got }
            if id.as_str() == "download" && *expected == promised && *got == actual
    ));
    assert_eq!(
        error.to_string(),
        format!(
            "fixed-output derivation download produced content hash {actual}, but it promises {promised}"
        )
    );
    let (digest, name) = derivation_of(&wrong, "download");
    assert_eq!(
        store.get(&digest, &name).expect("get"),
        None,
        "nothing is stored"
    );

    let right = fixed_graph("mirror-a", b"the image", promised, &log);
    let evaluation = right
        .evaluate(&store, &jobs(2), &NullObserver)
        .expect("right content");
    assert_eq!(
        evaluation.outputs[&DrvId::from("download")].content_hash,
        promised
    );
    assert_eq!(evaluation.built, 2);

    // Another recipe for the same content: same digests, nothing rebuilt.
    let runs = log.runs();
    let moved = fixed_graph("mirror-b", b"the image", promised, &log);
    for id in right.ids() {
        assert_eq!(moved.digest(id), right.digest(id), "{id}");
    }
    let again = moved
        .evaluate(&store, &jobs(2), &NullObserver)
        .expect("substituted");
    assert_eq!((again.built, again.substituted), (0, 2));
    assert_eq!(log.runs(), runs);
}

#[test]
fn check_passes_for_deterministic_builders() {
    let log = Arc::new(Log::default());
    let graph = concat_graph(CLUSTER, &log).validate().expect("valid");
    let (dir, store) = temp_store();
    let scratch = Store::open(&dir.path().join("scratch")).expect("scratch");
    // Evaluates first (the store is empty), then rebuilds everything.
    let mismatches = graph
        .check(&store, &scratch, &jobs(2), &NullObserver)
        .expect("check");
    assert_eq!(mismatches, []);
    assert_eq!(log.runs(), 2 * CLUSTER.len());
    // A second check rebuilds again rather than trusting the scratch store.
    graph
        .check(&store, &scratch, &jobs(2), &NullObserver)
        .expect("check again");
    assert_eq!(log.runs(), 3 * CLUSTER.len());

    let error = graph
        .check(&store, &store, &jobs(2), &NullObserver)
        .expect_err("same store");
    assert!(matches!(error, EvalError::ScratchIsStore { .. }));
}

#[test]
fn check_pinpoints_a_nondeterministic_builder() {
    let log = Arc::new(Log::default());
    let counter = Arc::new(AtomicU64::new(0));
    let mut graph = Graph::new();
    for (id, inputs) in CLUSTER {
        let behavior = if *id == "pki/apiserver" {
            Behavior::Nondeterministic(Arc::clone(&counter))
        } else {
            Behavior::Concat
        };
        graph
            .add(*id, concat_derivation(id, inputs, behavior, &log))
            .expect("add");
    }
    let graph = graph.validate().expect("valid");
    let (dir, store) = temp_store();
    let scratch = Store::open(&dir.path().join("scratch")).expect("scratch");
    let mismatches = graph
        .check(&store, &scratch, &jobs(2), &NullObserver)
        .expect("check");
    // Its dependents are rebuilt from the stored apiserver certificate, so
    // they agree: only the culprit is reported.
    assert_eq!(mismatches.len(), 1, "{mismatches:?}");
    let mismatch = &mismatches[0];
    assert_eq!(mismatch.id, DrvId::from("pki/apiserver"));
    assert_eq!(mismatch.name, "pki-apiserver");
    assert_ne!(mismatch.expected, mismatch.actual);
    let difference = mismatch.first_difference.as_ref().expect("a difference");
    assert_eq!(difference.path, PathBuf::from("counter"));
    assert_eq!(
        difference.to_string(),
        "counter: contents differ at byte 0 (sizes 1 and 1)"
    );
    assert!(
        mismatch
            .to_string()
            .starts_with("pki/apiserver (pki-apiserver) is not reproducible"),
        "{mismatch}"
    );
}

#[test]
fn builders_see_their_inputs_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let id = DrvId::from("node/n1/plan");
    let inputs = BTreeMap::from([
        ("ca".to_owned(), dir.path().join("ca")),
        ("peer".to_owned(), dir.path().join("peer")),
    ]);
    let ctx = BuildContext::standalone(&id, dir.path(), &inputs, &NullObserver);
    assert_eq!(ctx.id(), &id);
    assert_eq!(ctx.out(), dir.path());
    assert_eq!(ctx.input("ca").expect("ca"), dir.path().join("ca"));
    assert_eq!(ctx.input_names().collect::<Vec<_>>(), ["ca", "peer"]);
    let error = ctx.input("key").expect_err("missing");
    assert_eq!(
        error.to_string(),
        "node/n1/plan has no input named \"key\"; its inputs are: ca, peer"
    );
}

#[test]
fn build_errors_display_their_chain() {
    let missing = std::path::Path::new("/nonexistent/kiln/file");
    let io = std::fs::read(missing).expect_err("missing file");
    let cases = [
        (BuildError::new("plain"), "plain"),
        (
            BuildError::io(missing, io),
            "/nonexistent/kiln/file: No such file or directory (os error 2)",
        ),
        (
            BuildError::new("inner").context("middle").context("outer"),
            "outer: middle: inner",
        ),
        (BuildError::from("from str"), "from str"),
        (BuildError::from(std::io::Error::other("custom")), "custom"),
    ];
    for (error, expected) in cases {
        assert_eq!(error.to_string(), expected);
    }
    let wrapped = BuildError::with_source("decoding", std::fmt::Error);
    assert!(
        wrapped
            .cause()
            .is_some_and(|cause| cause.is::<std::fmt::Error>())
    );
}

#[test]
fn line_progress_prints_lines_for_people() {
    let id = DrvId::from("pki/ca");
    let progress = LineProgress::new(Vec::new());
    let events = [
        Event::Planned {
            total: 20,
            cached: 12,
        },
        Event::Substituted { id: &id },
        Event::Started { id: &id },
        Event::Message {
            id: &id,
            message: "generating key",
        },
        Event::Finished {
            id: &id,
            seconds: 1.234,
        },
        Event::Failed {
            id: &id,
            error: "disk full",
        },
    ];
    for event in &events {
        kiln_graph::Observer::event(&progress, event);
    }
    let text = String::from_utf8(progress.into_inner()).expect("utf-8");
    expect![[r#"
        12 derivations from the store, 8 to build
        building pki/ca
        pki/ca: generating key
        built pki/ca in 1.2s
        failed pki/ca: disk full
    "#]]
    .assert_eq(&text);
}
