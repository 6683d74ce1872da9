//! Property tests over generated clusters, checked with x509-parser (an independent parser):
//! subject, issuer, usages, basic constraints, key identifiers, serials and SANs of every
//! certificate.

mod common;

use std::net::IpAddr;

use kiln_pki::{CertificateProfile, Pki, San, Usage, ca_certificate_name};
use proptest::prelude::*;
use x509_parser::extensions::GeneralName;
use x509_parser::oid_registry::{OID_X509_COMMON_NAME, OID_X509_ORGANIZATION_NAME};
use x509_parser::prelude::*;

fn attribute(name: &X509Name<'_>, oid: &der_parser::Oid<'_>) -> Vec<String> {
    name.iter_by_oid(oid)
        .map(|value| value.as_str().expect("a string attribute").to_owned())
        .collect()
}

fn sans(certificate: &X509Certificate<'_>) -> Vec<San> {
    certificate
        .subject_alternative_name()
        .expect("a well-formed SAN extension")
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .map(|name| match name {
                    GeneralName::DNSName(dns) => San::Dns((*dns).to_owned()),
                    GeneralName::IPAddress(bytes) => San::Ip(match bytes.len() {
                        4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                        _ => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                    }),
                    other => panic!("unexpected SAN {other}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn subject_key_id(certificate: &X509Certificate<'_>) -> Vec<u8> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        })
        .expect("a subject key identifier")
}

fn authority_key_id(certificate: &X509Certificate<'_>) -> Vec<u8> {
    certificate
        .extensions()
        .iter()
        .find_map(|extension| match extension.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                id.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .expect("an authority key identifier")
}

/// Checks one certificate against its profile and its issuer's certificate.
fn check(profile: &CertificateProfile, pem: &str, issuer_pem: &str) -> Result<(), TestCaseError> {
    let (_, block) = parse_x509_pem(pem.as_bytes()).expect("PEM");
    let certificate = block.parse_x509().expect("X.509");
    let (_, issuer_block) = parse_x509_pem(issuer_pem.as_bytes()).expect("PEM");
    let issuer = issuer_block.parse_x509().expect("X.509");
    let name = &profile.name;

    prop_assert_eq!(certificate.version(), X509Version::V3);
    prop_assert_eq!(
        attribute(certificate.subject(), &OID_X509_COMMON_NAME),
        vec![profile.common_name.clone()]
    );
    prop_assert_eq!(
        attribute(certificate.subject(), &OID_X509_ORGANIZATION_NAME),
        profile.organization.iter().cloned().collect::<Vec<_>>()
    );
    prop_assert_eq!(
        certificate.issuer(),
        issuer.subject(),
        "{}: issuer name",
        name
    );
    prop_assert_eq!(
        authority_key_id(&certificate),
        subject_key_id(&issuer),
        "{}: AKI",
        name
    );
    prop_assert!(
        certificate
            .verify_signature(Some(issuer.public_key()))
            .is_ok(),
        "{}: signature",
        name
    );

    // Serial: positive, at most 20 bytes.
    let serial = certificate.raw_serial();
    prop_assert!(
        !serial.is_empty() && serial.len() <= 20,
        "{}: serial {:?}",
        name,
        serial
    );
    prop_assert!(serial[0] & 0x80 == 0, "{}: negative serial", name);

    prop_assert_eq!(
        certificate.validity().not_before.timestamp(),
        profile.not_before
    );
    prop_assert_eq!(
        certificate.validity().not_after.timestamp(),
        profile.not_after
    );

    let basic = certificate
        .basic_constraints()
        .expect("one extension")
        .expect("basicConstraints");
    prop_assert!(basic.critical);
    let usage = certificate
        .key_usage()
        .expect("one extension")
        .expect("keyUsage")
        .value;
    prop_assert!(!usage.key_encipherment(), "{}: keyEncipherment", name);
    let extended = certificate
        .extended_key_usage()
        .expect("one extension")
        .map(|eku| eku.value.clone());
    if profile.usage == Usage::Authority {
        prop_assert!(basic.value.ca);
        prop_assert!(usage.key_cert_sign() && usage.crl_sign() && !usage.digital_signature());
        prop_assert!(extended.is_none());
    } else {
        prop_assert!(!basic.value.ca, "{}: CA:FALSE", name);
        prop_assert!(usage.digital_signature() && !usage.key_cert_sign() && !usage.crl_sign());
        let extended = extended.expect("extendedKeyUsage");
        let (server, client) = match profile.usage {
            Usage::Server => (true, false),
            Usage::Client => (false, true),
            _ => (true, true),
        };
        prop_assert_eq!(
            (extended.server_auth, extended.client_auth),
            (server, client),
            "{}",
            name
        );
        prop_assert!(!extended.any && !extended.code_signing && !extended.email_protection);
    }

    let found = sans(&certificate);
    let mut sorted = found.clone();
    sorted.sort();
    sorted.dedup();
    prop_assert_eq!(&found, &sorted, "{}: SANs sorted and deduplicated", name);
    prop_assert_eq!(&found, &profile.sans, "{}: SANs as profiled", name);
    Ok(())
}

fn check_pki(plan: &kiln_spec::Plan, pki: &Pki) -> Result<(), TestCaseError> {
    for authority in pki.authorities.values() {
        let profile = kiln_pki::ca_profile(plan, authority.ca());
        prop_assert_eq!(&profile.name, ca_certificate_name(authority.ca()));
        check(
            &profile,
            authority.certificate_pem(),
            authority.certificate_pem(),
        )?;
    }
    let names: Vec<String> = kiln_spec::certificate_names(plan)
        .into_iter()
        .filter(|name| !kiln_spec::CA_CERTIFICATES.contains(&name.as_str()))
        .collect();
    prop_assert_eq!(pki.leaves.keys().cloned().collect::<Vec<_>>(), names);
    for leaf in pki.leaves.values() {
        let issuer = leaf.profile.issuer.expect("a leaf has an issuer");
        check(
            &leaf.profile,
            &leaf.certificate_pem,
            pki.authorities[&issuer].certificate_pem(),
        )?;
    }
    // Per-node identities and the table's SAN rules.
    for node in &plan.nodes {
        if let Some(kubelet) = pki.leaves.get(&format!("kubelet-serving/{}", node.name)) {
            prop_assert_eq!(
                &kubelet.profile.common_name,
                &format!("system:node:{}", node.name)
            );
            prop_assert_eq!(
                kubelet.profile.organization.as_deref(),
                Some("system:nodes")
            );
            prop_assert!(kubelet.profile.sans.contains(&San::Dns(node.name.clone())));
            for address in &node.addresses {
                prop_assert!(
                    kubelet
                        .profile
                        .sans
                        .contains(&San::Ip(IpAddr::V4(address.addr())))
                );
            }
        }
    }
    let apiserver = &pki.leaves["apiserver"].profile.sans;
    for node in plan.nodes_with(kiln_spec::Role::ControlPlane) {
        prop_assert!(apiserver.contains(&San::Dns(node.name.clone())));
        prop_assert!(apiserver.contains(&San::Ip(IpAddr::V4(node.primary_address()))));
    }
    prop_assert!(apiserver.contains(&San::Ip(IpAddr::V4(plan.cluster.first_service_ip))));
    prop_assert!(apiserver.contains(&San::parse(&plan.cluster.endpoint.host)));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn every_certificate_of_a_generated_cluster_is_as_profiled(spec in kiln_spec::strategies::valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("generated specs are valid");
        let pki = common::issue(&plan, &common::root());
        check_pki(&plan, &pki)?;
    }
}

#[test]
fn every_example_is_as_profiled() {
    for plan in common::example_plans().values() {
        let pki = common::issue(plan, &common::root());
        check_pki(plan, &pki).expect("as profiled");
    }
}
