//! The cluster's root secret and the keys derived from it.

use std::fmt;

use ring::hkdf;

use crate::error::PkiError;

/// Length of a [`RootSecret`] in bytes.
pub const ROOT_SECRET_LEN: usize = 32;

/// Domain separation for every derivation: a new scheme gets a new label, so old and new
/// keys can never collide.
const SALT: &[u8] = b"kiln-pki/v1";

/// The secret every private key of a cluster is derived from: 32 bytes.
///
/// It redacts itself in `Debug`, implements no serialization, and is compared in constant time.
/// Publish [`RootSecret::id`] instead where an identity is needed (derivation parameters).
#[derive(Clone)]
pub struct RootSecret {
    prk: hkdf::Prk,
    id: RootSecretId,
}

/// A public identifier of a [`RootSecret`]: HKDF-derived, so it reveals nothing of the secret,
/// but two clusters with the same id share their keys.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RootSecretId([u8; 32]);

impl RootSecret {
    /// A root secret from its 32 bytes.
    pub fn from_bytes(bytes: [u8; ROOT_SECRET_LEN]) -> Self {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SALT).extract(&bytes);
        let mut id = [0u8; 32];
        expand(&prk, &[b"root-id"], &mut id);
        Self {
            prk,
            id: RootSecretId(id),
        }
    }

    /// A root secret from a slice, which must be exactly [`ROOT_SECRET_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, PkiError> {
        let array: [u8; ROOT_SECRET_LEN] =
            bytes.try_into().map_err(|_| PkiError::RootSecretLength {
                actual: bytes.len(),
                expected: ROOT_SECRET_LEN,
            })?;
        Ok(Self::from_bytes(array))
    }

    /// The secret's public identifier.
    pub fn id(&self) -> RootSecretId {
        self.id
    }

    /// A 32-byte symmetric key for `purpose` (for example `encryption-at-rest`) at `generation`:
    /// HKDF-SHA256 with `secret`, the purpose and the generation as `info`, so it never equals
    /// a certificate's key (whose `info` starts with `key`).
    pub fn derive_symmetric_key(&self, purpose: &str, generation: u32) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        expand(
            &self.prk,
            &[
                b"secret\0",
                purpose.as_bytes(),
                b"\0",
                &generation.to_be_bytes(),
            ],
            &mut bytes,
        );
        bytes
    }

    /// The P-256 private key of the certificate (or key pair) `name` at `generation`.
    ///
    /// HKDF-SHA256 with the name and generation as `info`; a candidate scalar of 0 or >= n is
    /// retried with the next counter value.
    pub(crate) fn derive_key(&self, name: &str, generation: u32) -> p256::SecretKey {
        let generation = generation.to_be_bytes();
        let mut counter: u32 = 0;
        loop {
            let count = counter.to_be_bytes();
            let mut bytes = [0u8; 32];
            expand(
                &self.prk,
                &[b"key\0", name.as_bytes(), b"\0", &generation, &count],
                &mut bytes,
            );
            if let Ok(key) = p256::SecretKey::from_slice(&bytes) {
                return key;
            }
            counter += 1;
        }
    }
}

/// The alphabet of bootstrap tokens: `[a-z0-9]`, as the API server's token authenticator
/// accepts them.
const TOKEN_ALPHABET: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A kubelet bootstrap token, `<id>.<secret>`: 6 and 16 characters of `[a-z0-9]`, kubeadm's
/// format. The id is public (it names the token's Secret, `bootstrap-token-<id>`); the secret
/// is not, and `Debug` redacts it.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    id: String,
    secret: String,
}

