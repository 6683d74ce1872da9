//! Reproducibility and independence: same inputs give the same bytes; a different root secret
//! shares no key; a generation bump or a node change reissues exactly what it should.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use kiln_pki::{FileSource, Pki, RootSecret};
use kiln_spec::Plan;

/// Every file of a PKI by its operator path.
fn files(pki: &Pki) -> BTreeMap<String, String> {
    pki.files()
        .into_iter()
        .map(|file| {
            let contents = pki
                .contents(&file.source)
                .expect("every file has contents")
                .to_owned();
            (file.path, contents)
        })
        .collect()
}

fn changed(
    before: &BTreeMap<String, String>,
    after: &BTreeMap<String, String>,
) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|path| before.get(*path) != after.get(*path))
        .cloned()
        .collect()
}

#[test]
fn issuing_twice_gives_identical_bytes() {
    for plan in common::example_plans().values() {
        let first = files(&common::issue(plan, &common::root()));
        let second = files(&common::issue(plan, &common::root()));
        assert_eq!(first, second);
    }
}

#[test]
fn another_root_secret_shares_no_key_and_no_certificate() {
    let plan = common::example("ha");
    let one = common::issue(&plan, &common::root());
    let two = common::issue(&plan, &RootSecret::from_bytes([7; 32]));
    let contents = |pki: &Pki| -> BTreeSet<String> {
        pki.files()
            .iter()
            .map(|file| pki.contents(&file.source).expect("contents").to_owned())
            .collect()
    };
    let shared: Vec<String> = contents(&one)
        .intersection(&contents(&two))
        .cloned()
        .collect();
    assert!(shared.is_empty(), "shared between root secrets: {shared:?}");
    // And within one PKI, no two keys are the same.
    let keys: Vec<&str> = one
        .files()
        .iter()
        .filter(|file| file.source.is_private())
        .map(|file| one.contents(&file.source).expect("contents"))
        .collect();
    let unique: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(unique.len(), keys.len(), "every key is different");
}

fn with_generation(plan: &Plan, name: &str, generation: u32) -> Plan {
    let mut plan = plan.clone();
    plan.pki.generations.insert(name.to_owned(), generation);
    plan
}

#[test]
fn bumping_one_generation_reissues_exactly_that_certificate() {
    let plan = common::example("two-node");
    let before = files(&common::issue(&plan, &common::root()));
    let cases: &[(&str, &[&str])] = &[
        ("apiserver", &["pki/apiserver.crt", "pki/apiserver.key"]),
        (
            "kubelet-serving/node1",
            &["pki/nodes/node1/kubelet.crt", "pki/nodes/node1/kubelet.key"],
        ),
        ("service-account", &["pki/sa.key", "pki/sa.pub"]),
    ];
    for (name, expected) in cases {
        let after = files(&common::issue(
            &with_generation(&plan, name, 1),
            &common::root(),
        ));
        let expected: BTreeSet<String> = expected.iter().map(|path| (*path).to_owned()).collect();
        assert_eq!(changed(&before, &after), expected, "bumping {name}");
    }
}

#[test]
fn bumping_a_ca_reissues_it_and_everything_it_signed() {
    let plan = common::example("two-node");
    let pki = common::issue(&plan, &common::root());
    let before = files(&pki);
    let after = files(&common::issue(
        &with_generation(&plan, "etcd-ca", 1),
        &common::root(),
    ));
    let mut expected: BTreeSet<String> = ["pki/etcd/ca.crt", "pki/etcd/ca.key"]
        .map(str::to_owned)
        .into();
    for (name, leaf) in &pki.leaves {
        if leaf.profile.issuer == Some(kiln_spec::CaName::Etcd) {
            // The leaf's key stays (it depends on the leaf's own generation), its certificate changes.
            expected.insert(kiln_pki::operator_path(name, "crt"));
        }
    }
    assert_eq!(changed(&before, &after), expected);
}

#[test]
fn bumping_every_leaf_keeps_the_cas_and_the_service_account() {
    let plan = common::example("ha");
    let before = files(&common::issue(&plan, &common::root()));
    let mut bumped = plan.clone();
    bumped.pki.generation += 1;
    let after = files(&common::issue(&bumped, &common::root()));
    let unchanged: BTreeSet<&String> = before
        .keys()
        .filter(|path| before[*path] == after[*path])
        .collect();
    let expected = [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/etcd/ca.crt",
        "pki/etcd/ca.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/sa.key",
        "pki/sa.pub",
    ];
    assert_eq!(
        unchanged
            .into_iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        expected
    );
}

