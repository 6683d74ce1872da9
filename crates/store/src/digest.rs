//! The SHA-256 digest newtype and the canonical encoder that produces digests.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::StoreError;

/// A SHA-256 digest: the identity of a derivation or the hash of a tree's contents.
///
/// Displays (and serializes) as 64 lowercase hex digits, and parses from them.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    /// Hashes `bytes` with SHA-256, without any domain separation.
    ///
    /// Prefer [`DigestBuilder`] for structured data: it cannot be confused across fields.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(Sha256::digest(bytes).into())
    }

    /// Wraps 32 raw bytes, for example a digest read from another system.
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    /// The 32 raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Writes the 64 hex digits into `buffer` and returns them as a `&str`,
    /// for hot paths that must not allocate.
    pub(crate) fn write_hex<'b>(&self, buffer: &'b mut [u8; 64]) -> &'b str {
        // hex::encode_to_slice cannot fail: the buffer is exactly twice the input.
        if hex::encode_to_slice(self.0, buffer).is_err() {
            unreachable!("a 64-byte buffer holds the hex of 32 bytes");
        }
        // Hex digits are ASCII, so the buffer is valid UTF-8.
        std::str::from_utf8(buffer).unwrap_or_else(|_| unreachable!("hex digits are ASCII"))
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buffer = [0u8; 64];
        f.write_str(self.write_hex(&mut buffer))
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = StoreError;

    fn from_str(input: &str) -> Result<Digest, StoreError> {
        let invalid = |reason: &str| StoreError::InvalidDigest {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        if input.len() != 64 {
            return Err(invalid(&format!(
                "expected 64 hex digits, found {} characters",
                input.chars().count()
            )));
        }
        if input.bytes().any(|byte| byte.is_ascii_uppercase()) {
            return Err(invalid("hex digits must be lowercase"));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(input, &mut bytes)
            .map_err(|_| invalid("expected only the hex digits 0-9 and a-f"))?;
        Ok(Digest(bytes))
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; 64];
        serializer.serialize_str(self.write_hex(&mut buffer))
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        struct HexVisitor;
        impl serde::de::Visitor<'_> for HexVisitor {
            type Value = Digest;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SHA-256 digest as 64 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Digest, E> {
                value.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(HexVisitor)
    }
}

/// A canonical, unambiguous encoder of structured data into a [`Digest`].
///
/// Every field is written with its type implied by position and its length
/// spelled out, so no two different sequences of fields encode to the same
/// bytes: strings and byte strings are prefixed with their length as a
/// big-endian `u64`, integers are 8 big-endian bytes, digests are their 32
/// raw bytes. The domain string passed to [`DigestBuilder::new`] is encoded
/// first, so digests of different kinds of things never collide.
///
/// ```
/// use kiln_store::DigestBuilder;
///
/// let a = DigestBuilder::new("example-v1").str("ab").str("c").finish();
/// let b = DigestBuilder::new("example-v1").str("a").str("bc").finish();
/// assert_ne!(a, b);
/// ```
#[derive(Clone)]
pub struct DigestBuilder {
    hasher: Sha256,
}

impl DigestBuilder {
    /// Starts a digest in the given domain, for example `"kiln-derivation-v1"`.
    pub fn new(domain: &str) -> DigestBuilder {
        let mut builder = DigestBuilder {
            hasher: Sha256::new(),
        };
        builder.write_bytes(b"kiln-digest-builder-v1");
        builder.write_bytes(domain.as_bytes());
        builder
    }

    /// Adds a UTF-8 string (length-prefixed).
    #[must_use]
    pub fn str(self, value: &str) -> DigestBuilder {
        self.bytes(value.as_bytes())
    }

    /// Adds a byte string (length-prefixed).
    #[must_use]
    pub fn bytes(mut self, value: &[u8]) -> DigestBuilder {
        self.write_bytes(value);
        self
    }

    /// Adds an unsigned integer as 8 big-endian bytes.
    #[must_use]
    pub fn u64(mut self, value: u64) -> DigestBuilder {
        self.write_u64(value);
        self
    }

    /// Adds another digest as its 32 raw bytes.
    #[must_use]
    pub fn digest(mut self, value: &Digest) -> DigestBuilder {
        self.hasher.update(value.0);
        self
    }

    /// Finishes the encoding and returns its digest.
    pub fn finish(self) -> Digest {
        Digest(self.hasher.finalize().into())
    }

    pub(crate) fn write_u64(&mut self, value: u64) {
        self.hasher.update(value.to_be_bytes());
    }

    pub(crate) fn write_bytes(&mut self, value: &[u8]) {
        self.write_u64(value.len() as u64);
        self.hasher.update(value);
    }

    /// Appends raw bytes without a length prefix; the caller has written the
    /// length beforehand, which is how file contents are streamed.
    pub(crate) fn write_raw(&mut self, value: &[u8]) {
        self.hasher.update(value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_sha256_of_nothing() {
        assert_eq!(
            Digest::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn write_hex_matches_to_hex() {
        let digest = Digest::of(b"kiln");
        let mut buffer = [0u8; 64];
        assert_eq!(digest.write_hex(&mut buffer), digest.to_hex());
    }
}
