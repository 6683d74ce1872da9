//! Installs the system tools that builds and tests need, through the machine's own apt
//! (`kiln_tools`, the one model of a tool and its Debian package).

use anyhow::Context;
use kiln_tools::Tool;

/// What the test suite runs: the independent verifiers of kiln's outputs.
pub const TEST_TOOLS: &[Tool] = &[
    Tool::program("openssl", "openssl"),
    Tool::program("kubectl", "kubernetes-client"),
    Tool::program("systemd-analyze", "systemd"),
    Tool::program("netplan", "netplan.io"),
    Tool::program("nginx", "nginx"),
    Tool::file(
        "/usr/share/nginx/modules/ngx_stream_module.so",
        "libnginx-mod-stream",
    ),
    Tool::file("/usr/lib/cni/bridge", "containernetworking-plugins"),
    Tool::program("python3", "python3"),
    Tool::program("ip", "iproute2"),
    Tool::program("iptables", "iptables"),
    Tool::program("unshare", "util-linux"),
    Tool::program("containerd", "containerd"),
    Tool::program("etcd", "etcd-server"),
    Tool::program("qemu-system-x86_64", "qemu-system-x86"),
    Tool::program("mksquashfs", "squashfs-tools"),
    Tool::program("mmdebstrap", "mmdebstrap"),
    Tool::program("cpio", "cpio"),
    // The VM plumbing test's tiny guest: the host's Debian kernel and busybox.
    Tool::file("/usr/share/doc/linux-image-amd64", "linux-image-amd64"),
    Tool::file("/bin/busybox", "busybox-static"),
    Tool::program("cloud-init", "cloud-init"),
    // The drift test's own apt repository: packages built and indexed by hand.
    Tool::program("dpkg-deb", "dpkg"),
    Tool::program("apt-ftparchive", "apt-utils"),
    Tool::program("dpkg-source", "dpkg-dev"),
    Tool::file(
        "/usr/lib/python3/dist-packages/jsonschema/__init__.py",
        "python3-jsonschema",
    ),
    // The registry the store is shared through in the push and substitution tests, with
    // password authentication.
    Tool::program("docker-registry", "docker-registry"),
    Tool::program("htpasswd", "apache2-utils"),
];

/// Installs the packages of `what`'s missing tools with apt-get (as root, or through sudo),
/// saying so first; does nothing, silently, when every tool is there.
pub fn ensure(what: &str, tools: &[Tool]) -> anyhow::Result<()> {
    let missing = kiln_tools::missing(tools);
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!(
        "installing {what} with apt-get: {}",
        kiln_tools::packages(&missing).join(" ")
    );
    kiln_tools::install(tools).with_context(|| format!("installing {what}"))?;
    Ok(())
}