#[test]
fn changing_node2_leaves_node1_untouched() {
    let plan = common::example("two-node");
    let before = files(&common::issue(&plan, &common::root()));
    let mut moved = plan.clone();
    let node2 = moved
        .nodes
        .iter_mut()
        .find(|node| node.name == "node2")
        .expect("node2");
    node2.addresses = vec!["192.168.50.99/24".parse().expect("an address")];
    let after = files(&common::issue(&moved, &common::root()));
    let expected: BTreeSet<String> = ["pki/nodes/node2/kubelet.crt"].map(str::to_owned).into();
    assert_eq!(
        changed(&before, &after),
        expected,
        "only node2's serving certificate"
    );

    // Removing node2 altogether only removes its files.
    let mut smaller = plan.clone();
    smaller.nodes.retain(|node| node.name != "node2");
    let after = files(&common::issue(&smaller, &common::root()));
    for path in changed(&before, &after) {
        assert!(path.starts_with("pki/nodes/node2/"), "{path} changed");
        assert!(!after.contains_key(&path));
    }
}

#[test]
fn external_cas_sign_leaves_deterministically() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("openssl runs");
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    };
    // An RSA CA in PKCS#1 form (as kubeadm writes it) and a P-256 CA in SEC1 form.
    openssl(&["genrsa", "-traditional", "-out", "rsa.key", "2048"]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "rsa.key",
        "-subj",
        "/CN=corporate-kubernetes-ca",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-days",
        "36500",
        "-out",
        "rsa.crt",
    ]);
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        "ec.key",
    ]);
    openssl(&[
        "req",
        "-x509",
        "-new",
        "-key",
        "ec.key",
        "-subj",
        "/CN=corporate-etcd-ca",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-days",
        "36500",
        "-out",
        "ec.crt",
    ]);
    let read = |name: &str| std::fs::read(dir.path().join(name)).expect("readable");
    let external: BTreeMap<_, _> = [
        (
            kiln_spec::CaName::Kubernetes,
            kiln_pki::ExternalCa {
                certificate_pem: read("rsa.crt"),
                key_pem: read("rsa.key"),
            },
        ),
        (
            kiln_spec::CaName::Etcd,
            kiln_pki::ExternalCa {
                certificate_pem: read("ec.crt"),
                key_pem: read("ec.key"),
            },
        ),
    ]
    .into();
    // Issue from the moment the CAs were made, so the chain is valid at one instant.
    let mut plan = common::example("two-node");
    plan.pki.issued_at = ["rsa.crt", "ec.crt"]
        .iter()
        .map(|name| {
            kiln_pki::summarize(name, &read(name), 0)
                .expect("a certificate")
                .not_before
        })
        .max()
        .expect("two CAs");
    let first = kiln_pki::issue(&plan, &common::root(), &external).expect("issues");
    let second = kiln_pki::issue(&plan, &common::root(), &external).expect("issues");
    assert_eq!(files(&first), files(&second));
    assert_eq!(
        first
            .contents(&FileSource::Certificate("ca".to_owned()))
            .map(str::as_bytes),
        Some(read("rsa.crt").as_slice())
    );

    let out = tempfile::tempdir().expect("a temporary directory");
    common::write(&first, out.path());
    let at = (plan.pki.issued_at + 86_400).to_string();
    for (leaf, ca) in [
        ("pki/apiserver.crt", "rsa.crt"),
        ("pki/nodes/node2/kubelet-client.crt", "rsa.crt"),
        ("pki/nodes/node1/etcd/server.crt", "ec.crt"),
    ] {
        let output = std::process::Command::new("openssl")
            .args(["verify", "-x509_strict", "-attime", &at, "-CAfile"])
            .arg(dir.path().join(ca))
            .arg(out.path().join(leaf))
            .output()
            .expect("openssl runs");
        assert!(
            output.status.success(),
            "{leaf}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    // A key that does not belong to the certificate is refused, naming the table.
    let mismatched: BTreeMap<_, _> = [(
        kiln_spec::CaName::Kubernetes,
        kiln_pki::ExternalCa {
            certificate_pem: read("rsa.crt"),
            key_pem: read("ec.key"),
        },
    )]
    .into();
    let error = kiln_pki::issue(&plan, &common::root(), &mismatched).expect_err("a mismatch");
    assert_eq!(
        error.to_string(),
        "[pki.ca.kubernetes]: the key does not match the certificate's public key"
    );
    // A leaf is not a CA.
    let leaf = first.leaves["apiserver"].clone();
    let not_a_ca: BTreeMap<_, _> = [(
        kiln_spec::CaName::FrontProxy,
        kiln_pki::ExternalCa {
            certificate_pem: leaf.certificate_pem.into_bytes(),
            key_pem: leaf.key_pem.into_bytes(),
        },
    )]
    .into();
    let error = kiln_pki::issue(&plan, &common::root(), &not_a_ca).expect_err("not a CA");
    assert!(
        error
            .to_string()
            .starts_with("[pki.ca.front-proxy] certificate: not a CA"),
        "{error}"
    );
}
