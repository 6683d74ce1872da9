//! A node image: one store path per node holding `manifest.json`, the kernel, the initrd, its
//! layers (the per-node layer on top of the shared ones), a ready-to-run QEMU script and a Xen
//! `xl.cfg` (PVH or PV, as the spec says).
//!
//! Shared parts are never copied: the kernel, the initrd and every layer are relative symbolic
//! links to the sibling store paths that hold them (`../<digest>-base-os/vmlinuz`), so a
//! cluster's images store the base OS, the Kubernetes binaries and the container images once.
//! Relative links keep the image's bytes independent of where the store lives.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Params};
use serde::{Deserialize, Serialize};

use super::layer::LAYER_FILE;

/// What a node image is: the contract between the image and whatever boots it (`run-qemu`,
/// `xl.cfg`, `cargo xtask run-vm`, the VM tests). Paths are relative to the image directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageManifest {
    /// The cluster's name.
    pub cluster: String,
    /// The node's name.
    pub node: String,
    /// The kernel.
    pub kernel: String,
    /// The initramfs.
    pub initrd: String,
    /// The kernel command line.
    pub cmdline: String,
    /// Raw read-only disks, attached in this order (`vda`, `vdb`, ...): the layers, topmost
    /// first.
    pub disks: Vec<String>,
    /// Each layer's name, size and SHA-256, in disk order.
    pub layers: Vec<LayerEntry>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The MAC address of the cluster NIC (`eth0`).
    pub mac: String,
    /// The node's addresses on the cluster network, in CIDR notation.
    pub addresses: Vec<String>,
    /// The node's roles.
    pub roles: Vec<String>,
    /// The writable disk that keeps the node's state across restarts, if the node has state
    /// worth keeping (etcd's data). Not part of the image: whoever boots the node provides it
    /// (see [`StateDisk`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<StateDisk>,
}

/// A node's persistent state disk. The image's root file system is a tmpfs over read-only
/// layers, so a restarted node forgets everything it wrote; a node whose state must outlive a
/// restart (an etcd member, whose data is the cluster) mounts this disk instead.
///
/// The contract with whoever boots the node: attach a raw disk of at least `mib` MiB, writable,
/// and add [`StateDisk::CMDLINE_FLAG`] to the kernel command line. Under QEMU it is a virtio
/// disk of serial `serial` (`-device virtio-blk-pci,serial=kiln-state,...`); under Xen, the
/// disk `xen_vdev` (`xvdz`), which the `xl.cfg` of the image attaches from
/// [`StateDisk::xen_file`]. The node's udev names either [`StateDisk::device`] (the rules are
/// [`StateDisk::udev_rules`]), formats it on first boot (ext4) and mounts it at `mount`.
/// Without the flag the state lives in memory, as before. `run-qemu` does all this when
/// `KILN_STATE_DIR` is set, keeping the disk as `$KILN_STATE_DIR/<node>.state.img`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateDisk {
    /// The virtio serial the node looks for under QEMU.
    pub serial: String,
    /// The Xen virtual disk the node looks for under Xen (`xvdz`: after any layers).
    pub xen_vdev: String,
    /// The disk's size in MiB when it is created.
    pub mib: u32,
    /// Where the node mounts it.
    pub mount: String,
}

impl StateDisk {
    /// The kernel command line word that tells the node its state disk is attached.
    pub const CMDLINE_FLAG: &'static str = "kiln.state";

    /// The directory of the Xen host where the `xl.cfg` of a node expects its state disk
    /// ([`StateDisk::xen_file`]).
    pub const XEN_STATE_DIR: &'static str = "/var/lib/kiln/state";

    /// etcd's data directory on a disk of serial `kiln-state` (QEMU) or `xvdz` (Xen).
    pub fn etcd() -> StateDisk {
        StateDisk {
            serial: "kiln-state".into(),
            xen_vdev: "xvdz".into(),
            mib: 2048,
            mount: "/var/lib/etcd".into(),
        }
    }

