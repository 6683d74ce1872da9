//! One QEMU guest: its command line (a pure function of its configuration), accelerator
//! detection, and a process handle that kills QEMU when dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::network::Segment;
use crate::{Error, tail_lines};

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Software emulation on every host core (`-accel tcg,thread=multi`): slow, always works.
    Tcg,
    /// Hardware virtualisation (`-accel kvm -cpu host`), used only when proven to boot.
    Kvm,
}

/// A host port forwarded to a guest port through QEMU's user networking
/// (`hostfwd=tcp:127.0.0.1:<host>-:<guest>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortForward {
    /// The port on the host's 127.0.0.1.
    pub host: u16,
    /// The port on the guest's management address (10.0.2.15).
    pub guest: u16,
}

/// Everything one guest needs. The guest gets, in order: its private NIC (`eth0`) on `segment`
/// with `mac`, a management NIC (`eth1`) on `restrict=on` user networking carrying `forwards`,
/// its console on `ttyS0` written to `console_log`, and a second serial port (`ttyS1`) on the
/// Unix socket `shell_socket` for [`crate::GuestShell`].
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The guest's name (for QEMU's `-name`, file names and messages).
    pub name: String,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub cmdline: String,
    /// Read-only raw virtio disks, in order.
    pub disks: Vec<PathBuf>,
    /// The writable state disk, attached after the read-only ones (the kernel command line
    /// must say so: see the image's `state`).
    pub state_disk: Option<StateDiskFile>,
    /// A read-only disk of test tools (a squashfs), which the guest finds by the virtio serial
    /// [`TOOLS_DISK_SERIAL`] and mounts only when a step asks (see [`crate::Tools`]).
    pub tools_disk: Option<PathBuf>,
    /// Guest memory.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// The private NIC's MAC address.
    pub mac: String,
    /// The private segment.
    pub segment: Segment,
    /// Host-to-guest TCP forwards on the management NIC.
    pub forwards: Vec<PortForward>,
    /// The accelerator.
    pub accel: Accel,
    /// Where this run's logs and sockets go.
    pub run_dir: PathBuf,
    /// Leave the guest running when the [`Vm`] is dropped (unless the run was interrupted), and
    /// do not tie QEMU's life to the harness's.
    pub keep: bool,
}

/// The virtio serial of the test tools disk ([`VmConfig::tools_disk`]): the guest's udev names
/// it `/dev/disk/by-id/virtio-kiln-tools`.
pub const TOOLS_DISK_SERIAL: &str = "kiln-tools";

/// A node's writable state disk: a raw file on the host, kept across restarts of the guest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDiskFile {
    /// The raw disk file.
    pub path: PathBuf,
    /// The virtio serial the guest finds it by.
    pub serial: String,
}

impl VmConfig {
    /// The serial console's log file.
    pub fn console_log(&self) -> PathBuf {
        self.run_dir.join(format!("{}.console.log", self.name))
    }

    /// The Unix socket of the guest's second serial port (the test shell).
    pub fn shell_socket(&self) -> PathBuf {
        self.run_dir.join(format!("{}.shell.sock", self.name))
    }

    /// QEMU's own standard output and error.
    pub fn qemu_log(&self) -> PathBuf {
        self.run_dir.join(format!("{}.qemu.log", self.name))
    }
}

