//! kiln's container images checked with independent tools: the pause
//! program as a real process, the archives' determinism, a private
//! containerd 1.6 that imports and runs them, and umoci and skopeo.
//!
//! The containerd test needs root; it skips, saying why, only when not root
//! or when containerd cannot be installed with apt.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use kiln_graph::{DrvId, EvalOptions, Graph, NullObserver};
use kiln_image::oci::{
    ContainerImages, DebianBusybox, IMAGE_IMPORT_COMMAND, IMAGES_INDEX_FILE, OciEntryKind,
    PAUSE_IMAGE, TEST_IMAGE, TEST_IMAGE_PORT, busybox_static, container_images, oci_archive,
    pause_image, pause_program, test_image,
};
use kiln_store::Store;

const EPOCH: u64 = 1_672_531_200;

#[test]
fn pause_exits_0_on_sigterm_and_sigint_and_survives_sigchld() {
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let program = dir.path().join("pause");
    std::fs::write(&program, pause_program()).expect("write the program");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    for signal in ["TERM", "INT"] {
        let mut child = Command::new(&program).spawn().expect("start pause");
        sleep(Duration::from_millis(300));
        assert!(
            child.try_wait().expect("poll").is_none(),
            "pause exited early"
        );
        // SIGCHLD runs the reaping handler, which returns (through the
        // restorer) to pause(2).
        send(&child, "CHLD");
        sleep(Duration::from_millis(200));
        assert!(
            child.try_wait().expect("poll").is_none(),
            "pause exited on SIGCHLD"
        );
        send(&child, signal);
        let status = wait_with_timeout(&mut child, Duration::from_secs(5));
        assert_eq!(status.code(), Some(0), "after SIG{signal}: {status}");
    }
}

#[test]
fn pause_reaps_orphans_as_pid_1() {
    if !is_root() {
        eprintln!("SKIPPED pause_reaps_orphans_as_pid_1: needs root for a PID namespace");
        return;
    }
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let program = dir.path().join("pause");
    std::fs::write(&program, pause_program()).expect("write the program");
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755))
        .expect("make it executable");
    let mut unshare = Command::new("unshare")
        .args(["--pid", "--fork"])
        .arg(&program)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run unshare");
    let mut pause = String::new();
    wait_for(|| {
        pause = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", unshare.id()))
            .unwrap_or_default()
            .trim()
            .to_owned();
        !pause.is_empty()
    });
    let _kill_on_failure = KillOnDrop(pause.clone());
    // Orphans in the namespace are reparented to pause, its PID 1, which
    // must reap them when they exit. nsenter gets no pipes: the sleeps
    // would hold them open, and waiting for them would outlast the sleeps.
    let status = Command::new("nsenter")
        .args(["--target", &pause, "--pid", "--", "/bin/sh", "-c"])
        .arg("(sleep 2 &); (sleep 2 &); exit 0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run nsenter");
    assert!(status.success(), "nsenter: {status}");
    let children = || {
        std::fs::read_to_string(format!("/proc/{pause}/task/{pause}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .count()
    };
    // Both sleeps are pause's children for a while, then neither is (a
    // zombie would stay its child).
    wait_for(|| children() == 2);
    wait_for(|| children() == 0);
    send_to(&pause, "TERM");
    let status = wait_with_timeout(&mut unshare, Duration::from_secs(5));
    assert_eq!(
        status.code(),
        Some(0),
        "pause as PID 1 after SIGTERM: {status}"
    );
}

#[test]
fn archives_are_deterministic_and_depend_on_the_epoch() {
    let busybox = tempfile::tempdir().expect("create a temporary directory");
    std::fs::create_dir(busybox.path().join("bin")).expect("mkdir");
    std::fs::write(busybox.path().join("bin/busybox"), b"not really busybox").expect("write");
    std::fs::write(busybox.path().join("applets"), "sh\nwget\n").expect("write");
    let build = |epoch: u64| {
        let out = tempfile::tempdir().expect("create a temporary directory");
        ContainerImages {
            source_date_epoch: epoch,
        }
        .build_into(busybox.path(), out.path())
        .expect("build the images");
        [
            PAUSE_IMAGE.archive(),
            TEST_IMAGE.archive(),
            IMAGES_INDEX_FILE.to_owned(),
        ]
        .map(|file| std::fs::read(out.path().join(file)).expect("read an output"))
    };
    let first = build(EPOCH);
    assert_eq!(first, build(EPOCH));
    let later = build(EPOCH + 1);
    assert_ne!(first[0], later[0]);
    assert_ne!(first[1], later[1]);

    let duplicate = {
        let mut image = test_image(b"x".to_vec(), &["sh", "sh"]);
        image.reference = "kiln.local/duplicate:1".to_owned();
        image
    };
    let message = oci_archive(&duplicate, 0)
        .expect_err("a path twice")
        .to_string();
    assert!(message.contains("bin/sh"), "{message}");
}

#[test]
fn the_real_images_are_the_same_from_two_stores() {
    let again = build_images(&tempfile::tempdir().expect("tempdir").keep().join("store"));
    let first = images();
    for file in [
        PAUSE_IMAGE.archive(),
        TEST_IMAGE.archive(),
        IMAGES_INDEX_FILE.to_owned(),
    ] {
        assert_eq!(
            std::fs::read(first.join(&file)).expect("read"),
            std::fs::read(again.join(&file)).expect("read"),
            "{file} differs between two builds"
        );
    }
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(first.join(IMAGES_INDEX_FILE)).expect("read"))
            .expect("images.json is JSON");
    let (pause, test) = (PAUSE_IMAGE.reference(), TEST_IMAGE.reference());
    assert_eq!(index[&pause]["archive"], PAUSE_IMAGE.archive());
    assert_eq!(index[&test]["archive"], TEST_IMAGE.archive());
    let pause_digest = oci_archive(&pause_image(), EPOCH)
        .expect("pause archive")
        .manifest_digest;
    assert_eq!(index[&pause]["manifest_digest"], pause_digest.as_str());
}

