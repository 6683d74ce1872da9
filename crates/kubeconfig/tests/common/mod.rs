//! Shared helpers for kiln-kubeconfig's integration tests: example plans, a real PKI, the
//! table the kubeconfigs are checked against, and the real programs that read them back.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_spec::{KubeconfigCertificates, Plan};

/// The repository's examples/ directory.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example spec, by file stem, as plans.
pub fn example_plans() -> BTreeMap<String, Plan> {
    let mut plans = BTreeMap::new();
    for entry in std::fs::read_dir(examples_dir()).expect("examples/ is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|extension| extension != "toml") {
            continue;
        }
        let source = std::fs::read_to_string(&path).expect("the spec is readable");
        let plan = kiln_spec::load(&source, &path.display().to_string())
            .unwrap_or_else(|errors| panic!("{errors}"))
            .plan;
        let stem = path
            .file_stem()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        plans.insert(stem, plan);
    }
    assert!(plans.len() >= 4, "the four reference examples exist");
    plans
}

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
        "https://127.0.0.1:6443".to_owned()
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

/// The path of the program `program`, failing the test with the Debian package that provides it
/// when it is missing.
pub fn tool(program: &str, package: &str) -> PathBuf {
    for dir in ["/usr/local/bin", "/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(program);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "`{program}` is not installed; this test checks kiln-kubeconfig's output with it. \
         Install the Debian package: apt-get install -y {package}"
    );
}

/// Runs `command` and returns its output; fails the test if it cannot start.
pub fn run(command: &mut Command) -> Output {
    command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"))
}
