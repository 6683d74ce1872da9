//! The API endpoint's load balancer: a complete nginx configuration, from a typed directive tree.

use std::fmt;

use kiln_spec::{EndpointMode, NodePlan, Plan, Role};

use crate::{Error, RenderedFile};

/// Where the load balancer's nginx configuration goes, relative to the node's root.
pub const NGINX_PATH: &str = "etc/nginx/nginx.conf";

/// The Kubernetes CA certificate on a node (kubeadm's layout), which the `/healthz` proxy
/// verifies the API servers against.
pub const CA_CERTIFICATE_PATH: &str = "/etc/kubernetes/pki/ca.crt";

/// The client certificate the `/healthz` proxy presents to the API servers (kiln-pki's
/// `healthz-client/<node>` in kubeadm's layout): they refuse anonymous requests in systemd
/// mode, and let any authenticated client read `/healthz`.
pub const CLIENT_CERTIFICATE_PATH: &str = "/etc/kubernetes/pki/healthz-client.crt";

/// The private key of [`CLIENT_CERTIFICATE_PATH`] (mode 0600, root's: nginx's master process
/// reads it at start, before its workers drop privileges).
pub const CLIENT_KEY_PATH: &str = "/etc/kubernetes/pki/healthz-client.key";

/// The name the `/healthz` proxy expects in the API servers' certificates: every API server
/// certificate carries `kubernetes` as a DNS name.
pub const APISERVER_TLS_NAME: &str = "kubernetes";

/// The port of the load balancer's plain-HTTP health check.
pub const HEALTH_CHECK_PORT: u16 = 80;

/// An nginx configuration file: comment lines, then main-context directives.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NginxConf {
    /// Comment lines written first, without their `# `.
    pub comments: Vec<String>,
    /// The main context's directives, in order.
    pub directives: Vec<Directive>,
}

/// One nginx directive: `name args;`, or `name args { ... }` when it has a block.
///
/// An argument with whitespace or one of `;{}#'"\` is written double-quoted, so no argument
/// can end its directive early.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Directive {
    /// The directive's name: `listen`.
    pub name: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
    /// Its block, for block directives such as `server`.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// A simple directive: `name args;`.
    pub fn simple<T: fmt::Display>(name: &'static str, args: impl IntoIterator<Item = T>) -> Self {
        Self {
            name,
            args: args.into_iter().map(|arg| arg.to_string()).collect(),
            block: None,
        }
    }

    /// A block directive: `name args { block }`.
    pub fn block<T: fmt::Display>(
        name: &'static str,
        args: impl IntoIterator<Item = T>,
        block: Vec<Directive>,
    ) -> Self {
        Self {
            block: Some(block),
            ..Self::simple(name, args)
        }
    }

    fn write(&self, out: &mut fmt::Formatter<'_>, depth: usize) -> fmt::Result {
        let indent = "    ".repeat(depth);
        write!(out, "{indent}{}", self.name)?;
        for arg in &self.args {
            write!(out, " {}", quote(arg))?;
        }
        match &self.block {
            None => writeln!(out, ";"),
            Some(block) => {
                writeln!(out, " {{")?;
                write_block(out, block, depth + 1)?;
                writeln!(out, "{indent}}}")
            }
        }
    }
}

/// Writes `directives` one per line, with a blank line around each block directive.
fn write_block(
    out: &mut fmt::Formatter<'_>,
    directives: &[Directive],
    depth: usize,
) -> fmt::Result {
    for (index, directive) in directives.iter().enumerate() {
        let previous_is_block = index > 0 && directives[index - 1].block.is_some();
        if index > 0 && (directive.block.is_some() || previous_is_block) {
            writeln!(out)?;
        }
        directive.write(out, depth)?;
    }
    Ok(())
}

fn quote(arg: &str) -> String {
    let special =
        |c: char| c.is_whitespace() || matches!(c, ';' | '{' | '}' | '#' | '\'' | '"' | '\\');
    if !arg.is_empty() && !arg.contains(special) {
        return arg.to_owned();
    }
    let escaped = arg.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

impl fmt::Display for NginxConf {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        for comment in &self.comments {
            writeln!(out, "# {comment}")?;
        }
        if !self.comments.is_empty() {
            writeln!(out)?;
        }
        write_block(out, &self.directives, 0)
    }
}

