//! Graphs of derivations: the unvalidated `Graph` an author assembles, and
//! the `ValidatedGraph` (acyclic, complete, with digests) that can be evaluated.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;

use kiln_store::{Digest, DigestBuilder, Store, StoreError, validate_name};
use petgraph::graph::{DiGraph, NodeIndex};

use crate::derivation::{Addressing, Derivation, DrvId};
use crate::error::{GraphError, MissingInput};
use crate::parallel::{map_chunks, threads_for};

/// A set of derivations keyed by id, not yet checked for missing inputs or
/// cycles. [`Graph::validate`] turns it into a [`ValidatedGraph`], the only
/// kind that can be evaluated.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    derivations: BTreeMap<DrvId, Derivation>,
    recipe: Option<Digest>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// An empty graph whose builders' code is identified by `recipe` (for example a hash of the
    /// source of the crates that implement them). The recipe is part of every input-addressed
    /// derivation's digest, so changing a builder's code gives new store paths instead of
    /// reusing outputs the old code wrote. Fixed-output derivations do not depend on it: they
    /// are addressed by their content.
    pub fn with_recipe(recipe: Digest) -> Graph {
        Graph {
            derivations: BTreeMap::new(),
            recipe: Some(recipe),
        }
    }

    /// Adds a derivation under `id`.
    ///
    /// # Errors
    ///
    /// If `id` is already present, or the derivation's name is not a valid
    /// store name.
    pub fn add(&mut self, id: impl Into<DrvId>, derivation: Derivation) -> Result<(), GraphError> {
        let id = id.into();
        if let Err(error) = validate_name(&derivation.name) {
            let reason = match error {
                StoreError::InvalidName { reason, .. } => reason,
                other => other.to_string(),
            };
            return Err(GraphError::InvalidName {
                id,
                name: derivation.name,
                reason: format!(
                    "{reason} (names are 1 to 200 characters from A-Z a-z 0-9 + - . _ ? = and do not start with '.')"
                ),
            });
        }
        if self.derivations.contains_key(&id) {
            return Err(GraphError::DuplicateId { id });
        }
        self.derivations.insert(id, derivation);
        Ok(())
    }

    /// The number of derivations.
    pub fn len(&self) -> usize {
        self.derivations.len()
    }

    /// Whether the graph has no derivations.
    pub fn is_empty(&self) -> bool {
        self.derivations.is_empty()
    }

    /// Checks that every input exists and that there are no cycles, orders
    /// the derivations topologically and computes every digest.
    ///
    /// # Errors
    ///
    /// [`GraphError::MissingInputs`] listing every dangling input, or
    /// [`GraphError::Cycle`] naming the ids along one cycle.
    pub fn validate(self) -> Result<ValidatedGraph, GraphError> {
        // Positions in id order; petgraph's node indices are the same numbers.
        let recipe = self.recipe;
        let sorted: Vec<(DrvId, Derivation)> = self.derivations.into_iter().collect();
        let position = |id: &DrvId| sorted.binary_search_by(|(key, _)| key.cmp(id)).ok();

        let mut missing = Vec::new();
        let mut graph = DiGraph::<(), ()>::with_capacity(sorted.len(), sorted.len());
        for _ in &sorted {
            graph.add_node(());
        }
        for (from, (id, derivation)) in sorted.iter().enumerate() {
            for (input, target) in &derivation.inputs {
                match position(target) {
                    Some(to) => {
                        graph.add_edge(NodeIndex::new(from), NodeIndex::new(to), ());
                    }
                    None => missing.push(MissingInput {
                        id: id.clone(),
                        input: input.clone(),
                        missing: target.clone(),
                    }),
                }
            }
        }
        if !missing.is_empty() {
            return Err(GraphError::MissingInputs { missing });
        }
        if let Some(cycle) = find_cycle(&graph) {
            return Err(GraphError::Cycle {
                cycle: cycle.into_iter().map(|i| sorted[i].0.clone()).collect(),
            });
        }

        // Kahn's algorithm, always taking the smallest id that is ready, so
        // the order depends only on the graph.
        let mut waiting: Vec<usize> = sorted.iter().map(|(_, d)| d.inputs.len()).collect();
        let mut dependents_by_position: Vec<Vec<usize>> = vec![Vec::new(); sorted.len()];
        for (from, (_, derivation)) in sorted.iter().enumerate() {
            for target in derivation.inputs.values() {
                if let Some(to) = position(target) {
                    dependents_by_position[to].push(from);
                }
            }
        }
        let mut ready: BinaryHeap<Reverse<usize>> = waiting
            .iter()
            .enumerate()
            .filter(|(_, count)| **count == 0)
            .map(|(i, _)| Reverse(i))
            .collect();
        let mut order = Vec::with_capacity(sorted.len());
        while let Some(Reverse(next)) = ready.pop() {
            order.push(next);
            for &dependent in &dependents_by_position[next] {
                waiting[dependent] -= 1;
                if waiting[dependent] == 0 {
                    ready.push(Reverse(dependent));
                }
            }
        }
        debug_assert_eq!(order.len(), sorted.len(), "cycles were ruled out above");

        let mut topological_of_position = vec![0; sorted.len()];
        for (topological, &position) in order.iter().enumerate() {
            topological_of_position[position] = topological;
        }
        // Everything of each digest but the inputs' digests (the builders' parameters, most of
        // the work), on every core; the chain through the inputs follows in order.
        let mut starts = digest_starts(&sorted, recipe.as_ref())
            .into_iter()
            .map(Some)
            .collect::<Vec<_>>();
        let mut slots: Vec<Option<(DrvId, Derivation)>> = sorted.into_iter().map(Some).collect();
        let mut nodes: Vec<Node> = Vec::with_capacity(order.len());
        let mut index = BTreeMap::new();
        for (topological, &position) in order.iter().enumerate() {
            let Some((id, derivation)) = slots[position].take() else {
                unreachable!("each position appears once in a topological order");
            };
            let inputs: Vec<(String, usize)> = derivation
                .inputs
                .iter()
                .map(|(name, target)| {
                    let target = index.get(target).copied().unwrap_or_else(|| {
                        unreachable!("inputs come before their dependents in topological order")
                    });
                    (name.clone(), target)
                })
                .collect();
            let Some(start) = starts[position].take() else {
                unreachable!("each position appears once in a topological order");
            };
            let digest = start.finish(&inputs, &nodes);
            let mut dependents: Vec<usize> = dependents_by_position[position]
                .iter()
                .map(|&dependent| topological_of_position[dependent])
                .collect();
            dependents.sort_unstable();
            dependents.dedup();
            index.insert(id.clone(), topological);
            nodes.push(Node {
                id,
                derivation,
                digest,
                inputs,
                dependents,
            });
        }
        Ok(ValidatedGraph { nodes, index })
    }
}