/// QEMU's arguments for `config` (without the program name).
pub fn qemu_args(config: &VmConfig) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    let mut push = |flag: &str, value: String| {
        args.push(flag.to_owned());
        args.push(value);
    };
    push(
        "-name",
        format!("{},process=kiln-{}", config.name, config.name),
    );
    push("-machine", "pc".to_owned());
    match config.accel {
        // TCG's default CPU model (qemu64). `-cpu max` was measured and is not used: the
        // two-node guests took 52 s instead of 32 s to boot and the scenario was no faster
        // (BENCHMARKS.md).
        Accel::Tcg => push("-accel", "tcg,thread=multi".to_owned()),
        Accel::Kvm => {
            push("-accel", "kvm".to_owned());
            push("-cpu", "host".to_owned());
        }
    }
    push("-m", config.memory_mib.to_string());
    push("-smp", config.cpus.to_string());
    push("-kernel", escape(&config.kernel));
    push("-initrd", escape(&config.initrd));
    push("-append", config.cmdline.clone());
    for disk in &config.disks {
        push(
            "-drive",
            format!("file={},if=virtio,format=raw,readonly=on", escape(disk)),
        );
    }
    if let Some(state) = &config.state_disk {
        // QEMU being killed is the power cut the tests make; what the guest wrote is already
        // in the host's page cache then, so flushes need not reach the host's disk.
        push(
            "-drive",
            format!(
                "file={},if=none,id=state,format=raw,cache=unsafe",
                escape(&state.path)
            ),
        );
        push(
            "-device",
            // A fixed slot after the layers' (which QEMU places from the lowest free slot
            // up), so that they keep vda, vdb, ... as the kernel numbers disks in slot order.
            format!(
                "virtio-blk-pci,drive=state,serial={},bus=pci.0,addr=0x1d",
                state.serial
            ),
        );
    }
    if let Some(tools) = &config.tools_disk {
        push(
            "-drive",
            format!(
                "file={},if=none,id=tools,format=raw,readonly=on",
                escape(tools)
            ),
        );
        // A fixed slot below the state disk's, so neither moves the layers' names.
        push(
            "-device",
            format!("virtio-blk-pci,drive=tools,serial={TOOLS_DISK_SERIAL},bus=pci.0,addr=0x1c"),
        );
    }
    // Fixed PCI slots keep the NICs' order, and so eth0 and eth1, independent of the disks.
    push("-netdev", config.segment.netdev("lan"));
    push(
        "-device",
        format!(
            "virtio-net-pci,netdev=lan,mac={},bus=pci.0,addr=0x1e",
            config.mac
        ),
    );
    let mut user = "user,id=mgmt,restrict=on".to_owned();
    for forward in &config.forwards {
        user.push_str(&format!(
            ",hostfwd=tcp:127.0.0.1:{}-:{}",
            forward.host, forward.guest
        ));
    }
    push("-netdev", user);
    push(
        "-device",
        "virtio-net-pci,netdev=mgmt,bus=pci.0,addr=0x1f".to_owned(),
    );
    push(
        "-chardev",
        // Appending keeps the earlier boots of a restarted guest.
        format!(
            "file,id=console,path={},append=on",
            escape(&config.console_log())
        ),
    );
    push("-serial", "chardev:console".to_owned());
    push(
        "-chardev",
        format!(
            "socket,id=shell,path={},server=on,wait=off",
            escape(&config.shell_socket())
        ),
    );
    push("-serial", "chardev:shell".to_owned());
    args.extend(
        [
            "-nodefaults",
            "-no-user-config",
            "-display",
            "none",
            "-monitor",
            "none",
            "-no-reboot",
        ]
        .map(str::to_owned),
    );
    args
}

/// QEMU's option syntax separates with commas; a comma inside a value is written twice.
fn escape(path: &Path) -> String {
    path.display().to_string().replace(',', ",,")
}

/// The QEMU program, or the Debian package to install.
pub fn qemu_binary() -> crate::Result<PathBuf> {
    find_program("qemu-system-x86_64", "qemu-system-x86")
}

/// Looks `program` up on `PATH`.
pub(crate) fn find_program(program: &str, package: &str) -> crate::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| Error::MissingProgram {
            program: program.to_owned(),
            package: package.to_owned(),
        })
}

