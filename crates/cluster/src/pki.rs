//! The cluster PKI as derivations: one per CA, one for the service-account key pair, one per
//! leaf certificate; and the root secret's home on disk.
//!
//! Every PKI derivation's output holds PEM files:
//!
//! - a CA or a leaf: [`CERTIFICATE_FILE`] (`tls.crt`, mode 0644) and [`KEY_FILE`] (`tls.key`,
//!   mode 0600 before the store makes it read-only);
//! - the service-account key pair: [`SERVICE_ACCOUNT_KEY_FILE`] (`sa.key`) and
//!   [`SERVICE_ACCOUNT_PUBLIC_FILE`] (`sa.pub`).
//!
//! [`PkiDerivations::locate`] maps each file of [`kiln_pki::placement`] to the derivation and
//! the file in its output, so image derivations can copy exactly what a node receives.
//!
//! A derivation's parameters hold only what determines its output: the root secret's public
//! id ([`RootSecret::id`], never the secret), and the certificate's [`CertificateProfile`]
//! (subject, SANs, usage, issuer, generation, validity). A leaf's CA is its input called
//! `ca`, so a leaf's digest covers its issuer too. Changing one node therefore changes only
//! that node's derivations (and the apiserver's, if the node is a control plane).
//! An external CA's parameters are the SHA-256 of its certificate and key files, so replacing
//! either file is seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, GraphError, Params};
use kiln_pki::{
    Authority, CertificateProfile, ExternalCa, FileSource, PkiError, RootSecret, SERVICE_ACCOUNT,
};
use kiln_spec::{CaName, Plan};
use sha2::{Digest as _, Sha256};

/// The certificate in a CA's or leaf's output.
pub const CERTIFICATE_FILE: &str = "tls.crt";
/// The private key in a CA's or leaf's output.
pub const KEY_FILE: &str = "tls.key";
/// The service-account signing key in its output.
pub const SERVICE_ACCOUNT_KEY_FILE: &str = "sa.key";
/// The service-account verification key in its output.
pub const SERVICE_ACCOUNT_PUBLIC_FILE: &str = "sa.pub";

/// What can go wrong while wiring the PKI into a graph or finding its root secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterPkiError {
    /// The PKI itself refused (an unusable external CA, say).
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The graph rejected a derivation (a duplicate id: a bug in the assembly).
    #[error("assembling the PKI derivations: {0}")]
    Graph(#[from] GraphError),
    /// An external CA's file could not be read.
    #[error("[pki.ca.{ca}] {field} = {}: {message}", path.display())]
    ExternalCaFile {
        /// The CA's table name.
        ca: &'static str,
        /// `cert` or `key`.
        field: &'static str,
        /// The file, resolved against the spec's directory.
        path: PathBuf,
        /// The I/O error.
        message: String,
    },
}

/// The PKI's derivation ids by certificate name (`ca`, `etcd-ca`, `front-proxy-ca`,
/// `service-account`, `apiserver`, `kubelet-serving/node1`, ...), as returned by [`add_pki`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PkiDerivations {
    /// Every derivation, by certificate name.
    pub by_name: BTreeMap<String, DrvId>,
}

impl PkiDerivations {
    /// The derivation of the certificate (or key pair) `name`.
    pub fn get(&self, name: &str) -> Option<&DrvId> {
        self.by_name.get(name)
    }

    /// Where a placed file comes from: the derivation and the file name in its output.
    pub fn locate(&self, source: &FileSource) -> Option<(&DrvId, &'static str)> {
        let file = match source {
            FileSource::Certificate(_) => CERTIFICATE_FILE,
            FileSource::PrivateKey(_) => KEY_FILE,
            FileSource::ServiceAccountPrivateKey => SERVICE_ACCOUNT_KEY_FILE,
            FileSource::ServiceAccountPublicKey => SERVICE_ACCOUNT_PUBLIC_FILE,
        };
        self.get(source.certificate_name()).map(|id| (id, file))
    }
}

/// The derivation id of the certificate (or key pair) `name`: `pki/<name>`.
pub fn pki_drv_id(name: &str) -> DrvId {
    DrvId::new(format!("pki/{name}"))
}

