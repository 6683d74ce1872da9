//! Issuing: CAs, leaves and the service-account key pair, each from its profile and the root secret.

use std::collections::BTreeMap;
use std::fmt;

use kiln_spec::{CaName, Plan};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyUsagePurpose, PublicKeyData as _, SanType, SerialNumber,
};
use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::error::PkiError;
use crate::key::{CaKey, EcKey};
use crate::profile::{
    CA_NAMES, CertificateProfile, SERVICE_ACCOUNT, San, Usage, ca_certificate_name, ca_profile,
    ca_table_name, profile,
};
use crate::secret::RootSecret;

/// An existing CA, brought by the user: the bytes of its PEM certificate and PEM private key.
///
/// The caller reads the files named in `[pki.ca.*]`; this crate never touches the file system.
#[derive(Clone, PartialEq, Eq)]
pub struct ExternalCa {
    /// The CA certificate, PEM.
    pub certificate_pem: Vec<u8>,
    /// The CA's private key, PEM (unencrypted PKCS#8, SEC1 or PKCS#1).
    pub key_pem: Vec<u8>,
}

/// A CA that can sign leaves: its certificate, its key, and which of the three CAs it is.
pub struct Authority {
    ca: CaName,
    certificate_pem: String,
    key_pem: String,
    certificate_digest: [u8; 32],
    issuer: Issuer<'static, CaKey>,
}

/// A certificate with its private key, both PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCertificate {
    /// What was issued.
    pub profile: CertificateProfile,
    /// The certificate, PEM.
    pub certificate_pem: String,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
}

/// The service-account token signing key pair (`sa.key`, `sa.pub`).
#[derive(Clone, PartialEq, Eq)]
pub struct ServiceAccountKeyPair {
    /// The private key, PKCS#8 PEM (`sa.key`).
    pub private_pem: String,
    /// The public key, SubjectPublicKeyInfo PEM (`sa.pub`).
    pub public_pem: String,
}

/// Every certificate and key of a cluster, issued in one go.
pub struct Pki {
    /// The three CAs.
    pub authorities: BTreeMap<CaName, Authority>,
    /// The service-account key pair.
    pub service_account: ServiceAccountKeyPair,
    /// Every leaf, by certificate name.
    pub leaves: BTreeMap<String, IssuedCertificate>,
}

impl Authority {
    /// Which CA this is.
    pub fn ca(&self) -> CaName {
        self.ca
    }

    /// The CA certificate, PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA's private key, PEM (PKCS#8 for kiln's own CAs; as given for external ones).
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A CA from its PEM certificate and key: an external CA, or one read back from a build's
    /// output. The certificate must be a CA (basicConstraints CA:TRUE) and match the key.
    pub fn from_pem(ca: CaName, certificate_pem: &[u8], key_pem: &[u8]) -> Result<Self, PkiError> {
        let table = ca_table_name(ca);
        let certificate_error =
            |reason: String| PkiError::ExternalCaCertificate { ca: table, reason };
        let (_, block) = x509_parser::pem::parse_x509_pem(certificate_pem)
            .map_err(|error| certificate_error(format!("not PEM: {error}")))?;
        if block.label != "CERTIFICATE" {
            return Err(certificate_error(format!(
                "a PEM block labelled `{}`, not CERTIFICATE",
                block.label
            )));
        }
        let certificate = block
            .parse_x509()
            .map_err(|error| certificate_error(format!("not an X.509 certificate: {error}")))?;
        let is_ca = certificate
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|constraints| constraints.value.ca);
        if !is_ca {
            return Err(certificate_error(
                "not a CA certificate (basicConstraints CA:TRUE is missing)".to_owned(),
            ));
        }
        let key = CaKey::from_pem(key_pem)
            .map_err(|reason| PkiError::ExternalCaKey { ca: table, reason })?;
        if certificate.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(PkiError::ExternalCaMismatch { ca: table });
        }
        let certificate_pem = String::from_utf8_lossy(certificate_pem).into_owned();
        let issuer = Issuer::from_ca_cert_pem(&certificate_pem, key)
            .map_err(|error| certificate_error(error.to_string()))?;
        Ok(Self {
            ca,
            certificate_digest: Sha256::digest(&block.contents).into(),
            certificate_pem,
            key_pem: String::from_utf8_lossy(key_pem).into_owned(),
            issuer,
        })
    }
}