#[test]
fn another_debian_version_fails_naming_it() {
    let out = tempfile::tempdir().expect("create a temporary directory");
    let set = kiln_image::lock::PackageSetLock {
        packages: vec![
            "busybox-static 1:0.0-0kiln amd64 00"
                .parse()
                .expect("a package line"),
        ],
        content_hash: None,
    };
    let message = DebianBusybox::new(&set, &machine_sources())
        .expect("one busybox package")
        .build_into(out.path())
        .expect_err("no such version")
        .to_string();
    assert!(message.contains("busybox-static=1:0.0-0kiln"), "{message}");
}

#[test]
fn umoci_and_skopeo_accept_the_archives() {
    if !ensure_tools(&[("umoci", "umoci"), ("skopeo", "skopeo")]) {
        return;
    }
    let images = images();
    let scratch = tempfile::tempdir().expect("create a temporary directory");
    for (image, layer_file) in [(PAUSE_IMAGE, "pause"), (TEST_IMAGE, "bin/busybox")] {
        let archive = images.join(image.archive());
        let reference = image.reference();
        let tag = reference.rsplit_once(':').expect("a tagged reference").1;
        let layout = scratch.path().join(tag).join("layout");
        std::fs::create_dir_all(&layout).expect("mkdir");
        run(Command::new("tar")
            .arg("-xf")
            .arg(&archive)
            .arg("-C")
            .arg(&layout));
        let listed = run(Command::new("umoci").arg("ls").arg("--layout").arg(&layout));
        assert_eq!(listed.trim(), tag);
        let bundle = scratch.path().join(tag).join("bundle");
        run(Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{tag}", layout.display()))
            .arg(&bundle));
        let expected = if image == PAUSE_IMAGE {
            pause_program()
        } else {
            std::fs::read(busybox_dir().join("bin/busybox")).expect("read busybox")
        };
        let unpacked = bundle.join("rootfs").join(layer_file);
        assert_eq!(std::fs::read(&unpacked).expect("read"), expected);
        let mode = std::fs::metadata(&unpacked)
            .expect("stat")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o755);

        let inspected = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:{tag}", archive.display())));
        let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("JSON");
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(images.join(IMAGES_INDEX_FILE)).expect("read"))
                .expect("JSON");
        assert_eq!(inspected["Digest"], index[reference]["manifest_digest"]);
        assert_eq!(inspected["Architecture"], "amd64");
        assert_eq!(inspected["Os"], "linux");
        assert_eq!(inspected["Created"], "2023-01-01T00:00:00Z");
    }
    let links = test_image(b"x".to_vec(), &["wget"])
        .layer
        .into_iter()
        .filter(|entry| matches!(entry.kind, OciEntryKind::Symlink(_)))
        .count();
    assert_eq!(links, 1);
}

