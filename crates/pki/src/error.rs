//! The crate's one error type.

/// Everything that can go wrong while issuing, placing or reading certificates.
///
/// Messages name the certificate (by its name in `kiln_spec::certificate_names`, or the
/// external CA by its `[pki.ca.*]` table) and say what would be valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// A root secret of the wrong length.
    #[error("the root secret is {actual} bytes long; it must be exactly {expected} bytes")]
    RootSecretLength {
        /// The length given.
        actual: usize,
        /// The length required.
        expected: usize,
    },
    /// A certificate name that the plan does not have.
    #[error(
        "`{name}` is not a certificate of this cluster; valid names are listed by kiln_spec::certificate_names"
    )]
    UnknownCertificate {
        /// The name asked for.
        name: String,
    },
    /// An external CA certificate that cannot be used.
    #[error("[pki.ca.{ca}] certificate: {reason}")]
    ExternalCaCertificate {
        /// The CA's table name: `kubernetes`, `etcd` or `front-proxy`.
        ca: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An external CA key that cannot be used.
    #[error(
        "[pki.ca.{ca}] key: {reason}; use an unencrypted ECDSA P-256 (PKCS#8 or SEC1) or RSA (PKCS#8 or PKCS#1) PEM key"
    )]
    ExternalCaKey {
        /// The CA's table name.
        ca: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// An external CA whose key does not belong to its certificate.
    #[error("[pki.ca.{ca}]: the key does not match the certificate's public key")]
    ExternalCaMismatch {
        /// The CA's table name.
        ca: &'static str,
    },
    /// A leaf whose issuer was not issued (or passed) for the CA it needs.
    #[error("certificate `{name}` is signed by `{issuer}`, which was not given")]
    MissingIssuer {
        /// The leaf's name.
        name: String,
        /// The CA's certificate name.
        issuer: &'static str,
    },
    /// A validity period that does not fit in a certificate.
    #[error(
        "certificate `{name}`: validity from {issued_at} for {days} days is outside the years 1950..9999"
    )]
    Validity {
        /// The certificate's name.
        name: String,
        /// `pki.issued_at`, Unix seconds.
        issued_at: i64,
        /// The validity in days.
        days: u32,
    },
    /// A certificate that would be issued already expired.
    #[error(
        "certificate `{name}` expired at {not_after}; move `pki.issued_at` forward to issue a fresh one"
    )]
    Expired {
        /// The certificate's name.
        name: String,
        /// Its `notAfter`, RFC 3339.
        not_after: String,
    },
    /// A PEM file that could not be read as a certificate.
    #[error("{file}: {reason}")]
    Certificate {
        /// The file, as the caller named it.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The certificate encoder refused the certificate.
    #[error("certificate `{name}` could not be encoded: {reason}")]
    Encoding {
        /// The certificate's name.
        name: String,
        /// The encoder's message.
        reason: String,
    },
}