impl fmt::Debug for Authority {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Authority")
            .field("ca", &self.ca)
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for ExternalCa {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ExternalCa")
            .field(
                "certificate_pem",
                &String::from_utf8_lossy(&self.certificate_pem),
            )
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for IssuedCertificate {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("IssuedCertificate")
            .field("profile", &self.profile)
            .field("certificate_pem", &self.certificate_pem)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl fmt::Debug for ServiceAccountKeyPair {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ServiceAccountKeyPair")
            .field("private_pem", &"[redacted]")
            .field("public_pem", &self.public_pem)
            .finish()
    }
}

impl fmt::Debug for Pki {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Pki")
            .field("authorities", &self.authorities)
            .field("service_account", &self.service_account)
            .field("leaves", &self.leaves)
            .finish()
    }
}

/// Issues the self-signed CA described by `profile` (see [`crate::ca_profile`]) with a key
/// derived from `root`.
pub fn issue_authority(
    profile: &CertificateProfile,
    root: &RootSecret,
) -> Result<Authority, PkiError> {
    let ca = CA_NAMES
        .into_iter()
        .find(|ca| ca_certificate_name(*ca) == profile.name)
        .filter(|_| profile.usage == Usage::Authority && profile.issuer.is_none())
        .ok_or_else(|| PkiError::UnknownCertificate {
            name: profile.name.clone(),
        })?;
    let key = EcKey::new(&root.derive_key(&profile.name, profile.generation));
    let params = params(profile, &key, &[])?;
    let certificate = params
        .self_signed(&key)
        .map_err(|error| encoding(profile, error))?;
    let key_pem = key.private_pem();
    let certificate_pem = certificate.pem();
    let issuer = Issuer::new(params, CaKey::Ec(key));
    Ok(Authority {
        ca,
        certificate_digest: Sha256::digest(certificate.der()).into(),
        certificate_pem,
        key_pem,
        issuer,
    })
}

/// Issues the leaf described by `profile` (see [`crate::profile`]) under `authority`, with a
/// key derived from `root`.
pub fn issue_leaf(
    profile: &CertificateProfile,
    root: &RootSecret,
    authority: &Authority,
) -> Result<IssuedCertificate, PkiError> {
    match profile.issuer {
        Some(issuer) if issuer == authority.ca && profile.usage != Usage::Authority => {}
        Some(issuer) => {
            return Err(PkiError::MissingIssuer {
                name: profile.name.clone(),
                issuer: ca_certificate_name(issuer),
            });
        }
        None => {
            return Err(PkiError::UnknownCertificate {
                name: profile.name.clone(),
            });
        }
    }
    let key = EcKey::new(&root.derive_key(&profile.name, profile.generation));
    let params = params(profile, &key, &authority.certificate_digest)?;
    let certificate = params
        .signed_by(&key, &authority.issuer)
        .map_err(|error| encoding(profile, error))?;
    Ok(IssuedCertificate {
        profile: profile.clone(),
        certificate_pem: certificate.pem(),
        key_pem: key.private_pem(),
    })
}

/// Derives the service-account key pair at `generation` (the plan's
/// `generation_of("service-account")`).
pub fn issue_service_account(root: &RootSecret, generation: u32) -> ServiceAccountKeyPair {
    let key = EcKey::new(&root.derive_key(SERVICE_ACCOUNT, generation));
    ServiceAccountKeyPair {
        private_pem: key.private_pem(),
        public_pem: key.public_pem(),
    }
}

/// Issues every certificate and key of `plan`: kiln's own CAs, or the external ones given, then
/// every leaf of `kiln_spec::certificate_names`, and the service-account key pair.
pub fn issue(
    plan: &Plan,
    root: &RootSecret,
    external_cas: &BTreeMap<CaName, ExternalCa>,
) -> Result<Pki, PkiError> {
    let mut authorities = BTreeMap::new();
    for ca in CA_NAMES {
        let authority = match external_cas.get(&ca) {
            Some(external) => {
                Authority::from_pem(ca, &external.certificate_pem, &external.key_pem)?
            }
            None => issue_authority(&ca_profile(plan, ca), root)?,
        };
        authorities.insert(ca, authority);
    }
    let mut leaves = BTreeMap::new();
    for name in kiln_spec::certificate_names(plan) {
        if kiln_spec::CA_CERTIFICATES.contains(&name.as_str()) {
            continue;
        }
        let profile = profile(plan, &name)?;
        let issuer = profile.issuer.unwrap_or(CaName::Kubernetes);
        let authority = authorities.get(&issuer).ok_or(PkiError::MissingIssuer {
            name: name.clone(),
            issuer: ca_certificate_name(issuer),
        })?;
        leaves.insert(name, issue_leaf(&profile, root, authority)?);
    }
    Ok(Pki {
        authorities,
        service_account: issue_service_account(root, plan.pki.generation_of(SERVICE_ACCOUNT)),
        leaves,
    })
}

/// rcgen's parameters for `profile`, with a serial hashed from everything that makes this
/// certificate what it is: its profile, its public key and (for a leaf) its issuer's certificate.
fn params(
    profile: &CertificateProfile,
    key: &EcKey,
    issuer_digest: &[u8],
) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.not_before = instant(profile, profile.not_before)?;
    params.not_after = instant(profile, profile.not_after)?;