#[test]
fn containerd_imports_and_runs_the_images() {
    if !is_root() {
        eprintln!(
            "SKIPPED containerd_imports_and_runs_the_images: needs root to run a private containerd"
        );
        return;
    }
    if !ensure_tools(&[
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
    ]) {
        return;
    }
    let images = images();
    let containerd = Containerd::start();

    for archive in [PAUSE_IMAGE.archive(), TEST_IMAGE.archive()] {
        containerd.import(&images.join(archive));
    }
    assert_eq!(
        containerd.references(),
        [PAUSE_IMAGE.reference(), TEST_IMAGE.reference()]
    );

    // The pause image runs until SIGTERM, then exits 0 (`ctr run` exits
    // with the container's status).
    let mut pause = containerd
        .command(&["run", "--rm", &PAUSE_IMAGE.reference(), "kiln-pause"])
        .stdout(Stdio::null())
        .spawn()
        .expect("ctr run");
    wait_for(|| containerd.ctr(&["tasks", "ls"]).contains("RUNNING"));
    sleep(Duration::from_millis(500));
    assert!(
        pause.try_wait().expect("poll").is_none(),
        "pause exited early"
    );
    containerd.ctr(&["tasks", "kill", "--signal", "SIGTERM", "kiln-pause"]);
    let status = wait_with_timeout(&mut pause, Duration::from_secs(20));
    assert_eq!(status.code(), Some(0), "pause after SIGTERM: {status}");

    // The test image serves the hostname: on the host's network (another
    // port, through HTTP_PORT), and in its own network namespace on 8080,
    // seen from inside with busybox's wget.
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("read hostname");
    let port = free_port();
    containerd.ctr(&[
        "run",
        "--detach",
        "--net-host",
        "--env",
        &format!("HTTP_PORT={port}"),
        &TEST_IMAGE.reference(),
        "kiln-test-host",
    ]);
    let mut body = String::new();
    wait_for(|| {
        body = http_get(port).unwrap_or_default();
        !body.is_empty()
    });
    assert_eq!(body, hostname);
    containerd.ctr(&["run", "--detach", &TEST_IMAGE.reference(), "kiln-test"]);
    let url = format!("127.0.0.1:{TEST_IMAGE_PORT}");
    let mut served = String::new();
    wait_for(|| {
        served = containerd
            .try_ctr(&[
                "tasks",
                "exec",
                "--exec-id",
                "wget",
                "kiln-test",
                "wget",
                "-qO-",
                &url,
            ])
            .unwrap_or_default();
        !served.is_empty()
    });
    assert_eq!(served, hostname);
    let request = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc 127.0.0.1 {TEST_IMAGE_PORT}");
    let response = containerd.ctr(&[
        "tasks",
        "exec",
        "--exec-id",
        "nc",
        "kiln-test",
        "sh",
        "-c",
        &request,
    ]);
    assert!(
        response.starts_with("HTTP/1.") && response.ends_with(&hostname),
        "{response}"
    );
}

