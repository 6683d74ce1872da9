//! Shared helpers for kiln-manifests' integration tests: a fixed encryption key, a YAML
//! document splitter and the minor version of a Kubernetes binary (example plans come from
//! kiln-testkit).
#![allow(dead_code)]

/// The key every test renders with: fixed, so golden files are stable. The real key is
/// derived from the cluster's root secret by the caller.
pub const TEST_KEY: [u8; 32] = [0x42; 32];

/// The test key of an encryption key generation: [`TEST_KEY`] for generation 0, another key for
/// each other one.
pub fn test_key(generation: u32) -> [u8; 32] {
    TEST_KEY.map(|byte| byte ^ (generation as u8))
}

/// The releases the tests tag images with, as kiln's package set pairs them with `plan`'s
/// Kubernetes version (`with` in `packages/kubernetes.toml`): etcd 3.6.16 from Kubernetes 1.35,
/// and Debian bookworm's etcd 3.4.23 beside the 1.20.2 built from Debian's source.
pub fn releases(plan: &kiln_spec::Plan) -> kiln_spec::images::Releases {
    let etcd = if plan.cluster.kubernetes_version.minor >= 35 {
        "3.6.16"
    } else {
        "3.4.23"
    };
    // CoreDNS 1.15.0 pairs with every version the package set builds from Go modules (1.35 and
    // later) and serves any from 1.21, so plans between get it too; 1.20.2 pairs with 1.7.0.
    let coredns = if plan.cluster.kubernetes_version.minor >= 21 {
        "1.15.0"
    } else {
        "1.7.0"
    };
    kiln_spec::images::Releases {
        etcd: etcd.into(),
        coredns: Some(coredns.into()),
    }
}

/// The YAML documents of a multi-document file.
pub fn documents(text: &str) -> Vec<&str> {
    text.split("---\n")
        .filter(|document| !document.trim().is_empty())
        .collect()
}

/// The minor version a Kubernetes binary reports (`Kubernetes v1.20.2` gives 20), so that
/// the real-binary checks render for the release they run.
pub fn minor_of(program: &std::path::Path) -> u32 {
    let output = std::process::Command::new(program)
        .arg("--version")
        .output()
        .unwrap_or_else(|error| panic!("{}: {error}", program.display()));
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v1."))
        .unwrap_or_else(|| panic!("{}: no version in {text:?}", program.display()));
    version
        .split('.')
        .next()
        .and_then(|minor| minor.parse().ok())
        .unwrap_or_else(|| panic!("{}: bad version {text:?}", program.display()))
}
