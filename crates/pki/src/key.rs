//! Signing keys: derived P-256 keys with RFC 6979 signatures, and the keys of external CAs.

use p256::ecdsa::signature::Signer as _;
use p256::pkcs8::{DecodePrivateKey as _, EncodePublicKey as _, LineEnding};
use rcgen::{PKCS_ECDSA_P256_SHA256, PKCS_RSA_SHA256, PublicKeyData, SignatureAlgorithm};
use ring::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};

/// PKCS#8 PrivateKeyInfo for id-ecPublicKey on prime256v1, up to the 32-byte private scalar of
/// its RFC 5915 ECPrivateKey.
const PKCS8_PREFIX: &[u8] = &[
    0x30, 0x81, 0x87, // PrivateKeyInfo, 135 bytes
    0x02, 0x01, 0x00, // version 0
    0x30, 0x13, // AlgorithmIdentifier
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // prime256v1
    0x04, 0x6d, // privateKey OCTET STRING, 109 bytes
    0x30, 0x6b, // ECPrivateKey, 107 bytes
    0x02, 0x01, 0x01, // version 1
    0x04, 0x20, // privateKey, 32 bytes
];

/// Between the private scalar and the 65-byte uncompressed public point.
const PKCS8_MIDDLE: &[u8] = &[
    0xa1, 0x44, // [1] publicKey, 68 bytes
    0x03, 0x42, 0x00, // BIT STRING, 66 bytes, no unused bits
];

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
            .to_sec1_point(false)
            .as_bytes()
            .to_vec();
        Self {
            signing,
            public_point,
        }
    }

    /// The private key as PKCS#8 PEM (with the public key, as RFC 5915 allows and kubeadm writes).
    ///
    /// Assembled from a fixed template rather than by the `pkcs8` encoder, which recomputes the
    /// public key: a scalar multiplication, a third of the cost of issuing a leaf.
    pub(crate) fn private_pem(&self) -> String {
        let mut der = Vec::with_capacity(PKCS8_PREFIX.len() + 32 + PKCS8_MIDDLE.len() + 65);
        der.extend_from_slice(PKCS8_PREFIX);
        der.extend_from_slice(&self.signing.to_bytes());
        der.extend_from_slice(PKCS8_MIDDLE);
        der.extend_from_slice(&self.public_point);
        // Encoding bytes as PEM cannot fail.
        p256::pkcs8::der::pem::encode_string("PRIVATE KEY", LineEnding::LF, &der)
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

#[cfg(test)]
mod tests {
    use p256::pkcs8::EncodePrivateKey as _;

    use super::*;

    #[test]
    fn the_pkcs8_template_matches_the_encoder() {
        for byte in [1u8, 7, 0x7f, 0xfe] {
            let secret = p256::SecretKey::from_slice(&[byte; 32]).expect("a valid scalar");
            let key = EcKey::new(&secret);
            let encoded = key
                .signing
                .to_pkcs8_pem(LineEnding::LF)
                .expect("encodes")
                .to_string();
            assert_eq!(key.private_pem(), encoded);
        }
    }
}