/// Adds the cluster's PKI to `graph`: a derivation per CA (kiln's own, or the external one
/// given for it), one for the service-account key pair, and one per leaf of
/// `kiln_spec::certificate_names`, each leaf taking its CA as the input `ca`.
///
/// External CAs are checked here (a CA certificate, matching its key), so a bad file fails
/// before anything is built.
pub fn add_pki(
    graph: &mut Graph,
    plan: &Plan,
    root: &Arc<RootSecret>,
    external_cas: &BTreeMap<CaName, ExternalCa>,
) -> Result<PkiDerivations, ClusterPkiError> {
    let mut derivations = PkiDerivations::default();
    let mut add = |name: &str, derivation: Derivation| -> Result<DrvId, ClusterPkiError> {
        let id = pki_drv_id(name);
        graph.add(id.clone(), derivation)?;
        derivations.by_name.insert(name.to_owned(), id.clone());
        Ok(id)
    };

    let mut authorities = BTreeMap::new();
    for ca in kiln_pki::CA_NAMES {
        let name = kiln_pki::ca_certificate_name(ca);
        let builder: Arc<dyn Builder> = match external_cas.get(&ca) {
            Some(external) => {
                Authority::from_pem(ca, &external.certificate_pem, &external.key_pem)?;
                Arc::new(ExternalCaBuilder {
                    ca,
                    certificate_pem: external.certificate_pem.clone(),
                    key_pem: external.key_pem.clone(),
                })
            }
            None => Arc::new(CaBuilder {
                profile: kiln_pki::ca_profile(plan, ca),
                root: Arc::clone(root),
            }),
        };
        let id = add(name, Derivation::new(store_name(name), builder))?;
        authorities.insert(ca, id);
    }

    add(
        SERVICE_ACCOUNT,
        Derivation::new(
            store_name(SERVICE_ACCOUNT),
            Arc::new(ServiceAccountBuilder {
                generation: plan.pki.generation_of(SERVICE_ACCOUNT),
                root: Arc::clone(root),
            }),
        ),
    )?;

    for name in kiln_spec::certificate_names(plan) {
        if kiln_spec::CA_CERTIFICATES.contains(&name.as_str()) {
            continue;
        }
        let profile = kiln_pki::profile(plan, &name)?;
        let issuer = profile.issuer.unwrap_or(CaName::Kubernetes);
        let ca = authorities[&issuer].clone();
        let builder = Arc::new(LeafBuilder {
            profile,
            root: Arc::clone(root),
        });
        add(
            &name,
            Derivation::new(store_name(&name), builder).input("ca", ca),
        )?;
    }
    Ok(derivations)
}

/// Reads the files of every `[pki.ca.*]` table of `plan`, relative to `spec_dir` (the spec
/// file's directory), for [`add_pki`] and [`kiln_pki::issue`].
pub fn read_external_cas(
    plan: &Plan,
    spec_dir: &Path,
) -> Result<BTreeMap<CaName, ExternalCa>, ClusterPkiError> {
    let mut external = BTreeMap::new();
    for (ca, files) in &plan.pki.external_cas {
        let read = |field: &'static str, file: &str| {
            let path = spec_dir.join(file);
            std::fs::read(&path).map_err(|error| ClusterPkiError::ExternalCaFile {
                ca: ca_table_name(*ca),
                field,
                path,
                message: error.to_string(),
            })
        };
        external.insert(
            *ca,
            ExternalCa {
                certificate_pem: read("cert", &files.cert)?,
                key_pem: read("key", &files.key)?,
            },
        );
    }
    Ok(external)
}

/// The store name of a PKI derivation: `pki-` and the certificate name, `/` as `-`.
fn store_name(name: &str) -> String {
    format!("pki-{}", name.replace('/', "-"))
}

fn ca_table_name(ca: CaName) -> &'static str {
    match ca {
        CaName::Kubernetes => "kubernetes",
        CaName::Etcd => "etcd",
        CaName::FrontProxy => "front-proxy",
    }
}