    let mut serial: Vec<u8> = Sha256::new()
        .chain_update(b"kiln-pki/v1 serial\0")
        .chain_update(profile.canonical_bytes())
        .chain_update(b"\0")
        .chain_update(key.der_bytes())
        .chain_update(b"\0")
        .chain_update(issuer_digest)
        .finalize()[..20]
        .to_vec();
    // Positive (top bit clear) and exactly 20 bytes long (first byte non-zero).
    serial[0] = (serial[0] & 0x7f).max(1);
    params.serial_number = Some(SerialNumber::from_slice(&serial));

    // Organization before common name, as Go's crypto/x509 (and so kubeadm) orders them.
    let mut subject = DistinguishedName::new();
    if let Some(organization) = &profile.organization {
        subject.push(DnType::OrganizationName, organization.as_str());
    }
    subject.push(DnType::CommonName, profile.common_name.as_str());
    params.distinguished_name = subject;

    params.use_authority_key_identifier_extension = true;
    match profile.usage {
        Usage::Authority => {
            params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        }
        usage => {
            params.is_ca = IsCa::ExplicitNoCa;
            params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = match usage {
                Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
                Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
                _ => vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            };
        }
    }
    params.subject_alt_names = profile
        .sans
        .iter()
        .map(|san| match san {
            San::Dns(name) => name
                .as_str()
                .try_into()
                .map(SanType::DnsName)
                .map_err(|error| encoding(profile, error)),
            San::Ip(address) => Ok(SanType::IpAddress(*address)),
        })
        .collect::<Result<_, _>>()?;
    Ok(params)
}

fn instant(profile: &CertificateProfile, unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .filter(|instant| (1950..=9999).contains(&instant.year()))
        .ok_or_else(|| PkiError::Validity {
            name: profile.name.clone(),
            issued_at: profile.not_before,
            days: u32::try_from((profile.not_after - profile.not_before) / 86_400)
                .unwrap_or(u32::MAX),
        })
}

fn encoding(profile: &CertificateProfile, error: rcgen::Error) -> PkiError {
    PkiError::Encoding {
        name: profile.name.clone(),
        reason: error.to_string(),
    }
}
