//! The HA example's load balancer end to end, in throwaway network namespaces: nginx runs kiln's
//! configuration on the load-balancer node; the control-plane nodes run stand-in API servers
//! (Python HTTPS servers with a certificate for `kubernetes` from a test CA, which, as kiln's
//! systemd-mode API servers, answer 401 to a request without a client certificate of that CA);
//! a client on the same LAN then talks TLS to an API server through the TCP balancer, and reads
//! `/healthz` through the HTTP health check, which must authenticate with its client
//! certificate. With certificates that do not name `kubernetes`, the health check must fail:
//! the proxy verifies the API servers, which Kubernetes The Hard Way's form (a trusted
//! certificate without `proxy_ssl_verify on`) would not.
//!
//! Everything runs under `unshare --net --mount` with a private `/run`; nothing reaches the host's
//! network. It needs root, `nginx`, `libnginx-mod-stream`, `openssl`, `python3` and `iproute2`.

mod common;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use kiln_spec::Role;

/// A stand-in API server: HTTPS on 6443 answering `/healthz` with `ok` to a client with a
/// certificate of the CA `argv[3]`, and with 401 to one without, for 30 s at most.
const APISERVER: &str = r#"
import http.server, ssl, sys, threading
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if not self.connection.getpeercert():
            status, body = 401, b"Unauthorized"
        elif self.path == "/healthz":
            status, body = 200, b"ok"
        else:
            status, body = 404, b"not found"
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("0.0.0.0", 6443), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(sys.argv[1], sys.argv[2])
context.verify_mode = ssl.CERT_OPTIONAL
context.load_verify_locations(sys.argv[3])
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Timer(120, server.shutdown).start()
print("listening", flush=True)
server.serve_forever()
"#;

/// The client: `health HOST` prints the status and body of `http://HOST/healthz`;
/// `tls HOST PORT CA CERT KEY` prints the body of `/healthz` over TLS to HOST:PORT, verified for
/// `kubernetes` against CA and presenting the client certificate CERT; `wait HOST PORT` waits until HOST:PORT accepts connections.
const CLIENT: &str = r#"
import http.client, socket, ssl, sys, time
mode = sys.argv[1]
if mode == "wait":
    for attempt in range(100):
        try:
            socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
elif mode == "health":
    connection = http.client.HTTPConnection(sys.argv[2], 80, timeout=10)
    connection.request("GET", "/healthz")
    response = connection.getresponse()
    print("health", response.status, response.read().decode(errors="replace").split()[0:1])
else:
    context = ssl.create_default_context(cafile=sys.argv[4])
    # Mutual TLS passes through the TCP balancer, which does not terminate it.
    context.load_cert_chain(sys.argv[5], sys.argv[6])
    raw = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=10)
    tls = context.wrap_socket(raw, server_hostname="kubernetes")
    tls.sendall(b"GET /healthz HTTP/1.0\r\nHost: kubernetes\r\n\r\n")
    answer = b""
    while chunk := tls.recv(4096):
        answer += chunk
    print("tls", answer.split(b"\r\n")[0].decode(), answer.split(b"\r\n\r\n", 1)[1].decode())
"#;