/// The accelerator to use: `KILN_VM_ACCEL=kvm` or `tcg` forces one; otherwise KVM only if a
/// probe boots `kernel` under KVM to its first kernel messages within 20 seconds (here
/// `/dev/kvm` exists but KVM guests hang in early boot), else TCG. The probe runs once per
/// process, and its verdict is remembered until the machine reboots (in
/// `$XDG_RUNTIME_DIR/kiln/kvm-probe`, for root `/run/kiln/kvm-probe`), so a second scenario
/// does not wait for it again.
pub fn detect_accel(kernel: &Path) -> Accel {
    static DETECTED: OnceLock<Accel> = OnceLock::new();
    match std::env::var("KILN_VM_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    *DETECTED.get_or_init(|| {
        let key = verdict_key();
        let file = verdict_file();
        if let Some(key) = &key
            && let Some(accel) = remembered_verdict(&file, key)
        {
            eprintln!(
                "accelerator {accel:?}: this boot's probe verdict ({})",
                file.display()
            );
            return accel;
        }
        let accel = if kvm_boots(kernel) {
            Accel::Kvm
        } else {
            Accel::Tcg
        };
        if let Some(key) = key {
            remember_verdict(&file, &key, accel);
        }
        accel
    })
}

/// Where the KVM probe's verdict is kept: in `$XDG_RUNTIME_DIR/kiln`, else (for root)
/// `/run/kiln`: directories of the running user that the machine empties at boot.
fn verdict_file() -> PathBuf {
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("kiln"),
        _ => PathBuf::from("/run/kiln"),
    };
    dir.join("kvm-probe")
}

/// What a verdict holds for: this boot (the kernel's boot id) and the QEMU program.
fn verdict_key() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let qemu = qemu_binary().ok()?;
    Some(format!("{} {}", boot.trim(), qemu.display()))
}

/// The verdict `file` holds for `key`, if it holds one.
fn remembered_verdict(file: &Path, key: &str) -> Option<Accel> {
    let text = std::fs::read_to_string(file).ok()?;
    let (held, verdict) = text.trim_end().rsplit_once(' ')?;
    if held != key {
        return None;
    }
    match verdict {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// Keeps `accel` as the verdict for `key`, written whole (a temporary file renamed) by the
/// owner alone; a directory that cannot be written only means the next process probes again.
fn remember_verdict(file: &Path, key: &str, accel: Accel) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let Some(dir) = file.parent() else {
        return;
    };
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return;
    }
    let verdict = match accel {
        Accel::Kvm => "kvm",
        Accel::Tcg => "tcg",
    };
    let temporary = dir.join(format!(".kvm-probe.{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temporary)
        .and_then(|mut out| {
            use std::io::Write;
            out.write_all(format!("{key} {verdict}\n").as_bytes())
        });
    if written.is_err() || std::fs::rename(&temporary, file).is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
}

/// Boots `kernel` without a root file system under KVM: a working KVM reaches the kernel's
/// "Unable to mount root fs" panic in about a second.
fn kvm_boots(kernel: &Path) -> bool {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return false;
    }
    let Ok(qemu) = qemu_binary() else {
        return false;
    };
    let Ok(mut child) = Command::new(qemu)
        .args(["-accel", "kvm", "-cpu", "host", "-m", "256", "-nodefaults"])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-kernel",
        ])
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
    else {
        return false;
    };
    let Some(mut stdout) = child.stdout.take() else {
        return false;
    };
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buffer = [0_u8; 4096];
        while let Ok(count) = stdout.read(&mut buffer) {
            if count == 0 {
                break;
            }
            seen.extend_from_slice(&buffer[..count]);
            if String::from_utf8_lossy(&seen).contains("Kernel panic") {
                let _ = sender.send(());
                break;
            }
        }
    });
    let booted = receiver.recv_timeout(Duration::from_secs(20)).is_ok();
    let _ = child.kill();
    let _ = child.wait();
    booted
}

/// A running guest. Dropping it kills QEMU, unless the guest is kept (and the run was not
/// interrupted).
#[derive(Debug)]
pub struct Vm {
    config: VmConfig,
    child: Child,
    started: Instant,
}