#[test]
fn containerd_shares_the_layers_of_an_image_made_from_another() {
    if !is_root() {
        eprintln!(
            "SKIPPED containerd_shares_the_layers_of_an_image_made_from_another: needs root to \
             run a private containerd"
        );
        return;
    }
    if !ensure_tools(&[
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("skopeo", "skopeo"),
    ]) {
        return;
    }
    // The test image (busybox), and on it a layer with one file, read by the lower
    // layer's cat.
    let busybox = std::fs::read(busybox_dir().join("bin/busybox")).expect("read busybox");
    let base = test_image(busybox, &["sh", "cat"]);
    let greeting = kiln_image::oci::OciImage {
        reference: "kiln.local/greeting:1".to_owned(),
        base_layers: vec![base.layer.clone()],
        layer: vec![kiln_image::oci::OciEntry::file(
            "greeting",
            0o644,
            b"from the top layer\n".to_vec(),
        )],
        entrypoint: vec!["/bin/cat".to_owned()],
        cmd: vec!["/greeting".to_owned()],
        ..base.clone()
    };
    let dir = tempfile::tempdir().expect("create a temporary directory");
    let base_layers = oci_archive(&base, EPOCH).expect("archive").layer_digests;
    let greeting_archive = oci_archive(&greeting, EPOCH).expect("archive");
    let greeting_layers = greeting_archive.layer_digests;
    assert_eq!(greeting_layers.len(), 2);
    assert_eq!(greeting_layers[0], base_layers[0]);

    // skopeo reads the greeting's own archive: two layers, the lower one the base image's.
    let greeting_path = dir.path().join("greeting.oci.tar");
    std::fs::write(&greeting_path, &greeting_archive.bytes).expect("write the archive");
    let inspected = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}:1", greeting_path.display())));
    let inspected: serde_json::Value = serde_json::from_str(&inspected).expect("JSON");
    assert_eq!(inspected["Layers"], serde_json::json!(greeting_layers));

    // Both in one archive: the shared layer is one blob of six (two layers, two
    // configurations, two manifests), as tar lists them.
    let both =
        kiln_image::oci::oci_archive_of(&[base.clone(), greeting.clone()], EPOCH).expect("archive");
    let both_path = dir.path().join("both.oci.tar");
    std::fs::write(&both_path, &both.bytes).expect("write the archive");
    let listed = run(Command::new("tar").arg("-tf").arg(&both_path));
    let blobs: Vec<&str> = listed
        .lines()
        .filter(|path| path.starts_with("blobs/sha256/") && path.len() > "blobs/sha256/".len())
        .collect();
    assert_eq!(blobs.len(), 6, "{listed}");
    assert_eq!(
        blobs
            .iter()
            .filter(|path| base_layers[0].ends_with(&path["blobs/sha256/".len()..]))
            .count(),
        1,
        "{listed}"
    );

    let containerd = Containerd::start();
    containerd.import(&both_path);
    assert_eq!(
        containerd.references(),
        ["kiln.local/greeting:1".to_owned(), TEST_IMAGE.reference()]
    );
    // Unpacked, the greeting's snapshot is its layer on the base image's: two committed
    // snapshots, not three. An uncompressed layer's diff ID is its digest, and the second
    // snapshot's key is the chain ID sha256(<lower> + " " + <upper>).
    let chain = format!(
        "sha256:{}",
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(
            format!("{} {}", greeting_layers[0], greeting_layers[1]).as_bytes()
        ))
    );
    let snapshots = containerd.ctr(&["snapshots", "ls"]);
    let mut committed: Vec<Vec<&str>> = snapshots
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().collect::<Vec<_>>())
        .filter(|fields| fields.last() == Some(&"Committed"))
        .collect();
    committed.sort();
    let mut expected = vec![
        vec![base_layers[0].as_str(), "Committed"],
        vec![chain.as_str(), base_layers[0].as_str(), "Committed"],
    ];
    expected.sort();
    assert_eq!(committed, expected, "{snapshots}");

    let greeted = containerd.ctr(&["run", "--rm", "kiln.local/greeting:1", "kiln-greeting"]);
    assert_eq!(greeted, "from the top layer\n");
}

/// Sends SIGKILL to a process when dropped (a failed test's leftover).
struct KillOnDrop(String);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

