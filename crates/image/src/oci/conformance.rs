//! The images the Kubernetes end-to-end suite's conformance tests run their pods from, built
//! by kiln with no registry: agnhost (the suite's test server and client, from the
//! `kubernetes-e2e` package of the cluster's version), busybox (built from Debian's source
//! with upstream's ash: [`SourceBusybox`](super::SourceBusybox)),
//! nginx (Debian's, as the load balancers run it, laid out as the official image) and pause
//! (kiln's own). agnhost's image takes the programs the tests run in it (`sh`, `bash`,
//! `nc`, `curl`, `dig`, `nslookup`, `getent`, `ip`, `ss`) from kiln's base OS with the
//! libraries they need, and busybox for the rest; being glibc-based with `dig`, it also
//! serves as the DNS tests' `glibc-dns-testing` prober (upstream's agnhost is Alpine's, so
//! upstream probes with musl's resolver too; kiln probes with glibc's twice). They are test tools: no node image holds them; the VM tests bring
//! them to the guests on the test-tools disk and import them into containerd there.
//!
//! Each is written under a name of kiln's ([`conformance_reference`]); the suite names the
//! images it wants (its `--list-images`) and the harness tags kiln's image with each of those
//! names in the guest, so which tag of agnhost a Kubernetes release asks for is read from that
//! release's suite, never written down here.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};

use super::busybox::Busybox;
use super::pick::Picker;
use super::{OciEntry, OciImage, PATH_ENV, base_files, write_images};
use crate::error::ImageError;
use crate::os::base::{BASE_OS_ROOTFS, unsquashfs};

/// The repository kiln's conformance images are named under: `kiln.local/conformance/<name>`.
pub const CONFORMANCE_REPOSITORY: &str = "kiln.local/conformance";

/// Where the VM tests' tools disk holds the conformance images' archives (kiln-cluster puts
/// them there; the VM tests import them from there).
pub const CONFORMANCE_IMAGES_DIR: &str = "conformance/images";

/// The images kiln builds for the suite, by the last element of the repository name the suite
/// gives them (`.../agnhost:2.66.1` is `agnhost`).
pub const CONFORMANCE_IMAGES: [&str; 8] = [
    "agnhost",
    "busybox",
    "etcd",
    "nautilus",
    "nginx",
    "nonewprivs",
    "pause",
    "sample-apiserver",
];

/// The programs agnhost's image takes from the base OS (with every link on the way and the
/// libraries each needs): what the suite runs in agnhost's pods beyond agnhost itself, as
/// upstream's image has them from Alpine's `bash`, `curl`, `netcat-openbsd`, `bind-tools` and
/// `iproute2`.
pub const AGNHOST_PROGRAMS: [&str; 9] = [
    "/bin/sh",
    "/bin/bash",
    "/usr/bin/curl",
    "/bin/nc",
    "/usr/bin/dig",
    "/usr/bin/nslookup",
    "/usr/bin/getent",
    "/bin/ip",
    "/bin/ss",
];

/// The files besides programs agnhost's image takes from the base OS: how `getent` and the
/// resolvers look names up.
const AGNHOST_FILES: [&str; 1] = ["/etc/nsswitch.conf"];

/// The programs nginx's image takes from the base OS: Debian's nginx (the package the load
/// balancer nodes run), with the libraries it needs.
pub const NGINX_PROGRAMS: [&str; 1] = ["/usr/sbin/nginx"];

/// The files besides programs nginx's image takes from the base OS: the MIME types its
/// configuration includes, and how names are looked up.
const NGINX_FILES: [&str; 2] = ["/etc/nginx/mime.types", "/etc/nsswitch.conf"];

/// The subtrees of the base OS's root the images are picked from.
const PICKED_TREES: [&str; 6] = ["bin", "etc", "lib", "lib64", "sbin", "usr"];

/// Where busybox and its applets go in an image with programs from the base OS: the base OS's
/// `/bin` is a link to `usr/bin` (Debian's merged `/usr`).
const BUSYBOX_DIR: &str = "usr/bin";

/// The name of the package whose `bin/agnhost` and agnhost data the agnhost image is made of.
pub const E2E_PACKAGE: &str = "kubernetes-e2e";

/// The package of the sample-apiserver image's program, and its version: the release of
/// `k8s.io/sample-apiserver` upstream's `sample-apiserver:1.29.2` image is built from, the
/// image the suites of Kubernetes 1.37 ask for. It is older than the cluster on purpose: the
/// aggregator test proves that the current aggregator serves an older aggregated server.
pub const SAMPLE_APISERVER_PACKAGE: (&str, &str) = ("sample-apiserver", "0.29.2");

