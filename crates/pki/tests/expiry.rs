//! The expiry check the build runs, and the warning horizon of `cargo xtask certs`.

mod common;

use kiln_pki::{PkiError, check_not_expired, summarize};

const DAY: i64 = 86_400;

#[test]
fn a_plan_whose_leaves_have_expired_is_refused_by_name() {
    let plan = common::example("two-node");
    let issued = plan.pki.issued_at;
    let leaf_end = issued + i64::from(plan.pki.leaf_validity_days) * DAY;
    assert_eq!(check_not_expired(&plan, issued), Ok(()));
    assert_eq!(
        check_not_expired(&plan, leaf_end),
        Ok(()),
        "valid through notAfter"
    );
    let error = check_not_expired(&plan, leaf_end + 1).expect_err("leaves expired");
    assert_eq!(
        error,
        PkiError::Expired {
            name: "admin".to_owned(),
            not_after: "2031-01-01T00:00:00Z".to_owned()
        }
    );
    assert_eq!(
        error.to_string(),
        "certificate `admin` expired at 2031-01-01T00:00:00Z; move `pki.issued_at` forward to issue a fresh one"
    );
}

#[test]
fn a_ca_that_outlives_nothing_is_refused_too() {
    let mut plan = common::example("two-node");
    plan.pki.ca_validity_days = 1;
    plan.pki.leaf_validity_days = 10;
    let error = check_not_expired(&plan, plan.pki.issued_at + 2 * DAY).expect_err("the CA expired");
    assert!(
        matches!(&error, PkiError::Expired { name, .. } if name == "ca"),
        "{error}"
    );
}

#[test]
fn days_left_and_the_warning_horizon() {
    let plan = common::example("two-node");
    let pki = common::issue(&plan, &common::root());
    let pem = pki.leaves["apiserver"].certificate_pem.as_bytes();
    let not_after = plan.pki.issued_at + i64::from(plan.pki.leaf_validity_days) * DAY;

    let summary = summarize("pki/apiserver.crt", pem, not_after - 30 * DAY).expect("a certificate");
    assert_eq!(summary.days_left, 30);
    assert!(
        !summary.expires_within(30),
        "30 days left is not within 30 days"
    );
    assert!(summary.expires_within(31));

    let summary =
        summarize("pki/apiserver.crt", pem, not_after - 30 * DAY + 1).expect("a certificate");
    assert_eq!(summary.days_left, 29, "rounded down");
    assert!(summary.expires_within(30));

    let summary = summarize("pki/apiserver.crt", pem, not_after + 1).expect("a certificate");
    assert_eq!(summary.days_left, -1);
    assert!(
        summary.expires_within(0),
        "an expired certificate is always within the horizon"
    );

    assert_eq!(summary.not_before_rfc3339(), "2026-01-01T00:00:00Z");
    assert_eq!(summary.not_after_rfc3339(), "2031-01-01T00:00:00Z");
    assert_eq!(summary.subject, "CN=kube-apiserver");
    assert_eq!(summary.issuer, "CN=kubernetes-ca");
}

#[test]
fn garbage_is_reported_with_its_file() {
    let error = summarize("pki/broken.crt", b"not a certificate", 0).expect_err("garbage");
    assert!(
        error.to_string().starts_with("pki/broken.crt: not PEM"),
        "{error}"
    );
}