/// The conformance images' busybox, built from Debian's source with the locked C toolchain into
/// a store of its own (so the build checks its binary against `[busybox-source.binaries]`: the
/// same bytes as the lock's build), behaves in a real containerd as the suite expects of
/// upstream's: `sh -c env` keeps variables whose names are not shell names (the ConfigMap and
/// Secret "consumable via the environment" tests), and a read-only root's failed redirection
/// says exactly what the kubelet test "should not write to root filesystem" matches.
#[test]
fn the_conformance_busybox_behaves_as_upstreams() {
    if !is_root() {
        eprintln!(
            "SKIPPED the_conformance_busybox_behaves_as_upstreams: needs root to run a private \
             containerd"
        );
        return;
    }
    if !ensure_tools(&[
        ("containerd", "containerd"),
        ("ctr", "containerd"),
        ("runc", "runc"),
        ("dpkg-source", "dpkg-dev"),
        ("bzip2", "bzip2"),
    ]) {
        return;
    }
    let lock = kiln_image::lock::Lock::parse(&kiln_testkit::lock_text(), "kiln.lock")
        .expect("kiln.lock parses");
    let source = lock
        .busybox_source
        .expect("kiln.lock pins busybox's source");
    let sources = machine_sources();
    let mut graph = Graph::new();
    graph
        .add(
            "c-toolchain",
            kiln_image::toolchain::c_toolchain(&source.toolchain, &sources).expect("toolchain"),
        )
        .expect("add");
    graph
        .add(
            "busybox",
            kiln_image::oci::busybox_source(&source, &sources, "c-toolchain").expect("busybox"),
        )
        .expect("add");
    let graph = graph.validate().expect("validate");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("store")).expect("open the store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("build busybox from source");
    let busybox = kiln_image::oci::Busybox::read(&evaluation.outputs[&DrvId::from("busybox")].path)
        .expect("busybox's output");
    let image = kiln_image::oci::conformance_busybox_image(
        busybox.binary.clone(),
        &busybox.applet_names(),
        "1.37.2",
    );
    let archive = dir.path().join("busybox.oci.tar");
    std::fs::write(
        &archive,
        oci_archive(&image, EPOCH).expect("the archive").bytes,
    )
    .expect("write the archive");

    let containerd = Containerd::start();
    containerd.import(&archive);
    let names = [
        "data-1",
        "p-data-1",
        "1-data-1",
        "$_-data-1",
        "ABC_data-1",
        "PLAIN",
    ];
    let mut run = vec!["run".to_owned(), "--rm".to_owned()];
    for name in names {
        run.push("--env".to_owned());
        run.push(format!("{name}=value-{name}"));
    }
    run.extend([
        image.reference.clone(),
        "kiln-env".to_owned(),
        "sh".to_owned(),
        "-c".to_owned(),
        "env".to_owned(),
    ]);
    let env = containerd.ctr(&run.iter().map(String::as_str).collect::<Vec<_>>());
    for name in names {
        assert!(
            env.lines()
                .any(|line| line == format!("{name}=value-{name}")),
            "sh -c env lost {name}: {env}"
        );
    }

    let output = containerd
        .command(&[
            "run",
            "--rm",
            "--read-only",
            &image.reference,
            "kiln-read-only",
            "/bin/sh",
            "-c",
            "echo test > /file",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("ctr run");
    assert!(!output.status.success(), "a read-only root was written");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        said.contains("/bin/sh: can't create /file: Read-only file system"),
        "{said}"
    );
}

/// A containerd of its own, on a socket in a temporary directory, stopped
/// (with its containers) when dropped.
struct Containerd {
    process: Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let root = dir.path();
        let socket = root.join("containerd.sock");
        let config = format!(
            "version = 2\nroot = \"{root}/root\"\nstate = \"{root}/state\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{socket}\"\n[ttrpc]\n  address = \"{socket}.ttrpc\"\n",
            root = root.display(),
            socket = socket.display(),
        );
        let config_path = root.join("config.toml");
        std::fs::write(&config_path, config).expect("write the config");
        let log = std::fs::File::create(root.join("containerd.log")).expect("create the log");
        let process = Command::new("containerd")
            .arg("--config")
            .arg(&config_path)
            .stdout(log.try_clone().expect("clone the log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let containerd = Containerd {
            process,
            socket,
            _dir: dir,
        };
        wait_for(|| containerd.try_ctr(&["version"]).is_some());
        containerd
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args);
        command
    }

    fn try_ctr(&self, args: &[&str]) -> Option<String> {
        let output = self.command(args).stdin(Stdio::null()).output().ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn ctr(&self, args: &[&str]) -> String {
        run(&mut self.command(args))
    }

    /// Imports `archive` as a node does ([`IMAGE_IMPORT_COMMAND`]).
    fn import(&self, archive: &Path) {
        let mut import = Command::new(IMAGE_IMPORT_COMMAND[0]);
        import
            .arg("--address")
            .arg(&self.socket)
            .args(&IMAGE_IMPORT_COMMAND[1..])
            .arg(archive);
        run(&mut import);
    }

    /// The references of the images containerd holds, sorted.
    fn references(&self) -> Vec<String> {
        let mut references: Vec<String> = self
            .ctr(&["images", "ls", "--quiet"])
            .lines()
            .map(str::to_owned)
            .collect();
        references.sort_unstable();
        references
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in ["kiln-pause", "kiln-test-host", "kiln-test"] {
            let _ = self.try_ctr(&["tasks", "kill", "--signal", "SIGKILL", id]);
        }
        sleep(Duration::from_millis(500));
        for id in ["kiln-pause", "kiln-test-host", "kiln-test"] {
            let _ = self.try_ctr(&["tasks", "delete", "--force", id]);
            let _ = self.try_ctr(&["containers", "delete", id]);
        }
        let _ = Command::new("kill")
            .arg(self.process.id().to_string())
            .status();
        let _ = self.process.wait();
        // Unmount whatever a failed run left, so the directory can go.
        let _ = Command::new("umount")
            .arg("--recursive")
            .arg("--lazy")
            .arg(self._dir.path().join("state"))
            .stderr(Stdio::null())
            .status();
    }
}

/// The container images' store path, built once per test process.
fn images() -> &'static Path {
    static IMAGES: OnceLock<PathBuf> = OnceLock::new();
    IMAGES.get_or_init(|| build_images(&shared_store()))
}