/// The name of the package whose `bin/etcd` the etcd image holds: kiln's etcd, the one the
/// cluster's control plane runs.
pub const ETCD_PACKAGE: &str = "etcd";

/// Where the `kubernetes-e2e` package ships agnhost's porter test certificate and key
/// (upstream's fixed, public test key pair), under its `share/kubernetes-e2e/`.
const PORTER_DIR: &str = "test/images/agnhost/porter";

/// Where the `kubernetes-e2e` package ships the nautilus image's pages (upstream's
/// `test/images/nautilus/html`: `data.json` and `nautilus.jpg`), under its
/// `share/kubernetes-e2e/`.
const NAUTILUS_DIR: &str = "test/images/nautilus/html";

/// The pages of the nautilus image, in [`NAUTILUS_DIR`].
const NAUTILUS_PAGES: [&str; 2] = ["data.json", "nautilus.jpg"];

/// The users and groups upstream's agnhost image defines besides root's (its Dockerfile's
/// `adduser -u 1000 user-defined-in-image`, `addgroup -g 50000 group-defined-in-image`), which
/// the suite's security-context tests look up by name.
const AGNHOST_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
user-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\n";
const AGNHOST_GROUP: &str = "root:x:0:\n\
user-defined-in-image:x:1000:\n\
group-defined-in-image:x:50000:user-defined-in-image\n\
nogroup:x:65534:\n";

/// The reference of kiln's conformance image `name` for Kubernetes `kubernetes_version`:
/// `kiln.local/conformance/<name>:v<version>`.
///
/// ```
/// assert_eq!(
///     kiln_image::oci::conformance_reference("agnhost", "1.37.2"),
///     "kiln.local/conformance/agnhost:v1.37.2"
/// );
/// ```
pub fn conformance_reference(name: &str, kubernetes_version: &str) -> String {
    format!("{CONFORMANCE_REPOSITORY}/{name}:v{kubernetes_version}")
}

/// The busybox layer of an image: `/bin/busybox` with a link in `/bin` for each of `applets`,
/// and `/dev`, `/proc`, `/sys`, `/root` as mount points.
fn busybox_entries(busybox: Vec<u8>, applets: &[&str]) -> Vec<OciEntry> {
    let mut layer = vec![
        OciEntry::directory("bin", 0o755),
        OciEntry::file("bin/busybox", 0o755, busybox),
        OciEntry::directory("dev", 0o755),
        OciEntry::directory("proc", 0o755),
        OciEntry::directory("root", 0o700),
        OciEntry::directory("sys", 0o755),
    ];
    for applet in applets {
        if *applet != "busybox" {
            layer.push(OciEntry::symlink(format!("bin/{applet}"), "busybox"));
        }
    }
    layer
}

/// The suite's busybox: busybox with every applet, `sh` as its command (as upstream's
/// `e2e-test-images/busybox`).
///
/// ```
/// let image = kiln_image::oci::conformance_busybox_image(b"(busybox)".to_vec(), &["sh", "nc"], "1.37.2");
/// assert_eq!(image.cmd, ["sh"]);
/// assert!(image.layer.iter().any(|entry| entry.path == "bin/nc"));
/// ```
pub fn conformance_busybox_image(
    busybox: Vec<u8>,
    applets: &[&str],
    kubernetes_version: &str,
) -> OciImage {
    let mut layer = base_files();
    layer.extend(busybox_entries(busybox, applets));
    OciImage {
        reference: conformance_reference("busybox", kubernetes_version),
        base_layers: Vec::new(),
        layer,
        entrypoint: Vec::new(),
        cmd: vec!["sh".to_owned()],
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: Vec::new(),
    }
}

