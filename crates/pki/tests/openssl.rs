//! Independent verification with the openssl command line: chains, purposes and the text
//! openssl prints for key certificates.

mod common;

use std::path::Path;
use std::process::Command;

use kiln_pki::{CA_NAMES, Usage, ca_certificate_name, operator_path};

fn openssl(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed (/usr/bin/openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

/// Verifies `leaf` against `ca` at `at` (Unix seconds), for `purpose`.
fn verify(ca: &Path, leaf: &Path, at: i64, purpose: &str) -> (bool, String) {
    openssl(&[
        "verify",
        "-x509_strict",
        "-attime",
        &at.to_string(),
        "-purpose",
        purpose,
        "-CAfile",
        &ca.display().to_string(),
        &leaf.display().to_string(),
    ])
}

#[test]
fn every_leaf_verifies_against_its_own_ca_and_no_other() {
    let root = common::root();
    for (example, plan) in common::example_plans() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pki = common::issue(&plan, &root);
        common::write(&pki, dir.path());
        let at = plan.pki.issued_at + 86_400;
        for (name, leaf) in &pki.leaves {
            let leaf_path = dir.path().join(operator_path(name, "crt"));
            let purposes: &[&str] = match leaf.profile.usage {
                Usage::Server => &["sslserver"],
                Usage::Client => &["sslclient"],
                Usage::ServerAndClient => &["sslserver", "sslclient"],
                Usage::Authority => unreachable!("leaves are not CAs"),
            };
            for ca in CA_NAMES {
                let ca_path = dir
                    .path()
                    .join(operator_path(ca_certificate_name(ca), "crt"));
                for purpose in purposes {
                    let (ok, output) = verify(&ca_path, &leaf_path, at, purpose);
                    if Some(ca) == leaf.profile.issuer {
                        assert!(
                            ok,
                            "{example}: {name} against its CA for {purpose}: {output}"
                        );
                    } else {
                        assert!(!ok, "{example}: {name} verified against {ca:?}: {output}");
                    }
                }
            }
        }
    }
}

#[test]
fn leaves_fail_for_the_wrong_purpose_and_outside_their_validity() {
    let root = common::root();
    let plan = common::example("two-node");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pki = common::issue(&plan, &root);
    common::write(&pki, dir.path());
    let ca = dir.path().join("pki/ca.crt");
    let at = plan.pki.issued_at + 86_400;
    let apiserver = dir.path().join("pki/apiserver.crt");
    let admin = dir.path().join("pki/admin.crt");
    assert!(
        !verify(&ca, &apiserver, at, "sslclient").0,
        "a server cert is no client cert"
    );
    assert!(
        !verify(&ca, &admin, at, "sslserver").0,
        "a client cert is no server cert"
    );
    let expired = plan.pki.issued_at + i64::from(plan.pki.leaf_validity_days) * 86_400 + 1;
    assert!(!verify(&ca, &apiserver, expired, "sslserver").0);
    assert!(!verify(&ca, &apiserver, plan.pki.issued_at - 1, "sslserver").0);
}

/// What openssl prints of a certificate, without the bytes that only restate the key.
fn text(dir: &Path, name: &str) -> String {
    let path = dir.join(operator_path(name, "crt"));
    let (ok, output) = openssl(&[
        "x509",
        "-noout",
        "-text",
        "-certopt",
        "no_pubkey,no_sigdump",
        "-in",
        &path.display().to_string(),
    ]);
    assert!(ok, "{output}");
    output
}

#[test]
fn openssl_shows_the_expected_extensions() {
    let root = common::root();
    let plan = common::example("ha");
    let dir = tempfile::tempdir().expect("a temporary directory");
    common::write(&common::issue(&plan, &root), dir.path());
    let check =
        |name: &str, expect: expect_test::ExpectFile| expect.assert_eq(&text(dir.path(), name));
    check("ca", expect_test::expect_file!["golden/ha-ca.txt"]);
    check(
        "apiserver",
        expect_test::expect_file!["golden/ha-apiserver.txt"],
    );
    check("admin", expect_test::expect_file!["golden/ha-admin.txt"]);
    check(
        "super-admin",
        expect_test::expect_file!["golden/ha-super-admin.txt"],
    );
    check(
        "kubelet-serving/worker-0",
        expect_test::expect_file!["golden/ha-kubelet-serving-worker-0.txt"],
    );
    check(
        "kubelet-client/worker-0",
        expect_test::expect_file!["golden/ha-kubelet-client-worker-0.txt"],
    );
    check(
        "etcd-server/controller-1",
        expect_test::expect_file!["golden/ha-etcd-server-controller-1.txt"],
    );
    check(
        "front-proxy-client",
        expect_test::expect_file!["golden/ha-front-proxy-client.txt"],
    );
}

#[test]
fn the_service_account_key_pair_is_a_matching_p256_pair() {
    let root = common::root();
    let plan = common::example("two-node");
    let dir = tempfile::tempdir().expect("a temporary directory");
    common::write(&common::issue(&plan, &root), dir.path());
    let key = dir.path().join("pki/sa.key").display().to_string();
    let public = dir.path().join("pki/sa.pub").display().to_string();
    let (ok, derived) = openssl(&["pkey", "-in", &key, "-pubout"]);
    assert!(ok, "{derived}");
    assert_eq!(derived, std::fs::read_to_string(&public).expect("sa.pub"));
    let (ok, description) = openssl(&["pkey", "-pubin", "-in", &public, "-noout", "-text"]);
    assert!(ok, "{description}");
    assert!(description.contains("NIST CURVE: P-256"), "{description}");
}