/// A derivation's digest but for its inputs' digests: the whole digest of a fixed-output
/// derivation, else the encoder fed everything up to its inputs.
enum DigestStart {
    Whole(Digest),
    Before(DigestBuilder),
}

impl DigestStart {
    /// The part of `derivation`'s digest that does not depend on its inputs.
    fn of(derivation: &Derivation, recipe: Option<&Digest>) -> DigestStart {
        match derivation.addressing {
            Addressing::Fixed { content_hash } => DigestStart::Whole(
                DigestBuilder::new("kiln-fixed-output-v1")
                    .str(&derivation.name)
                    .digest(&content_hash)
                    .finish(),
            ),
            Addressing::Inputs => {
                let builder = &derivation.builder;
                // Graphs with a recipe hash in their own domain, so no v1 encoding can collide.
                let recipe = recipe.filter(|_| !derivation.ignores_recipe);
                let digest = match recipe {
                    Some(recipe) => DigestBuilder::new("kiln-derivation-v2").digest(recipe),
                    None => DigestBuilder::new("kiln-derivation-v1"),
                };
                DigestStart::Before(
                    digest
                        .str(builder.kind())
                        .u64(u64::from(builder.version()))
                        .str(&derivation.name)
                        .bytes(builder.params().as_bytes())
                        .u64(derivation.inputs.len() as u64),
                )
            }
        }
    }

    /// The digest, given the inputs (sorted by name, as they come from a `BTreeMap`) and the
    /// nodes that hold their digests.
    fn finish(self, inputs: &[(String, usize)], nodes: &[Node]) -> Digest {
        match self {
            DigestStart::Whole(digest) => digest,
            DigestStart::Before(mut digest) => {
                for (name, target) in inputs {
                    digest = digest.str(name).digest(&nodes[*target].digest);
                }
                digest.finish()
            }
        }
    }
}

