//! Each node's systemd units (kiln-units) and kubeconfigs (kiln-kubeconfig) as derivations,
//! and the operator's kubeconfigs.
//!
//! Units are rendered from the plan; their parameters are what kiln-units reads: the
//! cluster-wide plan, the options, whether the controller manager signs CSRs, the node, and the
//! node's pod subnet (its pod NAT rule masquerades what leaves it).
//! Kubeconfigs take the PKI derivations of exactly the certificates they carry as inputs, so
//! a node's kubeconfigs never depend on another node's certificates.

use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, Params};
use kiln_kubeconfig::{Credentials, KubeconfigKind};
use kiln_spec::images::Releases;
use kiln_spec::{ClusterPlan, KubeconfigCertificates, NodePlan, OptionsPlan, Plan};
use serde::Serialize;

use crate::rendered::{File, NodeRenderer, write_files};
use crate::{Artifacts, CERTIFICATE_FILE, ClusterError, KEY_FILE, PkiDerivations};

/// The part of a node that kiln-units and kiln-manifests read: its name, roles and addresses
/// (not its gateway, DNS or pod subnet).
#[derive(Serialize)]
struct NodeAddressing<'a> {
    name: &'a str,
    roles: &'a std::collections::BTreeSet<kiln_spec::Role>,
    addresses: &'a [ipnet::Ipv4Net],
}

impl<'a> NodeAddressing<'a> {
    fn of(node: &'a NodePlan) -> Self {
        NodeAddressing {
            name: &node.name,
            roles: &node.roles,
            addresses: &node.addresses,
        }
    }
}

#[derive(Serialize)]
struct UnitParams<'a> {
    cluster: &'a ClusterPlan,
    options: &'a OptionsPlan,
    controller_manager_signs_csrs: bool,
    node: NodeAddressing<'a>,
    /// The source of the node's pod NAT rule (`kiln-pod-nat.service`).
    pod_subnet: Option<ipnet::Ipv4Net>,
}

/// The part of a node that kiln-kubeconfig reads: its name and roles.
#[derive(Serialize)]
struct KubeconfigNode<'a> {
    name: &'a str,
    roles: &'a std::collections::BTreeSet<kiln_spec::Role>,
}

/// Adds `node/<name>/units` for every node.
pub(crate) fn add_units(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Arc<Plan>,
) -> Result<(), ClusterError> {
    let renderer = NodeRenderer::new("units", "kiln-units.node", kiln_units::render_node);
    for node in &plan.nodes {
        let params = Params::of(&UnitParams {
            cluster: &plan.cluster,
            options: &plan.options,
            controller_manager_signs_csrs: plan.pki.controller_manager_signs_csrs,
            node: NodeAddressing::of(node),
            pod_subnet: node.pod_subnet,
        });
        renderer.add(graph, artifacts, plan, &node.name, params)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct ManifestParams<'a> {
    cluster: &'a ClusterPlan,
    options: &'a OptionsPlan,
    node: NodeAddressing<'a>,
    /// The public id of the root secret the encryption key derives from (never the key).
    root_secret_id: String,
    releases: &'a Releases,
}

/// The purpose string of the encryption-at-rest key derived from the root secret.
const ENCRYPTION_KEY_PURPOSE: &str = "encryption-at-rest";

/// Adds `node/<name>/manifests` for every node: static pods, component configuration, the
/// encryption configuration (its key derived from the root secret), the audit policy and the
/// bootstrap add-ons.
pub(crate) fn add_manifests(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Arc<Plan>,
    root: &Arc<kiln_pki::RootSecret>,
    releases: &Releases,
) -> Result<(), ClusterError> {
    let secret = Arc::clone(root);
    let image_releases = releases.clone();
    let renderer = NodeRenderer::from_fn(
        "manifests",
        "kiln-manifests.node",
        Arc::new(move |plan: &Plan, node: &NodePlan| {
            let key = |generation| secret.derive_symmetric_key(ENCRYPTION_KEY_PURPOSE, generation);
            kiln_manifests::render_node(plan, node, &key, &image_releases)
                .map_err(|error| error.to_string())
        }),
    )
    // The encryption configuration's key.
    .holding_secrets();
    let root_secret_id = root.id().to_string();
    for node in &plan.nodes {
        let params = Params::of(&ManifestParams {
            cluster: &plan.cluster,
            options: &plan.options,
            node: NodeAddressing::of(node),
            root_secret_id: root_secret_id.clone(),
            releases,
        });
        renderer.add(graph, artifacts, plan, &node.name, params)?;
    }
    Ok(())
}

#[derive(Serialize)]
struct KubeconfigParams<'a> {
    cluster: &'a ClusterPlan,
    options: &'a OptionsPlan,
    node: Option<KubeconfigNode<'a>>,
    files: Vec<String>,
}

/// Writes the kubeconfigs of `kinds`, reading certificates from the derivation's inputs.
struct KubeconfigBuilder {
    plan: Arc<Plan>,
    kinds: Vec<KubeconfigKind>,
    params: Params,
    /// Whether to copy the referenced certificate files beside the kubeconfigs (the operator's
    /// output, whose kubeconfigs reference `pki/...` relative to themselves).
    copy_referenced: bool,
}