    /// The device path the node mounts: a link udev makes to the disk, whichever hypervisor
    /// attached it.
    pub fn device(&self) -> String {
        "/dev/disk/kiln/state".to_owned()
    }

    /// The udev rules that link [`StateDisk::device`] to the disk: the virtio disk of serial
    /// `serial` (as udev's own `disk/by-id/virtio-<serial>` rule matches it), or the Xen disk
    /// `xen_vdev`.
    pub fn udev_rules(&self) -> String {
        format!(
            "# kiln: the node's state disk, attached by QEMU (virtio, serial {serial}) or Xen ({vdev}).\n\
             SUBSYSTEM==\"block\", ENV{{DEVTYPE}}==\"disk\", KERNEL==\"vd*[!0-9]\", ATTRS{{serial}}==\"{serial}\", SYMLINK+=\"disk/kiln/state\"\n\
             SUBSYSTEM==\"block\", ENV{{DEVTYPE}}==\"disk\", KERNEL==\"{vdev}\", SYMLINK+=\"disk/kiln/state\"\n",
            serial = self.serial,
            vdev = self.xen_vdev,
        )
    }

    /// The raw file on the Xen host that a node's `xl.cfg` attaches as its state disk:
    /// `/var/lib/kiln/state/<cluster>-<node>.img`, created by the host (`truncate -s <mib>M`)
    /// before the first `xl create`, and kept across restarts.
    pub fn xen_file(cluster: &str, node: &str) -> String {
        format!("{}/{cluster}-{node}.img", StateDisk::XEN_STATE_DIR)
    }
}

/// One layer of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// The layer's name, as on the kernel command line's `kiln.layers=`.
    pub name: String,
    /// The disk file, relative to the image directory.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its SHA-256.
    pub sha256: String,
    /// Whether other nodes' images share it.
    pub shared: bool,
}

/// Which cgroup hierarchy the node's systemd mounts, chosen on the kernel command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CgroupHierarchy {
    /// cgroup v1 (`systemd.unified_cgroup_hierarchy=0`): what the nodes on Debian's userland
    /// (Kubernetes 1.20, containerd 1.6) were proven on.
    V1,
    /// The unified cgroup v2 hierarchy (`systemd.unified_cgroup_hierarchy=1`). The kubelet
    /// refuses to start on cgroup v1 from Kubernetes 1.35 (its `failCgroupV1` defaults to
    /// true).
    V2,
}

impl CgroupHierarchy {
    /// The kernel command-line parameter that selects this hierarchy.
    pub fn kernel_parameter(self) -> &'static str {
        match self {
            Self::V1 => "systemd.unified_cgroup_hierarchy=0",
            Self::V2 => "systemd.unified_cgroup_hierarchy=1",
        }
    }
}

/// One layer of a node image, as [`NodeImageSpec::layers`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageLayer {
    /// The layer's name: its disk is `layers/<name>.squashfs`, and the kernel command line's
    /// `kiln.layers=` lists it.
    pub name: String,
    /// The image derivation's input that holds it.
    pub input: String,
    /// Whether other nodes' images use the same layer (see [`LayerEntry::shared`]).
    pub shared: bool,
}

impl ImageLayer {
    /// A layer of this node's alone (its own files).
    pub fn own(name: impl Into<String>, input: impl Into<String>) -> ImageLayer {
        ImageLayer {
            name: name.into(),
            input: input.into(),
            shared: false,
        }
    }

    /// A layer other nodes' images use too.
    pub fn shared(name: impl Into<String>, input: impl Into<String>) -> ImageLayer {
        ImageLayer {
            name: name.into(),
            input: input.into(),
            shared: true,
        }
    }
}

