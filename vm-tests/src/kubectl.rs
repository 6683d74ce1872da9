//! kubectl from the host, and kubeconfigs rewritten to reach the apiserver through a forwarded
//! port while still verifying its certificate.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::Error;

/// kubectl (the cluster's own version) with one kubeconfig.
#[derive(Debug, Clone)]
pub struct Kubectl {
    /// The kubectl program.
    pub program: PathBuf,
    /// The kubeconfig it uses.
    pub kubeconfig: PathBuf,
}

impl Kubectl {
    /// kubectl `program` with `kubeconfig`.
    pub fn new(program: &Path, kubeconfig: &Path) -> Self {
        Self {
            program: program.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
        }
    }

    /// Runs kubectl with `args`, whatever its exit status.
    pub fn output(&self, args: &[&str]) -> crate::Result<Output> {
        Command::new(&self.program)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--request-timeout=30s")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|error| Error::io(format!("running {}", self.program.display()), error))
    }

    /// Runs kubectl with `args` and returns its standard output; a non-zero exit is an
    /// [`Error::Command`] carrying standard error.
    ///
    /// A request that failed in transit (`transient`: a timeout or a dropped connection, as a
    /// TCG guest under load gives now and then) is tried again, up to `ATTEMPTS` (3) times in all.
    /// A `create` whose first attempt reached the apiserver before the connection dropped finds
    /// its object on the next attempt: that `AlreadyExists` counts as success. Use
    /// [`Kubectl::run_once`] where a failure in transit is itself what is checked.
    pub fn run(&self, args: &[&str]) -> crate::Result<String> {
        let mut failed_in_transit = false;
        for attempt in 1..=ATTEMPTS {
            let output = self.output(args)?;
            if output.status.success() {
                return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
            }
            let stderr = describe(&output);
            if failed_in_transit && args.first() == Some(&"create") && already_exists(&stderr) {
                return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
            }
            if attempt < ATTEMPTS && transient(&stderr) {
                eprintln!(
                    "    (kubectl {}: {}; trying again)",
                    args.join(" "),
                    stderr.lines().next().unwrap_or_default()
                );
                failed_in_transit = true;
                std::thread::sleep(RETRY_PAUSE);
                continue;
            }
            return Err(command_error(args, &output));
        }
        unreachable!("the last attempt returns")
    }

    /// Runs kubectl with `args` once, like [`Kubectl::run`] but without trying again.
    pub fn run_once(&self, args: &[&str]) -> crate::Result<String> {
        let output = self.output(args)?;
        if output.status.success() {
            Ok(String::from_utf8_lossy(&output.stdout).into_owned())
        } else {
            Err(command_error(args, &output))
        }
    }

    /// Runs kubectl with `args` (which should ask for `-o json`) and parses its output.
    pub fn json(&self, args: &[&str]) -> crate::Result<Value> {
        let text = self.run(args)?;
        serde_json::from_str(&text).map_err(|error| Error::Command {
            command: format!("kubectl {}", args.join(" ")),
            status: "unparsable output".to_owned(),
            output: format!("{error}: {text}"),
        })
    }
}

/// How many times [`Kubectl::run`] tries a request that fails in transit.
pub const ATTEMPTS: u32 = 3;
const RETRY_PAUSE: std::time::Duration = std::time::Duration::from_secs(5);

fn command_error(args: &[&str], output: &Output) -> Error {
    Error::Command {
        command: format!("kubectl {}", args.join(" ")),
        status: output.status.to_string(),
        output: describe(output),
    }
}

/// Whether kubectl's error says the request failed in transit (worth another try) rather than
/// being answered: timeouts, refused or dropped connections, an apiserver whose etcd request
/// timed out. A failed certificate verification is an answer, never transient.
pub fn transient(stderr: &str) -> bool {
    const IN_TRANSIT: &[&str] = &[
        "context deadline exceeded",
        "Client.Timeout exceeded",
        "TLS handshake timeout",
        "i/o timeout",
        "connection refused",
        "connection reset by peer",
        "unexpected EOF",
        "http2: client connection lost",
        "etcdserver: request timed out",
        "etcdserver: leader changed",
        "the server was unable to return a response in the time allotted",
        "the server is currently unable to handle the request",
    ];
    !stderr.contains("x509") && IN_TRANSIT.iter().any(|needle| stderr.contains(needle))
}

fn already_exists(stderr: &str) -> bool {
    stderr.contains("(AlreadyExists)") || stderr.contains("already exists")
}

/// A command's standard error, or its standard output when standard error is empty, trimmed.
pub(crate) fn describe(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    if stderr.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    } else {
        stderr.trim().to_owned()
    }
}