/// A certificate's parameters: the root secret's public id and the profile.
fn profile_params(root: &RootSecret, profile: &CertificateProfile) -> Params {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "kebab-case")]
    struct Encoded<'a> {
        root_id: String,
        profile: &'a CertificateProfile,
    }
    Params::of(&Encoded {
        root_id: root.id().to_string(),
        profile,
    })
}

fn write_file(out: &Path, name: &str, contents: &[u8], mode: u32) -> Result<(), BuildError> {
    crate::rendered::write_read_only(&out.join(name), contents, mode)
}

fn pki_error(error: PkiError) -> BuildError {
    BuildError::from_error(error)
}

/// Issues one of kiln's own CAs.
struct CaBuilder {
    profile: CertificateProfile,
    root: Arc<RootSecret>,
}

impl Builder for CaBuilder {
    fn holds_secrets(&self) -> bool {
        // Its private key, derived from the root secret.
        true
    }

    fn kind(&self) -> &str {
        "kiln-pki.ca"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        profile_params(&self.root, &self.profile)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let authority = kiln_pki::issue_authority(&self.profile, &self.root).map_err(pki_error)?;
        write_file(
            ctx.out(),
            CERTIFICATE_FILE,
            authority.certificate_pem().as_bytes(),
            kiln_pki::CERTIFICATE_MODE,
        )?;
        write_file(
            ctx.out(),
            KEY_FILE,
            authority.key_pem().as_bytes(),
            kiln_pki::KEY_MODE,
        )
    }
}

/// Copies an external CA's certificate and key into the store, checked.
struct ExternalCaBuilder {
    ca: CaName,
    certificate_pem: Vec<u8>,
    key_pem: Vec<u8>,
}

impl Builder for ExternalCaBuilder {
    fn holds_secrets(&self) -> bool {
        // The external CA's private key, read from the user's file.
        true
    }

