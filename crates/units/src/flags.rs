//! Command-line flags of the units.
//!
//! The flags come from the one version-aware flag table, `kiln_manifests::flags`, and the
//! on-node paths they name from `kiln_spec::paths`, the one list of them. The paths
//! they name are certificates under `/etc/kubernetes/pki/` exactly as `kiln_pki::placement`
//! puts them on the node, kubeconfigs under `/etc/kubernetes/` as `kiln-kubeconfig` renders
//! them, and configuration files as `kiln-manifests` renders them (checked by this crate's
//! property tests). With `kubelet_credentials = "bootstrap-token"`,
//! `/etc/kubernetes/bootstrap-kubelet.conf` is named but not yet rendered by any crate.

use std::collections::BTreeMap;

use kiln_spec::{NodePlan, Plan};

use crate::services::Service;

/// Command-line flags in order, each written `--name=value`. Names are unique: setting a
/// flag again replaces its value in place.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Flags(Vec<(String, String)>);

impl Flags {
    /// No flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Flags from `(name, value)` pairs in order; a repeated name keeps its first position
    /// and its last value.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let mut flags = Self::new();
        for (name, value) in pairs {
            flags.set(name, value);
        }
        flags
    }

    /// Sets `--name=value`, replacing an earlier value of `name` in place.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter_mut().find(|(existing, _)| existing == name) {
            Some(entry) => entry.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(existing, _)| existing == name)
            .map(|(_, value)| value.as_str())
    }

    /// Sets every flag of `extra` (the spec's `options.extra_flags` of one component).
    pub fn merge(&mut self, extra: &BTreeMap<String, String>) {
        for (name, value) in extra {
            self.set(name, value.clone());
        }
    }

    /// The `(name, value)` pairs in order.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    /// The command-line words: `--name=value`.
    pub fn to_arguments(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(name, value)| format!("--{name}={value}"))
            .collect()
    }
}

/// The flags kiln starts `service` with on `node`: containerd's configuration file, and for
/// every Kubernetes component the version-aware flag table of `kiln_manifests::flags` (the one
/// table of component flags, with the spec's extra flags applied last).
pub fn default_flags(plan: &Plan, node: &NodePlan, service: Service) -> Flags {
    match service.component() {
        Some(component) => Flags::from_pairs(&kiln_manifests::flags(plan, node, component)),
        None => {
            let mut flags = Flags::new();
            flags.set("config", crate::containerd::CONTAINERD_CONFIG);
            flags
        }
    }
}