/// What the node image builder needs besides its inputs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeImageSpec {
    /// The cluster's name.
    pub cluster: String,
    /// The node's name.
    pub node: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The node's addresses, CIDR notation.
    pub addresses: Vec<String>,
    /// The node's roles.
    pub roles: Vec<String>,
    /// The layers in stacking order, topmost first. The last must be the base OS input,
    /// `base-os`, whose `rootfs.squashfs` is used.
    pub layers: Vec<ImageLayer>,
    /// The node's persistent state disk, if it has one (its layer must mount it: see
    /// [`StateDisk`]).
    pub state: Option<StateDisk>,
    /// The cgroup hierarchy the node boots with.
    pub cgroups: CgroupHierarchy,
    /// The kind of Xen guest its `xl.cfg` describes.
    pub xen_guest: kiln_spec::XenGuest,
}

impl NodeImageSpec {
    /// The derivation, named `<node>-image`. `inputs` maps input names (those of
    /// [`NodeImageSpec::layers`], plus `initrd`) to derivations.
    pub fn derivation(self, inputs: impl IntoIterator<Item = (String, DrvId)>) -> Derivation {
        let name = format!("{}-image", self.node);
        let mut derivation = Derivation::new(name, Arc::new(NodeImage { spec: self }));
        for (input, id) in inputs {
            derivation = derivation.input(input, id);
        }
        derivation
    }

    /// The MAC address of the node's cluster NIC: locally administered, from a hash of the
    /// cluster's and the node's names.
    pub fn mac(&self) -> String {
        let digest = kiln_store::DigestBuilder::new("kiln-node-mac")
            .str(&self.cluster)
            .str(&self.node)
            .finish();
        let bytes = digest.as_bytes();
        format!(
            "52:54:00:{:02x}:{:02x}:{:02x}",
            bytes[0], bytes[1], bytes[2]
        )
    }

    /// The name of the Xen host's bridge that takes the cluster's NICs: `kiln-<cluster>`, or
    /// where that is longer than a Linux interface name may be (15 bytes), `kiln-` and ten hex
    /// digits of a hash of the cluster's name.
    pub fn xen_bridge(&self) -> String {
        let name = format!("kiln-{}", self.cluster);
        if name.len() <= 15 {
            return name;
        }
        let digest = kiln_store::DigestBuilder::new("kiln-xen-bridge")
            .str(&self.cluster)
            .finish();
        format!("kiln-{}", &digest.to_hex()[..10])
    }

    /// The UDP port of the cluster's QEMU multicast segment, from a hash of the cluster's
    /// name (in 20000..40000).
    pub fn segment_port(&self) -> u16 {
        let digest = kiln_store::DigestBuilder::new("kiln-segment-port")
            .str(&self.cluster)
            .finish();
        let bytes = digest.as_bytes();
        20_000 + u16::from_be_bytes([bytes[0], bytes[1]]) % 20_000
    }

    /// The kernel command line.
    pub fn cmdline(&self, console: &str) -> String {
        let layers: Vec<&str> = self
            .layers
            .iter()
            .map(|layer| layer.name.as_str())
            .collect();
        format!(
            "console={console} panic=10 net.ifnames=0 {} kiln.layers={}",
            self.cgroups.kernel_parameter(),
            layers.join(",")
        )
    }
}

/// The node image builder.
#[derive(Debug)]
pub struct NodeImage {
    spec: NodeImageSpec,
}

