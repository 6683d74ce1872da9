//! The API endpoint: its mode, host and port, and the nodes behind it.

use super::*;

/// The field every endpoint diagnostic is under.
const FIELD: &str = "cluster.endpoint";

impl Checker {
    pub(super) fn endpoint(
        &mut self,
        spec: &Spec,
        nodes: &Option<Vec<NodePlan>>,
        apiserver_port: Option<u16>,
    ) -> Option<EndpointPlan> {
        let apiserver_port = apiserver_port?;
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
        let mode = self.endpoint_mode(
            endpoint.map(|endpoint| endpoint.mode),
            control_planes.len(),
            balancers.len(),
        )?;
        let host = self.endpoint_host(mode, endpoint.and_then(|endpoint| endpoint.host.clone()))?;
        let port = self.endpoint_port(
            mode,
            endpoint.and_then(|endpoint| endpoint.port),
            apiserver_port,
        )?;
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
                let only = self.single_control_plane(&control_planes)?;
                if port != apiserver_port {
                    self.push(
                        Diagnostic::error(
                            format!("{FIELD}.port"),
                            format!("endpoint mode `node` reaches the API server directly, which listens on {apiserver_port}, not {port}"),
                        )
                        .help(format!("leave the endpoint's port out, or set cluster.apiserver_port = {port}")),
                    );
                    return None;
                }
                Some(EndpointPlan {
                    mode,
                    host: primary(&only.name)?,
                    port,
                    load_balancer_nodes: Vec::new(),
                })
            }
            EndpointMode::LoadBalancer => {
                self.no_api_server_behind_its_own_port(&balancers, port, apiserver_port)?;
                let host = match (host, balancers.as_slice()) {
                    (Some(host), _) => host,
                    (None, [only]) => primary(&only.name)?,
                    (None, others) => return self.no_load_balancer_address(others.len()),
                };
                Some(EndpointPlan {
                    mode,
                    host,
                    port,
                    load_balancer_nodes: balancers.iter().map(|node| node.name.clone()).collect(),
                })
            }
            EndpointMode::Local => {
                if port == apiserver_port {
                    let other = if apiserver_port == LOCAL_ENDPOINT_PORT {
                        APISERVER_PORT
                    } else {
                        LOCAL_ENDPOINT_PORT
                    };
                    self.push(
                        Diagnostic::error(
                            format!("{FIELD}.port"),
                            format!("the local load balancer cannot listen on {apiserver_port}: the API server does"),
                        )
                        .help(format!("use another port, such as {other}")),
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

    /// The endpoint's mode as given, or the default: `node` for at most one control-plane
    /// node, `load-balancer` when a node has that role, and otherwise an error.
    fn endpoint_mode(
        &mut self,
        given: Option<EndpointMode>,
        control_planes: usize,
        balancers: usize,
    ) -> Option<EndpointMode> {
        match given {
            Some(mode) => Some(mode),
            None if control_planes <= 1 => Some(EndpointMode::Node),
            None if balancers > 0 => Some(EndpointMode::LoadBalancer),
            None => {
                self.push(
                    Diagnostic::error(
                        FIELD,
                        format!("{control_planes} control-plane nodes need an API endpoint in front of them"),
                    )
                    .help("set [cluster.endpoint] mode = \"load-balancer\" (with a load-balancer node or host) or \"local\""),
                );
                None
            }
        }
    }

    /// The endpoint's host, if given: only a load-balancer endpoint takes one, an IPv4
    /// address or a DNS name. `None` (outside) is an error; `Some(None)` is no host.
    fn endpoint_host(
        &mut self,
        mode: EndpointMode,
        host: Option<String>,
    ) -> Option<Option<String>> {
        let Some(host) = host else {
            return Some(None);
        };
        if mode != EndpointMode::LoadBalancer {
            self.push(
                Diagnostic::error(
                    format!("{FIELD}.host"),
                    "only a load-balancer endpoint takes a host",
                )
                .help("remove host, or set mode = \"load-balancer\""),
            );
            return None;
        }
        if host.parse::<Ipv4Addr>().is_err() && !is_dns_subdomain(&host) {
            self.push(Diagnostic::error(
                format!("{FIELD}.host"),
                format!("`{host}` is neither an IPv4 address nor a DNS name"),
            ));
            return None;
        }
        Some(Some(host))
    }

    /// The API servers' port as given, or [`APISERVER_PORT`]; never 0.
    pub(super) fn apiserver_port(&mut self, given: Option<u16>) -> Option<u16> {
        let port = given.unwrap_or(APISERVER_PORT);
        if port == 0 {
            self.push(
                Diagnostic::error("cluster.apiserver_port", "port 0 is not a port")
                    .help("1 to 65535; the default is 6443"),
            );
            return None;
        }
        Some(port)
    }

    /// The endpoint's port as given, or the mode's default (the API servers' port, or
    /// [`LOCAL_ENDPOINT_PORT`] for `local`); never 0.
    fn endpoint_port(
        &mut self,
        mode: EndpointMode,
        given: Option<u16>,
        apiserver_port: u16,
    ) -> Option<u16> {
        let default = if mode == EndpointMode::Local {
            LOCAL_ENDPOINT_PORT
        } else {
            apiserver_port
        };
        let port = given.unwrap_or(default);
        if port == 0 {
            self.push(
                Diagnostic::error(format!("{FIELD}.port"), "port 0 is not a port")
                    .help("1 to 65535"),
            );
            return None;
        }
        Some(port)
    }

    /// The one control-plane node a `node` endpoint points at.
    fn single_control_plane<'spec>(
        &mut self,
        control_planes: &[&'spec crate::raw::NodeSpec],
    ) -> Option<&'spec crate::raw::NodeSpec> {
        match control_planes {
            [only] => Some(only),
            // role_counts reports the missing control plane; one error is enough.
            [] => None,
            several => {
                self.push(
                    Diagnostic::error(
                        format!("{FIELD}.mode"),
                        format!("endpoint mode `node` needs exactly one control-plane node; the spec has {}", several.len()),
                    )
                    .help("use mode = \"load-balancer\" or \"local\" for several control-plane nodes"),
                );
                None
            }
        }
    }

    /// A load-balancer node that also runs an API server cannot take the API server's port.
    fn no_api_server_behind_its_own_port(
        &mut self,
        balancers: &[&crate::raw::NodeSpec],
        port: u16,
        apiserver_port: u16,
    ) -> Option<()> {
        for node in balancers {
            if node.roles.contains(&Role::ControlPlane) && port == apiserver_port {
                self.push(
                    Diagnostic::error(
                        format!("{FIELD}.port"),
                        format!("node `{}` runs both the load balancer and an API server on port {apiserver_port}", node.name),
                    )
                    .help("choose another endpoint port, or put the load balancer on its own node"),
                );
                return None;
            }
        }
        Some(())
    }

    /// The error for a load-balancer endpoint without a host and not exactly one
    /// load-balancer node (`balancers` of them) whose address could be it.
    fn no_load_balancer_address(&mut self, balancers: usize) -> Option<EndpointPlan> {
        let diagnostic = if balancers == 0 {
            Diagnostic::error(
                format!("{FIELD}.host"),
                "a load-balancer endpoint without a load-balancer node or external address",
            )
            .help("give a node the load-balancer role, or set host to the external load balancer's name or address")
        } else {
            Diagnostic::error(
                format!("{FIELD}.host"),
                format!("{balancers} load-balancer nodes need one address that reaches them"),
            )
            .help("set host to a DNS name or virtual address shared by the load-balancer nodes")
        };
        self.push(diagnostic);
        None
    }
}
