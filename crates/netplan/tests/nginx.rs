//! nginx checks kiln's load-balancer configuration: `nginx -t` (Debian's `nginx` with
//! `libnginx-mod-stream`) accepts it for the HA example's load-balancer node and, for a `local`
//! endpoint, on every node. nginx resolves the upstream addresses but connects to nothing.

mod common;

use std::path::Path;
use std::process::Command;

use kiln_spec::{APISERVER_PORT, Plan, Role};

/// Runs `nginx -t` on `conf` in a scratch prefix and returns (success, nginx's messages).
///
/// Two things are arranged for the test, and only these: the prefix gets a `modules` link to
/// nginx's own module directory (Debian's `modules-enabled/50-mod-stream.conf` loads
/// `modules/ngx_stream_module.so` relative to the prefix), and the CA certificate path, which
/// nginx opens while testing, is pointed at a throwaway certificate in the prefix.
fn nginx_test(conf: &str) -> (bool, String) {
    let nginx = kiln_testkit::tool("nginx", "nginx libnginx-mod-stream");
    let openssl = kiln_testkit::tool("openssl", "openssl");
    let prefix = tempfile::tempdir().expect("a scratch directory");
    let modules = Path::new("/usr/share/nginx/modules");
    assert!(
        modules.is_dir() && Path::new("/etc/nginx/modules-enabled/50-mod-stream.conf").is_file(),
        "nginx's stream module is not installed; install the Debian package: apt-get install -y libnginx-mod-stream"
    );
    std::os::unix::fs::symlink(modules, prefix.path().join("modules")).expect("symlink modules");
    let ca = prefix.path().join("ca.crt");
    let key = prefix.path().join("ca.key");
    let output = kiln_testkit::run(
        Command::new(openssl)
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-nodes",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&ca)
            .args(["-days", "1", "-subj", "/CN=kiln-netplan test CA"]),
    );
    assert!(
        output.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    // `nginx -t` loads every certificate and key it names: the test CA's pair stands in for the
    // CA and for the health check's client certificate.
    let conf = conf
        .replace(kiln_netplan::CA_CERTIFICATE_PATH, &ca.display().to_string())
        .replace(
            kiln_netplan::CLIENT_CERTIFICATE_PATH,
            &ca.display().to_string(),
        )
        .replace(kiln_netplan::CLIENT_KEY_PATH, &key.display().to_string());
    let path = kiln_testkit::write_file(prefix.path(), "nginx.conf", conf.as_bytes(), 0o644);
    let mut prefix_arg = prefix.path().display().to_string();
    prefix_arg.push('/');
    let output = kiln_testkit::run(
        Command::new(nginx)
            .arg("-t")
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(prefix_arg)
            .args(["-e", "stderr"]),
    );
    let messages = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), messages)
}

fn conf_of(plan: &Plan, node: &str) -> Option<String> {
    kiln_netplan::load_balancer_config(plan, plan.node(node).expect("a node of the plan"))
        .expect("renders")
        .map(|conf| conf.to_string())
}

/// The control-plane nodes' `address:6443`, by name.
fn apiservers(plan: &Plan) -> Vec<String> {
    plan.nodes_with(Role::ControlPlane)
        .map(|node| format!("{}:{APISERVER_PORT}", node.primary_address()))
        .collect()
}

/// The `server` lines of `conf`'s upstream blocks, in order.
fn upstream_servers(conf: &str) -> Vec<String> {
    conf.lines()
        .map(str::trim)
        .filter_map(|line| {
            line.strip_prefix("server ")
                .and_then(|rest| rest.strip_suffix(';'))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn nginx_accepts_the_ha_load_balancer() {
    let plan = common::example("ha");
    assert_eq!(plan.cluster.endpoint.load_balancer_nodes, ["lb"]);
    for node in &plan.nodes {
        let conf = conf_of(&plan, &node.name);
        assert_eq!(
            conf.is_some(),
            node.name == "lb",
            "{}: only the load-balancer node runs nginx",
            node.name
        );
    }
    let conf = conf_of(&plan, "lb").expect("lb runs nginx");
    assert_eq!(
        conf.matches(kiln_netplan::CA_CERTIFICATE_PATH).count(),
        1,
        "the CA is referenced once"
    );
    let (ok, messages) = nginx_test(&conf);
    assert!(
        ok,
        "nginx -t rejected the ha load balancer:\n{messages}\n{conf}"
    );
    // Both upstreams (TCP and the HTTPS health check) list every API server.
    let servers = apiservers(&plan);
    assert_eq!(servers.len(), 3);
    assert_eq!(upstream_servers(&conf), [servers.clone(), servers].concat());
    assert!(conf.contains("\n        listen 6443;\n"), "{conf}");
    assert!(conf.contains("\n        listen 80;\n"), "{conf}");
    assert!(conf.contains("location = /healthz {"), "{conf}");
}

#[test]
fn nginx_accepts_the_local_load_balancer_on_every_node() {
    let source = common::example_source("ha")
        .replace("mode = \"load-balancer\"\nport = 6443", "mode = \"local\"");
    assert!(
        source.contains("mode = \"local\""),
        "the ha example's endpoint changed"
    );
    let plan = common::load_source(&source, "ha-local.toml");
    let listen = format!(
        "\n        listen 127.0.0.1:{};\n",
        plan.cluster.endpoint.port
    );
    for node in &plan.nodes {
        let conf = conf_of(&plan, &node.name).expect("every node runs the local balancer");
        let (ok, messages) = nginx_test(&conf);
        assert!(
            ok,
            "nginx -t rejected the local load balancer of {}:\n{messages}\n{conf}",
            node.name
        );
        assert!(conf.contains(&listen), "{conf}");
        assert!(
            !conf.contains("http {"),
            "no HTTP server on every node: {conf}"
        );
        assert_eq!(upstream_servers(&conf), apiservers(&plan));
    }
}

#[test]
fn nginx_test_can_fail() {
    // The oracle must be able to say no: an unbalanced brace and an unknown directive are rejected.
    let conf = conf_of(&common::example("ha"), "lb").expect("lb runs nginx");
    let unbalanced = conf
        .trim_end()
        .strip_suffix('}')
        .expect("ends with a block")
        .to_owned();
    assert!(!nginx_test(&unbalanced).0);
    assert!(
        !nginx_test(&conf.replace(
            "proxy_pass kubernetes_apiservers;",
            "proxy_pass kubernetes_apiservers; bogus_directive on;"
        ))
        .0
    );
}

#[test]
fn no_load_balancer_without_one_in_the_plan() {
    for example in ["two-node", "kubeadm-bootstrap", "xen-static-pods"] {
        let plan = common::example(example);
        for node in &plan.nodes {
            assert!(
                kiln_netplan::load_balancer(&plan, node)
                    .expect("renders")
                    .is_empty(),
                "{example}/{}",
                node.name
            );
        }
    }
}
