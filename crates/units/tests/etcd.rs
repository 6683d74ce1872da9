//! Debian's etcd 3.4 starts with kiln's etcd flags and the certificates `kiln_pki::placement`
//! puts on the node, in a scratch directory standing in for `/etc/kubernetes` and `/var/lib`.
//!
//! Only the addresses are moved to 127.0.0.1 and free ports (the example's node address is
//! not on this machine); every other flag, and every certificate, is what the node gets.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kiln_units::Service;

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Kills the etcd this test started when the test ends, however it ends.
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn etcd_starts_with_kilns_flags_and_certificates() {
    let etcd = kiln_testkit::tool("etcd", "etcd-server");
    let plan = &kiln_testkit::example_plans()["two-node"];
    let node = plan.node("node1").expect("node1");
    let scratch = tempfile::tempdir().expect("a scratch directory");

    // The node's certificates, exactly as placed.
    let root = kiln_pki::RootSecret::from_bytes([7; 32]);
    let pki = kiln_pki::issue(plan, &root, &BTreeMap::new()).expect("the PKI");
    for file in kiln_pki::placement(plan, node) {
        let contents = pki.contents(&file.source).expect("placed files exist");
        kiln_testkit::write_file(
            scratch.path(),
            &format!("etc/kubernetes/{}", file.path),
            contents.as_bytes(),
            file.mode,
        );
    }
    let data_dir = scratch.path().join("var/lib/etcd");
    std::fs::create_dir_all(&data_dir).expect("mkdir");
    std::fs::set_permissions(
        &data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .expect("chmod");

    let mut flags =
        kiln_units::default_flags(plan, node, Service::Component(kiln_spec::Component::Etcd));
    let relocate = |value: &str| -> String {
        if value.starts_with("/etc/kubernetes/") || value.starts_with("/var/lib/") {
            scratch.path().join(&value[1..]).display().to_string()
        } else {
            value.to_owned()
        }
    };
    let relocated: Vec<(String, String)> = flags
        .pairs()
        .iter()
        .map(|(name, value)| (name.clone(), relocate(value)))
        .collect();
    flags = kiln_units::Flags::from_pairs(&relocated);
    let client = format!("https://127.0.0.1:{}", free_port());
    let peer = format!("https://127.0.0.1:{}", free_port());
    flags.set("listen-client-urls", client.clone());
    flags.set("advertise-client-urls", client);
    flags.set("listen-peer-urls", peer.clone());
    flags.set("initial-advertise-peer-urls", peer.clone());
    flags.set("initial-cluster", format!("node1={peer}"));
    let unknown: Vec<&str> = flags
        .pairs()
        .iter()
        .map(|(name, _)| name.as_str())
        .filter(|name| {
            !kiln_units::default_flags(plan, node, Service::Component(kiln_spec::Component::Etcd))
                .pairs()
                .iter()
                .any(|(default, _)| default == name)
        })
        .collect();
    assert!(unknown.is_empty(), "the test added flags: {unknown:?}");

    let log_path = scratch.path().join("etcd.log");
    let log = std::fs::File::create(&log_path).expect("a log file");
    let child = Command::new(&etcd)
        .args(flags.to_arguments())
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("a second handle"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {}: {error}", etcd.display()));
    let mut started = Started(child);

    let read_log = |path: &Path| {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(path) {
            let _ = file.read_to_string(&mut text);
        }
        text
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let log = read_log(&log_path);
        if log.contains("ready to serve client requests") {
            assert!(
                !log.contains("deprecated") && !log.contains("unknown flag"),
                "etcd warns about kiln's flags:\n{log}"
            );
            break;
        }
        if let Some(status) = started.0.try_wait().expect("etcd's status") {
            panic!("etcd exited with {status} before serving:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "etcd did not become ready in 60 s:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
