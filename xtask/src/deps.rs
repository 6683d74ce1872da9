//! Installs the system tools that builds and tests need, through the machine's own apt.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

/// How to tell that a package is installed: a command on PATH, or a file it ships (for
/// packages with no command, such as an nginx module or the CNI plugins).
pub enum Probe {
    /// A command looked up on PATH.
    Command(&'static str),
    /// An absolute path the package installs.
    File(&'static str),
}

/// A thing kiln needs and the Debian package that provides it.
pub struct Tool {
    /// How to see that it is there.
    pub probe: Probe,
    /// The Debian package that installs it.
    pub package: &'static str,
}

const fn command(command: &'static str, package: &'static str) -> Tool {
    Tool {
        probe: Probe::Command(command),
        package,
    }
}

const fn file(path: &'static str, package: &'static str) -> Tool {
    Tool {
        probe: Probe::File(path),
        package,
    }
}

/// What the test suite runs: the independent verifiers of kiln's outputs.
pub const TEST_TOOLS: &[Tool] = &[
    command("openssl", "openssl"),
    command("kubectl", "kubernetes-client"),
    command("systemd-analyze", "systemd"),
    command("netplan", "netplan.io"),
    command("nginx", "nginx"),
    file(
        "/usr/share/nginx/modules/ngx_stream_module.so",
        "libnginx-mod-stream",
    ),
    file("/usr/lib/cni/bridge", "containernetworking-plugins"),
    command("python3", "python3"),
    command("ip", "iproute2"),
    command("iptables", "iptables"),
    command("unshare", "util-linux"),
    command("containerd", "containerd"),
    command("etcd", "etcd-server"),
    command("qemu-system-x86_64", "qemu-system-x86"),
    command("mksquashfs", "squashfs-tools"),
    command("mmdebstrap", "mmdebstrap"),
    command("cpio", "cpio"),
    // The VM plumbing test's tiny guest: the host's Debian kernel and busybox.
    file("/usr/share/doc/linux-image-amd64", "linux-image-amd64"),
    file("/bin/busybox", "busybox-static"),
    command("cloud-init", "cloud-init"),
    // The drift test's own apt repository: packages built and indexed by hand.
    command("dpkg-deb", "dpkg"),
    command("apt-ftparchive", "apt-utils"),
    command("dpkg-source", "dpkg-dev"),
    file(
        "/usr/lib/python3/dist-packages/jsonschema/__init__.py",
        "python3-jsonschema",
    ),
];

fn present(probe: &Probe) -> bool {
    match probe {
        Probe::File(path) => Path::new(path).exists(),
        Probe::Command(command) => std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).any(|dir| dir.join(command).is_file()))
            .unwrap_or(false),
    }
}

/// Installs the packages of every missing tool with apt-get (as root, or through sudo).
pub fn ensure(tools: &[Tool]) -> anyhow::Result<()> {
    let mut missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !present(&tool.probe))
        .map(|tool| tool.package)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("installing {} with apt-get", missing.join(" "));
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| out.stdout == b"0\n")
        .unwrap_or(false);
    let run = |args: &[&str]| -> anyhow::Result<()> {
        let mut command = if root {
            Command::new("apt-get")
        } else {
            Command::new("sudo")
        };
        if !root {
            command.arg("apt-get");
        }
        let status = command
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get (kiln installs its tools with the machine's apt)")?;
        if !status.success() {
            bail!(
                "apt-get {} failed; install {} by hand",
                args.join(" "),
                missing.join(" ")
            );
        }
        Ok(())
    };
    run(&["update", "-qq"])?;
    let mut install = vec!["install", "-y", "-qq", "--no-install-recommends"];
    install.extend(missing.iter().copied());
    run(&install)?;
    let still_missing: Vec<&str> = tools
        .iter()
        .filter(|tool| !present(&tool.probe))
        .map(|tool| tool.package)
        .collect();
    if !still_missing.is_empty() {
        bail!(
            "apt-get installed, but these are still missing: {}",
            still_missing.join(" ")
        );
    }
    Ok(())
}