/// The programs of `programs` and the files of `files` picked from the base OS's root at
/// `base_root` (see [`Picker`]), then busybox at `usr/bin/busybox` with a link there for each
/// of `applets` that no picked program already provides, added to `layer` (whose entries win
/// over picked ones of the same path).
fn with_userland(
    mut layer: Vec<OciEntry>,
    base_root: &Path,
    reference: &str,
    (programs, files): (&[&str], &[&str]),
    (busybox, applets): (Vec<u8>, &[&str]),
) -> Result<Vec<OciEntry>, ImageError> {
    let mut picker = Picker::new(base_root, reference);
    for program in programs {
        picker.add_program(program)?;
    }
    for file in files {
        picker.add(file)?;
    }
    let mut present: std::collections::BTreeSet<String> =
        layer.iter().map(|entry| entry.path.clone()).collect();
    for entry in picker.into_entries() {
        if present.insert(entry.path.clone()) {
            layer.push(entry);
        }
    }
    // A name the base OS provides in any directory of PATH keeps the base OS's program.
    let provided = |name: &str, present: &std::collections::BTreeSet<String>| {
        ["usr/local/bin", "usr/sbin", "usr/bin", "sbin", "bin"]
            .iter()
            .any(|dir| present.contains(&format!("{dir}/{name}")))
    };
    for dir in ["usr", BUSYBOX_DIR] {
        if present.insert(dir.to_owned()) {
            layer.push(OciEntry::directory(dir, 0o755));
        }
    }
    layer.push(OciEntry::file(
        format!("{BUSYBOX_DIR}/busybox"),
        0o755,
        busybox,
    ));
    present.insert(format!("{BUSYBOX_DIR}/busybox"));
    for applet in applets {
        if *applet != "busybox" && !provided(applet, &present) {
            let path = format!("{BUSYBOX_DIR}/{applet}");
            present.insert(path.clone());
            layer.push(OciEntry::symlink(path, "busybox"));
        }
    }
    Ok(layer)
}

/// The image files every image with a userland has besides its programs: `/etc` with
/// `passwd` and `group` as given, `/tmp`, and mount points.
fn userland_files(passwd: &str, group: &str) -> Vec<OciEntry> {
    vec![
        OciEntry::directory("dev", 0o755),
        OciEntry::directory("etc", 0o755),
        OciEntry::file("etc/group", 0o644, group.as_bytes().to_vec()),
        OciEntry::file("etc/passwd", 0o644, passwd.as_bytes().to_vec()),
        OciEntry::directory("proc", 0o755),
        OciEntry::directory("root", 0o700),
        OciEntry::directory("sys", 0o755),
        OciEntry::directory("tmp", 0o1777),
    ]
}

/// agnhost's image as upstream's Dockerfile lays it out: `/agnhost` (the entrypoint, `pause`
/// its default command), `/agnhost-2` a link to it (the entrypoint tests run it by that name),
/// the porter test certificate at `/localhost.crt` and `/localhost.key`, `/uploads`, the
/// image's own user and group, the programs of [`AGNHOST_PROGRAMS`] from the base OS's root
/// at `base_root`, and busybox for every other command.
///
/// # Errors
///
/// If the base OS lacks one of the programs or a library it needs.
pub fn agnhost_image(
    agnhost: Vec<u8>,
    (certificate, key): (Vec<u8>, Vec<u8>),
    busybox: (Vec<u8>, &[&str]),
    base_root: &Path,
    kubernetes_version: &str,
) -> Result<OciImage, ImageError> {
    let reference = conformance_reference("agnhost", kubernetes_version);
    let mut layer = userland_files(AGNHOST_PASSWD, AGNHOST_GROUP);
    layer.extend([
        OciEntry::directory("home", 0o755),
        OciEntry::directory("uploads", 0o755),
        OciEntry::file("agnhost", 0o755, agnhost),
        OciEntry::symlink("agnhost-2", "agnhost"),
        OciEntry::file("localhost.crt", 0o644, certificate),
        // A public test key of upstream's tree, served by agnhost's porter; not a secret.
        OciEntry::file("localhost.key", 0o644, key),
    ]);
    let layer = with_userland(
        layer,
        base_root,
        &reference,
        (&AGNHOST_PROGRAMS, &AGNHOST_FILES),
        busybox,
    )?;
    Ok(OciImage {
        reference,
        base_layers: Vec::new(),
        layer,
        entrypoint: vec!["/agnhost".to_owned()],
        cmd: vec!["pause".to_owned()],
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: ["80", "8080", "8081", "9376", "5000"]
            .iter()
            .map(|port| format!("{port}/tcp"))
            .collect(),
    })
}

