//! kiln's typed cluster spec: read a TOML file, validate it, and get a normalized [`Plan`].
//!
//! A [`Spec`] is what the user writes; a [`Plan`] is what every renderer receives: every
//! default explicit, nodes sorted by name, and the derived values (pod subnets, the first
//! Service address, the cluster DNS address, etcd's initial cluster) computed once.
//! Validation reports every problem at once, each with the file, line, column, field path and
//! what would be valid. The crate does no I/O: callers read the file.
//!
//! ```
//! let source = r#"
//! [cluster]
//! name = "demo"
//! kubernetes_version = "1.20.2"
//! pod_cidr = "10.1.0.0/16"
//!
//! [pki]
//! issued_at = 2026-01-01T00:00:00Z
//!
//! [[nodes]]
//! name = "node1"
//! roles = ["control-plane", "etcd", "worker"]
//! addresses = ["192.168.50.11/24"]
//! "#;
//! let loaded = kiln_spec::load(source, "demo.toml").expect("a valid spec");
//! let plan = &loaded.plan;
//! assert_eq!(plan.cluster.endpoint.url(), "https://192.168.50.11:6443");
//! assert_eq!(plan.cluster.cluster_dns_ip.to_string(), "10.96.0.10");
//! assert_eq!(plan.nodes[0].pod_subnet.map(|net| net.to_string()).as_deref(), Some("10.1.0.0/24"));
//!
//! // Errors name the file, line, column and field, and say what would be valid.
//! let broken = source.replace("node1", "Node_1");
//! let errors = kiln_spec::load(&broken, "demo.toml").unwrap_err();
//! assert_eq!(errors.items[0].field, "nodes[0].name");
//! assert_eq!(
//!     errors.to_string(),
//!     "error: demo.toml:11:8: nodes[0].name: `Node_1` is not a DNS-1123 label\n  help: use at most 63 lowercase letters, digits and '-', starting and ending with a letter or digit"
//! );
//! ```
//!
//! With the `proptest` feature, the `strategies` module generates valid specs and single invalid
//! mutations, so other tools can property-test their own handling of cluster specs.
#![forbid(unsafe_code)]

mod diagnostic;
pub mod images;
pub mod ini;
mod locate;
mod names;
pub mod paths;
mod plan;
mod raw;
mod rendered;
pub mod sysctl;
pub mod text;
pub mod time;
mod validate;
mod version;

#[cfg(feature = "proptest")]
pub mod strategies;

pub use diagnostic::{Diagnostic, Diagnostics, Location, Severity};
pub use names::{
    CA_CERTIFICATES, CLUSTER_CERTIFICATES, NODE_CERTIFICATES, certificate_names,
    kubeconfig_certificate,
};
pub use plan::{
    APISERVER_PORT, ClusterPlan, EndpointPlan, LeaderElectionPlan, NodePlan, OptionsPlan, PkiPlan,
    Plan,
};
pub use raw::{
    CaName, ClusterDns, ClusterSpec, Component, ControlPlaneMode, EncryptionProvider, EndpointMode,
    EndpointSpec, ExternalCaSpec, KubeProxyMode, KubeconfigCertificates, KubeletCredentials,
    LeaderElectionSpec, NodeSpec, OptionsSpec, PkiSpec, PodSecurityLevel, Role, Spec, XenGuest,
};
pub use rendered::RenderedFile;
pub use validate::{POD_SECURITY_MINOR, is_dns_label, is_dns_subdomain};
pub use version::{KubeVersion, NEWEST_SUPPORTED_MINOR, OLDEST_SUPPORTED_MINOR, ParseVersionError};

/// A validated spec: its plan, and the warnings that did not stop it.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The normalized plan.
    pub plan: Plan,
    /// Warnings, located in the file.
    pub warnings: Diagnostics,
}

/// Parses TOML `source` into a [`Spec`]. `file` names the source in diagnostics.
pub fn parse(source: &str, file: &str) -> Result<Spec, Diagnostics> {
    toml::from_str(source).map_err(|error| {
        let locator = locate::Locator::new(source);
        let location = error.span().map(|span| locator.offset(span.start));
        let message = error.message().trim().to_owned();
        let help = message.contains("unknown field").then(|| {
            "fields are listed in examples/ and in the kiln-spec documentation".to_owned()
        });
        Diagnostics {
            file: file.to_owned(),
            items: vec![Diagnostic {
                severity: Severity::Error,
                field: String::new(),
                message,
                help,
                location,
            }],
        }
    })
}

impl Spec {
    /// Validates the spec into a [`Plan`]. Errors and warnings carry field paths but no locations;
    /// [`load`] adds locations from the source.
    pub fn validate(&self) -> Result<(Plan, Vec<Diagnostic>), Vec<Diagnostic>> {
        let (plan, findings) = validate::validate(self);
        plan.map(|plan| (plan, findings.clone())).ok_or(findings)
    }

    /// The spec as TOML text.
    pub fn to_toml(&self) -> String {
        // A Spec holds only strings, numbers, booleans, maps and arrays: serialization cannot fail.
        toml::to_string(self).unwrap_or_default()
    }
}

/// Parses and validates `source`: the plan and its warnings, or every error and warning, each
/// located in `file`.
pub fn load(source: &str, file: &str) -> Result<Loaded, Diagnostics> {
    let spec = parse(source, file)?;
    let locator = locate::Locator::new(source);
    let locate = |mut items: Vec<Diagnostic>| {
        for item in &mut items {
            item.location = locator.field(&item.field);
        }
        // Errors first, then in file order; stable, so equal positions keep validation order.
        items.sort_by_key(|item| (item.severity, item.location));
        Diagnostics {
            file: file.to_owned(),
            items,
        }
    };
    match spec.validate() {
        Ok((plan, warnings)) => Ok(Loaded {
            plan,
            warnings: locate(warnings),
        }),
        Err(findings) => Err(locate(findings)),
    }
}
