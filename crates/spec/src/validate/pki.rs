//! The PKI: dates, validity, generations and external CAs.

use super::*;

impl Checker {
    pub(super) fn pki(&mut self, spec: &Spec, mode: ControlPlaneMode) -> Option<PkiPlan> {
        let pki = &spec.pki;
        let mut ok = true;
        let issued_at = match crate::time::unix_seconds(&pki.issued_at) {
            Ok(seconds) => Some(seconds),
            Err(why) => {
                self.push(Diagnostic::error(
                    "pki.issued_at",
                    format!("`{}` {why}", pki.issued_at),
                ));
                None
            }
        };
        let ca_validity_days = pki.ca_validity_days.unwrap_or(3650);
        let leaf_validity_days = pki.leaf_validity_days.unwrap_or(365);
        for (field, days) in [
            ("pki.ca_validity_days", ca_validity_days),
            ("pki.leaf_validity_days", leaf_validity_days),
        ] {
            if days == 0 {
                ok = false;
                self.push(Diagnostic::error(field, "a validity of 0 days").help("at least 1 day"));
            }
        }
        if leaf_validity_days > ca_validity_days {
            ok = false;
            self.push(
                Diagnostic::error(
                    "pki.leaf_validity_days",
                    format!("leaves valid for {leaf_validity_days} days would outlive their CA ({ca_validity_days} days)"),
                )
                .help("make leaf_validity_days at most ca_validity_days"),
            );
        }
        let known = known_certificate_names(spec, mode);
        for name in pki.generations.keys() {
            if !known.contains(name) {
                ok = false;
                let per_node: Vec<&str> = NODE_CERTIFICATES.iter().map(|(kind, _)| *kind).collect();
                self.push(
                    Diagnostic::error(
                        format!("pki.generations.{}", key_segment(name)),
                        format!("no certificate is called `{name}`"),
                    )
                    .help(format!(
                        "certificates are {}, and per node {} as `<kind>/<node>`",
                        CA_CERTIFICATES
                            .iter()
                            .chain(CLUSTER_CERTIFICATES)
                            .copied()
                            .collect::<Vec<_>>()
                            .join(", "),
                        per_node.join(", ")
                    )),
                );
            }
        }
        for (ca, files) in &pki.ca {
            let ca_field = format!("pki.ca.{}", ca_key(*ca));
            for (name, path) in [("cert", &files.cert), ("key", &files.key)] {
                if path.is_empty() {
                    ok = false;
                    self.push(Diagnostic::error(
                        format!("{ca_field}.{name}"),
                        "an empty path",
                    ));
                }
            }
        }
        let controller_manager_signs_csrs = pki.controller_manager_signs_csrs.unwrap_or(false);
        if spec.options.kubelet_credentials == Some(KubeletCredentials::BootstrapToken)
            && !controller_manager_signs_csrs
        {
            ok = false;
            self.push(
                Diagnostic::error(
                    "options.kubelet_credentials",
                    "bootstrap-token kubelets need the controller manager to sign their CSRs",
                )
                .help("set pki.controller_manager_signs_csrs = true"),
            );
        }
        let bootstrap =
            spec.options.kubelet_credentials == Some(KubeletCredentials::BootstrapToken);
        let bootstrap_token_expires = match (&pki.bootstrap_token_expires, bootstrap) {
            (None, false) => None,
            (None, true) => {
                ok = false;
                self.push(
                    Diagnostic::error(
                        "options.kubelet_credentials",
                        "bootstrap-token kubelets need their token's expiry",
                    )
                    .help("set pki.bootstrap_token_expires to a date and time after pki.issued_at, such as 2027-01-01T00:00:00Z"),
                );
                None
            }
            (Some(expires), _) => match crate::time::unix_seconds(expires) {
                Err(why) => {
                    ok = false;
                    self.push(Diagnostic::error(
                        "pki.bootstrap_token_expires",
                        format!("`{expires}` {why}"),
                    ));
                    None
                }
                Ok(seconds) => {
                    if !bootstrap {
                        self.push(Diagnostic::warning(
                            "pki.bootstrap_token_expires",
                            "no kubelet joins with a bootstrap token (options.kubelet_credentials is not \"bootstrap-token\"): it is not used",
                        ));
                    }
                    if issued_at.is_some_and(|issued| seconds <= issued) {
                        ok = false;
                        self.push(Diagnostic::error(
                            "pki.bootstrap_token_expires",
                            format!(
                                "the token would expire at or before pki.issued_at ({})",
                                pki.issued_at
                            ),
                        ));
                    }
                    bootstrap.then_some(seconds)
                }
            },
        };
        let plan = PkiPlan {
            issued_at: issued_at?,
            ca_validity_days,
            leaf_validity_days,
            generation: pki.generation.unwrap_or(0),
            generations: pki.generations.clone(),
            expiry_warning_days: pki.expiry_warning_days.unwrap_or(30),
            controller_manager_signs_csrs,
            bootstrap_token_expires,
            external_cas: pki.ca.clone(),
        };
        ok.then_some(plan)
    }
}

fn known_certificate_names(spec: &Spec, mode: ControlPlaneMode) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = CA_CERTIFICATES
        .iter()
        .chain(CLUSTER_CERTIFICATES)
        .map(|name| (*name).to_owned())
        .collect();
    for node in &spec.nodes {
        let roles: BTreeSet<Role> = node.roles.iter().copied().collect();
        for (kind, role) in NODE_CERTIFICATES {
            let wanted = match role {
                Some(role) => roles.contains(role),
                None => runs_kubelet(&roles, mode),
            };
            if wanted {
                names.insert(format!("{kind}/{}", node.name));
            }
        }
    }
    names
}

fn ca_key(ca: crate::raw::CaName) -> &'static str {
    match ca {
        crate::raw::CaName::Kubernetes => "kubernetes",
        crate::raw::CaName::Etcd => "etcd",
        crate::raw::CaName::FrontProxy => "front-proxy",
    }
}