/// The nautilus image as upstream's Dockerfile makes it from agnhost's (`agnhost`): agnhost's
/// layers, and on them a layer of `pages` (`(name, contents)`, upstream's `data.json` and
/// `nautilus.jpg`) at the root, where agnhost's `test-webserver`, its command, serves them on
/// port 80. agnhost's layers are shared by digest, so a node holding both images stores and
/// unpacks agnhost's files once.
///
/// ```
/// let agnhost = kiln_image::oci::OciImage {
///     reference: "kiln.local/conformance/agnhost:v1.37.2".into(),
///     base_layers: Vec::new(),
///     layer: Vec::new(),
///     entrypoint: vec!["/agnhost".into()],
///     cmd: vec!["pause".into()],
///     env: Vec::new(),
///     exposed_ports: Vec::new(),
/// };
/// let image = kiln_image::oci::nautilus_image(agnhost, vec![("data.json".into(), b"{}".to_vec())], "1.37.2");
/// assert_eq!(image.reference, "kiln.local/conformance/nautilus:v1.37.2");
/// assert_eq!((image.entrypoint.as_slice(), image.cmd.as_slice()), (&["/agnhost".to_owned()][..], &["test-webserver".to_owned()][..]));
/// assert_eq!(image.layer.len(), 1);
/// assert_eq!(image.base_layers, [Vec::new()]);
/// ```
pub fn nautilus_image(
    agnhost: OciImage,
    pages: Vec<(String, Vec<u8>)>,
    kubernetes_version: &str,
) -> OciImage {
    let mut base_layers = agnhost.base_layers;
    base_layers.push(agnhost.layer);
    OciImage {
        reference: conformance_reference("nautilus", kubernetes_version),
        base_layers,
        layer: pages
            .into_iter()
            .map(|(name, contents)| OciEntry::file(name, 0o644, contents))
            .collect(),
        cmd: vec!["test-webserver".to_owned()],
        ..agnhost
    }
}

/// The nonewprivs image as upstream's Dockerfile lays it out: `nnp` (a program that prints
/// its effective user id) at `/usr/local/bin/nnp`, setuid and setgid root (`chmod +s`), its
/// command. The suite runs it as user 1000: it prints `Effective uid: 0` unless the container
/// disallows privilege escalation (`no_new_privs`), when it prints `Effective uid: 1000`.
///
/// ```
/// let image = kiln_image::oci::nonewprivs_image(b"(nnp)".to_vec(), "1.37.2");
/// let nnp = image.layer.iter().find(|entry| entry.path == "usr/local/bin/nnp").unwrap();
/// assert_eq!(nnp.mode, 0o6755);
/// assert_eq!(image.cmd, ["nnp"]);
/// ```
pub fn nonewprivs_image(nnp: Vec<u8>, kubernetes_version: &str) -> OciImage {
    let mut layer = base_files();
    layer.extend(["usr", "usr/local", "usr/local/bin"].map(|dir| OciEntry::directory(dir, 0o755)));
    layer.push(OciEntry::file("usr/local/bin/nnp", 0o6755, nnp));
    OciImage {
        reference: conformance_reference("nonewprivs", kubernetes_version),
        base_layers: Vec::new(),
        layer,
        entrypoint: Vec::new(),
        cmd: vec!["nnp".to_owned()],
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: Vec::new(),
    }
}

/// The sample-apiserver image as upstream's Dockerfile lays it out: the static
/// `sample-apiserver` program at `/sample-apiserver`, its entrypoint (the suite gives only
/// arguments), with the files every image kiln builds around a program has and
/// `/etc/nsswitch.conf` (`hosts: files dns`, as Go's resolver expects).
///
/// ```
/// let image = kiln_image::oci::sample_apiserver_image(b"(sample-apiserver)".to_vec(), "1.37.2");
/// assert_eq!(image.reference, "kiln.local/conformance/sample-apiserver:v1.37.2");
/// assert_eq!(image.entrypoint, ["/sample-apiserver"]);
/// assert!(image.layer.iter().any(|entry| entry.path == "sample-apiserver" && entry.mode == 0o755));
/// ```
pub fn sample_apiserver_image(program: Vec<u8>, kubernetes_version: &str) -> OciImage {
    let mut layer = base_files();
    layer.extend([
        OciEntry::file("etc/nsswitch.conf", 0o644, b"hosts: files dns\n".to_vec()),
        OciEntry::file("sample-apiserver", 0o755, program),
    ]);
    OciImage {
        reference: conformance_reference("sample-apiserver", kubernetes_version),
        base_layers: Vec::new(),
        layer,
        entrypoint: vec!["/sample-apiserver".to_owned()],
        cmd: Vec::new(),
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: Vec::new(),
    }
}