fn machine_sources() -> kiln_image::resolve::AptSources {
    kiln_image::resolve::AptSources::machine("/etc/apt".as_ref())
        .expect("the machine's apt sources")
}

/// busybox as a build resolves it: the repository's kiln.lock against the machine's apt
/// sources, so that the tests keep working after the archive moved on.
fn busybox() -> kiln_graph::Derivation {
    static SET: OnceLock<kiln_image::lock::PackageSetLock> = OnceLock::new();
    let set = SET.get_or_init(|| {
        let lock = kiln_image::lock::Lock::parse(&kiln_testkit::lock_text(), "kiln.lock")
            .expect("kiln.lock parses");
        let resolver = kiln_image::resolve::Resolver::new(
            &machine_sources(),
            kiln_image::resolve::Indices::Binary,
        )
        .expect("apt-get update");
        kiln_image::resolve::resolve(
            &resolver,
            &lock,
            // Binary indices only: busybox's source package is not resolved here.
            &kiln_image::resolve::Requests {
                busybox_toolchain: Vec::new(),
                ..kiln_image::resolve::Requests::default()
            },
            kiln_image::resolve::Policy::PreferLocked,
            false,
        )
        .expect("resolve kiln.lock")
        .lock
        .busybox
    });
    busybox_static(set, &machine_sources()).expect("busybox")
}

fn busybox_dir() -> PathBuf {
    let store = shared_store();
    let mut graph = Graph::new();
    graph.add("busybox", busybox()).expect("add");
    let graph = graph.validate().expect("validate");
    let store = Store::open(&store).expect("open the store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("fetch busybox");
    evaluation.outputs[&DrvId::from("busybox")].path.clone()
}

fn shared_store() -> PathBuf {
    static STORE: OnceLock<PathBuf> = OnceLock::new();
    STORE
        .get_or_init(|| tempfile::tempdir().expect("tempdir").keep())
        .join("store")
}

fn build_images(store_dir: &Path) -> PathBuf {
    let mut graph = Graph::new();
    graph.add("busybox", busybox()).expect("add");
    graph
        .add("images", container_images("busybox", EPOCH))
        .expect("add");
    let graph = graph.validate().expect("validate");
    let store = Store::open(store_dir).expect("open the store");
    let evaluation = graph
        .evaluate(&store, &EvalOptions::default(), &NullObserver)
        .expect("build the images");
    evaluation.outputs[&DrvId::from("images")].path.clone()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|status| {
            status
                .lines()
                .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Installs the Debian packages of missing programs; false (after saying
/// why, loudly) only if that is impossible.
fn ensure_tools(tools: &[(&str, &str)]) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .filter(|(program, _)| !on_path(program))
        .map(|(_, package)| *package)
        .collect();
    if missing.is_empty() {
        return true;
    }
    let installed = is_root()
        && Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "-q"])
            .args(&missing)
            .status()
            .is_ok_and(|status| status.success());
    if !installed || tools.iter().any(|(program, _)| !on_path(program)) {
        eprintln!(
            "SKIPPED: {} not installed and `apt-get install {}` failed",
            tools
                .iter()
                .map(|(program, _)| *program)
                .collect::<Vec<_>>()
                .join(", "),
            missing.join(" ")
        );
        return false;
    }
    true
}

fn run(command: &mut Command) -> String {
    let output = command
        .stdin(Stdio::null())
        .output()
        .expect("run a command");
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn send(child: &Child, signal: &str) {
    send_to(&child.id().to_string(), signal);
}

fn send_to(pid: &str, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal}");
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll") {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("the process did not exit within {timeout:?}");
        }
        sleep(Duration::from_millis(50));
    }
}

fn wait_for(mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "condition not met within 30 s"
        );
        sleep(Duration::from_millis(200));
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// The body of `GET /` on 127.0.0.1:`port`.
fn http_get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.").then(|| body.to_owned())
}
