//! kiln-cluster: a cluster's derivation graph, from a [`Plan`] to artifacts in the store.
//!
//! [`cluster_graph`] turns a plan into a [`kiln_graph::Graph`] of derivations: the plan itself,
//! one view of the plan per node, and (as later crates plug in) the PKI, the rendered
//! configuration and the node images. Each derivation's parameters hold only what its output
//! depends on, so changing one node rebuilds only what that node's data reaches.
//! [`Manifest`] maps every artifact to its store path and content hash after evaluation.
//!
//! ```
//! use kiln_graph::{EvalOptions, NullObserver};
//!
//! let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples/two-node.toml"))?;
//! let plan = kiln_spec::load(&source, "two-node.toml")?.plan;
//! // Every key derives from the root secret; kiln's command line keeps it in the cluster's
//! // secrets directory, outside the store.
//! let inputs = kiln_cluster::ClusterInputs {
//!     root: std::sync::Arc::new(kiln_pki::RootSecret::from_bytes([7; 32])),
//!     external_cas: Default::default(),
//!     // What kiln's package set pairs with the spec's Kubernetes version (packages/).
//!     releases: kiln_spec::images::Releases {
//!         etcd: "3.6.16".into(),
//!         coredns: Some("1.15.0".into()),
//!     },
//! };
//! let cluster = kiln_cluster::cluster_graph(&plan, &inputs)?;
//! let graph = cluster.graph.validate()?;
//!
//! let dir = tempfile::tempdir()?;
//! let store = kiln_store::Store::open(&dir.path().join("store"))?;
//! let evaluation = graph.evaluate(&store, &EvalOptions::default(), &NullObserver)?;
//! let manifest = kiln_cluster::Manifest::new(&plan, &cluster.artifacts, &graph, &evaluation);
//! let node1 = &manifest.nodes["node1"];
//! let plan_file = manifest.artifacts[&node1["plan"]].store_path.join("node.json");
//! assert!(std::fs::read_to_string(plan_file)?.contains("\"name\": \"node1\""));
//! // node2 is a worker: it holds its own kubelet certificates, never the apiserver's.
//! let node2_pki = &manifest.artifacts[&manifest.nodes["node2"]["pki"]].store_path;
//! assert!(node2_pki.join("pki/kubelet.key").exists());
//! assert!(!node2_pki.join("pki/apiserver.key").exists());
//! assert!(!node2_pki.join("pki/ca.key").exists());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod bootstrap;
mod builders;
mod configs;
mod images;
mod manifest;
mod network;
mod node_pki;
mod pki;
mod rendered;
mod test_tools;

use std::collections::BTreeMap;
use std::sync::Arc;

use kiln_graph::{Derivation, DrvId, Graph, GraphError};
use kiln_spec::Plan;

pub use bootstrap::BOOTSTRAP_TOKEN_FILE;
pub use builders::{JsonView, NodeView};
pub use images::ImageInputs;
pub use manifest::{ArtifactEntry, Manifest};
pub use pki::{
    CERTIFICATE_FILE, ClusterPkiError, KEY_FILE, PkiDerivations, SERVICE_ACCOUNT_KEY_FILE,
    SERVICE_ACCOUNT_PUBLIC_FILE, add_pki, pki_drv_id, read_external_cas,
};
pub use test_tools::{
    BUSYBOX_SOURCE_ID, C_TOOLCHAIN_ID, CONFORMANCE_IMAGES_ARTIFACT, TEST_TOOLS_ARTIFACT,
    package_artifact,
};

/// What a cluster's graph needs besides its plan: the root secret every key derives from, and
/// the bytes of any bring-your-own CA files (see [`read_external_cas`]).
#[derive(Clone)]
pub struct ClusterInputs {
    /// The root secret. Derivations carry only its public id.
    pub root: Arc<kiln_pki::RootSecret>,
    /// External CAs, by CA.
    pub external_cas: BTreeMap<kiln_spec::CaName, kiln_pki::ExternalCa>,
    /// The releases the static pods' and add-ons' images are tagged with besides Kubernetes'
    /// own: kiln's package set's (see [`kiln_spec::images::Releases`]).
    pub releases: kiln_spec::images::Releases,
}

/// Which derivation holds each artifact: cluster-wide ones by name, and per node by node name
/// and artifact name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Artifacts {
    /// Cluster-wide artifacts, such as `plan`.
    pub cluster: BTreeMap<String, DrvId>,
    /// Per-node artifacts, such as `plan` or, with the PKI, `pki/kubelet-client`.
    pub nodes: BTreeMap<String, BTreeMap<String, DrvId>>,
}

/// A cluster's unvalidated graph and the map from artifacts to derivations.
#[derive(Debug, Clone)]
pub struct ClusterGraph {
    /// The derivations; validate it before evaluating.
    pub graph: Graph,
    /// Where each artifact comes from.
    pub artifacts: Artifacts,
    /// The releases its images are tagged with (from [`ClusterInputs::releases`]).
    pub releases: kiln_spec::images::Releases,
}