/// The suite's etcd image (upstream's `registry.k8s.io/etcd`, which the aggregator test runs
/// beside sample-apiserver as `/usr/local/bin/etcd`): kiln's own etcd image
/// ([`component_image`](super::component_image), the same layer, so the same files) under
/// the conformance images' name. The suite's pods can land on any node, and kiln's etcd image
/// is only on the nodes that run etcd.
///
/// ```
/// let image = kiln_image::oci::conformance_etcd_image(b"(etcd)".to_vec(), "1.37.2");
/// assert_eq!(image.reference, "kiln.local/conformance/etcd:v1.37.2");
/// assert!(image.layer.iter().any(|entry| entry.path == "usr/local/bin/etcd"));
/// ```
pub fn conformance_etcd_image(etcd: Vec<u8>, kubernetes_version: &str) -> OciImage {
    // The component image's version only names it, and the name is replaced below.
    let image = kiln_spec::images::ComponentImage {
        program: kiln_spec::Component::Etcd.into(),
        version: kubernetes_version.to_owned(),
    };
    OciImage {
        reference: conformance_reference("etcd", kubernetes_version),
        ..super::component_image(&image, etcd)
    }
}

/// The users and groups of nginx's image: root's, and `nginx` (101, as in the official
/// image) for its worker processes.
const NGINX_PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
nginx:x:101:101:nginx:/nonexistent:/bin/false\n\
nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n";
const NGINX_GROUP: &str = "root:x:0:\nnginx:x:101:\nnogroup:x:65534:\n";

/// nginx's main configuration in its image: the official image's (`user nginx`, one worker
/// per CPU, the MIME types, its access log format, `conf.d/*.conf` for the servers), with
/// Debian's nginx the program.
const NGINX_CONF: &str = r#"user  nginx;
worker_processes  auto;

error_log  /var/log/nginx/error.log notice;
pid        /run/nginx.pid;

events {
    worker_connections  1024;
}