impl BootstrapToken {
    /// The public part, 6 characters.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The secret part, 16 characters.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The whole token, `<id>.<secret>`, as a kubeconfig's `token` carries it.
    pub fn token(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for BootstrapToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BootstrapToken")
            .field("id", &self.id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl RootSecret {
    /// The cluster's bootstrap token at `generation`: HKDF-SHA256 with `bootstrap-token`, the
    /// generation and a block counter as `info`, each output byte below 252 taken as one of 36
    /// characters (so every character is equally likely) until 22 are drawn.
    pub fn derive_bootstrap_token(&self, generation: u32) -> BootstrapToken {
        const LENGTH: usize = 6 + 16;
        let mut characters = String::with_capacity(LENGTH);
        let mut block: u32 = 0;
        while characters.len() < LENGTH {
            let mut bytes = [0u8; 32];
            expand(
                &self.prk,
                &[
                    b"bootstrap-token\0",
                    &generation.to_be_bytes(),
                    &block.to_be_bytes(),
                ],
                &mut bytes,
            );
            for byte in bytes {
                // 252 = 7 * 36: the bytes above it would favour the first four characters.
                if byte < 252 && characters.len() < LENGTH {
                    characters.push(char::from(TOKEN_ALPHABET[usize::from(byte % 36)]));
                }
            }
            block += 1;
        }
        let secret = characters.split_off(6);
        BootstrapToken {
            id: characters,
            secret,
        }
    }
}

impl fmt::Debug for RootSecret {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("RootSecret")
            .field("secret", &"[redacted]")
            .field("id", &self.id)
            .finish()
    }
}

impl RootSecretId {
    /// The identifier's bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for RootSecretId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "RootSecretId({self})")
    }
}

impl fmt::Display for RootSecretId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for byte in self.0 {
            write!(formatter, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// A 32-byte HKDF output length for ring.
struct Length32;

impl hkdf::KeyType for Length32 {
    fn len(&self) -> usize {
        32
    }
}

fn expand(prk: &hkdf::Prk, info: &[&[u8]], out: &mut [u8; 32]) {
    // 32 bytes is far below HKDF-SHA256's limit of 255 * 32, so expansion cannot fail.
    let okm = prk
        .expand(info, Length32)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    okm.fill(out)
        .expect("the output buffer has the requested length");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_the_secret() {
        let secret = RootSecret::from_bytes([0xab; 32]);
        let debug = format!("{secret:?}");
        assert!(debug.contains("[redacted]"), "{debug}");
        assert!(!debug.contains("abab"), "{debug}");
    }

    #[test]
    fn slices_of_the_wrong_length_are_refused() {
        assert_eq!(
            RootSecret::from_slice(&[0; 31]).expect_err("31 bytes are too few"),
            PkiError::RootSecretLength {
                actual: 31,
                expected: 32
            }
        );
    }

    #[test]
    fn bootstrap_tokens_have_kubeadms_form_and_depend_on_secret_and_generation() {
        let one = RootSecret::from_bytes([1; 32]);
        let two = RootSecret::from_bytes([2; 32]);
        let token = one.derive_bootstrap_token(0);
        let whole = token.token();
        // kubeadm's pattern: ^([a-z0-9]{6})\.([a-z0-9]{16})$
        let (id, secret) = whole.split_once('.').expect("a dot");
        assert_eq!((id.len(), secret.len()), (6, 16), "{whole}");
        assert!(
            id.chars()
                .chain(secret.chars())
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
            "{whole}"
        );
        assert_eq!((token.id(), token.secret()), (id, secret));
        assert_eq!(one.derive_bootstrap_token(0), token);
        assert_ne!(one.derive_bootstrap_token(1), token);
        assert_ne!(two.derive_bootstrap_token(0), token);
        let debug = format!("{token:?}");
        assert!(debug.contains(id) && !debug.contains(secret), "{debug}");
        // The scheme is pinned: a change would invalidate every cluster's token.
        expect_test::expect!["dguuuj.1i9rissoxb2lec9o"].assert_eq(&whole);
    }

    #[test]
    fn keys_depend_on_name_generation_and_secret() {
        let one = RootSecret::from_bytes([1; 32]);
        let two = RootSecret::from_bytes([2; 32]);
        let key = |secret: &RootSecret, name, generation| {
            secret.derive_key(name, generation).to_bytes().to_vec()
        };
        assert_eq!(key(&one, "ca", 0), key(&one, "ca", 0));
        assert_ne!(key(&one, "ca", 0), key(&one, "ca", 1));
        assert_ne!(key(&one, "ca", 0), key(&one, "etcd-ca", 0));
        assert_ne!(key(&one, "ca", 0), key(&two, "ca", 0));
        assert_ne!(one.id(), two.id());
    }
}

#[cfg(test)]
mod symmetric_key_tests {
    use super::RootSecret;

    #[test]
    fn symmetric_keys_depend_on_secret_purpose_and_generation() {
        let root = RootSecret::from_bytes([1; 32]);
        let key = root.derive_symmetric_key("encryption-at-rest", 0);
        assert_eq!(
            key,
            RootSecret::from_bytes([1; 32]).derive_symmetric_key("encryption-at-rest", 0)
        );
        assert_ne!(
            key,
            RootSecret::from_bytes([2; 32]).derive_symmetric_key("encryption-at-rest", 0)
        );
        assert_ne!(key, root.derive_symmetric_key("encryption-at-rest", 1));
        assert_ne!(key, root.derive_symmetric_key("other", 0));
        assert_ne!(
            &key,
            root.derive_key("encryption-at-rest", 0)
                .to_bytes()
                .as_slice()
        );
    }
}
