//! The API endpoint: its mode, host and port, and the nodes behind it.

use super::*;

impl Checker {
    pub(super) fn endpoint(
        &mut self,
        spec: &Spec,
        nodes: &Option<Vec<NodePlan>>,
    ) -> Option<EndpointPlan> {
        let field = "cluster.endpoint";
        let control_planes: Vec<&crate::raw::NodeSpec> = spec
            .nodes
            .iter()
            .filter(|node| node.roles.contains(&Role::ControlPlane))
            .collect();
        let mut balancers: Vec<&crate::raw::NodeSpec> = spec
            .nodes
            .iter()
            .filter(|node| node.roles.contains(&Role::LoadBalancer))
            .collect();
        balancers.sort_by(|a, b| a.name.cmp(&b.name));
        let endpoint = spec.cluster.endpoint.as_ref();
        let mode = match endpoint.map(|endpoint| endpoint.mode) {
            Some(mode) => mode,
            None if control_planes.len() <= 1 => EndpointMode::Node,
            None if !balancers.is_empty() => EndpointMode::LoadBalancer,
            None => {
                self.push(
                    Diagnostic::error(
                        field,
                        format!("{} control-plane nodes need an API endpoint in front of them", control_planes.len()),
                    )
                    .help("set [cluster.endpoint] mode = \"load-balancer\" (with a load-balancer node or host) or \"local\""),
                );
                return None;
            }
        };
        let host = endpoint.and_then(|endpoint| endpoint.host.clone());
        if let Some(host) = &host {
            if mode != EndpointMode::LoadBalancer {
                self.push(
                    Diagnostic::error(
                        format!("{field}.host"),
                        "only a load-balancer endpoint takes a host",
                    )
                    .help("remove host, or set mode = \"load-balancer\""),
                );
                return None;
            }
            if host.parse::<Ipv4Addr>().is_err() && !is_dns_subdomain(host) {
                self.push(Diagnostic::error(
                    format!("{field}.host"),
                    format!("`{host}` is neither an IPv4 address nor a DNS name"),
                ));
                return None;
            }
        }
        let default_port = if mode == EndpointMode::Local {
            LOCAL_ENDPOINT_PORT
        } else {
            APISERVER_PORT
        };
        let port = endpoint
            .and_then(|endpoint| endpoint.port)
            .unwrap_or(default_port);
        if port == 0 {
            self.push(
                Diagnostic::error(format!("{field}.port"), "port 0 is not a port")
                    .help("1 to 65535"),
            );
            return None;
        }
        if mode != EndpointMode::LoadBalancer {
            for node in &balancers {
                self.push(Diagnostic::warning(
                    "nodes",
                    format!("node `{}` has the load-balancer role, but the endpoint mode is not load-balancer: nothing will use it", node.name),
                ));
            }
        }
        let primary = |name: &str| -> Option<String> {
            nodes
                .as_ref()?
                .iter()
                .find(|node| node.name == name)
                .map(|node| node.primary_address().to_string())
        };
        match mode {
            EndpointMode::Node => {
                if control_planes.is_empty() {
                    // role_counts reports the missing control plane; one error is enough.
                    return None;
                }
                if control_planes.len() != 1 {
                    self.push(
                        Diagnostic::error(
                            format!("{field}.mode"),
                            format!("endpoint mode `node` needs exactly one control-plane node; the spec has {}", control_planes.len()),
                        )
                        .help("use mode = \"load-balancer\" or \"local\" for several control-plane nodes"),
                    );
                    return None;
                }
                Some(EndpointPlan {
                    mode,
                    host: primary(&control_planes[0].name)?,
                    port,
                    load_balancer_nodes: Vec::new(),
                })
            }
            EndpointMode::LoadBalancer => {
                for node in &balancers {
                    if node.roles.contains(&Role::ControlPlane) && port == APISERVER_PORT {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.port"),
                                format!("node `{}` runs both the load balancer and an API server on port {APISERVER_PORT}", node.name),
                            )
                            .help("choose another endpoint port, or put the load balancer on its own node"),
                        );
                        return None;
                    }
                }
                let host = match (host, balancers.as_slice()) {
                    (Some(host), _) => host,
                    (None, [only]) => primary(&only.name)?,
                    (None, []) => {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.host"),
                                "a load-balancer endpoint without a load-balancer node or external address",
                            )
                            .help("give a node the load-balancer role, or set host to the external load balancer's name or address"),
                        );
                        return None;
                    }
                    (None, _) => {
                        self.push(
                            Diagnostic::error(
                                format!("{field}.host"),
                                format!("{} load-balancer nodes need one address that reaches them", balancers.len()),
                            )
                            .help("set host to a DNS name or virtual address shared by the load-balancer nodes"),
                        );
                        return None;
                    }
                };
                Some(EndpointPlan {
                    mode,
                    host,
                    port,
                    load_balancer_nodes: balancers.iter().map(|node| node.name.clone()).collect(),
                })
            }
            EndpointMode::Local => {
                if port == APISERVER_PORT {
                    self.push(
                        Diagnostic::error(
                            format!("{field}.port"),
                            format!("the local load balancer cannot listen on {APISERVER_PORT}: the API server does"),
                        )
                        .help(format!("use another port, such as {LOCAL_ENDPOINT_PORT}")),
                    );
                    return None;
                }
                Some(EndpointPlan {
                    mode,
                    host: "127.0.0.1".to_owned(),
                    port,
                    load_balancer_nodes: Vec::new(),
                })
            }
        }
    }
}