#[test]
fn the_ha_load_balancer_forwards_to_and_checks_the_api_servers() {
    for (program, package) in [
        ("unshare", "util-linux"),
        ("ip", "iproute2"),
        ("python3", "python3"),
        ("openssl", "openssl"),
        ("nginx", "nginx libnginx-mod-stream"),
    ] {
        kiln_testkit::tool(program, package);
    }
    let modules = Path::new("/usr/share/nginx/modules");
    assert!(
        modules.join("ngx_stream_module.so").is_file(),
        "nginx's stream module is missing; install the Debian package: apt-get install -y libnginx-mod-stream"
    );
    let plan = common::example("ha");
    let dir = tempfile::tempdir().expect("a scratch directory");
    let d = dir.path().display().to_string();
    std::fs::write(dir.path().join("apiserver.py"), APISERVER).expect("write");
    std::fs::write(dir.path().join("client.py"), CLIENT).expect("write");
    std::os::unix::fs::symlink(modules, dir.path().join("modules")).expect("link modules");
    let lb = plan.node("lb").expect("the ha example has lb");
    let conf = kiln_netplan::load_balancer_config(&plan, lb)
        .expect("renders")
        .expect("lb runs nginx")
        .to_string()
        // The changes for the test: the CA nginx verifies against is the test CA, and the
        // client certificate it presents is the test CA's.
        .replace(kiln_netplan::CA_CERTIFICATE_PATH, &format!("{d}/ca.crt"))
        .replace(
            kiln_netplan::CLIENT_CERTIFICATE_PATH,
            &format!("{d}/healthz-client.crt"),
        )
        .replace(
            kiln_netplan::CLIENT_KEY_PATH,
            &format!("{d}/healthz-client.key"),
        );
    std::fs::write(dir.path().join("nginx.conf"), conf).expect("write");
    let endpoint = &plan.cluster.endpoint;
    assert_eq!(endpoint.host, lb.primary_address().to_string());

    let mut script = format!(
        "set -eux\n\
         cd {d}\n\
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca 2>/dev/null\n\
         for name in kubernetes other; do\n\
           openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $name.key -out $name.csr -subj /CN=kube-apiserver 2>/dev/null\n\
           printf 'subjectAltName=DNS:%s\\n' $name > $name.ext\n\
           openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 1 -extfile $name.ext 2>/dev/null\n\
         done\n\
         for name in healthz-client client; do\n\
           openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout $name.key -out $name.csr -subj /CN=$name 2>/dev/null\n\
           printf 'extendedKeyUsage=clientAuth\\n' > $name.ext\n\
           openssl x509 -req -in $name.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $name.crt -days 1 -extfile $name.ext 2>/dev/null\n\
         done\n\
         mount -t tmpfs kiln-test /run\n\
         mkdir /run/netns\n\
         ip link set lo up\n\
         ip link add lan type bridge\n\
         ip link set lan up\n"
    );
    // Every node on one LAN with its address from kiln's networkd file, and a client beside them.
    let client_address = "10.240.0.250/24";
    assert!(
        plan.nodes
            .iter()
            .all(|node| node.addresses[0].to_string() != client_address)
    );
    let mut namespaces: Vec<(String, String)> = Vec::new();
    for (index, node) in plan.nodes.iter().enumerate() {
        let networkd = kiln_netplan::networkd(&plan, node).expect("renders");
        let entries = common::parse_ini(std::str::from_utf8(&networkd.contents).expect("UTF-8"));
        let address = entries
            .iter()
            .find(|(section, key, _)| section.starts_with("Network#") && key == "Address")
            .map(|(_, _, value)| value.clone())
            .expect("an address");
        namespaces.push((format!("n{index}"), address));
    }
    namespaces.push(("client".to_owned(), client_address.to_owned()));
    for (index, (ns, address)) in namespaces.iter().enumerate() {
        writeln!(
            script,
            "ip netns add {ns}\n\
             ip -n {ns} link set lo up\n\
             ip link add eth0 netns {ns} type veth peer name lan{index}\n\
             ip link set lan{index} master lan up\n\
             ip -n {ns} addr add {address} dev eth0\n\
             ip -n {ns} link set eth0 up"
        )
        .expect("write");
    }
    let ns_of = |name: &str| {
        let index = plan
            .nodes
            .iter()
            .position(|node| node.name == name)
            .expect("a node");
        namespaces[index].0.clone()
    };
    let control_planes: Vec<String> = plan
        .nodes_with(Role::ControlPlane)
        .map(|node| node.name.clone())
        .collect();
    assert_eq!(control_planes.len(), 3);
    let lb_ns = ns_of("lb");
    let host = &endpoint.host;
    let port = endpoint.port;
    let start_apiservers = |script: &mut String, certificate: &str| {
        for name in &control_planes {
            let ns = ns_of(name);
            writeln!(
                script,
                "ip netns exec {ns} python3 apiserver.py {certificate}.crt {certificate}.key ca.crt > apiserver-{ns}.log 2>&1 &\n\
                 echo $! >> apiservers\n\
                 for try in $(seq 50); do grep -q listening apiserver-{ns}.log && break; sleep 0.1; done\n\
                 grep -q listening apiserver-{ns}.log || {{ cat apiserver-{ns}.log >&2; exit 1; }}"
            )
            .expect("write");
        }
    };
    start_apiservers(&mut script, "kubernetes");
    writeln!(
        script,
        "ip netns exec {lb_ns} nginx -c {d}/nginx.conf -p {d}/ -e stderr -g 'daemon off;' > nginx.log 2>&1 &\n\
         echo $! >> pids\n\
         ip netns exec client python3 client.py wait {host} {port}\n\
         ip netns exec client python3 client.py wait {host} 80\n\
         echo phase verified\n\
         ip netns exec client python3 client.py tls {host} {port} ca.crt client.crt client.key\n\
         ip netns exec client python3 client.py health {host}"
    )
    .expect("write");
    // The same API servers with certificates that do not name `kubernetes`.
    // They may have exited already (their 120 s timer) on a loaded machine: not a failure.
    script.push_str("kill $(cat apiservers) 2>/dev/null || true\nrm apiservers\nsleep 0.5\n");
    start_apiservers(&mut script, "other");
    writeln!(
        script,
        "echo phase misnamed\n\
         ip netns exec client python3 client.py health {host}\n\
         kill $(cat apiservers pids) 2>/dev/null || true"
    )
    .expect("write");

    let path = dir.path().join("load-balancer.sh");
    std::fs::write(&path, &script).expect("write");
    let output = kiln_testkit::run(
        Command::new("unshare")
            .args(["--net", "--mount", "--propagation", "private", "--", "sh"])
            .arg(&path),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let nginx_log = std::fs::read_to_string(dir.path().join("nginx.log")).unwrap_or_default();
    let context = format!(
        "\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- nginx\n{nginx_log}\n--- script\n{script}"
    );
    assert!(
        output.status.success(),
        "the simulation failed (it needs root for network namespaces){context}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "phase verified",
            "tls HTTP/1.0 200 OK ok",
            "health 200 ['ok']",
            "phase misnamed",
            "health 502 ['<html>']",
        ],
        "{context}"
    );
}
