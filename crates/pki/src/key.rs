//! Signing keys: derived P-256 keys with RFC 6979 signatures, and the keys of external CAs.

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData, SignatureAlgorithm};
use ring::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};

/// A P-256 key whose signatures are deterministic (RFC 6979): the same message and key give
/// the same signature bytes, which is what makes certificates reproducible.
pub(crate) struct EcKey {
    signing: p256::ecdsa::SigningKey,
    /// The uncompressed SEC1 public point, as rcgen wants it.
    public_point: Vec<u8>,
}

impl EcKey {
    pub(crate) fn new(secret: &p256::SecretKey) -> Self {
        let signing = p256::ecdsa::SigningKey::from(secret);
        let public_point = signing
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        Self {
            signing,
            public_point,
        }
    }

    /// The private key as PKCS#8 PEM.
    pub(crate) fn private_pem(&self) -> String {
        // Encoding a valid P-256 key cannot fail.
        self.signing
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .unwrap_or_default()
    }

    /// The public key as SubjectPublicKeyInfo PEM.
    pub(crate) fn public_pem(&self) -> String {
        self.signing
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }
}

impl PublicKeyData for EcKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public_point
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        &PKCS_ECDSA_P256_SHA256
    }
}

impl rcgen::SigningKey for EcKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let signature: p256::ecdsa::Signature = self.signing.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }
}

/// A CA's signing key: a P-256 key (kiln's own, or an external one), or an external RSA key.
pub(crate) enum CaKey {
    Ec(EcKey),
    /// RSA PKCS#1 v1.5 signatures are deterministic by construction. ring's signing call takes
    /// a random source for its own side-channel blinding, which never changes the output.
    Rsa(Box<RsaKeyPair>),
}

impl CaKey {
    /// Parses an unencrypted PEM private key: PKCS#8 (P-256 or RSA), SEC1 (P-256) or PKCS#1 (RSA).
    pub(crate) fn from_pem(pem: &[u8]) -> Result<Self, String> {
        let (_, block) =
            x509_parser::pem::parse_x509_pem(pem).map_err(|error| format!("not PEM: {error}"))?;
        let der = &block.contents;
        match block.label.as_str() {
            "PRIVATE KEY" => {
                if let Ok(secret) = p256::SecretKey::from_pkcs8_der(der) {
                    return Ok(Self::Ec(EcKey::new(&secret)));
                }
                RsaKeyPair::from_pkcs8(der)
                    .map(|key| Self::Rsa(Box::new(key)))
                    .map_err(|error| {
                        format!("a PKCS#8 key that is neither P-256 nor usable RSA ({error})")
                    })
            }
            "EC PRIVATE KEY" => p256::SecretKey::from_sec1_der(der)
                .map(|secret| Self::Ec(EcKey::new(&secret)))
                .map_err(|error| format!("not a P-256 SEC1 key ({error})")),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(der)
                .map(|key| Self::Rsa(Box::new(key)))
                .map_err(|error| format!("not a usable PKCS#1 RSA key ({error})")),
            other => Err(format!("a PEM block labelled `{other}`, not a private key")),
        }
    }
}

impl PublicKeyData for CaKey {
    fn der_bytes(&self) -> &[u8] {
        match self {
            Self::Ec(key) => key.der_bytes(),
            Self::Rsa(key) => key.public_key().as_ref(),
        }
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        match self {
            Self::Ec(key) => key.algorithm(),
            Self::Rsa(_) => &PKCS_RSA_SHA256,
        }
    }
}

impl rcgen::SigningKey for CaKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        match self {
            Self::Ec(key) => key.sign(message),
            Self::Rsa(key) => {
                let mut signature = vec![0; key.public().modulus_len()];
                key.sign(
                    &RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    message,
                    &mut signature,
                )
                .map_err(|_| rcgen::Error::RingUnspecified)?;
                Ok(signature)
            }
        }
    }
}