impl Builder for NodeImage {
    fn kind(&self) -> &str {
        "kiln-image.node"
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        Params::of(&self.spec)
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let spec = &self.spec;
        let out = ctx.out();
        let sibling = |input: &str, file: &str| -> Result<String, BuildError> {
            let path = ctx.input(input)?;
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .ok_or_else(|| BuildError::new(format!("input {input} has no store name")))?;
            Ok(format!("../{name}/{file}"))
        };
        let link = |target: &str, path: &Path| {
            std::os::unix::fs::symlink(target, path).map_err(|error| BuildError::io(path, error))
        };
        link(&sibling("base-os", "vmlinuz")?, &out.join("vmlinuz"))?;
        link(&sibling("initrd", "initrd.img")?, &out.join("initrd.img"))?;
        let layers_dir = out.join("layers");
        fs::create_dir(&layers_dir).map_err(|error| BuildError::io(&layers_dir, error))?;
        let mut layers = Vec::new();
        for ImageLayer {
            name,
            input,
            shared,
        } in &spec.layers
        {
            let file = if input == "base-os" {
                crate::os::base::BASE_OS_ROOTFS
            } else {
                LAYER_FILE
            };
            let source = ctx.input(input)?.join(file);
            let relative = format!("layers/{name}.squashfs");
            link(
                &format!("../{}", sibling(input, file)?),
                &out.join(&relative),
            )?;
            let (bytes, sha256) = size_and_sha256(&source)?;
            layers.push(LayerEntry {
                name: name.clone(),
                file: relative,
                bytes,
                sha256,
                shared: *shared,
            });
        }
        let manifest = ImageManifest {
            cluster: spec.cluster.clone(),
            node: spec.node.clone(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            cmdline: spec.cmdline("ttyS0"),
            disks: layers.iter().map(|layer| layer.file.clone()).collect(),
            layers,
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            mac: spec.mac(),
            addresses: spec.addresses.clone(),
            roles: spec.roles.clone(),
            state: spec.state.clone(),
        };
        let mut json = serde_json::to_string_pretty(&manifest).map_err(BuildError::from_error)?;
        json.push('\n');
        write(&out.join("manifest.json"), &json, 0o644)?;
        write(&out.join("run-qemu"), &qemu_script(spec, &manifest), 0o755)?;
        write(&out.join("xl.cfg"), &xl_cfg(spec, &manifest), 0o644)?;
        Ok(())
    }
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), BuildError> {
    fs::write(path, text).map_err(|error| BuildError::io(path, error))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|error| BuildError::io(path, error))
}

fn size_and_sha256(path: &Path) -> Result<(u64, String), BuildError> {
    use sha2::Digest as _;
    let mut file = fs::File::open(path).map_err(|error| BuildError::io(path, error))?;
    let mut hasher = sha2::Sha256::new();
    let bytes =
        std::io::copy(&mut file, &mut hasher).map_err(|error| BuildError::io(path, error))?;
    Ok((bytes, hex::encode(hasher.finalize())))
}

