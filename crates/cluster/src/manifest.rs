//! The build's manifest: every artifact with its store path, digest and content hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kiln_graph::{Evaluation, ValidatedGraph};
use kiln_spec::Plan;
use kiln_store::Digest;
use serde::{Deserialize, Serialize};

use crate::Artifacts;

/// One derivation's output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArtifactEntry {
    /// Where the output is.
    pub store_path: PathBuf,
    /// The derivation's digest (input addressed): the same spec gives the same digest.
    pub digest: Digest,
    /// The SHA-256 tree hash of the output's content.
    pub content_hash: Digest,
    /// Whether the output holds, or is built from, secret material (a private key, a token,
    /// the encryption key), as the graph says ([`ValidatedGraph::secret_ids`]): such an output
    /// never leaves the machine. A manifest written before kiln recorded this reads as
    /// `true` for every output.
    #[serde(default = "secret_unless_known")]
    pub secret: bool,
}

/// What [`ArtifactEntry::secret`] is when a manifest does not say: secret.
fn secret_unless_known() -> bool {
    true
}

/// What `cargo xtask build-cluster` writes to `manifest.json`, and what reads it back
/// (`cargo xtask run-vm`, `cargo xtask gc`) parses it as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// The cluster's name.
    pub cluster: String,
    /// Every derivation's output, by derivation id.
    pub artifacts: BTreeMap<String, ArtifactEntry>,
    /// Cluster-wide artifacts: artifact name to derivation id.
    pub cluster_artifacts: BTreeMap<String, String>,
    /// Per-node artifacts: node name to artifact name to derivation id.
    pub nodes: BTreeMap<String, BTreeMap<String, String>>,
}

impl Manifest {
    /// The manifest of an evaluated cluster graph.
    pub fn new(
        plan: &Plan,
        artifacts: &Artifacts,
        graph: &ValidatedGraph,
        evaluation: &Evaluation,
    ) -> Manifest {
        let secret = graph.secret_ids();
        let entries = evaluation
            .outputs
            .iter()
            .filter(|(id, _)| graph.contains(id))
            .map(|(id, object)| {
                (
                    id.to_string(),
                    ArtifactEntry {
                        store_path: object.path.clone(),
                        digest: object.digest,
                        content_hash: object.content_hash,
                        secret: secret.contains(id),
                    },
                )
            })
            .collect();
        let names = |map: &BTreeMap<String, kiln_graph::DrvId>| {
            map.iter()
                .map(|(name, id)| (name.clone(), id.to_string()))
                .collect()
        };
        Manifest {
            cluster: plan.cluster.name.clone(),
            artifacts: entries,
            cluster_artifacts: names(&artifacts.cluster),
            nodes: artifacts
                .nodes
                .iter()
                .map(|(node, map)| (node.clone(), names(map)))
                .collect(),
        }
    }

    /// The manifest as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// Parses a `manifest.json` that [`Manifest::to_json`] wrote.
    pub fn from_json(text: &str) -> Result<Manifest, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The output of node `node`'s artifact `name` (`image`, `units`, ...), if the node and
    /// the artifact exist and the manifest records its output.
    pub fn node_artifact(&self, node: &str, name: &str) -> Option<&ArtifactEntry> {
        let id = self.nodes.get(node)?.get(name)?;
        self.artifacts.get(id)
    }
}
