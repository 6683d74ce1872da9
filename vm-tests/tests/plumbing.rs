//! The QEMU plumbing, proved with two tiny busybox guests on the host's Debian kernel: they
//! share a private segment (ping and HTTP between them), a `restrict=on` forward reaches a guest
//! port from the host while the guest cannot reach the host, the serial console is captured,
//! the root shell on ttyS1 runs commands, and dropping a guest kills its QEMU.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use kiln_vm_tests::tiny_guest::{self, READY_LINE, TinyGuest};
use kiln_vm_tests::{
    GuestShell, PortForward, Segment, Vm, VmConfig, detect_accel, free_tcp_port, wait_for,
};

fn guest(
    name: &str,
    address: &str,
    tiny: &TinyGuest,
    segment: Segment,
    run_dir: &std::path::Path,
) -> (Vm, u16) {
    let http = free_tcp_port().expect("a free port");
    guest_on(name, address, tiny, segment, run_dir, http)
}

/// [`guest`] with its HTTP port forwarded from host port `http`.
fn guest_on(
    name: &str,
    address: &str,
    tiny: &TinyGuest,
    segment: Segment,
    run_dir: &std::path::Path,
    http: u16,
) -> (Vm, u16) {
    let config = VmConfig {
        name: name.to_owned(),
        kernel: tiny.kernel.clone(),
        initrd: tiny.initrd.clone(),
        cmdline: TinyGuest::cmdline(name, address),
        disks: Vec::new(),
        state_disk: None,
        tools_disk: None,
        memory_mib: 256,
        cpus: 1,
        mac: format!(
            "52:54:00:00:50:{:02x}",
            address
                .split(['.', '/'])
                .nth(3)
                .expect("octet")
                .parse::<u8>()
                .expect("octet")
        ),
        segment,
        forwards: vec![PortForward {
            host: http,
            guest: 8080,
        }],
        accel: detect_accel(&tiny.kernel),
        run_dir: run_dir.to_path_buf(),
        keep: false,
    };
    (Vm::start(config).expect("QEMU starts"), http)
}

fn http_get(port: u16) -> Result<String, String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|error| error.to_string())?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|error| error.to_string())?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: guest\r\n\r\n")
        .map_err(|error| error.to_string())?;
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .map_err(|error| error.to_string())?;
    Ok(response)
}

