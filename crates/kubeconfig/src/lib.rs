//! kiln's kubeconfig files: every file of the kubeconfig table in `shared/reference/pki.md`,
//! typed, rendered from a [`kiln_spec::Plan`] and the cluster's [`kiln_pki::Pki`].
//!
//! | file | user (certificate CN) | server |
//! |---|---|---|
//! | `admin.conf` | `kubernetes-admin` | the cluster endpoint |
//! | `super-admin.conf` | `kubernetes-super-admin` | the cluster endpoint |
//! | `kubelet.conf` | `system:node:<node>` | the cluster endpoint |
//! | `controller-manager.conf` | `system:kube-controller-manager` | `https://127.0.0.1:6443` |
//! | `scheduler.conf` | `system:kube-scheduler` | `https://127.0.0.1:6443` |
//! | `kube-proxy.conf` | `system:kube-proxy` | the cluster endpoint |
//!
//! (6443 is the default of `cluster.apiserver_port`: the local API server's port.)
//!
//! Certificates are embedded (base64 `*-data` fields: one file to move) or referenced by
//! their on-node paths under `/etc/kubernetes/pki/`, exactly the files `kiln_pki::placement`
//! puts on the node, as `options.kubeconfig_certificates` says. A [`Kubeconfig`] cannot say
//! `insecure-skip-tls-verify`: every cluster entry carries its CA.
//!
//! The crate is pure: no file system, no clock, no environment. The same plan and PKI give
//! byte-identical files.
//!
//! ```
//! use std::collections::BTreeMap;
//! use kiln_kubeconfig::{Credentials, KubeconfigKind};
//!
//! let source = r#"
//! [cluster]
//! name = "demo"
//! kubernetes_version = "1.20.2"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! "#;
//! let plan = kiln_spec::load(source, "demo.toml").expect("a valid spec").plan;
//!
//! // By reference: the paths kiln_pki::placement puts on the node.
//! let kind = KubeconfigKind::Kubelet { node: "node1".to_owned() };
//! let config = kiln_kubeconfig::kubeconfig(&plan, &kind, Credentials::referenced(&kind));
//! let yaml = config.to_yaml()?;
//! assert!(yaml.contains("server: https://192.168.50.11:6443"));
//! assert!(yaml.contains("client-certificate: /etc/kubernetes/pki/kubelet-client.crt"));
//! assert!(yaml.contains("current-context: system:node:node1@demo"));
//! assert_eq!(kiln_kubeconfig::Kubeconfig::from_yaml(&yaml)?, config);
//!
//! // Embedded: the PEM of a real PKI, base64-encoded.
//! let root = kiln_pki::RootSecret::from_bytes([7; 32]);
//! let pki = kiln_pki::issue(&plan, &root, &BTreeMap::new()).expect("a PKI");
//! let files = kiln_kubeconfig::render_node(&plan, plan.node("node1").expect("node1 is in the plan"), &pki)?;
//! let paths: Vec<&str> = files.iter().map(|file| file.path.as_str()).collect();
//! assert_eq!(
//!     paths,
//!     [
//!         "etc/kubernetes/controller-manager.conf",
//!         "etc/kubernetes/kube-proxy.conf",
//!         "etc/kubernetes/kubelet.conf",
//!         "etc/kubernetes/scheduler.conf",
//!     ]
//! );
//! let scheduler = String::from_utf8(files[3].contents.clone()).expect("UTF-8");
//! assert!(scheduler.contains("server: https://127.0.0.1:6443"));
//! assert!(scheduler.contains("client-key-data: "));
//! assert_eq!(files[3].mode, 0o600);
//!
//! // Nothing can turn off TLS verification.
//! let insecure = yaml.replace("    server:", "    insecure-skip-tls-verify: true\n    server:");
//! assert!(kiln_kubeconfig::Kubeconfig::from_yaml(&insecure).is_err());
//! # Ok::<(), kiln_kubeconfig::Error>(())
//! ```
#![forbid(unsafe_code)]

mod error;
mod model;
mod render;

pub use error::Error;
pub use model::{
    Cluster, Context, Kubeconfig, NamedCluster, NamedContext, NamedUser, Source, User,
};
pub use render::{
    BOOTSTRAP_USER, Credentials, KUBECONFIG_MODE, KubeconfigKind, OPERATOR_KINDS, RenderedFile,
    kubeconfig, node_kinds, render_bootstrap_kubelet, render_file, render_node, render_operator,
};