/// The `run-qemu` script: boots the image with the serial console on the terminal. `eth0` joins
/// the cluster's segment (a QEMU multicast socket bound to the loopback interface: every node of
/// the cluster started this way on one machine shares it, and nothing leaves the machine); `eth1` is QEMU user networking with
/// `restrict=on`, so the guest reaches nothing outside. Extra arguments go to QEMU (for
/// example `-netdev user,...,hostfwd=...` replacements are not needed: add
/// `KILN_QEMU_HOSTFWD=hostfwd=tcp:127.0.0.1:6443-:6443`).
fn qemu_script(spec: &NodeImageSpec, manifest: &ImageManifest) -> String {
    let mut script = String::new();
    let _ = writeln!(script, "#!/bin/sh");
    let _ = writeln!(
        script,
        "# Boots node {} of cluster {} under QEMU, its serial console on this terminal.",
        spec.node, spec.cluster
    );
    let _ = writeln!(
        script,
        "# KILN_QEMU_ACCEL picks the accelerator (default: tcg,thread=multi; kvm where it works)."
    );
    let _ = writeln!(
        script,
        "# KILN_QEMU_HOSTFWD adds port forwards to the management NIC, e.g. hostfwd=tcp:127.0.0.1:6443-:6443."
    );
    let _ = writeln!(script, "# Extra arguments are passed to QEMU.");
    let _ = writeln!(script, "set -eu");
    let _ = writeln!(script, "here=$(cd \"$(dirname \"$0\")\" && pwd -P)");
    let _ = writeln!(script, "accel=${{KILN_QEMU_ACCEL:-tcg,thread=multi}}");
    let _ = writeln!(script, "fwd=${{KILN_QEMU_HOSTFWD:+,$KILN_QEMU_HOSTFWD}}");
    // As the VM tests boot guests: TCG's default CPU model (`-cpu max` made every boot slower
    // under TCG, BENCHMARKS.md), the host's CPU under KVM.
    let _ = writeln!(
        script,
        "# Under TCG, QEMU's default CPU model (-cpu max was measured slower); under KVM, the host's."
    );
    let _ = writeln!(
        script,
        "case \"$accel\" in kvm*) set -- -cpu host \"$@\" ;; esac"
    );
    if let Some(state) = &manifest.state {
        let _ = writeln!(
            script,
            "# KILN_STATE_DIR keeps this node's state ({}) on a disk there across restarts;\n\
             # without it the state lives in memory and is lost when the guest stops.",
            state.mount
        );
        let _ = writeln!(script, "state=");
        let _ = writeln!(script, "if [ -n \"${{KILN_STATE_DIR:-}}\" ]; then");
        let _ = writeln!(script, "  mkdir -p \"$KILN_STATE_DIR\"");
        let _ = writeln!(
            script,
            "  disk=\"$(cd \"$KILN_STATE_DIR\" && pwd -P)/{}.state.img\"",
            spec.node
        );
        let _ = writeln!(
            script,
            "  [ -e \"$disk\" ] || truncate -s {}M \"$disk\"",
            state.mib
        );
        let _ = writeln!(
            script,
            "  set -- -drive \"file=$disk,if=none,id=state,format=raw\" -device \"virtio-blk-pci,drive=state,serial={},bus=pci.0,addr=0x1d\" \"$@\"",
            state.serial
        );
        // (A fixed PCI slot after the layers', which keep vda, vdb, ...)
        let _ = writeln!(script, "  state=' {}'", StateDisk::CMDLINE_FLAG);
        let _ = writeln!(script, "fi");
    }
    let _ = writeln!(script, "exec qemu-system-x86_64 \\");
    let _ = writeln!(script, "  -name {}-{} \\", spec.cluster, spec.node);
    let _ = writeln!(script, "  -accel \"$accel\" \\");
    let _ = writeln!(
        script,
        "  -m {} -smp {} \\",
        manifest.memory_mib, manifest.cpus
    );
    let _ = writeln!(script, "  -nographic -no-reboot \\");
    let _ = writeln!(
        script,
        "  -kernel \"$here/{}\" -initrd \"$here/{}\" \\",
        manifest.kernel, manifest.initrd
    );
    if manifest.state.is_some() {
        let _ = writeln!(script, "  -append '{}'\"$state\" \\", manifest.cmdline);
    } else {
        let _ = writeln!(script, "  -append '{}' \\", manifest.cmdline);
    }
    for disk in &manifest.disks {
        let _ = writeln!(
            script,
            "  -drive \"file=$here/{disk},if=virtio,format=raw,readonly=on\" \\"
        );
    }
    let _ = writeln!(
        script,
        "  -netdev socket,id=cluster,mcast=230.0.0.1:{},localaddr=127.0.0.1 \\",
        spec.segment_port()
    );
    let _ = writeln!(
        script,
        "  -device virtio-net-pci,netdev=cluster,mac={} \\",
        manifest.mac
    );
    let _ = writeln!(script, "  -netdev \"user,id=mgmt,restrict=on$fwd\" \\");
    let _ = writeln!(script, "  -device virtio-net-pci,netdev=mgmt \\");
    let _ = writeln!(script, "  \"$@\"");
    script
}