http {
    include       /etc/nginx/mime.types;
    default_type  application/octet-stream;

    log_format  main  '$remote_addr - $remote_user [$time_local] "$request" '
                      '$status $body_bytes_sent "$http_referer" '
                      '"$http_user_agent" "$http_x_forwarded_for"';

    access_log  /var/log/nginx/access.log  main;

    sendfile        on;
    keepalive_timeout  65;

    include /etc/nginx/conf.d/*.conf;
}
"#;

/// The official image's default server: `/usr/share/nginx/html` on port 80. IPv4 only: the
/// official image adds `listen [::]:80` only where the kernel has IPv6 (its entrypoint checks
/// `/proc/net/if_inet6`), and kiln's pod networks are IPv4.
const NGINX_DEFAULT_SERVER: &str = r#"server {
    listen       80;
    server_name  localhost;

    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }

    error_page   500 502 503 504  /50x.html;
    location = /50x.html {
        root   /usr/share/nginx/html;
    }
}
"#;

/// The pages nginx's image serves: its welcome page and the error page of the default server.
const NGINX_INDEX: &str = "<!DOCTYPE html>\n<html>\n<head><title>Welcome to nginx!</title></head>\n\
<body>\n<h1>Welcome to nginx!</h1>\n<p>The web server of kiln's conformance images.</p>\n\
</body>\n</html>\n";
const NGINX_50X: &str = "<!DOCTYPE html>\n<html>\n<head><title>Error</title></head>\n\
<body>\n<h1>An error occurred.</h1>\n</body>\n</html>\n";

/// The suite's nginx (`e2e-test-images/nginx`, upstream's mirror of the official
/// `nginx:alpine`), laid out as the official image: its `/etc/nginx/nginx.conf` and
/// `conf.d/default.conf` (a server on port 80), the pages in `/usr/share/nginx/html`, the logs
/// on the container's standard output and error, `nginx -g "daemon off;"` its command, port 80.
/// The program is Debian's nginx from the base OS's root at `base_root` ([`NGINX_PROGRAMS`]),
/// with busybox for the shell and the commands the suite runs in its pods (a `preStop` hook's
/// `sh -c`, `sleep`).
///
/// # Errors
///
/// If the base OS lacks nginx, its MIME types or a library it needs.
pub fn nginx_image(
    busybox: (Vec<u8>, &[&str]),
    base_root: &Path,
    kubernetes_version: &str,
) -> Result<OciImage, ImageError> {
    let reference = conformance_reference("nginx", kubernetes_version);
    let text =
        |path: &str, contents: &str| OciEntry::file(path, 0o644, contents.as_bytes().to_vec());
    let mut layer = userland_files(NGINX_PASSWD, NGINX_GROUP);
    // `var/lib/nginx`: where Debian's nginx keeps request bodies and proxy buffers (it
    // creates the subdirectories, owned by its workers' user, when it starts).
    let directories = [
        "etc/nginx",
        "etc/nginx/conf.d",
        "run",
        "usr",
        "usr/share",
        "usr/share/nginx",
        "usr/share/nginx/html",
        "var",
        "var/lib",
        "var/lib/nginx",
        "var/log",
        "var/log/nginx",
    ];
    layer.extend(directories.map(|dir| OciEntry::directory(dir, 0o755)));
    layer.extend([
        text("etc/nginx/nginx.conf", NGINX_CONF),
        text("etc/nginx/conf.d/default.conf", NGINX_DEFAULT_SERVER),
        text("usr/share/nginx/html/index.html", NGINX_INDEX),
        text("usr/share/nginx/html/50x.html", NGINX_50X),
        OciEntry::symlink("var/log/nginx/access.log", "/dev/stdout"),
        OciEntry::symlink("var/log/nginx/error.log", "/dev/stderr"),
    ]);
    let layer = with_userland(
        layer,
        base_root,
        &reference,
        (&NGINX_PROGRAMS, &NGINX_FILES),
        busybox,
    )?;
    Ok(OciImage {
        reference,
        base_layers: Vec::new(),
        layer,
        entrypoint: Vec::new(),
        cmd: ["nginx", "-g", "daemon off;"]
            .iter()
            .map(|word| (*word).to_owned())
            .collect(),
        env: vec![PATH_ENV.to_owned()],
        exposed_ports: vec!["80/tcp".to_owned()],
    })
}

/// The derivation of the conformance images for Kubernetes `kubernetes_version`, named
/// `conformance-images`, with an input for each of [`ConformanceInputs`]' fields, produced by
/// the derivation given there. Its output holds `images/<name>.oci.tar` for each of
/// [`CONFORMANCE_IMAGES`] but nautilus, which is in agnhost's archive (it is agnhost's layer
/// and its own), and [`IMAGES_INDEX_FILE`](super::IMAGES_INDEX_FILE), which names each image's
/// archive; every timestamp is `source_date_epoch`.
pub fn conformance_images(
    inputs: ConformanceInputs<DrvId>,
    kubernetes_version: &str,
    source_date_epoch: u64,
) -> Derivation {
    Derivation::new(
        "conformance-images",
        Arc::new(ConformanceImages {
            kubernetes_version: kubernetes_version.to_owned(),
            source_date_epoch,
        }),
    )
    .input("e2e", inputs.e2e)
    .input("etcd", inputs.etcd)
    .input("sample-apiserver", inputs.sample_apiserver)
    .input("busybox", inputs.busybox)
    .input("base-os", inputs.base_os)
}

/// What the conformance images are made of: as derivations ([`conformance_images`]) or as
/// their outputs' directories ([`ConformanceImages::build_into`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConformanceInputs<T> {
    /// The [`E2E_PACKAGE`] build of the cluster's Kubernetes version: agnhost, nnp, the
    /// porter certificate and nautilus's pages.
    pub e2e: T,
    /// The [`ETCD_PACKAGE`] build: `bin/etcd`.
    pub etcd: T,
    /// The [`SAMPLE_APISERVER_PACKAGE`] build: `bin/sample-apiserver`.
    pub sample_apiserver: T,
    /// Busybox, laid out as [`DebianBusybox`](super::DebianBusybox)'s output: the
    /// [`SourceBusybox`](super::SourceBusybox) build, whose `sh` behaves as upstream's images'.
    pub busybox: T,
    /// The base OS, which agnhost's and nginx's programs are picked from.
    pub base_os: T,
}

/// The builder of [`conformance_images`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ConformanceImages {
    /// The Kubernetes version the suite and agnhost are of (the images' tag).
    pub kubernetes_version: String,
    /// Every timestamp in the archives, in seconds since 1970.
    pub source_date_epoch: u64,
}

impl ConformanceImages {
    /// Writes the archives and the index into `out` from the directories of `inputs`.
    ///
    /// # Errors
    ///
    /// If an input file is missing, the base OS lacks a program, or `out` cannot be written.
    pub fn build_into(
        &self,
        inputs: &ConformanceInputs<&Path>,
        out: &Path,
    ) -> Result<(), ImageError> {
        let read = |path: &Path| fs::read(path).map_err(|error| ImageError::io(path, error));
        let e2e = inputs.e2e;
        let busybox = Busybox::read(inputs.busybox)?;
        let applets = busybox.applet_names();
        let scratch = tempfile::tempdir().map_err(|error| ImageError::io("(tempdir)", error))?;
        let root = scratch.path().join("root");
        unsquashfs(&inputs.base_os.join(BASE_OS_ROOTFS), &root, &PICKED_TREES)?;
        let porter = e2e.join("share").join(E2E_PACKAGE).join(PORTER_DIR);
        let agnhost = agnhost_image(
            read(&e2e.join("bin/agnhost"))?,
            (
                read(&porter.join("localhost.crt"))?,
                read(&porter.join("localhost.key"))?,
            ),
            (busybox.binary.clone(), &applets),
            &root,
            &self.kubernetes_version,
        )?;
        let nautilus_dir = e2e.join("share").join(E2E_PACKAGE).join(NAUTILUS_DIR);
        let pages = NAUTILUS_PAGES
            .iter()
            .map(|name| Ok(((*name).to_owned(), read(&nautilus_dir.join(name))?)))
            .collect::<Result<Vec<_>, ImageError>>()?;
        let nautilus = nautilus_image(agnhost.clone(), pages, &self.kubernetes_version);
        let nonewprivs = nonewprivs_image(read(&e2e.join("bin/nnp"))?, &self.kubernetes_version);
        let etcd = conformance_etcd_image(
            read(&inputs.etcd.join("bin/etcd"))?,
            &self.kubernetes_version,
        );
        let sample_apiserver = sample_apiserver_image(
            read(&inputs.sample_apiserver.join("bin/sample-apiserver"))?,
            &self.kubernetes_version,
        );
        let nginx = nginx_image(
            (busybox.binary.clone(), &applets),
            &root,
            &self.kubernetes_version,
        )?;
        let busybox =
            conformance_busybox_image(busybox.binary.clone(), &applets, &self.kubernetes_version);
        let mut pause = super::pause_image();
        pause.reference = conformance_reference("pause", &self.kubernetes_version);
        // Each image by the archive it goes in: nautilus is agnhost's layer and a small one,
        // so it goes in agnhost's archive, where that layer is read and digested once on
        // import.
        let images = [
            ("agnhost", agnhost),
            ("agnhost", nautilus),
            ("busybox", busybox),
            ("etcd", etcd),
            ("nginx", nginx),
            ("nonewprivs", nonewprivs),
            ("pause", pause),
            ("sample-apiserver", sample_apiserver),
        ]
        .into_iter()
        .map(|(archive, image)| {
            (
                format!("{}/{archive}.oci.tar", kiln_spec::images::ARCHIVES_DIR),
                image,
            )
        })
        .collect();
        write_images(out, images, self.source_date_epoch)
    }
}

impl Builder for ConformanceImages {
    fn kind(&self) -> &str {
        "kiln-image.conformance-images"
    }

    fn version(&self) -> u32 {
        // 2: nginx's image; 3: nautilus's and nonewprivs's; 4: nautilus on agnhost's layer,
        // in agnhost's archive; 5: etcd's and sample-apiserver's.
        5
    }

    fn params(&self) -> Params {
        Params::of(self)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let inputs = ConformanceInputs {
            e2e: ctx.input("e2e")?,
            etcd: ctx.input("etcd")?,
            sample_apiserver: ctx.input("sample-apiserver")?,
            busybox: ctx.input("busybox")?,
            base_os: ctx.input("base-os")?,
        };
        self.build_into(&inputs, ctx.out())
            .map_err(BuildError::from_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The paths of `layer`, asserting that none is there twice.
    fn paths_once(layer: &[OciEntry]) -> Vec<&str> {
        let paths: Vec<&str> = layer.iter().map(|entry| entry.path.as_str()).collect();
        let unique: std::collections::BTreeSet<&str> = paths.iter().copied().collect();
        assert_eq!(unique.len(), paths.len(), "every path once: {paths:?}");
        paths
    }

    /// The target of the link at `path` in `layer`, if it is one.
    fn link_target(layer: &[OciEntry], path: &str) -> Option<String> {
        layer
            .iter()
            .find_map(|entry| match (&entry.kind, entry.path == path) {
                (super::super::OciEntryKind::Symlink(target), true) => Some(target.clone()),
                _ => None,
            })
    }

    /// Picked from this machine's own root (Debian, as the base OS): the base OS's programs
    /// win over busybox's applets of the same name, busybox fills in the rest, and nothing is
    /// added twice.
    #[test]
    fn the_base_os_programs_win_over_busybox_applets() {
        let layer = with_userland(
            userland_files("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n"),
            Path::new("/"),
            "test",
            (&["/bin/sh"], &["/etc/nsswitch.conf"]),
            (b"(busybox)".to_vec(), &["sh", "wget", "busybox"]),
        )
        .expect("picked from /");
        let paths = paths_once(&layer);
        let link = |path: &str| link_target(&layer, path);
        assert_eq!(link("usr/bin/wget").as_deref(), Some("busybox"));
        assert_ne!(
            link("usr/bin/sh").as_deref(),
            Some("busybox"),
            "sh is the base OS's: {paths:?}"
        );
        assert!(paths.contains(&"usr/bin/busybox"));
        assert!(paths.contains(&"etc/nsswitch.conf"));
        assert!(
            paths.iter().any(|path| path.contains("libc.so")),
            "sh's libraries come with it: {paths:?}"
        );
    }

    /// nginx's image as the official one lays it out, from a root with a (stand-in) nginx and
    /// its MIME types: the configuration and pages, the logs on the container's output, the
    /// program and files picked, busybox for the shell, every path once.
    #[test]
    fn nginx_is_laid_out_as_the_official_image() {
        let root = tempfile::tempdir().expect("tempdir");
        for (path, contents) in [
            ("usr/sbin/nginx", "(nginx)"),
            ("etc/nginx/mime.types", "types { text/html html; }\n"),
            ("etc/nsswitch.conf", "hosts: files dns\n"),
        ] {
            let path = root.path().join(path);
            fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            fs::write(path, contents).expect("file");
        }
        let image = nginx_image(
            (b"(busybox)".to_vec(), &["sh", "sleep", "nginx"]),
            root.path(),
            "1.37.2",
        )
        .expect("nginx's image");
        assert_eq!(image.reference, "kiln.local/conformance/nginx:v1.37.2");
        assert_eq!(image.cmd, ["nginx", "-g", "daemon off;"]);
        assert_eq!(image.exposed_ports, ["80/tcp"]);
        paths_once(&image.layer);
        let file = |path: &str| {
            image
                .layer
                .iter()
                .find_map(|entry| match (&entry.kind, entry.path == path) {
                    (super::super::OciEntryKind::File(bytes), true) => {
                        Some(String::from_utf8_lossy(bytes).into_owned())
                    }
                    _ => None,
                })
        };
        let link = |path: &str| link_target(&image.layer, path);
        assert_eq!(file("usr/sbin/nginx").as_deref(), Some("(nginx)"));
        assert!(file("etc/nginx/mime.types").is_some());
        assert!(
            file("etc/nginx/nginx.conf")
                .expect("nginx.conf")
                .contains("include /etc/nginx/conf.d/*.conf;")
        );
        assert!(
            file("etc/nginx/conf.d/default.conf")
                .expect("default.conf")
                .contains("root   /usr/share/nginx/html;")
        );
        assert!(file("usr/share/nginx/html/index.html").is_some());
        assert!(
            file("etc/passwd")
                .expect("passwd")
                .contains("nginx:x:101:101:")
        );
        assert_eq!(
            link("var/log/nginx/access.log").as_deref(),
            Some("/dev/stdout")
        );
        assert_eq!(
            link("var/log/nginx/error.log").as_deref(),
            Some("/dev/stderr")
        );
        assert_eq!(link("usr/bin/sh").as_deref(), Some("busybox"));
        assert_eq!(
            link("usr/bin/nginx"),
            None,
            "the picked nginx is found on PATH, not busybox's applet"
        );
    }

    /// Read back by the real `tar`: nnp keeps its setuid and setgid bits, owned by root, in the
    /// layer the image's archive holds.
    #[test]
    fn nonewprivs_layer_holds_nnp_setuid_root() {
        let image = nonewprivs_image(b"(nnp)".to_vec(), "1.37.2");
        let layer = super::super::tar::write(&image.layer, 0).expect("the layer");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("layer.tar");
        fs::write(&path, layer).expect("written");
        let listing = std::process::Command::new("tar")
            .args(["--numeric-owner", "-tvf"])
            .arg(&path)
            .output()
            .expect("tar runs");
        assert!(listing.status.success(), "{listing:?}");
        let listing = String::from_utf8_lossy(&listing.stdout);
        let nnp = listing
            .lines()
            .find(|line| line.ends_with(" usr/local/bin/nnp"))
            .unwrap_or_else(|| panic!("no nnp in:\n{listing}"));
        assert!(nnp.starts_with("-rwsr-sr-x 0/0 "), "{nnp}");
    }
}