/// Rewrites a flattened kubeconfig (as `kubectl config view --raw --flatten -o json` prints it)
/// so that every cluster is reached at `https://127.0.0.1:<port>`. The certificate is still
/// verified: `tls-server-name` becomes the host the kubeconfig originally named, which the
/// apiserver's certificate was issued for. Nothing here ever sets `insecure-skip-tls-verify`.
pub fn forward_kubeconfig(mut config: Value, port: u16) -> crate::Result<Value> {
    let bad = |reason: String| Error::Command {
        command: "forwarding the kubeconfig".to_owned(),
        status: "unusable kubeconfig".to_owned(),
        output: reason,
    };
    let clusters = config
        .get_mut("clusters")
        .and_then(Value::as_array_mut)
        .ok_or_else(|| bad("it has no clusters".to_owned()))?;
    for entry in clusters {
        let cluster = entry
            .get_mut("cluster")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| bad("a cluster entry has no `cluster`".to_owned()))?;
        if cluster.get("insecure-skip-tls-verify") == Some(&Value::Bool(true)) {
            return Err(bad("it skips TLS verification".to_owned()));
        }
        let server = cluster
            .get("server")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("a cluster has no server".to_owned()))?;
        let host = server_host(server)
            .ok_or_else(|| bad(format!("cannot read the host of {server}")))?
            .to_owned();
        if !cluster.contains_key("tls-server-name") {
            cluster.insert("tls-server-name".to_owned(), Value::String(host));
        }
        cluster.insert(
            "server".to_owned(),
            Value::String(format!("https://127.0.0.1:{port}")),
        );
    }
    Ok(config)
}

/// The host of an `https://host:port` URL (IPv4 addresses and names; kiln has no IPv6).
fn server_host(server: &str) -> Option<&str> {
    let rest = server.strip_prefix("https://")?;
    let authority = rest.split('/').next()?;
    let host = authority
        .rsplit_once(':')
        .map_or(authority, |(host, _)| host);
    (!host.is_empty()).then_some(host)
}

/// Writes a kubeconfig derived from `source` (kiln's, embedded or referencing files) that
/// reaches the apiserver at 127.0.0.1:`port`, as `target` (mode 0600: it holds a client key).
pub fn write_forwarded_kubeconfig(
    kubectl: &Path,
    source: &Path,
    port: u16,
    target: &Path,
) -> crate::Result<()> {
    let flattened = Kubectl::new(kubectl, source).json(&[
        "config",
        "view",
        "--raw",
        "--flatten",
        "-o",
        "json",
    ])?;
    let forwarded = forward_kubeconfig(flattened, port)?;
    let text = serde_json::to_string_pretty(&forwarded)
        .map_err(|error| Error::io("serialising a kubeconfig", std::io::Error::other(error)))?;
    write_private(target, text.as_bytes())
}

/// Writes `contents` to `path` with mode 0600 from its creation, replacing any file there.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> crate::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;

    let _ = std::fs::remove_file(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|error| Error::io(format!("creating {}", path.display()), error))?;
    std::io::Write::write_all(&mut file, contents)
        .map_err(|error| Error::io(format!("writing {}", path.display()), error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_transit_are_told_from_answers() {
        for stderr in [
            "Unable to connect to the server: context deadline exceeded",
            "Unable to connect to the server: net/http: TLS handshake timeout",
            "The connection to the server 127.0.0.1:40001 was refused - did you specify the right host or port?\n\
             dial tcp 127.0.0.1:40001: connect: connection refused",
            "Error from server: etcdserver: request timed out",
            "Error from server (Timeout): the server was unable to return a response in the time allotted, but may still be processing the request",
        ] {
            assert!(transient(stderr), "{stderr}");
        }
        for stderr in [
            "Unable to connect to the server: x509: certificate signed by unknown authority",
            "Error from server (Forbidden): nodes \"node1\" is forbidden: node \"node2\" is not allowed to modify node \"node1\"",
            "error: You must be logged in to the server (Unauthorized)",
            "Error from server (NotFound): pods \"web\" not found",
            "Error from server (AlreadyExists): configmaps \"a\" already exists",
        ] {
            assert!(!transient(stderr), "{stderr}");
        }
        assert!(already_exists(
            "Error from server (AlreadyExists): secrets \"kiln-secret\" already exists"
        ));
    }

    #[test]
    fn forwarding_keeps_the_original_host_as_the_tls_server_name() {
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "two-node", "cluster": {
                "server": "https://192.168.50.11:6443",
                "certificate-authority-data": "Q0E="
            }}]
        });
        let forwarded = forward_kubeconfig(config, 41234).expect("forward");
        let cluster = &forwarded["clusters"][0]["cluster"];
        assert_eq!(cluster["server"], "https://127.0.0.1:41234");
        assert_eq!(cluster["tls-server-name"], "192.168.50.11");
        assert_eq!(cluster["certificate-authority-data"], "Q0E=");
        assert!(cluster.get("insecure-skip-tls-verify").is_none());
    }

    #[test]
    fn refuses_a_kubeconfig_that_skips_verification() {
        let config = serde_json::json!({"clusters": [{"name": "x", "cluster": {
            "server": "https://api.example:6443", "insecure-skip-tls-verify": true
        }}]});
        assert!(forward_kubeconfig(config, 1).is_err());
    }

    #[test]
    fn reads_server_hosts() {
        assert_eq!(
            server_host("https://192.168.50.11:6443"),
            Some("192.168.50.11")
        );
        assert_eq!(
            server_host("https://api.two-node:443/"),
            Some("api.two-node")
        );
        assert_eq!(server_host("https://lb"), Some("lb"));
        assert_eq!(server_host("http://x:1"), None);
    }
}
