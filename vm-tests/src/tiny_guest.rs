//! A tiny guest for testing the QEMU plumbing without a kiln image: the host's Debian kernel
//! (`linux-image-amd64`) and an initramfs of busybox (`busybox-static`) whose `/init` brings
//! up both NICs like a node image does (static address on `eth0`, DHCP without a default
//! route on `eth1`), serves its name over HTTP on port 8080, and gives a root shell on `ttyS1`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::Error;
use crate::qemu::find_program;

/// The line the guest prints on its console once its network and shell are up.
pub const READY_LINE: &str = "kiln-tiny-guest ready";

/// The guest's kernel and initramfs.
#[derive(Debug, Clone)]
pub struct TinyGuest {
    /// The host's kernel.
    pub kernel: PathBuf,
    /// The busybox initramfs.
    pub initrd: PathBuf,
}

impl TinyGuest {
    /// The kernel command line for a guest called `name` with `address` (with prefix) on
    /// `eth0`.
    pub fn cmdline(name: &str, address: &str) -> String {
        format!(
            "console=ttyS0 net.ifnames=0 panic=-1 quiet kiln.name={name} kiln.address={address}"
        )
    }
}

/// The modules the guest needs from the Debian kernel, which builds virtio as modules.
const MODULES: &[&str] = &["virtio_pci", "virtio_net"];

const INIT: &str = r#"#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin /www
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
for module in $(cat /modules.order); do insmod /lib/modules/$module.ko; done
for word in $(cat /proc/cmdline); do
  case "$word" in
    kiln.name=*) name=${word#kiln.name=} ;;
    kiln.address=*) address=${word#kiln.address=} ;;
  esac
done
hostname "$name"
ip link set lo up
ip link set eth0 up
ip addr add "$address" dev eth0
ip link set eth1 up
udhcpc -i eth1 -s /udhcpc.script -q -n -t 10 -T 1 >/dev/null 2>&1
echo "$name" > /www/index.html
httpd -p 8080 -h /www
(while true; do setsid sh -c 'exec sh -i <>/dev/ttyS1 >&0 2>&0'; sleep 1; done) &
echo "kiln-tiny-guest ready: $name eth0 $address, eth1 $(ip -4 -o addr show eth1 | awk '{print $4}')"
while true; do sleep 3600; done
"#;

/// busybox udhcpc's hook: take the address, never a default route (the management NIC must
/// not carry the guest's traffic).
const UDHCPC_SCRIPT: &str = r#"#!/bin/sh
case "$1" in
  bound|renew) ifconfig "$interface" "$ip" netmask "$subnet" ;;
esac
"#;

/// The newest kernel under `/boot` and its version (the name of its `/lib/modules` tree).
pub fn host_kernel() -> crate::Result<(PathBuf, String)> {
    let missing = || Error::MissingProgram {
        program: "/boot/vmlinuz-*".to_owned(),
        package: "linux-image-amd64".to_owned(),
    };
    let entries = std::fs::read_dir("/boot").map_err(|_| missing())?;
    let mut kernels: Vec<(PathBuf, String)> = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            let version = name.strip_prefix("vmlinuz-")?.to_owned();
            Path::new("/lib/modules")
                .join(&version)
                .join("modules.dep")
                .is_file()
                .then(|| (entry.path(), version))
        })
        .collect();
    kernels.sort_by(|a, b| a.1.cmp(&b.1));
    kernels.pop().ok_or_else(missing)
}