fn input_name(certificate: &str) -> String {
    format!("cert:{certificate}")
}

fn read(ctx: &BuildContext<'_>, input: &str, file: &str) -> Result<String, BuildError> {
    let path = ctx.input(input)?.join(file);
    std::fs::read_to_string(&path).map_err(|error| BuildError::io(&path, error))
}

impl Builder for KubeconfigBuilder {
    fn holds_secrets(&self) -> bool {
        // Client keys, embedded.
        true
    }

    fn kind(&self) -> &str {
        "kiln-kubeconfig.files"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        self.params.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let mut files = Vec::new();
        for kind in &self.kinds {
            let certificate = kind.certificate_name();
            let credentials = match self.plan.options.kubeconfig_certificates {
                KubeconfigCertificates::Embedded => Credentials::Embedded {
                    ca_pem: read(ctx, "ca", CERTIFICATE_FILE)?,
                    certificate_pem: read(ctx, &input_name(&certificate), CERTIFICATE_FILE)?,
                    key_pem: read(ctx, &input_name(&certificate), KEY_FILE)?,
                },
                KubeconfigCertificates::Referenced => Credentials::referenced(kind),
            };
            if self.copy_referenced
                && let Credentials::Referenced {
                    ca_path,
                    certificate_path,
                    key_path,
                } = &credentials
            {
                let input = input_name(&certificate);
                for (path, source, file, mode) in [
                    (ca_path, "ca", CERTIFICATE_FILE, 0o644),
                    (certificate_path, input.as_str(), CERTIFICATE_FILE, 0o644),
                    (key_path, input.as_str(), KEY_FILE, 0o600),
                ] {
                    let contents = read(ctx, source, file)?.into_bytes();
                    files.push(File {
                        path: path.clone(),
                        contents,
                        mode,
                    });
                }
            }
            let file = kiln_kubeconfig::render_file(&self.plan, kind, credentials)
                .map_err(BuildError::from_error)?;
            files.push(file);
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        files.dedup_by(|a, b| a.path == b.path);
        write_files(ctx.out(), &files)
    }
}

fn kubeconfig_derivation(
    plan: &Arc<Plan>,
    node: Option<&NodePlan>,
    kinds: Vec<KubeconfigKind>,
    pki: &PkiDerivations,
    name: String,
) -> Result<Derivation, ClusterError> {
    let params = Params::of(&KubeconfigParams {
        cluster: &plan.cluster,
        options: &plan.options,
        node: node.map(|node| KubeconfigNode {
            name: &node.name,
            roles: &node.roles,
        }),
        files: kinds.iter().map(KubeconfigKind::path).collect(),
    });
    let copy_referenced = node.is_none();
    let mut derivation = Derivation::new(
        name,
        Arc::new(KubeconfigBuilder {
            plan: Arc::clone(plan),
            kinds: kinds.clone(),
            params,
            copy_referenced,
        }),
    );
    let needs_pem =
        copy_referenced || plan.options.kubeconfig_certificates == KubeconfigCertificates::Embedded;
    if needs_pem && !kinds.is_empty() {
        let ca = pki.get("ca").ok_or_else(|| missing("ca"))?;
        derivation = derivation.input("ca", ca.clone());
        for kind in &kinds {
            let certificate = kind.certificate_name();
            let id = pki.get(&certificate).ok_or_else(|| missing(&certificate))?;
            derivation = derivation.input(input_name(&certificate), id.clone());
        }
    }
    Ok(derivation)
}

fn missing(certificate: &str) -> ClusterError {
    ClusterError::Assembly {
        what: "kubeconfigs".to_owned(),
        message: format!("the PKI has no certificate called {certificate}"),
    }
}

/// Adds `node/<name>/kubeconfigs` for every node that has any, and `cluster/kubeconfigs`
/// (admin.conf and super-admin.conf, for the operator).
pub(crate) fn add_kubeconfigs(
    graph: &mut Graph,
    artifacts: &mut Artifacts,
    plan: &Arc<Plan>,
    pki: &PkiDerivations,
) -> Result<(), ClusterError> {
    for node in &plan.nodes {
        let kinds = kiln_kubeconfig::node_kinds(plan, node);
        if kinds.is_empty() {
            continue;
        }
        let id = DrvId::new(format!("node/{}/kubeconfigs", node.name));
        let derivation = kubeconfig_derivation(
            plan,
            Some(node),
            kinds,
            pki,
            format!("{}-kubeconfigs", node.name),
        )?;
        graph.add(id.clone(), derivation)?;
        artifacts
            .nodes
            .entry(node.name.clone())
            .or_default()
            .insert("kubeconfigs".to_owned(), id);
    }
    let id = DrvId::new("cluster/kubeconfigs");
    let kinds = kiln_kubeconfig::OPERATOR_KINDS.to_vec();
    let derivation = kubeconfig_derivation(
        plan,
        None,
        kinds,
        pki,
        format!("{}-kubeconfigs", plan.cluster.name),
    )?;
    graph.add(id.clone(), derivation)?;
    artifacts.cluster.insert("kubeconfigs".to_owned(), id);
    Ok(())
}
