//! Each node's secret bundle: exactly the PKI files `kiln_pki::placement` gives the node, in
//! kubeadm's layout (`pki/ca.crt`, `pki/kubelet.key`, ...), keys mode 0600.
//!
//! The PKI derivations hold a certificate *and* its key; a node that needs only the CA's
//! certificate must never be handed the CA's derivation. This derivation copies the placed
//! files out of the PKI derivations, and it is the only PKI artifact a node has.

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, Params};
use kiln_pki::{FileSource, PlacedFile};
use kiln_spec::Plan;

use crate::{Artifacts, ClusterError, PkiDerivations};

struct NodePkiBuilder {
    /// (node-relative path, input name, file in the input, mode)
    files: Vec<(String, String, &'static str, u32)>,
}

fn describe(source: &FileSource) -> String {
    match source {
        FileSource::Certificate(name) => format!("certificate {name}"),
        FileSource::PrivateKey(name) => format!("key {name}"),
        FileSource::ServiceAccountPrivateKey => "service-account key".to_owned(),
        FileSource::ServiceAccountPublicKey => "service-account public key".to_owned(),
    }
}

impl Builder for NodePkiBuilder {
    fn holds_secrets(&self) -> bool {
        // The node's private keys.
        true
    }

    fn kind(&self) -> &str {
        "kiln-cluster.node-pki"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        // (on-node path, input, file in the input, mode) per file.
        Params::of(&self.files)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let mut dirs = crate::rendered::Dirs::default();
        for (path, input, file, mode) in &self.files {
            let from = ctx.input(input)?.join(file);
            let to = ctx.out().join(path);
            if let Some(dir) = to.parent() {
                dirs.create(dir)?;
            }
            std::fs::copy(&from, &to).map_err(|error| BuildError::io(&from, error))?;
            // Read-only already, as the store's seal would make it.
            std::fs::set_permissions(
                &to,
                std::fs::Permissions::from_mode(crate::rendered::read_only(*mode)),
            )
            .map_err(|error| BuildError::io(&to, error))?;
        }
        Ok(())
    }
}

/// Adds `node/<name>/pki` for every node that receives PKI files.
pub(crate) fn add_node_pki(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Plan,
    pki: &PkiDerivations,
) -> Result<(), ClusterError> {
    for node in &plan.nodes {
        let placed: Vec<PlacedFile> = kiln_pki::placement(plan, node);
        if placed.is_empty() {
            continue;
        }
        let mut files = Vec::new();
        let mut inputs = Vec::new();
        for file in &placed {
            let (id, name) = pki
                .locate(&file.source)
                .ok_or_else(|| ClusterError::Assembly {
                    what: format!("{}'s PKI files", node.name),
                    message: format!("no derivation holds the {}", describe(&file.source)),
                })?;
            let input = file.source.certificate_name().to_owned();
            files.push((file.path.clone(), input.clone(), name, file.mode));
            inputs.push((input, id.clone()));
        }
        let mut derivation = Derivation::new(
            format!("{}-pki", node.name),
            Arc::new(NodePkiBuilder { files }),
        );
        inputs.sort();
        inputs.dedup();
        for (input, id) in inputs {
            derivation = derivation.input(input, id);
        }
        let id = DrvId::new(format!("node/{}/pki", node.name));
        graph.add(id.clone(), derivation)?;
        artifacts
            .nodes
            .entry(node.name.clone())
            .or_default()
            .insert("pki".to_owned(), id);
    }
    Ok(())
}