/// The Xen guest configuration, of the type the spec chose (`pvh` by default, or `pv`). Paths
/// are relative: run `xl create xl.cfg` in the image directory. The layers are attached in
/// order (`xvda`, `xvdb`, ...), read-only; the state disk, when the node has one, writable as
/// its `xen_vdev` from [`StateDisk::xen_file`] (the kernel command line says it is there);
/// `eth0` goes to the bridge [`NodeImageSpec::xen_bridge`], which the host provides; the
/// console is `hvc0`.
fn xl_cfg(spec: &NodeImageSpec, manifest: &ImageManifest) -> String {
    let kind = spec.xen_guest.name();
    let mut cfg = String::new();
    let _ = writeln!(
        cfg,
        "# Xen {} guest: node {} of cluster {}. Run `xl create xl.cfg` in this directory.",
        kind.to_uppercase(),
        spec.node,
        spec.cluster
    );
    let mut cmdline = spec.cmdline("hvc0");
    if let Some(state) = &manifest.state {
        let _ = writeln!(
            cfg,
            "# The state disk ({}) is {}: create it first (truncate -s {}M) and keep it.",
            state.mount,
            StateDisk::xen_file(&spec.cluster, &spec.node),
            state.mib
        );
        cmdline.push(' ');
        cmdline.push_str(StateDisk::CMDLINE_FLAG);
    }
    let _ = writeln!(cfg, "name = \"{}-{}\"", spec.cluster, spec.node);
    let _ = writeln!(cfg, "type = \"{kind}\"");
    let _ = writeln!(cfg, "kernel = \"{}\"", manifest.kernel);
    let _ = writeln!(cfg, "ramdisk = \"{}\"", manifest.initrd);
    let _ = writeln!(cfg, "cmdline = \"{cmdline}\"");
    let _ = writeln!(cfg, "memory = {}", manifest.memory_mib);
    let _ = writeln!(cfg, "vcpus = {}", manifest.cpus);
    let mut disks: Vec<String> = manifest
        .disks
        .iter()
        .enumerate()
        .map(|(index, disk)| {
            let letter = char::from(b'a' + u8::try_from(index).unwrap_or(25));
            format!("\"format=raw, vdev=xvd{letter}, access=ro, target={disk}\"")
        })
        .collect();
    if let Some(state) = &manifest.state {
        disks.push(format!(
            "\"format=raw, vdev={}, access=rw, target={}\"",
            state.xen_vdev,
            StateDisk::xen_file(&spec.cluster, &spec.node)
        ));
    }
    let _ = writeln!(cfg, "disk = [ {} ]", disks.join(", "));
    let _ = writeln!(
        cfg,
        "vif = [ \"mac={}, bridge={}\" ]",
        manifest.mac,
        spec.xen_bridge()
    );
    let _ = writeln!(cfg, "on_crash = \"destroy\"");
    cfg
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(xen_guest: kiln_spec::XenGuest, state: Option<StateDisk>) -> NodeImageSpec {
        NodeImageSpec {
            cluster: "xen".into(),
            node: "etcd1".into(),
            memory_mib: 1024,
            cpus: 1,
            addresses: vec!["172.16.10.21/24".into()],
            roles: vec!["etcd".into()],
            layers: vec![
                ImageLayer::own("node", "layer"),
                ImageLayer::shared("base", "base-os"),
            ],
            state,
            cgroups: CgroupHierarchy::V2,
            xen_guest,
        }
    }

    fn manifest(spec: &NodeImageSpec) -> ImageManifest {
        ImageManifest {
            cluster: spec.cluster.clone(),
            node: spec.node.clone(),
            kernel: "vmlinuz".into(),
            initrd: "initrd.img".into(),
            cmdline: spec.cmdline("ttyS0"),
            disks: vec!["layers/node.squashfs".into(), "layers/base.squashfs".into()],
            layers: Vec::new(),
            memory_mib: spec.memory_mib,
            cpus: spec.cpus,
            mac: spec.mac(),
            addresses: spec.addresses.clone(),
            roles: spec.roles.clone(),
            state: spec.state.clone(),
        }
    }

    #[test]
    fn xl_cfg_of_a_pv_node_with_a_state_disk() {
        let spec = spec(kiln_spec::XenGuest::Pv, Some(StateDisk::etcd()));
        let cfg = xl_cfg(&spec, &manifest(&spec));
        let mac = spec.mac();
        assert_eq!(
            cfg,
            format!(
                "# Xen PV guest: node etcd1 of cluster xen. Run `xl create xl.cfg` in this directory.\n\
                 # The state disk (/var/lib/etcd) is /var/lib/kiln/state/xen-etcd1.img: create it first (truncate -s 2048M) and keep it.\n\
                 name = \"xen-etcd1\"\n\
                 type = \"pv\"\n\
                 kernel = \"vmlinuz\"\n\
                 ramdisk = \"initrd.img\"\n\
                 cmdline = \"console=hvc0 panic=10 net.ifnames=0 systemd.unified_cgroup_hierarchy=1 kiln.layers=node,base kiln.state\"\n\
                 memory = 1024\n\
                 vcpus = 1\n\
                 disk = [ \"format=raw, vdev=xvda, access=ro, target=layers/node.squashfs\", \
                 \"format=raw, vdev=xvdb, access=ro, target=layers/base.squashfs\", \
                 \"format=raw, vdev=xvdz, access=rw, target=/var/lib/kiln/state/xen-etcd1.img\" ]\n\
                 vif = [ \"mac={mac}, bridge=kiln-xen\" ]\n\
                 on_crash = \"destroy\"\n"
            )
        );
    }

    #[test]
    fn xl_cfg_of_a_pvh_node_without_state() {
        let spec = spec(kiln_spec::XenGuest::Pvh, None);
        let cfg = xl_cfg(&spec, &manifest(&spec));
        assert!(cfg.starts_with("# Xen PVH guest: node etcd1"), "{cfg}");
        assert!(cfg.contains("\ntype = \"pvh\"\n"), "{cfg}");
        assert!(!cfg.contains("kiln.state"), "{cfg}");
        assert!(!cfg.contains("xvdz"), "{cfg}");
    }

    /// The rules match a virtio disk by its serial exactly as udev's own
    /// `60-persistent-storage.rules` does for `disk/by-id/virtio-<serial>` (systemd 252 has no
    /// `udevadm verify`; the VM scenarios mount etcd's data through the link, and check it is
    /// udev's by-id disk), and Xen's by its name.
    #[test]
    fn state_disk_udev_rules() {
        let rules = StateDisk::etcd().udev_rules();
        assert!(
            rules.contains(
                "KERNEL==\"vd*[!0-9]\", ATTRS{serial}==\"kiln-state\", SYMLINK+=\"disk/kiln/state\""
            ),
            "{rules}"
        );
        assert!(
            rules.contains("KERNEL==\"xvdz\", SYMLINK+=\"disk/kiln/state\""),
            "{rules}"
        );
        assert_eq!(StateDisk::etcd().device(), "/dev/disk/kiln/state");
    }

    /// A bridge's name is an interface name: at most 15 bytes, or `ip link add` refuses it
    /// (as it did `kiln-static-pods` on the emulated Xen host).
    #[test]
    fn xen_bridge_names_fit_an_interface_name() {
        let mut short = spec(kiln_spec::XenGuest::Pvh, None);
        assert_eq!(short.xen_bridge(), "kiln-xen");
        short.cluster = "two-node".into();
        assert_eq!(short.xen_bridge(), "kiln-two-node");
        let mut long = short.clone();
        long.cluster = "static-pods".into();
        let bridge = long.xen_bridge();
        assert_eq!(bridge.len(), 15, "{bridge}");
        assert!(bridge.starts_with("kiln-"), "{bridge}");
        long.cluster = "static-pods-2".into();
        assert_ne!(long.xen_bridge(), bridge);
    }
}