/// [`DigestStart::of`] every derivation, on up to as many threads as there are cores.
fn digest_starts(sorted: &[(DrvId, Derivation)], recipe: Option<&Digest>) -> Vec<DigestStart> {
    // Below this many per thread, starting threads costs more than it saves.
    const MIN_PER_THREAD: usize = 256;
    let jobs = std::thread::available_parallelism().map_or(1, usize::from);
    let threads = threads_for(sorted.len(), jobs, MIN_PER_THREAD);
    map_chunks(sorted, threads, |chunk| {
        chunk
            .iter()
            .map(|(_, derivation)| DigestStart::of(derivation, recipe))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect()
}

/// Finds one cycle deterministically: in the strongly connected component
/// holding the smallest node on any cycle, the shortest path from that node
/// back to itself, preferring smaller nodes at each step.
fn find_cycle(graph: &DiGraph<(), ()>) -> Option<Vec<usize>> {
    let start = petgraph::algo::tarjan_scc(graph)
        .into_iter()
        .filter(|component| component.len() > 1 || graph.contains_edge(component[0], component[0]))
        .filter_map(|component| component.into_iter().min())
        .min()?;
    if graph.contains_edge(start, start) {
        return Some(vec![start.index(), start.index()]);
    }
    // Breadth-first search from `start`, recording each node's predecessor.
    let mut previous: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        let mut next: Vec<NodeIndex> = graph.neighbors(node).collect();
        next.sort_unstable();
        next.dedup();
        for neighbor in next {
            if neighbor == start {
                let mut path = vec![node.index()];
                let mut at = node;
                while at != start {
                    at = previous[&at];
                    path.push(at.index());
                }
                path.reverse();
                path.push(start.index());
                return Some(path);
            }
            if let std::collections::btree_map::Entry::Vacant(entry) = previous.entry(neighbor) {
                entry.insert(node);
                queue.push_back(neighbor);
            }
        }
    }
    None
}

/// One derivation of a validated graph, at its topological position.
pub(crate) struct Node {
    pub(crate) id: DrvId,
    pub(crate) derivation: Derivation,
    pub(crate) digest: Digest,
    /// Input names with the topological positions of their derivations, sorted by name.
    pub(crate) inputs: Vec<(String, usize)>,
    /// Topological positions of the derivations that take this one as an input.
    pub(crate) dependents: Vec<usize>,
}

/// A graph with no missing inputs and no cycles, in topological order, with
/// every derivation's digest computed. Only this type can be evaluated.
pub struct ValidatedGraph {
    pub(crate) nodes: Vec<Node>,
    index: BTreeMap<DrvId, usize>,
}

impl ValidatedGraph {
    /// The number of derivations.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether there are no derivations.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// All ids in topological order (inputs first), ties broken by id.
    pub fn ids(&self) -> impl Iterator<Item = &DrvId> {
        self.nodes.iter().map(|node| &node.id)
    }

    /// Whether the graph has a derivation with this id.
    pub fn contains(&self, id: &DrvId) -> bool {
        self.index.contains_key(id)
    }

    /// The digest (store address) of a derivation.
    pub fn digest(&self, id: &DrvId) -> Option<Digest> {
        self.node(id).map(|node| node.digest)
    }

    /// A derivation by id.
    pub fn derivation(&self, id: &DrvId) -> Option<&Derivation> {
        self.node(id).map(|node| &node.derivation)
    }

    /// Where a derivation's output is (or would be) in `store`.
    pub fn store_path(&self, store: &Store, id: &DrvId) -> Option<PathBuf> {
        self.node(id)
            .map(|node| store.path_of(&node.digest, &node.derivation.name))
    }

    /// A derivation's inputs, as (input name, id) sorted by input name;
    /// empty for an unknown id.
    pub fn inputs(&self, id: &DrvId) -> impl Iterator<Item = (&str, &DrvId)> {
        self.node(id)
            .into_iter()
            .flat_map(|node| node.inputs.iter())
            .map(|(name, target)| (name.as_str(), &self.nodes[*target].id))
    }

    /// The derivations whose outputs hold, or may hold, secret material: those whose builder
    /// says so ([`Builder::holds_secrets`](crate::Builder::holds_secrets)) and every derivation
    /// built from one of them, directly or not (a builder may copy any input into its output).
    /// Decided from the graph alone, before anything is built.
    pub fn secret_ids(&self) -> BTreeSet<&DrvId> {
        let mut secret = vec![false; self.nodes.len()];
        for (position, node) in self.nodes.iter().enumerate() {
            secret[position] = node.derivation.builder.holds_secrets()
                || node.inputs.iter().any(|(_, input)| secret[*input]);
        }
        self.nodes
            .iter()
            .zip(secret)
            .filter(|(_, secret)| *secret)
            .map(|(node, _)| &node.id)
            .collect()
    }

    /// The derivations that take `id` as an input, in topological order;
    /// empty for an unknown id.
    pub fn dependents(&self, id: &DrvId) -> impl Iterator<Item = &DrvId> {
        self.node(id)
            .into_iter()
            .flat_map(|node| node.dependents.iter())
            .map(|dependent| &self.nodes[*dependent].id)
    }

    /// The graph in Graphviz dot: nodes labelled with their ids, edges from
    /// each input to its dependent labelled with the input's name. The text
    /// depends only on the graph.
    pub fn to_dot(&self) -> String {
        let mut dot = String::from("digraph kiln {\n    rankdir=LR;\n    node [shape=box];\n");
        let mut sorted: Vec<&Node> = self.nodes.iter().collect();
        sorted.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        for node in &sorted {
            let id = quote(node.id.as_str());
            let _ = writeln!(dot, "    {id} [label={id}];");
        }
        for node in &sorted {
            for (name, target) in &node.inputs {
                let _ = writeln!(
                    dot,
                    "    {} -> {} [label={}];",
                    quote(self.nodes[*target].id.as_str()),
                    quote(node.id.as_str()),
                    quote(name)
                );
            }
        }
        dot.push_str("}\n");
        dot
    }

    fn node(&self, id: &DrvId) -> Option<&Node> {
        self.index.get(id).map(|&index| &self.nodes[index])
    }
}

impl std::fmt::Debug for ValidatedGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.nodes.iter().map(|node| (&node.id, node.digest)))
            .finish()
    }
}

/// A dot string literal.
fn quote(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                quoted.push('\\');
                quoted.push(c);
            }
            '\n' => quoted.push_str("\\n"),
            _ => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}