#[test]
fn two_tiny_guests_share_a_private_segment_and_forward_ports() {
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_guest::build(dir.path()).unwrap_or_else(|error| panic!("{error}"));
    let segment = Segment::new().expect("segment");
    let (mut alpha, alpha_http) = guest("alpha", "192.168.50.1/24", &tiny, segment, dir.path());
    let (mut beta, beta_http) = guest("beta", "192.168.50.2/24", &tiny, segment, dir.path());
    let pids = [alpha.pid(), beta.pid()];
    // QEMU binds its forwarded ports as it starts; one that another process holds makes it
    // exit at once, which the harness recognises (and Cluster::start answers with new ports).
    for vm in [&mut alpha, &mut beta] {
        vm.wait_forwards(Duration::from_secs(30))
            .unwrap_or_else(|error| panic!("{error}"));
    }
    assert!(kiln_vm_tests::listening_on(alpha_http));
    assert!(kiln_vm_tests::listening_on(beta_http));
    {
        let taken = TcpListener::bind(("127.0.0.1", 0)).expect("bind");
        let port = taken.local_addr().expect("address").port();
        let (mut clash, _) = guest_on("gamma", "192.168.50.3/24", &tiny, segment, dir.path(), port);
        let error = clash
            .wait_forwards(Duration::from_secs(30))
            .expect_err("QEMU cannot bind a port that is taken");
        assert!(error.is_port_clash(), "{error}");
    }

    for vm in [&mut alpha, &mut beta] {
        wait_for(
            "the guest to boot",
            Duration::from_secs(300),
            Duration::from_millis(500),
            || {
                vm.check_running().map_err(|error| error.to_string())?;
                let console = vm.console();
                if console.contains(READY_LINE) {
                    Ok(())
                } else {
                    Err(vm.console_tail(10))
                }
            },
        )
        .unwrap_or_else(|error| panic!("{error}"));
    }
    eprintln!(
        "both guests up after {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // The serial console was captured (the guest boots `quiet`: its ready line is the news).
    let console = alpha.console();
    assert!(
        console.contains("kiln-tiny-guest ready: alpha eth0 192.168.50.1/24, eth1 10.0.2.15/24"),
        "{console}"
    );

    // The host reaches each guest's port 8080 through its restrict=on forward.
    for (port, name) in [(alpha_http, "alpha"), (beta_http, "beta")] {
        let body = wait_for(
            "the forwarded HTTP port",
            Duration::from_secs(30),
            Duration::from_millis(500),
            || {
                http_get(port).and_then(|response| {
                    if response.contains(name) {
                        Ok(response)
                    } else {
                        Err(response)
                    }
                })
            },
        )
        .unwrap_or_else(|error| panic!("{error}"));
        assert!(body.starts_with("HTTP/1."), "{body}");
    }

    let mut shell = GuestShell::connect(&alpha.config().shell_socket(), "alpha").expect("socket");
    shell
        .wait_ready(Duration::from_secs(300), || alpha.console_tail(10))
        .unwrap_or_else(|error| panic!("{error}"));
    let check = |shell: &mut GuestShell, script: &str| {
        shell
            .check("plumbing", script, Duration::from_secs(60))
            .unwrap_or_else(|error| panic!("{error}"))
    };
    // The guests share the private segment: ping, and HTTP from one to the other.
    let ping = check(&mut shell, "ping -c 2 -W 10 192.168.50.2");
    assert!(ping.contains("2 packets received"), "{ping}");
    assert_eq!(
        check(
            &mut shell,
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 10 192.168.50.2 8080 | tail -n 1"
        ),
        "beta\n"
    );
    // The management NIC has its DHCP address and gives no default route.
    let routes = check(&mut shell, "ip -4 route; ip -4 -o addr show eth1");
    assert!(routes.contains("10.0.2.15/24"), "{routes}");
    assert!(!routes.contains("default"), "{routes}");
    // restrict=on: the guest cannot reach the host, even the host's loopback through 10.0.2.2.
    let listener = TcpListener::bind(("127.0.0.1", 0)).expect("listen");
    let host_port = listener.local_addr().expect("address").port();
    let attempt = shell
        .run(
            &format!("nc -w 5 10.0.2.2 {host_port} </dev/null"),
            Duration::from_secs(60),
        )
        .expect("runs");
    assert_eq!(
        attempt.status, 1,
        "the guest reached the host? {}",
        attempt.output
    );
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(
        listener.accept().is_err(),
        "the host accepted a connection from the guest"
    );
    // Output with every byte value survives the shell protocol, and exit statuses come back.
    let bytes = check(&mut shell, "printf 'a\\tb\\001c\\n'; echo done");
    assert_eq!(bytes, "a\tb\u{1}c\ndone\n");
    let failed = shell
        .run("echo oops >&2; exit 7", Duration::from_secs(30))
        .expect("runs");
    assert_eq!((failed.status, failed.output.as_str()), (7, "oops\n"));
    drop(shell);

    // Dropping the guests kills QEMU.
    drop(alpha);
    drop(beta);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "QEMU {pid} survived its Vm"
        );
    }
    eprintln!(
        "plumbing test took {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// A `result/` directory whose node images are tiny guests: [`kiln_vm_tests::Cluster`] loads
/// every `manifest.json`, boots the guests on one segment with their forwards, reaches their
/// shells, and writes a forwarded admin kubeconfig that still verifies the apiserver by name.
#[test]
fn a_cluster_boots_from_a_result_directory() {
    let kubectl = std::env::var_os("KILN_KUBECTL")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| kiln_testkit::tool("kubectl", "kubernetes-client"));
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_guest::build(dir.path()).unwrap_or_else(|error| panic!("{error}"));
    let result = dir.path().join("result");
    for (node, address, roles) in [
        (
            "node1",
            "192.168.50.11/24",
            &["control-plane", "etcd", "worker"][..],
        ),
        ("node2", "192.168.50.12/24", &["worker"][..]),
    ] {
        let image = result.join("nodes").join(node).join("image");
        std::fs::create_dir_all(&image).expect("mkdir");
        std::os::unix::fs::symlink(&tiny.kernel, image.join("vmlinuz")).expect("link");
        std::os::unix::fs::symlink(&tiny.initrd, image.join("initrd.img")).expect("link");
        let octet: u8 = address
            .split(['.', '/'])
            .nth(3)
            .expect("octet")
            .parse()
            .expect("octet");
        // The contract as kiln-image writes it, with the tiny guest's kernel and initramfs.
        let manifest = kiln_image::os::node::ImageManifest {
            cluster: "two-node".to_owned(),
            node: node.to_owned(),
            kernel: "vmlinuz".to_owned(),
            initrd: "initrd.img".to_owned(),
            cmdline: TinyGuest::cmdline(node, address),
            disks: Vec::new(),
            layers: Vec::new(),
            memory_mib: 256,
            cpus: 1,
            mac: format!("52:54:00:00:51:{octet:02x}"),
            addresses: vec![address.to_owned()],
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            state: None,
        };
        std::fs::write(
            image.join("manifest.json"),
            serde_json::to_string(&manifest).expect("a manifest serializes"),
        )
        .expect("manifest.json");
    }
    let kubeconfigs = result.join("cluster/kubeconfigs");
    std::fs::create_dir_all(&kubeconfigs).expect("mkdir");
    std::fs::write(
        kubeconfigs.join("admin.conf"),
        "apiVersion: v1\nkind: Config\nclusters:\n- name: two-node\n  cluster:\n    \
         server: https://192.168.50.11:6443\n    certificate-authority-data: Q0E=\n\
         contexts:\n- name: admin\n  context:\n    cluster: two-node\n    user: admin\n\
         current-context: admin\nusers:\n- name: admin\n  user:\n    token: t\n",
    )
    .expect("admin.conf");

    let options = kiln_vm_tests::ClusterOptions {
        result_dir: result,
        kubectl,
        run_dir: dir.path().join("run"),
        keep: false,
        accel: None,
        cpus: None,
        tools: None,
    };
    let mut cluster =
        kiln_vm_tests::Cluster::start(&options).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(cluster.api.0, "node1");
    assert_eq!(cluster.nodes_with_role("worker"), ["node1", "node2"]);
    let kubeconfig: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&cluster.kubectl.kubeconfig).expect("kubeconfig"),
    )
    .expect("json");
    let entry = &kubeconfig["clusters"][0]["cluster"];
    assert_eq!(
        entry["server"],
        format!("https://127.0.0.1:{}", cluster.api.1)
    );
    assert_eq!(entry["tls-server-name"], "192.168.50.11");
    assert_eq!(
        cluster.host_port("node1", 6443).expect("api"),
        cluster.api.1
    );
    assert!(cluster.host_port("node2", 6443).is_err());
    cluster.host_port("node2", 10250).expect("kubelet port");

    cluster
        .wait_booted(Duration::from_secs(300))
        .unwrap_or_else(|error| panic!("{error}\n{}", cluster.consoles(20)));
    let ping = cluster
        .on("node2", "ping", "ping -c 1 -W 10 192.168.50.11")
        .unwrap_or_else(|error| panic!("{error}"));
    assert!(ping.contains("1 packets received"), "{ping}");
    let described = cluster.describe();
    assert!(described.contains("node1: pid"), "{described}");
    assert!(described.contains("node2.console.log"), "{described}");
    let pids: Vec<u32> = cluster.nodes.values().map(|node| node.vm.pid()).collect();
    drop(cluster);
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "QEMU {pid} survived"
        );
    }
}

/// `keep`: dropping the `Vm` leaves QEMU running (what `--keep` relies on).
#[test]
fn a_kept_guest_outlives_its_vm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tiny = tiny_guest::build(dir.path()).unwrap_or_else(|error| panic!("{error}"));
    let config = VmConfig {
        name: "kept".to_owned(),
        kernel: tiny.kernel.clone(),
        initrd: tiny.initrd.clone(),
        cmdline: TinyGuest::cmdline("kept", "192.168.50.9/24"),
        disks: Vec::new(),
        state_disk: None,
        tools_disk: None,
        memory_mib: 128,
        cpus: 1,
        mac: "52:54:00:00:50:09".to_owned(),
        segment: Segment::new().expect("segment"),
        forwards: Vec::new(),
        accel: detect_accel(&tiny.kernel),
        run_dir: dir.path().to_path_buf(),
        keep: true,
    };
    let vm = Vm::start(config).expect("QEMU starts");
    let pid = vm.pid();
    drop(vm);
    std::thread::sleep(Duration::from_millis(500));
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("QEMU still runs");
    let running = !state.contains(") Z ");
    // Stop it before asserting, so a failure leaves nothing behind.
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    assert!(running, "the kept QEMU died with its Vm: {state}");
}
