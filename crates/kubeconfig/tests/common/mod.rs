//! Shared helpers for kiln-kubeconfig's integration tests: example plans, a real PKI, the
//! table the kubeconfigs are checked against, and the real programs that read them back.
#![allow(dead_code)]

use std::collections::BTreeMap;

use kiln_spec::{KubeconfigCertificates, Plan};

/// `plan` with kubeconfig certificates `mode`.
pub fn with_certificates(plan: &Plan, mode: KubeconfigCertificates) -> Plan {
    let mut plan = plan.clone();
    plan.options.kubeconfig_certificates = mode;
    plan
}

/// The plan's PKI from the test root secret (seven repeated: not a secret anyone uses).
pub fn pki(plan: &Plan) -> kiln_pki::Pki {
    let root = kiln_pki::RootSecret::from_bytes([7; 32]);
    kiln_pki::issue(plan, &root, &BTreeMap::new()).expect("the PKI issues")
}

/// The kubeconfig table of `shared/reference/pki.md`, written out independently of the crate:
/// (file name, user certificate CN, whether the server is the local API server). `NAME` stands
/// for the node's name.
pub const TABLE: [(&str, &str, bool); 6] = [
    ("admin.conf", "kubernetes-admin", false),
    ("super-admin.conf", "kubernetes-super-admin", false),
    ("kubelet.conf", "system:node:NAME", false),
    (
        "controller-manager.conf",
        "system:kube-controller-manager",
        true,
    ),
    ("scheduler.conf", "system:kube-scheduler", true),
    ("kube-proxy.conf", "system:kube-proxy", false),
];

/// The CN the table gives `file` on `node`.
pub fn table_cn(file: &str, node: &str) -> String {
    let (_, cn, _) = TABLE
        .iter()
        .find(|(name, _, _)| *name == file)
        .unwrap_or_else(|| panic!("{file} is not in the kubeconfig table"));
    cn.replace("NAME", node)
}

/// The server the table gives `file`.
pub fn table_server(plan: &Plan, file: &str) -> String {
    let (_, _, local) = TABLE
        .iter()
        .find(|(name, _, _)| *name == file)
        .unwrap_or_else(|| panic!("{file} is not in the kubeconfig table"));
    if *local {
        // The table's 6443 is the default `cluster.apiserver_port`.
        format!("https://127.0.0.1:{}", plan.cluster.apiserver_port)
    } else {
        format!(
            "https://{}:{}",
            plan.cluster.endpoint.host, plan.cluster.endpoint.port
        )
    }
}

/// The file name of a rendered path.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().expect("a file name")
}
