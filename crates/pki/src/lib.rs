//! kiln's cluster PKI: every certificate and key of a Kubernetes cluster, issued
//! deterministically from the cluster [`Plan`](kiln_spec::Plan) and a 32-byte [`RootSecret`].
//!
//! The crate is pure: no file system, no clock, no randomness. The same plan and root secret
//! give byte-identical PEM, because
//!
//! - every private key is an ECDSA P-256 key derived with HKDF-SHA256 from the root secret,
//!   the certificate's name and its rotation generation ([`RootSecret`]);
//! - every signature is RFC 6979 deterministic ECDSA (external RSA CAs sign with PKCS#1 v1.5,
//!   deterministic by construction);
//! - `notBefore` is the plan's `pki.issued_at`, and serial numbers hash the certificate's
//!   profile, public key and issuer.
//!
//! A certificate depends only on its own [`CertificateProfile`], its generation and its CA, so
//! changing one node never reissues another node's certificates, and bumping one generation in
//! `[pki.generations]` reissues exactly that certificate.
//!
//! The pieces:
//! - [`profiles`] / [`profile`] / [`ca_profile`]: what each certificate says (subject, SANs,
//!   usage, issuer, validity), per `shared/reference/pki.md`;
//! - [`issue_authority`], [`issue_leaf`], [`issue_service_account`]: one certificate at a time,
//!   as a build graph runs them; [`issue`]: everything at once, into a [`Pki`];
//! - [`Authority::from_pem`] and [`ExternalCa`]: bring-your-own CAs, from the files' bytes;
//! - [`placement`]: exactly which files a node receives (least privilege), in kubeadm's layout;
//!   [`Pki::files`]: the operator's full output;
//! - [`summarize`], [`check_not_expired`]: reading certificates back, and expiry.
//!
//! ```
//! use std::collections::BTreeMap;
//!
//! let source = r#"
//! [cluster]
//! name = "demo"
//! kubernetes_version = "1.20.2"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! "#;
//! let plan = kiln_spec::load(source, "demo.toml").expect("a valid spec").plan;
//! let root = kiln_pki::RootSecret::from_bytes([42; 32]);
//!
//! // One CA and one leaf under it, as the build graph issues them.
//! let ca = kiln_pki::issue_authority(&kiln_pki::ca_profile(&plan, kiln_spec::CaName::Kubernetes), &root)?;
//! let profile = kiln_pki::profile(&plan, "kubelet-serving/node1")?;
//! let kubelet = kiln_pki::issue_leaf(&profile, &root, &ca)?;
//! assert!(kubelet.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//!
//! // Deterministic: issuing again gives the same bytes.
//! assert_eq!(kiln_pki::issue_leaf(&profile, &root, &ca)?.certificate_pem, kubelet.certificate_pem);
//!
//! // Read back: subject, issuer, SANs and days left at a given instant.
//! let summary = kiln_pki::summarize("kubelet.crt", kubelet.certificate_pem.as_bytes(), plan.pki.issued_at)?;
//! assert_eq!(summary.subject, "O=system:nodes, CN=system:node:node1");
//! assert_eq!(summary.issuer, "CN=kubernetes-ca");
//! assert_eq!(summary.sans, ["DNS:node1", "IP:192.168.50.11"]);
//! assert_eq!(summary.days_left, 365);
//!
//! // Everything at once, and what node1 receives.
//! let pki = kiln_pki::issue(&plan, &root, &BTreeMap::new())?;
//! let files = kiln_pki::placement(&plan, &plan.nodes[0]);
//! assert!(files.iter().any(|file| file.path == "pki/apiserver.key" && file.mode == 0o600));
//! assert!(files.iter().all(|file| pki.contents(&file.source).is_some()));
//!
//! // The root secret never shows itself.
//! assert!(format!("{root:?}").contains("[redacted]"));
//! # Ok::<(), kiln_pki::PkiError>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod issue;
mod key;
mod layout;
mod profile;
mod secret;
mod summary;

pub use error::PkiError;
pub use issue::{
    Authority, ExternalCa, IssuedCertificate, Pki, ServiceAccountKeyPair, issue, issue_authority,
    issue_leaf, issue_service_account,
};
pub use layout::{
    CERTIFICATE_MODE, FileSource, KEY_MODE, PlacedFile, kubeadm_stem, operator_path, placement,
};
pub use profile::{
    CA_NAMES, CertificateProfile, SERVICE_ACCOUNT, San, Usage, apiserver_sans, ca_certificate_name,
    ca_profile, profile, profiles,
};
pub use secret::{BootstrapToken, ROOT_SECRET_LEN, RootSecret, RootSecretId};
pub use summary::{CertificateSummary, check_not_expired, summarize};
