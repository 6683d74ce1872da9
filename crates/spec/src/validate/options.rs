//! Options: encryption, audit, authorization, kube-proxy, credentials, cluster DNS and leader
//! election.

use super::*;

/// The first minor version whose API server has PodSecurity admission on by default (beta in
/// 1.23, stable in 1.25).
pub const POD_SECURITY_MINOR: u32 = 23;

impl Checker {
    pub(super) fn options(
        &mut self,
        spec: &Spec,
        mode: ControlPlaneMode,
        version: Option<KubeVersion>,
    ) -> Option<OptionsPlan> {
        let options = &spec.options;
        let mut ok = true;
        let authorization_modes = options
            .authorization_modes
            .clone()
            .unwrap_or_else(|| vec!["Node".to_owned(), "RBAC".to_owned()]);
        if authorization_modes.is_empty() {
            ok = false;
            self.push(
                Diagnostic::error("options.authorization_modes", "no authorization mode")
                    .help("for example [\"Node\", \"RBAC\"]"),
            );
        }
        for (index, name) in authorization_modes.iter().enumerate() {
            let field = format!("options.authorization_modes[{index}]");
            if !AUTHORIZATION_MODES.contains(&name.as_str()) {
                ok = false;
                self.push(
                    Diagnostic::error(&field, format!("unknown authorization mode `{name}`"))
                        .help(format!("one of {}", AUTHORIZATION_MODES.join(", "))),
                );
            } else if name == "AlwaysAllow" {
                self.push(Diagnostic::warning(
                    &field,
                    "AlwaysAllow lets every authenticated request through",
                ));
            }
        }
        let admission_plugins = options
            .admission_plugins
            .clone()
            .unwrap_or_else(|| vec!["NodeRestriction".to_owned()]);
        for (index, name) in admission_plugins.iter().enumerate() {
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
                ok = false;
                self.push(
                    Diagnostic::error(
                        format!("options.admission_plugins[{index}]"),
                        format!("`{name}` is not an admission plugin name"),
                    )
                    .help("one plugin per entry, for example NodeRestriction"),
                );
            }
        }
        for (index, name) in options.extra_sans.iter().enumerate() {
            if name.parse::<Ipv4Addr>().is_err() && !is_dns_subdomain(name) {
                ok = false;
                self.push(Diagnostic::error(
                    format!("options.extra_sans[{index}]"),
                    format!("`{name}` is neither an IPv4 address nor a DNS name"),
                ));
            }
        }
        for (component, flags) in &options.extra_flags {
            for flag in flags.keys() {
                let valid = !flag.is_empty()
                    && flag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
                    && !flag.starts_with('-');
                if !valid {
                    ok = false;
                    let component_key = serde_json::to_value(component)
                        .ok()
                        .and_then(|value| value.as_str().map(str::to_owned))
                        .unwrap_or_default();
                    self.push(
                        Diagnostic::error(
                            format!("options.extra_flags.{component_key}.{}", key_segment(flag)),
                            format!("`{flag}` is not a flag name"),
                        )
                        .help("write the flag without its dashes: `v = \"2\"` for --v=2"),
                    );
                }
            }
        }
        let leader_election = options
            .leader_election
            .map(|timings| self.leader_election(timings));
        if leader_election.is_some_and(|timings| timings.is_none()) {
            ok = false;
        }
        let kube_proxy = options.kube_proxy.unwrap_or(match mode {
            ControlPlaneMode::StaticPods => KubeProxyMode::StaticPod,
            ControlPlaneMode::Systemd => KubeProxyMode::Systemd,
        });
        let (cluster_dns, upstream_dns) = self.cluster_dns(spec)?;
        let pod_security = self.pod_security(spec, version)?;
        let encryption_key_generations = self.encryption_key_generations(spec)?;
        let plan = OptionsPlan {
            encryption_at_rest: options
                .encryption_at_rest
                .unwrap_or(EncryptionProvider::Aescbc),
            encryption_key_generations,
            audit_log: options.audit_log.unwrap_or(true),
            authorization_modes,
            admission_plugins,
            extra_sans: options.extra_sans.clone(),
            kube_proxy,
            kubeconfig_certificates: options
                .kubeconfig_certificates
                .unwrap_or(KubeconfigCertificates::Embedded),
            kubelet_credentials: options
                .kubelet_credentials
                .unwrap_or(KubeletCredentials::Issued),
            leader_election: leader_election.flatten(),
            extra_flags: options.extra_flags.clone(),
            cluster_dns,
            upstream_dns,
            pod_security,
            xen_guest: options.xen_guest.unwrap_or_default(),
        };
        ok.then_some(plan)
    }

    /// `options.encryption_key_generations` with its default `[0]`; `None` after recording an
    /// error (an empty list, a generation listed twice). A list given while encryption at rest
    /// is off only draws a warning: there is nothing for it to do.
    pub(super) fn encryption_key_generations(&mut self, spec: &Spec) -> Option<Vec<u32>> {
        let Some(generations) = spec.options.encryption_key_generations.clone() else {
            return Some(vec![0]);
        };
        let field = "options.encryption_key_generations";
        if spec.options.encryption_at_rest == Some(EncryptionProvider::None) {
            self.push(Diagnostic::warning(
                field,
                "encryption at rest is off (encryption_at_rest = \"none\"), so no key is used",
            ));
        }
        if generations.is_empty() {
            self.push(
                Diagnostic::error(field, "no key generation")
                    .help("the first generation encrypts; the default is [0]"),
            );
            return None;
        }
        let mut ok = true;
        for (index, generation) in generations.iter().enumerate() {
            if generations[..index].contains(generation) {
                ok = false;
                self.push(Diagnostic::error(
                    format!("{field}[{index}]"),
                    format!("generation {generation} is listed twice"),
                ));
            }
        }
        ok.then_some(generations)
    }

    /// `options.pod_security` with its default for `version` (`baseline` from
    /// [`POD_SECURITY_MINOR`]); `Some(None)` before that version, `None` after recording an
    /// error (a level other than `privileged` asked of a version without PodSecurity
    /// admission).
    pub(super) fn pod_security(
        &mut self,
        spec: &Spec,
        version: Option<KubeVersion>,
    ) -> Option<Option<PodSecurityLevel>> {
        let asked = spec.options.pod_security;
        let Some(version) = version else {
            return Some(asked);
        };
        if version.minor >= POD_SECURITY_MINOR {
            return Some(Some(asked.unwrap_or(PodSecurityLevel::Baseline)));
        }
        match asked {
            None | Some(PodSecurityLevel::Privileged) => Some(None),
            Some(level) => {
                self.push(
                    Diagnostic::error(
                        "options.pod_security",
                        format!(
                            "Kubernetes {version} has no PodSecurity admission to enforce `{}`",
                            level.name()
                        ),
                    )
                    .help(format!(
                        "PodSecurity admission is on from Kubernetes 1.{POD_SECURITY_MINOR}; before it, leave the option out or write \"privileged\""
                    )),
                );
                None
            }
        }
    }

    /// `options.cluster_dns` (default `coredns`) and `options.upstream_dns` parsed; `None`
    /// after recording an error.
    pub(super) fn cluster_dns(&mut self, spec: &Spec) -> Option<(ClusterDns, Vec<Ipv4Addr>)> {
        let options = &spec.options;
        let cluster_dns = options.cluster_dns.unwrap_or(ClusterDns::Coredns);
        let mut ok = true;
        let mut upstream_dns = Vec::new();
        for (index, text) in options.upstream_dns.iter().enumerate() {
            match text.parse::<Ipv4Addr>() {
                Ok(address) if !upstream_dns.contains(&address) => upstream_dns.push(address),
                Ok(_) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("options.upstream_dns[{index}]"),
                        format!("{text} is listed twice"),
                    ));
                }
                Err(_) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("options.upstream_dns[{index}]"),
                        format!("`{text}` is not an IPv4 address"),
                    ));
                }
            }
        }
        if cluster_dns == ClusterDns::None && !upstream_dns.is_empty() {
            ok = false;
            self.push(
                Diagnostic::error(
                    "options.upstream_dns",
                    "upstream resolvers are for kiln's cluster DNS, and cluster_dns is \"none\"",
                )
                .help("remove upstream_dns, or set cluster_dns = \"coredns\""),
            );
        }
        ok.then_some((cluster_dns, upstream_dns))
    }

    /// `[options.leader_election]` with the components' defaults filled in, if client-go's
    /// leader elector would accept it: every time at least 1 s, the lease longer than the renew
    /// deadline, and the renew deadline longer than 1.2 retry periods (its jitter factor).
    /// Otherwise the components exit at start, so this is an error here.
    pub(super) fn leader_election(
        &mut self,
        timings: LeaderElectionSpec,
    ) -> Option<LeaderElectionPlan> {
        const FIELD: &str = "options.leader_election";
        let defaults = LeaderElectionPlan::KUBERNETES_DEFAULTS;
        let plan = LeaderElectionPlan {
            lease_duration_seconds: timings
                .lease_duration_seconds
                .unwrap_or(defaults.lease_duration_seconds),
            renew_deadline_seconds: timings
                .renew_deadline_seconds
                .unwrap_or(defaults.renew_deadline_seconds),
            retry_period_seconds: timings
                .retry_period_seconds
                .unwrap_or(defaults.retry_period_seconds),
        };
        let mut ok = true;
        for (name, value) in [
            ("lease_duration_seconds", plan.lease_duration_seconds),
            ("renew_deadline_seconds", plan.renew_deadline_seconds),
            ("retry_period_seconds", plan.retry_period_seconds),
        ] {
            if value == 0 {
                ok = false;
                self.push(Diagnostic::error(
                    format!("{FIELD}.{name}"),
                    "must be at least 1 second",
                ));
            }
        }
        if ok && plan.lease_duration_seconds <= plan.renew_deadline_seconds {
            ok = false;
            self.push(
                Diagnostic::error(
                    format!("{FIELD}.lease_duration_seconds"),
                    format!(
                        "the lease ({} s) must be longer than the renew deadline ({} s)",
                        plan.lease_duration_seconds, plan.renew_deadline_seconds
                    ),
                )
                .help("for example 60, 40 and 10 seconds"),
            );
        }
        // 10 * deadline > 12 * retry is deadline > 1.2 * retry without floating point.
        if ok
            && u64::from(plan.renew_deadline_seconds) * 10
                <= u64::from(plan.retry_period_seconds) * 12
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    format!("{FIELD}.renew_deadline_seconds"),
                    format!(
                        "the renew deadline ({} s) must be longer than 1.2 retry periods ({} s)",
                        plan.renew_deadline_seconds, plan.retry_period_seconds
                    ),
                )
                .help("for example 60, 40 and 10 seconds"),
            );
        }
        ok.then_some(plan)
    }
}