/// Why a cluster graph could not be assembled.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The graph rejected a derivation (a duplicate id: a bug in the assembly).
    #[error("assembling the cluster graph: {0}")]
    Graph(#[from] GraphError),
    /// The PKI could not be added.
    #[error(transparent)]
    Pki(#[from] ClusterPkiError),
    /// A part of the graph could not be assembled: the package set or lock describes an
    /// input kiln cannot build, or (a bug) the PKI lacks a certificate a file needs.
    #[error("assembling {what}: {message}")]
    Assembly {
        /// The part being assembled.
        what: String,
        /// Why it could not be.
        message: String,
    },
}

/// The recipe of every derivation this crate makes: a SHA-256, computed when kiln is built, of
/// the source of the crates whose code decides what the derivations write (spec, pki, the
/// renderers, this crate) and of Cargo.lock. Part of every input-addressed digest, so changed
/// code never reuses an output written by the old code.
pub const RECIPE: &str = env!("KILN_RECIPE");

/// [`RECIPE`] as a digest.
pub fn recipe() -> kiln_store::Digest {
    // build.rs writes 64 lowercase hex digits; anything else is a broken build script.
    RECIPE
        .parse()
        .unwrap_or_else(|_| kiln_store::Digest::of(RECIPE.as_bytes()))
}

impl ClusterGraph {
    /// Adds the node images: the shared inputs (`image/base-os`, `image/initrd`,
    /// `image/kubernetes-binaries`, `image/container-images`, and `image/component-images`
    /// when a node runs static pods), the shared layers (`image/layer/kubernetes`,
    /// `image/layer/images`, and one `image/layer/components/<a>+<b>...` per set of component
    /// images some node needs) and per node `node/<name>/layer` (the node's own files) and
    /// `node/<name>/image` (see [`kiln_image::os::node::ImageManifest`]).
    ///
    /// # Errors
    ///
    /// If the Kubernetes source cannot be described (a `path` source that cannot be hashed).
    pub fn with_images(
        mut self,
        plan: &Plan,
        inputs: &ImageInputs,
    ) -> Result<ClusterGraph, ClusterError> {
        images::add_images(
            &mut self.graph,
            &mut self.artifacts,
            plan,
            &self.releases,
            inputs,
        )?;
        Ok(self)
    }
}

/// The derivation graph of `plan`.
pub fn cluster_graph(plan: &Plan, inputs: &ClusterInputs) -> Result<ClusterGraph, ClusterError> {
    let mut graph = Graph::with_recipe(recipe());
    let mut artifacts = Artifacts::default();

    let cluster_plan = DrvId::new("cluster/plan");
    let view = JsonView::new("kiln-cluster.plan", "plan.json", plan);
    graph.add(
        cluster_plan.clone(),
        Derivation::new(format!("{}-plan", plan.cluster.name), Arc::new(view)),
    )?;
    artifacts.cluster.insert("plan".to_owned(), cluster_plan);

    for node in &plan.nodes {
        let id = DrvId::new(format!("node/{}/plan", node.name));
        let view = JsonView::new(
            "kiln-cluster.node-plan",
            "node.json",
            &NodeView {
                cluster: &plan.cluster,
                options: &plan.options,
                node,
            },
        );
        graph.add(
            id.clone(),
            Derivation::new(format!("{}-plan", node.name), Arc::new(view)),
        )?;
        artifacts
            .nodes
            .entry(node.name.clone())
            .or_default()
            .insert("plan".to_owned(), id);
    }

    let shared_plan = Arc::new(plan.clone());
    network::add_network(&mut graph, &mut artifacts, &shared_plan)?;
    configs::add_units(&mut graph, &mut artifacts, &shared_plan)?;
    configs::add_manifests(
        &mut graph,
        &mut artifacts,
        &shared_plan,
        &inputs.root,
        &inputs.releases,
    )?;

    // The operator's output holds every certificate and key; a node's `pki` artifact holds
    // only the files kiln_pki::placement gives that node.
    let pki = add_pki(&mut graph, plan, &inputs.root, &inputs.external_cas)?;
    for (name, id) in &pki.by_name {
        artifacts.cluster.insert(format!("pki/{name}"), id.clone());
    }
    configs::add_kubeconfigs(&mut graph, &mut artifacts, &shared_plan, &pki)?;
    node_pki::add_node_pki(&mut graph, &mut artifacts, plan, &pki)?;
    bootstrap::add_bootstrap(&mut graph, &mut artifacts, &shared_plan, &inputs.root, &pki)?;
    Ok(ClusterGraph {
        graph,
        artifacts,
        releases: inputs.releases.clone(),
    })
}