    fn kind(&self) -> &str {
        "kiln-pki.external-ca"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        // Hashes, not the files: the key is a secret.
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Encoded {
            ca: &'static str,
            certificate_sha256: String,
            key_sha256: String,
        }
        Params::of(&Encoded {
            ca: ca_table_name(self.ca),
            certificate_sha256: format!("{:x}", Sha256::digest(&self.certificate_pem)),
            key_sha256: format!("{:x}", Sha256::digest(&self.key_pem)),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        Authority::from_pem(self.ca, &self.certificate_pem, &self.key_pem).map_err(pki_error)?;
        write_file(
            ctx.out(),
            CERTIFICATE_FILE,
            &self.certificate_pem,
            kiln_pki::CERTIFICATE_MODE,
        )?;
        write_file(ctx.out(), KEY_FILE, &self.key_pem, kiln_pki::KEY_MODE)
    }
}

/// Issues one leaf under the CA of its input `ca`.
struct LeafBuilder {
    profile: CertificateProfile,
    root: Arc<RootSecret>,
}

impl Builder for LeafBuilder {
    fn holds_secrets(&self) -> bool {
        // Its private key, derived from the root secret.
        true
    }

    fn kind(&self) -> &str {
        "kiln-pki.leaf"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        profile_params(&self.root, &self.profile)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let ca_dir = ctx.input("ca")?;
        let read = |name: &str| {
            let path = ca_dir.join(name);
            std::fs::read(&path).map_err(|error| BuildError::io(&path, error))
        };
        let issuer = self.profile.issuer.unwrap_or(CaName::Kubernetes);
        let authority = Authority::from_pem(issuer, &read(CERTIFICATE_FILE)?, &read(KEY_FILE)?)
            .map_err(pki_error)?;
        let leaf =
            kiln_pki::issue_leaf(&self.profile, &self.root, &authority).map_err(pki_error)?;
        write_file(
            ctx.out(),
            CERTIFICATE_FILE,
            leaf.certificate_pem.as_bytes(),
            kiln_pki::CERTIFICATE_MODE,
        )?;
        write_file(
            ctx.out(),
            KEY_FILE,
            leaf.key_pem.as_bytes(),
            kiln_pki::KEY_MODE,
        )
    }
}

/// Derives the service-account key pair.
struct ServiceAccountBuilder {
    generation: u32,
    root: Arc<RootSecret>,
}

impl Builder for ServiceAccountBuilder {
    fn holds_secrets(&self) -> bool {
        // Its private key, derived from the root secret.
        true
    }

    fn kind(&self) -> &str {
        "kiln-pki.service-account"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        #[derive(serde::Serialize)]
        #[serde(rename_all = "kebab-case")]
        struct Encoded {
            root_id: String,
            generation: u32,
        }
        Params::of(&Encoded {
            root_id: self.root.id().to_string(),
            generation: self.generation,
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let pair = kiln_pki::issue_service_account(&self.root, self.generation);
        write_file(
            ctx.out(),
            SERVICE_ACCOUNT_KEY_FILE,
            pair.private_pem.as_bytes(),
            kiln_pki::KEY_MODE,
        )?;
        write_file(
            ctx.out(),
            SERVICE_ACCOUNT_PUBLIC_FILE,
            pair.public_pem.as_bytes(),
            kiln_pki::CERTIFICATE_MODE,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::os::unix::fs::PermissionsExt as _;

    use kiln_graph::{EvalOptions, NullObserver, ValidatedGraph};
    use kiln_store::Store;

    use super::*;

    const SECRET: [u8; 32] = *b"kiln-cluster pki tests: 32 bytes";

    fn example(name: &str) -> Plan {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples")
            .join(format!("{name}.toml"));
        let source = std::fs::read_to_string(&path).expect("the example is readable");
        kiln_spec::load(&source, &path.display().to_string())
            .expect("the example is valid")
            .plan
    }

    fn graph(
        plan: &Plan,
        external: &BTreeMap<CaName, ExternalCa>,
    ) -> (ValidatedGraph, PkiDerivations) {
        let mut graph = Graph::new();
        let root = Arc::new(RootSecret::from_bytes(SECRET));
        let derivations = add_pki(&mut graph, plan, &root, external).expect("the PKI is added");
        (graph.validate().expect("a valid graph"), derivations)
    }

    fn digests(plan: &Plan) -> BTreeMap<String, String> {
        let (graph, derivations) = graph(plan, &BTreeMap::new());
        derivations
            .by_name
            .iter()
            .map(|(name, id)| {
                let digest = graph.digest(id).expect("a digest");
                (name.clone(), format!("{digest:?}"))
            })
            .collect()
    }

    fn changed(
        before: &BTreeMap<String, String>,
        after: &BTreeMap<String, String>,
    ) -> BTreeSet<String> {
        before
            .keys()
            .chain(after.keys())
            .filter(|name| before.get(*name) != after.get(*name))
            .cloned()
            .collect()
    }

    #[test]
    fn the_graph_builds_exactly_what_the_pure_crate_issues() {
        let plan = example("two-node");
        let (graph, derivations) = graph(&plan, &BTreeMap::new());
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Store::open(&dir.path().join("store")).expect("a store");
        let evaluation = graph
            .evaluate(&store, &EvalOptions::default(), &NullObserver)
            .expect("the PKI builds");
        let pki = kiln_pki::issue(&plan, &RootSecret::from_bytes(SECRET), &BTreeMap::new())
            .expect("the plan issues");
        for file in pki.files() {
            let (id, name) = derivations
                .locate(&file.source)
                .expect("every file has a derivation");
            let built = std::fs::read_to_string(evaluation.outputs[id].path.join(name))
                .expect("the output has the file");
            assert_eq!(
                Some(built.as_str()),
                pki.contents(&file.source),
                "{}",
                file.path
            );
        }
        // Keys are private to their owner even in the store.
        let key = evaluation.outputs[&pki_drv_id("apiserver")]
            .path
            .join(KEY_FILE);
        let mode = std::fs::metadata(key).expect("a key").permissions().mode();
        assert_eq!(mode & 0o077, 0, "mode {mode:o}");
    }

    #[test]
    fn no_parameter_holds_the_secret() {
        let plan = example("ha");
        let (graph, _) = graph(&plan, &BTreeMap::new());
        for id in graph.ids() {
            let params = graph.derivation(id).expect("a derivation").builder.params();
            assert!(
                !params
                    .as_bytes()
                    .windows(SECRET.len())
                    .any(|window| window == SECRET),
                "{id}"
            );
        }
    }

    #[test]
    fn changing_node2_keeps_every_other_digest() {
        let plan = example("two-node");
        let before = digests(&plan);
        let mut moved = plan.clone();
        moved.nodes[1].addresses = vec!["192.168.50.99/24".parse().expect("an address")];
        let expected: BTreeSet<String> = ["kubelet-serving/node2".to_owned()].into();
        assert_eq!(changed(&before, &digests(&moved)), expected);
    }

    #[test]
    fn a_generation_bump_changes_that_digest_and_its_dependents_only() {
        let plan = example("two-node");
        let before = digests(&plan);
        let mut bumped = plan.clone();
        bumped.pki.generations.insert("apiserver".to_owned(), 1);
        let expected: BTreeSet<String> = ["apiserver".to_owned()].into();
        assert_eq!(changed(&before, &digests(&bumped)), expected);

        let mut bumped = plan.clone();
        bumped
            .pki
            .generations
            .insert("front-proxy-ca".to_owned(), 1);
        let expected: BTreeSet<String> =
            ["front-proxy-ca".to_owned(), "front-proxy-client".to_owned()].into();
        assert_eq!(changed(&before, &digests(&bumped)), expected);
    }

    #[test]
    fn an_external_ca_file_change_changes_its_digest() {
        let plan = example("two-node");
        let own = kiln_pki::issue(&plan, &RootSecret::from_bytes([9; 32]), &BTreeMap::new())
            .expect("issues");
        let other = kiln_pki::issue(&plan, &RootSecret::from_bytes([8; 32]), &BTreeMap::new())
            .expect("issues");
        let external = |pki: &kiln_pki::Pki| -> BTreeMap<CaName, ExternalCa> {
            let ca = &pki.authorities[&CaName::Etcd];
            [(
                CaName::Etcd,
                ExternalCa {
                    certificate_pem: ca.certificate_pem().as_bytes().to_vec(),
                    key_pem: ca.key_pem().as_bytes().to_vec(),
                },
            )]
            .into()
        };
        let (first, ids) = graph(&plan, &external(&own));
        let (second, _) = graph(&plan, &external(&other));
        let etcd_ca = ids.get("etcd-ca").expect("etcd-ca");
        assert_ne!(first.digest(etcd_ca), second.digest(etcd_ca));
        let ca = ids.get("ca").expect("ca");
        assert_eq!(first.digest(ca), second.digest(ca));

        // A mismatched pair fails while the graph is assembled, naming the table.
        let mut broken = external(&own);
        broken.get_mut(&CaName::Etcd).expect("etcd").key_pem = own.authorities[&CaName::Kubernetes]
            .key_pem()
            .as_bytes()
            .to_vec();
        let mut graph = Graph::new();
        let root = Arc::new(RootSecret::from_bytes(SECRET));
        let error = add_pki(&mut graph, &plan, &root, &broken).expect_err("a mismatch");
        assert_eq!(
            error.to_string(),
            "[pki.ca.etcd]: the key does not match the certificate's public key"
        );
    }

    #[test]
    fn external_ca_files_are_read_relative_to_the_spec() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let mut plan = example("two-node");
        plan.pki.external_cas.insert(
            CaName::FrontProxy,
            kiln_spec::ExternalCaSpec {
                cert: "cas/front-proxy.crt".to_owned(),
                key: "cas/front-proxy.key".to_owned(),
            },
        );
        let error = read_external_cas(&plan, dir.path()).expect_err("missing files");
        assert!(
            error
                .to_string()
                .starts_with("[pki.ca.front-proxy] cert = "),
            "{error}"
        );
        std::fs::create_dir(dir.path().join("cas")).expect("mkdir");
        std::fs::write(dir.path().join("cas/front-proxy.crt"), "certificate").expect("write");
        std::fs::write(dir.path().join("cas/front-proxy.key"), "key").expect("write");
        let external = read_external_cas(&plan, dir.path()).expect("read");
        assert_eq!(
            external[&CaName::FrontProxy].certificate_pem,
            b"certificate"
        );
        assert_eq!(external[&CaName::FrontProxy].key_pem, b"key");
    }
}
