//! Tests of graph construction and validation: errors, topological order,
//! digests (golden values, insertion-order independence, and what a change
//! invalidates), and the dot output.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use expect_test::{Expect, expect};
use kiln_graph::{Addressing, DrvId, Graph, GraphError, ValidatedGraph};
use kiln_store::Digest;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

use support::{Behavior, Log, TestBuilder, concat_derivation, concat_graph};

type Spec<'a> = &'a [(&'a str, &'a [(&'a str, &'a str)])];

/// Validates the graph described by `spec` and compares the outcome (the
/// topological order, or the error) with `expect`.
fn check(spec: Spec<'_>, expect: Expect) {
    let log = Arc::new(Log::default());
    let actual = match concat_graph(spec, &log).validate() {
        Ok(graph) => graph
            .ids()
            .map(DrvId::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        Err(error) => format!("error: {error}"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn secrets_spread_to_everything_built_from_them() {
    let log = Arc::new(Log::default());
    // key -> bundle -> image; config -> image; public -> config; lone.
    let spec: Spec<'_> = &[
        ("key", &[]),
        ("public", &[]),
        ("config", &[("p", "public")]),
        ("bundle", &[("k", "key")]),
        ("image", &[("b", "bundle"), ("c", "config")]),
        ("lone", &[]),
    ];
    let mut graph = Graph::new();
    for (id, inputs) in spec {
        let mut derivation = concat_derivation(id, inputs, Behavior::Concat, &log);
        let mut builder = TestBuilder::new(id, Behavior::Concat, &log);
        builder.secret = *id == "key";
        derivation.builder = Arc::new(builder);
        graph.add(*id, derivation).expect("add");
    }
    let graph = graph.validate().expect("valid");
    let secret: Vec<String> = graph
        .secret_ids()
        .into_iter()
        .map(DrvId::to_string)
        .collect();
    assert_eq!(secret, ["bundle", "image", "key"]);
}

#[test]
fn validation_orders_or_rejects() {
    check(&[], expect![[""]]);
    check(&[("c", &[]), ("b", &[]), ("a", &[])], expect![["a b c"]]);
    check(
        &[("a", &[("x", "b")]), ("b", &[("x", "c")]), ("c", &[])],
        expect![["c b a"]],
    );
    // Ties are broken by id: `a` and `z` are ready at once, `a` comes first.
    check(
        &[("m", &[("x", "z"), ("y", "a")]), ("z", &[]), ("a", &[])],
        expect![["a z m"]],
    );
    check(
        &[
            ("a", &[("x", "b")]),
            ("b", &[("x", "c")]),
            ("c", &[("x", "a")]),
        ],
        expect!["error: dependency cycle: a -> b -> c -> a"],
    );
    check(
        &[("s", &[("self", "s")])],
        expect!["error: dependency cycle: s -> s"],
    );
    // The reported cycle starts at the smallest id on any cycle.
    check(
        &[
            ("a", &[("x", "z")]),
            ("n", &[("x", "m")]),
            ("m", &[("x", "q"), ("y", "n")]),
            ("q", &[("x", "n")]),
            ("z", &[]),
        ],
        expect!["error: dependency cycle: m -> n -> m"],
    );
    check(
        &[
            ("a", &[("ca", "pki/ca"), ("ok", "b")]),
            ("b", &[]),
            ("c", &[("key", "secret"), ("other", "nowhere")]),
        ],
        expect![[r#"
            error: 3 missing inputs:
              a: input "ca" refers to pki/ca, which is not in the graph
              c: input "key" refers to secret, which is not in the graph
              c: input "other" refers to nowhere, which is not in the graph"#]],
    );
    check(
        &[("a", &[("ca", "pki/ca")])],
        expect![[
            r#"error: missing input: a: input "ca" refers to pki/ca, which is not in the graph"#
        ]],
    );
}

#[test]
fn add_rejects_duplicate_ids_and_bad_names() {
    let log = Arc::new(Log::default());
    let mut graph = Graph::new();
    graph
        .add(
            "pki/ca",
            concat_derivation("pki/ca", &[], Behavior::Concat, &log),
        )
        .expect("first add");
    let duplicate = graph
        .add(
            "pki/ca",
            concat_derivation("pki/ca", &[], Behavior::Concat, &log),
        )
        .expect_err("duplicate");
    assert_eq!(duplicate.to_string(), "derivation pki/ca is added twice");

    let mut derivation = concat_derivation("x", &[], Behavior::Concat, &log);
    derivation.name = "has space".to_owned();
    let invalid = graph.add("x", derivation).expect_err("invalid name");
    assert!(matches!(&invalid, GraphError::InvalidName { name, .. } if name == "has space"));
    expect!["derivation x has an invalid name: it contains ' ' (names are 1 to 200 characters from A-Z a-z 0-9 + - . _ ? = and do not start with '.')"].assert_eq(&invalid.to_string());
    assert_eq!(graph.len(), 1);
}

fn spec_graph(log: &Arc<Log>) -> ValidatedGraph {
    concat_graph(
        &[
            ("pki/ca", &[]),
            ("pki/apiserver", &[("ca", "pki/ca")]),
            (
                "node/n1/plan",
                &[("ca", "pki/ca"), ("cert", "pki/apiserver")],
            ),
        ],
        log,
    )
    .validate()
    .expect("valid")
}

#[test]
fn digests_are_pinned() {
    // These values change only if the digest encoding changes, which would
    // change every store path: update them (UPDATE_EXPECT=1) deliberately.
    let log = Arc::new(Log::default());
    let graph = spec_graph(&log);
    let digests: Vec<String> = graph
        .ids()
        .map(|id| format!("{id} {}", graph.digest(id).expect("digest")))
        .collect();
    expect![[r#"
        pki/ca e8f4c71d12cb2f4b197803909801b157064da6132911530aa2a33404275c6aad
        pki/apiserver 26d299bfd20680c59463be4f92d10f70c5eeee5c0f1c79d48b22a0c0c011c1c5
        node/n1/plan cd84070aad608dde190a01cf8380ef82020450122a1adbf11a2181deb461c90f"#]]
    .assert_eq(&digests.join("\n"));
}

#[test]
fn queries_report_inputs_and_dependents() {
    let log = Arc::new(Log::default());
    let graph = spec_graph(&log);
    let ca = DrvId::from("pki/ca");
    let dependents: Vec<&DrvId> = graph.dependents(&ca).collect();
    assert_eq!(
        dependents,
        [&DrvId::from("pki/apiserver"), &DrvId::from("node/n1/plan")]
    );
    let inputs: Vec<(&str, &DrvId)> = graph.inputs(&"node/n1/plan".into()).collect();
    assert_eq!(
        inputs,
        [("ca", &ca), ("cert", &DrvId::from("pki/apiserver"))]
    );
    assert_eq!(graph.dependents(&"unknown".into()).count(), 0);
    assert_eq!(graph.digest(&"unknown".into()), None);
    assert_eq!(
        graph.derivation(&ca).map(|d| d.name.as_str()),
        Some("pki-ca")
    );
    assert!(graph.contains(&ca));
    assert_eq!(graph.len(), 3);
}

#[test]
fn dot_output_is_golden() {
    let log = Arc::new(Log::default());
    expect_test::expect_file!["golden/spec_graph.dot"].assert_eq(&spec_graph(&log).to_dot());
    // Ids are quoted: they may hold any character, unlike store names.
    let mut graph = Graph::new();
    let mut derivation = concat_derivation("plain", &[], Behavior::Concat, &log);
    derivation.name = "plain".to_owned();
    graph.add("say \"hi\"\\", derivation).expect("add");
    expect![[r#"
        digraph kiln {
            rankdir=LR;
            node [shape=box];
            "say \"hi\"\\" [label="say \"hi\"\\"];
        }
    "#]]
    .assert_eq(&graph.validate().expect("valid").to_dot());
}

#[test]
fn fixed_output_digests_ignore_the_recipe() {
    let log = Arc::new(Log::default());
    let content_hash = Digest::of(b"pretend tree hash");
    let digests = |params: &str, version: u32| {
        let mut builder = TestBuilder::new(params, Behavior::Concat, &log);
        builder.version = version;
        let mut graph = Graph::new();
        graph
            .add(
                "download",
                kiln_graph::Derivation::new("image.raw", Arc::new(builder)).fixed(content_hash),
            )
            .expect("add");
        graph
            .add(
                "user",
                concat_derivation("user", &[("image", "download")], Behavior::Concat, &log),
            )
            .expect("add");
        let graph = graph.validate().expect("valid");
        assert!(matches!(
            graph.derivation(&"download".into()).map(|d| d.addressing),
            Some(Addressing::Fixed { .. })
        ));
        (
            graph.digest(&"download".into()).expect("digest"),
            graph.digest(&"user".into()).expect("digest"),
        )
    };
    let original = digests("https://mirror-a/image", 1);
    assert_eq!(digests("https://mirror-b/image", 1), original);
    assert_eq!(digests("https://mirror-a/image", 2), original);
}

#[test]
fn a_recipe_changes_every_input_addressed_digest_and_no_fixed_one() {
    let log = Arc::new(Log::default());
    let content_hash = Digest::of(b"pretend tree hash");
    let digests = |mut graph: Graph| {
        let builder = TestBuilder::new("fetch", Behavior::Concat, &log);
        graph
            .add(
                "download",
                kiln_graph::Derivation::new("image.raw", Arc::new(builder)).fixed(content_hash),
            )
            .expect("add");
        graph
            .add(
                "root",
                concat_derivation("root", &[], Behavior::Concat, &log),
            )
            .expect("add");
        graph
            .add(
                "user",
                concat_derivation(
                    "user",
                    &[("image", "download"), ("root", "root")],
                    Behavior::Concat,
                    &log,
                ),
            )
            .expect("add");
        let graph = graph.validate().expect("valid");
        ["download", "root", "user"].map(|id| graph.digest(&id.into()).expect("digest"))
    };
    let plain = digests(Graph::new());
    let first = digests(Graph::with_recipe(Digest::of(b"renderers, version 1")));
    let second = digests(Graph::with_recipe(Digest::of(b"renderers, version 2")));
    assert_eq!(
        first,
        digests(Graph::with_recipe(Digest::of(b"renderers, version 1")))
    );
    // The fixed output is addressed by its content alone.
    assert_eq!(plain[0], first[0]);
    assert_eq!(first[0], second[0]);
    // Every input-addressed derivation moves with the recipe, and none equals the plain one.
    for index in 1..3 {
        assert_ne!(plain[index], first[index]);
        assert_ne!(first[index], second[index]);
    }
}

#[test]
fn a_derivation_ignoring_the_recipe_keeps_its_digest_across_recipes() {
    let log = Arc::new(Log::default());
    let digests = |mut graph: Graph| {
        graph
            .add(
                "compile",
                concat_derivation("compile", &[], Behavior::Concat, &log).ignoring_recipe(),
            )
            .expect("add");
        graph
            .add(
                "user",
                concat_derivation("user", &[("compile", "compile")], Behavior::Concat, &log),
            )
            .expect("add");
        let graph = graph.validate().expect("valid");
        ["compile", "user"].map(|id| graph.digest(&id.into()).expect("digest"))
    };
    let plain = digests(Graph::new());
    let first = digests(Graph::with_recipe(Digest::of(b"renderers, version 1")));
    let second = digests(Graph::with_recipe(Digest::of(b"renderers, version 2")));
    // The compile is the same with any recipe and without one; what uses it still moves.
    assert_eq!(plain[0], first[0]);
    assert_eq!(first[0], second[0]);
    assert_ne!(first[1], second[1]);
    assert_ne!(plain[1], first[1]);
}

/// A random DAG: node `j` takes node `i < j` as an input where `edges[j][i]`.
#[derive(Debug, Clone)]
struct RandomDag {
    edges: Vec<Vec<bool>>,
    insertion_order: Vec<usize>,
    changed: usize,
}

fn random_dag() -> impl Strategy<Value = RandomDag> {
    (1usize..14).prop_flat_map(|size| {
        (
            proptest::collection::vec(
                proptest::collection::vec(proptest::bool::weighted(0.3), size),
                size,
            ),
            Just((0..size).collect::<Vec<_>>()).prop_shuffle(),
            0..size,
        )
            .prop_map(|(edges, insertion_order, changed)| RandomDag {
                edges,
                insertion_order,
                changed,
            })
    })
}

impl RandomDag {
    fn id(index: usize) -> String {
        format!("n{index:02}")
    }

    fn inputs(&self, node: usize) -> impl Iterator<Item = usize> + '_ {
        (0..node).filter(move |&input| self.edges[node][input])
    }

    /// Builds the graph, inserting nodes in `insertion_order`; the node
    /// `changed_params` (if any) gets different params.
    fn graph(&self, changed_params: Option<usize>) -> ValidatedGraph {
        let log = Arc::new(Log::default());
        let mut graph = Graph::new();
        for &node in &self.insertion_order {
            let id = Self::id(node);
            let params = if changed_params == Some(node) {
                format!("{id} changed")
            } else {
                id.clone()
            };
            let mut derivation = kiln_graph::Derivation::new(
                id.clone(),
                Arc::new(TestBuilder::new(&params, Behavior::Concat, &log)),
            );
            for input in self.inputs(node) {
                derivation = derivation.input(format!("in{input}"), Self::id(input));
            }
            graph.add(id, derivation).expect("add");
        }
        graph.validate().expect("a random DAG is acyclic")
    }

    /// The oracle: `changed` and everything that reaches it through inputs.
    fn affected(&self) -> BTreeSet<String> {
        let mut affected = BTreeSet::from([self.changed]);
        // Node indices are a topological order, so one forward pass suffices.
        for node in 0..self.edges.len() {
            if self.inputs(node).any(|input| affected.contains(&input)) {
                affected.insert(node);
            }
        }
        affected.into_iter().map(Self::id).collect()
    }
}

proptest! {
    #[test]
    fn digests_are_independent_of_insertion_order(dag in random_dag()) {
        let shuffled = dag.graph(None);
        let mut sorted_dag = dag.clone();
        sorted_dag.insertion_order.sort_unstable();
        let sorted = sorted_dag.graph(None);
        let ids: Vec<&DrvId> = shuffled.ids().collect();
        prop_assert_eq!(&ids, &sorted.ids().collect::<Vec<_>>());
        for id in ids {
            prop_assert_eq!(shuffled.digest(id), sorted.digest(id));
        }
    }

    #[test]
    fn a_change_invalidates_exactly_its_dependents(dag in random_dag()) {
        let before = dag.graph(None);
        let after = dag.graph(Some(dag.changed));
        let changed: BTreeSet<String> = before
            .ids()
            .filter(|id| before.digest(id) != after.digest(id))
            .map(DrvId::to_string)
            .collect();
        prop_assert_eq!(changed, dag.affected());
    }

    #[test]
    fn topological_order_puts_inputs_first(dag in random_dag()) {
        let graph = dag.graph(None);
        let position: std::collections::BTreeMap<&DrvId, usize> =
            graph.ids().enumerate().map(|(i, id)| (id, i)).collect();
        for id in graph.ids() {
            for (_, input) in graph.inputs(id) {
                prop_assert!(position[input] < position[id]);
            }
        }
    }
}

#[test]
fn the_random_dag_generator_makes_varied_graphs() {
    // The properties above are only as good as the graphs they see: check
    // that the generator yields edges, chains and several nodes.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut with_edges, mut deep, mut sizes) = (0, 0, BTreeSet::new());
    for _ in 0..200 {
        let dag = random_dag().new_tree(&mut runner).expect("tree").current();
        sizes.insert(dag.edges.len());
        let edges = (0..dag.edges.len())
            .map(|n| dag.inputs(n).count())
            .sum::<usize>();
        if edges > 0 {
            with_edges += 1;
        }
        if dag.affected().len() >= 3 {
            deep += 1;
        }
    }
    assert!(with_edges > 100, "{with_edges} graphs with edges");
    assert!(
        deep > 20,
        "{deep} graphs where a change reaches 3 or more nodes"
    );
    assert!(sizes.len() > 8, "sizes {sizes:?}");
}
