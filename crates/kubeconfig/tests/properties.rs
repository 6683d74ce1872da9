//! Properties over generated specs: every kubeconfig names the identity the kubeconfig table
//! gives it, in a real certificate, and references only files the node actually receives.

mod common;

use std::collections::BTreeSet;

use kiln_kubeconfig::{Credentials, Kubeconfig, Source, User};
use kiln_spec::{KubeconfigCertificates, strategies::valid_spec};
use proptest::prelude::*;

/// The subject CN of the PEM certificate `pem`, read with x509-parser.
fn common_name(pem: &str) -> String {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("PEM");
    let certificate = block.parse_x509().expect("an X.509 certificate");
    let names: Vec<String> = certificate
        .subject()
        .iter_common_name()
        .map(|name| name.as_str().expect("a UTF-8 CN").to_owned())
        .collect();
    assert_eq!(names.len(), 1, "one CN in {names:?}");
    names[0].clone()
}

/// The client certificate and key of `user`, which kiln's certificate kubeconfigs have.
fn certificate(user: &User) -> (&Source, &Source) {
    match user {
        User::Certificate {
            client_certificate,
            client_key,
        } => (client_certificate, client_key),
        User::Token(_) => panic!("expected a client certificate, found a token"),
    }
}

fn embedded(source: &Source) -> &str {
    match source {
        Source::Embedded(pem) => pem,
        Source::Path(path) => panic!("expected embedded PEM, found the path {path}"),
    }
}

fn path(source: &Source) -> &str {
    match source {
        Source::Path(path) => path,
        Source::Embedded(_) => panic!("expected a path, found embedded PEM"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn kubeconfigs_name_the_table_identity_and_placed_files(spec in valid_spec(1..=6)) {
        let (plan, _) = spec.validate().expect("valid_spec gives valid specs");
        let pki = common::pki(&plan);
        let embedded_plan = common::with_certificates(&plan, KubeconfigCertificates::Embedded);
        let referenced_plan = common::with_certificates(&plan, KubeconfigCertificates::Referenced);

        for node in &plan.nodes {
            let placed: BTreeSet<String> = kiln_pki::placement(&plan, node)
                .into_iter()
                .map(|file| format!("/etc/kubernetes/{}", file.path))
                .collect();
            for (mode_plan, is_embedded) in [(&embedded_plan, true), (&referenced_plan, false)] {
                for file in kiln_kubeconfig::render_node(mode_plan, mode_plan.node(&node.name).expect("the same nodes"), &pki).expect("renders") {
                    let name = common::file_name(&file.path);
                    let config = Kubeconfig::from_yaml(std::str::from_utf8(&file.contents).expect("UTF-8"))
                        .expect("reads back");
                    let user = &config.users[0];
                    prop_assert_eq!(&user.name, &common::table_cn(name, &node.name));
                    prop_assert_eq!(&config.clusters[0].cluster.server, &common::table_server(&plan, name));
                    prop_assert_eq!(&config.current_context, &format!("{}@{}", user.name, plan.cluster.name));
                    prop_assert_eq!(file.mode, 0o600);
                    if is_embedded {
                        let cn = common_name(embedded(certificate(&user.user).0));
                        prop_assert_eq!(&cn, &common::table_cn(name, &node.name), "{}", file.path);
                        prop_assert_eq!(
                            common_name(embedded(&config.clusters[0].cluster.certificate_authority)),
                            "kubernetes-ca"
                        );
                        prop_assert!(embedded(certificate(&user.user).1).starts_with("-----BEGIN PRIVATE KEY-----"));
                    } else {
                        for source in [
                            &config.clusters[0].cluster.certificate_authority,
                            certificate(&user.user).0,
                            certificate(&user.user).1,
                        ] {
                            let path = path(source);
                            prop_assert!(placed.contains(path), "{} on {} references {} which is not placed there: {:?}", file.path, node.name, path, placed);
                        }
                    }
                }
            }
        }

        // The operator's files: table identities, and referenced paths inside the operator's output.
        let output: BTreeSet<String> = pki.files().into_iter().map(|file| file.path).collect();
        for kind in kiln_kubeconfig::OPERATOR_KINDS {
            let config = kiln_kubeconfig::kubeconfig(&plan, &kind, Credentials::embedded(&pki, &kind).expect("in the PKI"));
            let cn = common_name(embedded(certificate(&config.users[0].user).0));
            prop_assert_eq!(cn, common::table_cn(kind.file_name(), ""));
            let config = kiln_kubeconfig::kubeconfig(&plan, &kind, Credentials::referenced(&kind));
            for source in [
                &config.clusters[0].cluster.certificate_authority,
                certificate(&config.users[0].user).0,
                certificate(&config.users[0].user).1,
            ] {
                prop_assert!(output.contains(path(source)), "{} is not in the operator's output", path(source));
            }
        }
    }
}

#[test]
fn every_kubeconfig_file_of_the_table_is_rendered_somewhere() {
    // Across the examples, every row of the table is rendered at least once.
    let mut seen = BTreeSet::new();
    for plan in kiln_testkit::example_plans().values() {
        let pki = common::pki(plan);
        for file in kiln_kubeconfig::render_operator(plan, &pki).expect("renders") {
            seen.insert(common::file_name(&file.path).to_owned());
        }
        for node in &plan.nodes {
            for file in kiln_kubeconfig::render_node(plan, node, &pki).expect("renders") {
                seen.insert(common::file_name(&file.path).to_owned());
            }
        }
    }
    let table: BTreeSet<String> = common::TABLE
        .iter()
        .map(|(name, _, _)| (*name).to_owned())
        .collect();
    assert_eq!(seen, table);
}
