//! The bootstrap token's derivations, with `options.kubelet_credentials = "bootstrap-token"`:
//! the operator's `cluster/bootstrap-token` (the token's Secret, kubeadm's bindings and
//! `cluster-info`, to apply once the API is up) and `node/<name>/bootstrap` on every node whose
//! kubelet joins with the token ([`Plan::kubelet_bootstraps`]: its `bootstrap-kubelet.conf`).
//!
//! The token derives from the root secret at the PKI's leaf `generation`, so moving
//! `pki.generation` on replaces it with every leaf certificate. Both derivations take the
//! cluster CA's certificate as their one input; their parameters carry the root secret's public
//! id, never the token.

use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, Params};
use kiln_spec::{ClusterPlan, OptionsPlan, Plan};
use serde::Serialize;

use crate::rendered::{File, write_files};
use crate::{Artifacts, CERTIFICATE_FILE, ClusterError, PkiDerivations};

/// The file of `cluster/bootstrap-token`: the objects the operator applies (mode 0600, it holds
/// the token).
pub const BOOTSTRAP_TOKEN_FILE: &str = kiln_spec::paths::BOOTSTRAP_TOKEN_OBJECTS;

/// What both derivations' outputs depend on besides the CA certificate (their input).
#[derive(Serialize)]
struct TokenParams<'a> {
    /// `"objects"` or the joining node's name.
    what: &'a str,
    cluster: &'a ClusterPlan,
    options: &'a OptionsPlan,
    generation: u32,
    expires: Option<i64>,
    /// The public id of the root secret the token derives from.
    root_secret_id: String,
}

/// Writes the operator's objects (`node: None`) or one node's `bootstrap-kubelet.conf`.
struct TokenBuilder {
    plan: Arc<Plan>,
    root: Arc<kiln_pki::RootSecret>,
    node: Option<String>,
    params: Params,
}

impl Builder for TokenBuilder {
    fn holds_secrets(&self) -> bool {
        // The token, derived from the root secret.
        true
    }

    fn kind(&self) -> &str {
        match self.node {
            None => "kiln-manifests.bootstrap-token",
            Some(_) => "kiln-kubeconfig.bootstrap-kubelet",
        }
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        self.params.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let path = ctx.input("ca")?.join(CERTIFICATE_FILE);
        let ca_pem =
            std::fs::read_to_string(&path).map_err(|error| BuildError::io(&path, error))?;
        let token = self.root.derive_bootstrap_token(self.plan.pki.generation);
        let file = match &self.node {
            None => {
                let objects = kiln_manifests::bootstrap_objects(
                    &self.plan,
                    token.id(),
                    token.secret(),
                    &ca_pem,
                )
                .ok_or_else(|| {
                    BuildError::new("the plan's kubelets do not join with a bootstrap token")
                })?;
                File {
                    path: BOOTSTRAP_TOKEN_FILE.to_owned(),
                    contents: objects
                        .to_yaml()
                        .map_err(BuildError::from_error)?
                        .into_bytes(),
                    mode: 0o600,
                }
            }
            Some(_) => {
                kiln_kubeconfig::render_bootstrap_kubelet(&self.plan, &ca_pem, &token.token())
                    .map_err(BuildError::from_error)?
            }
        };
        write_files(ctx.out(), &[file])
    }
}

/// Adds `cluster/bootstrap-token` and each joining node's `node/<name>/bootstrap`, when the
/// plan's kubelets join with a bootstrap token; nothing otherwise.
pub(crate) fn add_bootstrap(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Arc<Plan>,
    root: &Arc<kiln_pki::RootSecret>,
    pki: &PkiDerivations,
) -> Result<(), ClusterError> {
    if plan.options.kubelet_credentials != kiln_spec::KubeletCredentials::BootstrapToken {
        return Ok(());
    }
    let ca = pki.get("ca").ok_or_else(|| ClusterError::Assembly {
        what: "the bootstrap token".to_owned(),
        message: "the PKI has no certificate called ca".to_owned(),
    })?;
    let derivation = |node: Option<&str>, name: String| {
        let params = Params::of(&TokenParams {
            what: node.unwrap_or("objects"),
            cluster: &plan.cluster,
            options: &plan.options,
            generation: plan.pki.generation,
            expires: plan.pki.bootstrap_token_expires,
            root_secret_id: root.id().to_string(),
        });
        let builder = TokenBuilder {
            plan: Arc::clone(plan),
            root: Arc::clone(root),
            node: node.map(str::to_owned),
            params,
        };
        Derivation::new(name, Arc::new(builder)).input("ca", ca.clone())
    };
    let id = DrvId::new("cluster/bootstrap-token");
    graph.add(
        id.clone(),
        derivation(None, format!("{}-bootstrap-token", plan.cluster.name)),
    )?;
    artifacts.cluster.insert("bootstrap-token".to_owned(), id);
    for node in plan
        .nodes
        .iter()
        .filter(|node| plan.kubelet_bootstraps(node))
    {
        let id = DrvId::new(format!("node/{}/bootstrap", node.name));
        graph.add(
            id.clone(),
            derivation(Some(&node.name), format!("{}-bootstrap", node.name)),
        )?;
        artifacts
            .nodes
            .entry(node.name.clone())
            .or_default()
            .insert("bootstrap".to_owned(), id);
    }
    Ok(())
}
