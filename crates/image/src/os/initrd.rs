//! kiln's initramfs: busybox, the kernel modules that reach the disks, and an `/init` that
//! mounts the image's read-only squashfs layers, stacks them with overlayfs under a writable
//! tmpfs, and hands over to systemd on that real root (runc cannot start containers when the
//! root is the initramfs itself).

use std::fs;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};

use super::cpio::{CpioEntry, write_cpio};

/// The store name of the initrd.
pub const INITRD_DERIVATION_NAME: &str = "initrd";

/// The `/init` script. The kernel command line names the layers in disk order:
/// `kiln.layers=node,kubernetes,images,base` means `/dev/vda` (or `/dev/xvda` under Xen) holds
/// `node`, the topmost. `kiln.debug` drops to a shell instead of powering off on failure.
pub const INIT_SCRIPT: &str = r#"#!/bin/busybox sh
# kiln's initramfs: mount the read-only layers, overlay them with a tmpfs, start systemd.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
    echo "kiln-init: $*" >&2
    if grep -qw kiln.debug /proc/cmdline; then exec sh; fi
    sleep 5
    poweroff -f
}

echo "kiln-init: loading modules"
while read -r module; do
    insmod "/lib/modules/$module" 2>/dev/null
done < /lib/modules.load

layers=$(tr ' ' '\n' < /proc/cmdline | sed -n 's/^kiln\.layers=//p')
[ -n "$layers" ] || fail "no kiln.layers= on the kernel command line"

mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /run
mkdir -p /run/kiln/layers /run/kiln/rw
letters=abcdefghijklmnopqrstuvwxyz
index=0
lower=""
for name in $(echo "$layers" | tr ',' ' '); do
    index=$((index + 1))
    letter=$(echo "$letters" | cut -c "$index")
    device=""
    tries=0
    while [ -z "$device" ] && [ "$tries" -lt 300 ]; do
        for candidate in "/dev/vd$letter" "/dev/xvd$letter"; do
            if [ -b "$candidate" ]; then device=$candidate; fi
        done
        [ -n "$device" ] || sleep 0.1
        tries=$((tries + 1))
    done
    [ -n "$device" ] || fail "layer $name: no disk vd$letter or xvd$letter after 30 s"
    mkdir -p "/run/kiln/layers/$name"
    mount -t squashfs -o ro "$device" "/run/kiln/layers/$name" || fail "layer $name: cannot mount $device"
    echo "kiln-init: layer $name from $device"
    lower="${lower:+$lower:}/run/kiln/layers/$name"
done

mount -t tmpfs -o mode=0755 kiln-rw /run/kiln/rw
mkdir -p /run/kiln/rw/upper /run/kiln/rw/work /newroot
mount -t overlay -o "lowerdir=$lower,upperdir=/run/kiln/rw/upper,workdir=/run/kiln/rw/work" overlay /newroot \
    || fail "cannot mount the overlay of $lower"
# containerd's overlayfs snapshotter cannot put its layers on an overlayfs: give it a tmpfs.
mkdir -p /newroot/var/lib/containerd
mount -t tmpfs -o mode=0711 containerd /newroot/var/lib/containerd

for fs in run dev proc sys; do
    mount --move "/$fs" "/newroot/$fs" || fail "cannot move /$fs"
done
echo "kiln-init: starting systemd"
exec switch_root /newroot /sbin/init
fail "switch_root failed"
"#;

/// Builds `initrd.img` (an uncompressed `newc` cpio) from the base OS output's `initrd/` parts:
/// `busybox`, `modules/*.ko` and `modules.load`.
#[derive(Debug, Default)]
pub struct Initrd;

impl Builder for Initrd {
    fn kind(&self) -> &str {
        "kiln-image.initrd"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(INIT_SCRIPT)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let parts = ctx.input("base-os")?.join("initrd");
        let read = |path: &Path| fs::read(path).map_err(|error| BuildError::io(path, error));
        let load_path = parts.join("modules.load");
        let load = String::from_utf8(read(&load_path)?).map_err(BuildError::from_error)?;

        let dir = |path: &str| CpioEntry::Directory {
            path: path.to_owned(),
            mode: 0o755,
        };
        let mut entries = vec![
            dir("bin"),
            CpioEntry::File {
                path: "bin/busybox".into(),
                mode: 0o755,
                data: read(&parts.join("busybox"))?,
            },
            dir("dev"),
            CpioEntry::CharDevice {
                path: "dev/console".into(),
                mode: 0o600,
                major: 5,
                minor: 1,
            },
            CpioEntry::CharDevice {
                path: "dev/null".into(),
                mode: 0o666,
                major: 1,
                minor: 3,
            },
            CpioEntry::File {
                path: "init".into(),
                mode: 0o755,
                data: INIT_SCRIPT.as_bytes().to_vec(),
            },
            dir("lib"),
            dir("lib/modules"),
        ];
        for module in load.lines().filter(|line| !line.is_empty()) {
            entries.push(CpioEntry::File {
                path: format!("lib/modules/{module}"),
                mode: 0o644,
                data: read(&parts.join("modules").join(module))?,
            });
        }
        entries.push(CpioEntry::File {
            path: "lib/modules.load".into(),
            mode: 0o644,
            data: load.into_bytes(),
        });
        for path in ["newroot", "proc", "run", "sys"] {
            entries.push(dir(path));
        }
        let mut bytes = Vec::new();
        write_cpio(&mut bytes, &entries, 0).map_err(BuildError::from_error)?;
        let out = ctx.out().join("initrd.img");
        fs::write(&out, bytes).map_err(|error| BuildError::io(&out, error))
    }
}

/// The initrd derivation, reading the base OS output `base_os`.
pub fn initrd(base_os: impl Into<DrvId>) -> Derivation {
    Derivation::new(INITRD_DERIVATION_NAME, Arc::new(Initrd)).input("base-os", base_os)
}
