//! Reading certificates back: summaries for `cargo xtask certs`, and expiry checks.

use kiln_spec::Plan;
use x509_parser::extensions::GeneralName;

use crate::error::PkiError;

/// What `cargo xtask certs` shows of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateSummary {
    /// The file, as the caller named it.
    pub file: String,
    /// The subject, RFC 4514 style: `O=system:nodes, CN=system:node:node1`.
    pub subject: String,
    /// The issuer, in the same form.
    pub issuer: String,
    /// Subject alternative names as `DNS:name` and `IP:address`, in certificate order.
    pub sans: Vec<String>,
    /// `notBefore`, Unix seconds.
    pub not_before: i64,
    /// `notAfter`, Unix seconds.
    pub not_after: i64,
    /// Whole days from the caller's `now` to `notAfter`, rounded down; negative once expired.
    pub days_left: i64,
}

impl CertificateSummary {
    /// `notBefore` in RFC 3339 form.
    pub fn not_before_rfc3339(&self) -> String {
        kiln_spec::time::format_rfc3339(self.not_before)
    }

    /// `notAfter` in RFC 3339 form.
    pub fn not_after_rfc3339(&self) -> String {
        kiln_spec::time::format_rfc3339(self.not_after)
    }

    /// Whether the certificate expires within `days` of the `now` it was summarized at
    /// (an expired certificate does too).
    pub fn expires_within(&self, days: u32) -> bool {
        self.days_left < i64::from(days)
    }
}

/// Summarizes the first certificate of the PEM `pem`, read from `file`, with days left counted
/// from `now_unix` (seconds since the Unix epoch).
pub fn summarize(file: &str, pem: &[u8], now_unix: i64) -> Result<CertificateSummary, PkiError> {
    let error = |reason: String| PkiError::Certificate {
        file: file.to_owned(),
        reason,
    };
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|problem| error(format!("not PEM: {problem}")))?;
    let certificate = block
        .parse_x509()
        .map_err(|problem| error(format!("not an X.509 certificate: {problem}")))?;
    let sans = certificate
        .subject_alternative_name()
        .map_err(|problem| error(format!("unreadable subjectAltName: {problem}")))?
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => format!("DNS:{dns}"),
                    GeneralName::IPAddress(bytes) => match bytes.len() {
                        4 => format!(
                            "IP:{}",
                            std::net::Ipv4Addr::from(
                                <[u8; 4]>::try_from(*bytes).unwrap_or_default()
                            )
                        ),
                        16 => format!(
                            "IP:{}",
                            std::net::Ipv6Addr::from(
                                <[u8; 16]>::try_from(*bytes).unwrap_or_default()
                            )
                        ),
                        _ => format!("IP:{bytes:02x?}"),
                    },
                    other => other.to_string(),
                })
                .collect()
        })
        .unwrap_or_default();
    let validity = certificate.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    Ok(CertificateSummary {
        file: file.to_owned(),
        subject: certificate.subject().to_string(),
        issuer: certificate.issuer().to_string(),
        sans,
        not_before,
        not_after,
        days_left: (not_after - now_unix).div_euclid(86_400),
    })
}

/// Fails if any certificate `plan` would issue is already expired at `now_unix`: building it
/// would ship dead credentials. External CAs are not covered (the plan holds only their
/// paths); summarize their certificates to check them.
pub fn check_not_expired(plan: &Plan, now_unix: i64) -> Result<(), PkiError> {
    match crate::profile::profiles(plan)
        .into_iter()
        .find(|profile| profile.not_after < now_unix)
    {
        Some(profile) => Err(PkiError::Expired {
            name: profile.name,
            not_after: kiln_spec::time::format_rfc3339(profile.not_after),
        }),
        None => Ok(()),
    }
}
