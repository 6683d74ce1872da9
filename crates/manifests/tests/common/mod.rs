//! Shared helpers for kiln-manifests' integration tests: a fixed encryption key and a YAML
//! document splitter (example plans come from kiln-testkit).
#![allow(dead_code)]

/// The key every test renders with: fixed, so golden files are stable. The real key is
/// derived from the cluster's root secret by the caller.
pub const TEST_KEY: [u8; 32] = [0x42; 32];

/// The YAML documents of a multi-document file.
pub fn documents(text: &str) -> Vec<&str> {
    text.split("---\n")
        .filter(|document| !document.trim().is_empty())
        .collect()
}