/// Builds the initramfs in `dir` (which must exist) for the host's kernel.
pub fn build(dir: &Path) -> crate::Result<TinyGuest> {
    let (kernel, version) = host_kernel()?;
    let busybox = PathBuf::from("/bin/busybox");
    if !busybox.is_file() {
        return Err(Error::MissingProgram {
            program: "busybox".to_owned(),
            package: "busybox-static".to_owned(),
        });
    }
    let cpio = find_program("cpio", "cpio")?;
    let root = dir.join("root");
    let write = |relative: &str, contents: &[u8], mode: u32| -> crate::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let path = root.join(relative);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|error| Error::io(format!("creating {}", parent.display()), error))?;
        }
        std::fs::write(&path, contents)
            .map_err(|error| Error::io(format!("writing {}", path.display()), error))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|error| Error::io(format!("chmod {}", path.display()), error))
    };
    let busybox_bytes = std::fs::read(&busybox)
        .map_err(|error| Error::io(format!("reading {}", busybox.display()), error))?;
    write("bin/busybox", &busybox_bytes, 0o755)?;
    write("init", INIT.as_bytes(), 0o755)?;
    write("udhcpc.script", UDHCPC_SCRIPT.as_bytes(), 0o755)?;

    let modules_dir = Path::new("/lib/modules").join(&version);
    let order = module_order(&modules_dir, MODULES)?;
    let mut names = String::new();
    for relative in &order {
        let source = modules_dir.join(relative);
        let bytes = std::fs::read(&source)
            .map_err(|error| Error::io(format!("reading {}", source.display()), error))?;
        let name = module_name(relative);
        write(&format!("lib/modules/{name}.ko"), &bytes, 0o644)?;
        names.push_str(&name);
        names.push('\n');
    }
    write("modules.order", names.as_bytes(), 0o644)?;

    let initrd = dir.join("initrd.cpio");
    let listing = walk(&root)?;
    let mut child = Command::new(cpio)
        .args(["--quiet", "-o", "-H", "newc"])
        .current_dir(&root)
        .stdin(Stdio::piped())
        .stdout(
            std::fs::File::create(&initrd)
                .map_err(|error| Error::io(format!("creating {}", initrd.display()), error))?,
        )
        .spawn()
        .map_err(|error| Error::io("running cpio", error))?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, listing.as_bytes())
            .map_err(|error| Error::io("feeding cpio", error))?;
    }
    let status = child
        .wait()
        .map_err(|error| Error::io("running cpio", error))?;
    if !status.success() {
        return Err(Error::Command {
            command: "cpio -o -H newc".to_owned(),
            status: status.to_string(),
            output: String::new(),
        });
    }
    Ok(TinyGuest { kernel, initrd })
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net`.
fn module_name(relative: &str) -> String {
    let file = relative.rsplit('/').next().unwrap_or(relative);
    file.split('.').next().unwrap_or(file).to_owned()
}

/// The module files (relative to `modules_dir`) to load for `wanted`, dependencies first.
fn module_order(modules_dir: &Path, wanted: &[&str]) -> crate::Result<Vec<String>> {
    let dep_path = modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path)
        .map_err(|error| Error::io(format!("reading {}", dep_path.display()), error))?;
    let dependencies: Vec<(String, Vec<String>)> = text
        .lines()
        .filter_map(|line| line.split_once(':'))
        .map(|(module, deps)| {
            (
                module.to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            )
        })
        .collect();
    fn visit(
        file: &str,
        dependencies: &[(String, Vec<String>)],
        seen: &mut BTreeSet<String>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(file.to_owned()) {
            return;
        }
        if let Some((_, deps)) = dependencies.iter().find(|(module, _)| module == file) {
            for dep in deps {
                visit(dep, dependencies, seen, order);
            }
        }
        order.push(file.to_owned());
    }
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    for name in wanted {
        let file = dependencies
            .iter()
            .map(|(module, _)| module)
            .find(|module| module_name(module) == *name)
            .ok_or_else(|| Error::Image {
                path: dep_path.clone(),
                reason: format!("no module {name} (built in? then drop it from MODULES)"),
            })?;
        if file.ends_with(".ko.xz") || file.ends_with(".ko.zst") || file.ends_with(".ko.gz") {
            return Err(Error::Image {
                path: dep_path.clone(),
                reason: format!("{file} is compressed; busybox insmod needs plain .ko files"),
            });
        }
        visit(file, &dependencies, &mut seen, &mut order);
    }
    Ok(order)
}

/// Every path under `root`, relative and newline-separated, directories before their
/// contents, as `cpio -o` reads them.
fn walk(root: &Path) -> crate::Result<String> {
    let mut listing = String::new();
    let mut stack = vec![PathBuf::from(".")];
    while let Some(relative) = stack.pop() {
        listing.push_str(&relative.display().to_string());
        listing.push('\n');
        let path = root.join(&relative);
        if path.is_dir() && !path.is_symlink() {
            let mut children: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(|error| Error::io(format!("listing {}", path.display()), error))?
                .filter_map(|entry| entry.ok())
                .map(|entry| relative.join(entry.file_name()))
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev());
        }
    }
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_load_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("modules.dep"),
            "kernel/net/core/failover.ko:\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko \
             kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko\n\
             kernel/drivers/virtio/virtio.ko:\n",
        )
        .expect("write");
        let order = module_order(dir.path(), &["virtio_net"]).expect("order");
        assert_eq!(
            order,
            [
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/virtio/virtio.ko",
                "kernel/drivers/net/virtio_net.ko",
            ]
        );
        assert!(module_order(dir.path(), &["e1000"]).is_err());
    }
}