/// The nginx configuration of `node` (one of `plan`'s nodes), if the plan puts the API endpoint's load
/// balancer there:
///
/// - `load-balancer` mode, on each node of `endpoint.load_balancer_nodes`: a TCP (`stream`)
///   balancer on `endpoint.port` of every address, over every control-plane node's primary
///   address on the API servers' port (`cluster.apiserver_port`); and an HTTP server on port [`HEALTH_CHECK_PORT`] whose
///   `location = /healthz` proxies to the same API servers over HTTPS, verifying their
///   certificates against [`CA_CERTIFICATE_PATH`] under the name [`APISERVER_TLS_NAME`] and
///   presenting [`CLIENT_CERTIFICATE_PATH`], so an outside health checker sees the endpoint
///   healthy exactly while some API server is. (As Kubernetes The Hard Way's, but verified:
///   its `proxy_ssl_trusted_certificate` lacks `proxy_ssl_verify on` and so checks nothing;
///   and authenticated: its API servers answered anonymous requests, kiln's do not.)
/// - `local` mode, on every node: the same TCP balancer on `127.0.0.1:endpoint.port` only, with
///   no HTTP server (port 80 on every node belongs to workloads).
/// - `node` mode, or an external load balancer: `None`.
///
/// The file is complete (`events`, `pid /run/nginx.pid`, `error_log stderr` for the journal, no
/// `user`, so workers run as nginx's built-in unprivileged default). It includes
/// `/etc/nginx/modules-enabled/*.conf`, where Debian's `libnginx-mod-stream` loads the `stream`
/// module; with nginx built with `stream`, the include matches nothing and does no harm.
pub fn load_balancer_config(plan: &Plan, node: &NodePlan) -> Result<Option<NginxConf>, Error> {
    let this = node;
    let endpoint = &plan.cluster.endpoint;
    let listen = match endpoint.mode {
        EndpointMode::LoadBalancer if endpoint.load_balancer_nodes.contains(&this.name) => {
            endpoint.port.to_string()
        }
        EndpointMode::Local => format!("127.0.0.1:{}", endpoint.port),
        EndpointMode::Node | EndpointMode::LoadBalancer => return Ok(None),
    };
    let apiservers: Vec<String> = plan
        .nodes_with(Role::ControlPlane)
        .map(|control_plane| {
            format!(
                "{}:{}",
                control_plane.primary_address(),
                plan.cluster.apiserver_port
            )
        })
        .collect();
    if apiservers.is_empty() {
        return Err(Error::NoControlPlane {
            node: this.name.clone(),
        });
    }
    let upstream = |name: &'static str| {
        Directive::block(
            "upstream",
            [name],
            apiservers
                .iter()
                .map(|server| Directive::simple("server", [server]))
                .collect(),
        )
    };
    let stream = Directive::block(
        "stream",
        None::<&str>,
        vec![
            upstream("kubernetes_apiservers"),
            Directive::block(
                "server",
                None::<&str>,
                vec![
                    Directive::simple("listen", [&listen]),
                    // Fail over to the next API server quickly rather than after nginx's 60 s.
                    Directive::simple("proxy_connect_timeout", ["2s"]),
                    Directive::simple("proxy_pass", ["kubernetes_apiservers"]),
                ],
            ),
        ],
    );
    let mut directives = vec![
        Directive::simple("include", ["/etc/nginx/modules-enabled/*.conf"]),
        Directive::simple("worker_processes", ["auto"]),
        Directive::simple("pid", ["/run/nginx.pid"]),
        Directive::simple("error_log", ["stderr"]),
        Directive::block(
            "events",
            None::<&str>,
            vec![Directive::simple("worker_connections", ["1024"])],
        ),
        stream,
    ];
    let purpose = match endpoint.mode {
        EndpointMode::Local => "the API endpoint's local TCP load balancer",
        _ => {
            directives.push(health_check(upstream("kubernetes_apiservers_https")));
            "the API endpoint's TCP load balancer, with an HTTP /healthz proxy"
        }
    };
    Ok(Some(NginxConf {
        comments: vec![format!(
            "Rendered by kiln for node {}: {purpose}.",
            this.name
        )],
        directives,
    }))
}

fn health_check(upstream: Directive) -> Directive {
    let location = Directive::block(
        "location",
        ["=", "/healthz"],
        vec![
            Directive::simple(
                "proxy_pass",
                ["https://kubernetes_apiservers_https/healthz"],
            ),
            Directive::simple("proxy_ssl_verify", ["on"]),
            Directive::simple("proxy_ssl_trusted_certificate", [CA_CERTIFICATE_PATH]),
            Directive::simple("proxy_ssl_name", [APISERVER_TLS_NAME]),
            Directive::simple("proxy_ssl_certificate", [CLIENT_CERTIFICATE_PATH]),
            Directive::simple("proxy_ssl_certificate_key", [CLIENT_KEY_PATH]),
            Directive::simple("proxy_connect_timeout", ["2s"]),
        ],
    );
    Directive::block(
        "http",
        None::<&str>,
        vec![
            Directive::simple("access_log", ["off"]),
            upstream,
            Directive::block(
                "server",
                None::<&str>,
                vec![Directive::simple("listen", [HEALTH_CHECK_PORT]), location],
            ),
        ],
    )
}

/// [`load_balancer_config`] as the file [`NGINX_PATH`], or nothing.
pub fn load_balancer(plan: &Plan, node: &NodePlan) -> Result<Vec<RenderedFile>, Error> {
    Ok(load_balancer_config(plan, node)?
        .map(|conf| RenderedFile {
            path: NGINX_PATH.to_owned(),
            contents: conf.to_string().into_bytes(),
            mode: 0o644,
        })
        .into_iter()
        .collect())
}