impl Vm {
    /// Starts QEMU for `config`. QEMU runs in its own process group (so a terminal's Ctrl-C
    /// reaches only the harness, which then stops the guests in order) and, unless kept, with
    /// a parent-death signal, so it dies with the harness even if the harness is killed.
    pub fn start(config: VmConfig) -> crate::Result<Self> {
        use std::os::unix::process::CommandExt;

        let qemu = qemu_binary()?;
        std::fs::create_dir_all(&config.run_dir)
            .map_err(|error| Error::io(format!("creating {}", config.run_dir.display()), error))?;
        let _ = std::fs::remove_file(config.shell_socket());
        let log = std::fs::File::create(config.qemu_log()).map_err(|error| {
            Error::io(format!("creating {}", config.qemu_log().display()), error)
        })?;
        let log_err = log
            .try_clone()
            .map_err(|error| Error::io("duplicating the QEMU log", error))?;
        let mut command = match find_program("setpriv", "util-linux") {
            Ok(setpriv) if !config.keep => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(&qemu);
                command
            }
            _ => Command::new(&qemu),
        };
        command
            .args(qemu_args(&config))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let child = command
            .spawn()
            .map_err(|error| Error::io(format!("starting {}", qemu.display()), error))?;
        Ok(Self {
            config,
            child,
            started: Instant::now(),
        })
    }

    /// The guest's configuration.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// QEMU's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How long ago QEMU was started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The last `count` lines of the serial console.
    pub fn console_tail(&self, count: usize) -> String {
        let text = std::fs::read(self.config.console_log()).unwrap_or_default();
        tail_lines(&String::from_utf8_lossy(&text), count)
    }

    /// The whole serial console so far.
    pub fn console(&self) -> String {
        let text = std::fs::read(self.config.console_log()).unwrap_or_default();
        String::from_utf8_lossy(&text).into_owned()
    }

    /// Fails with [`Error::QemuExited`] if QEMU is no longer running.
    pub fn check_running(&mut self) -> crate::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => {
                let qemu_log = std::fs::read_to_string(self.config.qemu_log()).unwrap_or_default();
                Err(Error::QemuExited {
                    node: self.config.name.clone(),
                    status: format!("{status}; QEMU said: {}", qemu_log.trim()),
                    console: self.console_tail(30),
                })
            }
            Err(error) => Err(Error::io(
                format!("checking QEMU for {}", self.config.name),
                error,
            )),
        }
    }

    /// Waits until QEMU itself listens on every forwarded host port (it binds them as it starts,
    /// before the guest runs), so that a port another process took first is found now, as
    /// [`Error::QemuExited`] (see [`Error::is_port_clash`]), rather than when the guest is
    /// first used. After `timeout` without either, returns: a QEMU that dies later is reported
    /// by [`Vm::check_running`].
    pub fn wait_forwards(&mut self, timeout: Duration) -> crate::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            if self
                .config
                .forwards
                .iter()
                .all(|forward| crate::network::process_listens_on(self.child.id(), forward.host))
                || Instant::now() >= deadline
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills QEMU and waits for it; idempotent.
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if !self.config.keep || crate::interrupted() {
            self.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_probe_verdict_holds_for_its_key_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("kiln/kvm-probe");
        assert_eq!(remembered_verdict(&file, "boot qemu"), None);
        remember_verdict(&file, "boot /usr/bin/qemu", Accel::Tcg);
        assert_eq!(
            remembered_verdict(&file, "boot /usr/bin/qemu"),
            Some(Accel::Tcg)
        );
        assert_eq!(remembered_verdict(&file, "other-boot /usr/bin/qemu"), None);
        remember_verdict(&file, "boot /usr/bin/qemu", Accel::Kvm);
        assert_eq!(
            remembered_verdict(&file, "boot /usr/bin/qemu"),
            Some(Accel::Kvm)
        );
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file)
            .expect("written")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let entries = std::fs::read_dir(dir.path().join("kiln"))
            .expect("dir")
            .count();
        assert_eq!(entries, 1, "no temporary file is left");
    }

    use super::*;

    fn config() -> VmConfig {
        VmConfig {
            name: "node1".to_owned(),
            kernel: PathBuf::from("/images/node1/vmlinuz"),
            initrd: PathBuf::from("/images/node1/initrd.img"),
            cmdline: "console=ttyS0 net.ifnames=0".to_owned(),
            disks: vec![
                PathBuf::from("/images/node1/layers/node.squashfs"),
                PathBuf::from("/images/a,b/base.squashfs"),
            ],
            state_disk: None,
            tools_disk: None,
            memory_mib: 2048,
            cpus: 2,
            mac: "52:54:00:00:00:11".to_owned(),
            segment: Segment {
                group: std::net::Ipv4Addr::new(230, 1, 2, 3),
                port: 40000,
            },
            forwards: vec![PortForward {
                host: 50000,
                guest: 6443,
            }],
            accel: Accel::Tcg,
            run_dir: PathBuf::from("/run/kiln"),
            keep: false,
        }
    }

    #[test]
    fn command_line_follows_the_image_contract() {
        let args = qemu_args(&config()).join(" ");
        for expected in [
            "-accel tcg,thread=multi",
            "-m 2048 -smp 2",
            "-append console=ttyS0 net.ifnames=0",
            "-drive file=/images/node1/layers/node.squashfs,if=virtio,format=raw,readonly=on \
             -drive file=/images/a,,b/base.squashfs,if=virtio,format=raw,readonly=on",
            "-netdev socket,id=lan,mcast=230.1.2.3:40000,localaddr=127.0.0.1",
            "virtio-net-pci,netdev=lan,mac=52:54:00:00:00:11,bus=pci.0,addr=0x1e",
            "-netdev user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:50000-:6443",
            "virtio-net-pci,netdev=mgmt,bus=pci.0,addr=0x1f",
            "-chardev file,id=console,path=/run/kiln/node1.console.log,append=on \
             -serial chardev:console",
            "-chardev socket,id=shell,path=/run/kiln/node1.shell.sock,server=on,wait=off \
             -serial chardev:shell",
            "-nodefaults",
        ] {
            assert!(args.contains(expected), "{expected:?} not in {args}");
        }
        assert!(!args.contains("kvm"), "{args}");
        // The private NIC comes before the management NIC: eth0, then eth1.
        assert!(args.find("netdev=lan,").expect("lan") < args.find("netdev=mgmt,").expect("mgmt"));
    }

    #[test]
    fn the_tools_disk_is_read_only_and_found_by_its_serial() {
        let mut config = config();
        config.tools_disk = Some(PathBuf::from("/store/abc-vm-test-tools/layer.squashfs"));
        let args = qemu_args(&config).join(" ");
        let expected = "-drive file=/store/abc-vm-test-tools/layer.squashfs,if=none,id=tools,\
                        format=raw,readonly=on -device virtio-blk-pci,drive=tools,\
                        serial=kiln-tools,bus=pci.0,addr=0x1c";
        assert!(args.contains(expected), "{expected:?} not in {args}");
        assert!(args.find("base.squashfs").expect("layer") < args.find("id=tools").expect("tools"));
        assert!(!qemu_args(&self::config()).join(" ").contains("id=tools"));
    }

    #[test]
    fn the_state_disk_is_writable_and_found_by_its_serial() {
        let mut config = config();
        config.state_disk = Some(StateDiskFile {
            path: PathBuf::from("/run/kiln/node1.state.img"),
            serial: "kiln-state".to_owned(),
        });
        let args = qemu_args(&config).join(" ");
        let expected = "-drive file=/run/kiln/node1.state.img,if=none,id=state,format=raw,\
                        cache=unsafe -device virtio-blk-pci,drive=state,serial=kiln-state,bus=pci.0,addr=0x1d";
        assert!(args.contains(expected), "{expected:?} not in {args}");
        // After the read-only layers, so they keep vda, vdb, ...
        assert!(args.find("base.squashfs").expect("layer") < args.find("id=state").expect("state"));
        assert!(!qemu_args(&self::config()).join(" ").contains("id=state"));
    }

    #[test]
    fn kvm_adds_the_host_cpu() {
        let mut config = config();
        config.accel = Accel::Kvm;
        let args = qemu_args(&config).join(" ");
        assert!(args.contains("-accel kvm -cpu host"), "{args}");
    }
}
