//! The base OS: a Debian root filesystem assembled by `mmdebstrap` from apt sources (the
//! machine's own, and any a user adds), reproducibly (`SOURCE_DATE_EPOCH`), then packed into
//! one squashfs image. What goes in is exactly a resolved package set ([`PackageSetLock`]: every
//! package's version and `.deb` SHA-256, pinned in apt's preferences for the build and checked
//! after it), recorded as the output's `packages.lock`. Addressed by the set's content hash when
//! `kiln.lock` records one for exactly this set, otherwise by the set itself.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, Params};

use crate::error::ImageError;
use crate::lock::{LockedPackage, PackageSetLock};
use kiln_tools::Tool;

use crate::process::{Output, SYSTEM_PATH, require_tools, run_quiet, run_streaming};
use crate::resolve::AptSources;

/// The Debian suite the base OS comes from.
pub const BASE_OS_SUITE: &str = "bookworm";

/// The packages asked for (on top of Debian's `minbase` variant); apt adds their dependencies.
/// `bind9-dnsutils` (`dig`, `nslookup`), `curl` and `netcat-openbsd` are a node's network
/// debugging tools, and what the conformance images take from the base OS: the end-to-end
/// suite's tests run them in agnhost's pods with the options upstream's Alpine-based image
/// has (`nc -v -t -w 2`, `curl --connect-timeout`, `dig +search`), which busybox lacks.
pub const BASE_OS_PACKAGES: &[&str] = &[
    "bind9-dnsutils",
    "busybox-static",
    "ca-certificates",
    "conntrack",
    "containerd",
    "containernetworking-plugins",
    "curl",
    "dbus",
    "etcd-server",
    "iproute2",
    "iptables",
    "kmod",
    "libnginx-mod-stream",
    "linux-image-amd64",
    "netcat-openbsd",
    "nginx",
    "procps",
    "runc",
    "socat",
    "systemd",
    "systemd-sysv",
    "udev",
];

/// The time every file of every image kiln builds carries: the base OS, each layer and the
/// container images (2026-01-01T00:00:00Z). It is no spec's timestamp because these outputs
/// are shared by every cluster.
pub const IMAGE_EPOCH: i64 = 1_767_225_600;

/// The architecture of the base OS (and of every node image).
pub const BASE_OS_ARCHITECTURE: &str = "amd64";

/// What apt resolves for the base OS: what `mmdebstrap --variant=minbase` selects (the
/// `Essential: yes` packages and those of `Priority: required`, from the suite
/// [`BASE_OS_SUITE`], with the patterns mmdebstrap 1.3 uses) and [`BASE_OS_PACKAGES`].
pub fn base_os_request() -> Vec<String> {
    let narrow = format!(
        "?or(?archive(^{BASE_OS_SUITE}$),?codename(^{BASE_OS_SUITE}$)),?architecture({BASE_OS_ARCHITECTURE})"
    );
    let mut request = vec![
        format!("?narrow({narrow},?essential)"),
        format!("?narrow({narrow},?and(?priority(required),?not(?essential)))"),
    ];
    request.extend(BASE_OS_PACKAGES.iter().map(|name| (*name).to_owned()));
    request
}

/// The store name of the base OS.
pub const BASE_OS_DERIVATION_NAME: &str = "base-os";

/// The base OS's root file system in its derivation's output: one squashfs image.
pub const BASE_OS_ROOTFS: &str = "rootfs.squashfs";

/// The kernel modules the initrd loads (with their dependencies, resolved from `modules.dep`)
/// to reach the root filesystem: virtio and Xen block devices, squashfs and overlayfs.
pub const INITRD_MODULES: &[&str] = &[
    "virtio_pci",
    "virtio_blk",
    "xen-blkfront",
    "squashfs",
    "overlay",
];

/// Kernel module directories (under `lib/modules/<release>/kernel/`) removed from the image: a
/// node is a virtual machine, so sound, graphics, wireless, USB and the like never load.
pub const PRUNED_MODULE_DIRS: &[&str] = &[
    "sound",
    "drivers/gpu",
    "drivers/media",
    "drivers/infiniband",
    "drivers/staging",
    "drivers/usb",
    "drivers/net/wireless",
    "drivers/net/ethernet",
    "drivers/net/usb",
    "drivers/net/can",
    "drivers/net/wwan",
    "drivers/bluetooth",
    "drivers/iio",
    "drivers/hid",
    "drivers/isdn",
    "drivers/mmc",
    "drivers/mtd",
    "drivers/thunderbolt",
    "drivers/video",
    "drivers/nfc",
    "drivers/atm",
    "drivers/firewire",
    "drivers/hwmon",
    "drivers/leds",
    "drivers/power",
    "drivers/platform",
    "drivers/spi",
    "drivers/i2c",
    "drivers/pcmcia",
    "drivers/comedi",
    "drivers/w1",
    "net/bluetooth",
    "net/wireless",
    "net/mac80211",
    "net/nfc",
    "net/ieee802154",
];

/// Programs the base OS build runs, with their Debian packages. No build installs them: the
/// xtask runs `kiln_tools::install` on them first, and the base OS build fails naming any that
/// is missing.
pub const IMAGE_TOOLS: &[Tool] = &[
    Tool::program("mmdebstrap", "mmdebstrap"),
    Tool::program("mksquashfs", "squashfs-tools"),
    Tool::program("unsquashfs", "squashfs-tools"),
    Tool::program("depmod", "kmod"),
    Tool::program("dpkg-query", "dpkg"),
];

/// The base OS builder. See the module documentation.
#[derive(Debug, Clone)]
pub struct BaseOs {
    packages: PackageSetLock,
    sources: AptSources,
}

impl BaseOs {
    /// The base OS made of exactly `packages` (a resolved set, see [`crate::resolve::resolve`]), fetched
    /// from `sources`.
    pub fn new(packages: &PackageSetLock, sources: &AptSources) -> BaseOs {
        BaseOs {
            packages: packages.clone(),
            sources: sources.clone(),
        }
    }

    /// Builds the base OS into `out`, reporting progress through `report`.
    ///
    /// # Errors
    ///
    /// If a tool is missing, `mmdebstrap` or `mksquashfs` fails, or the installed packages are
    /// not exactly the resolved set.
    pub fn build_into(&self, out: &Path, report: &dyn Fn(&str)) -> Result<(), ImageError> {
        require_tools(IMAGE_TOOLS)?;
        let scratch = tempfile::Builder::new()
            .prefix("kiln-base-os-")
            .tempdir()
            .map_err(|error| ImageError::io(std::env::temp_dir(), error))?;
        let root = scratch.path().join("root");
        let hashes = scratch.path().join("debs.sha256");
        let log = scratch.path().join("mmdebstrap.log");
        let pins = scratch.path().join("pins.pref");
        write(
            &pins,
            crate::resolve::pin_preferences(&self.packages.packages).as_bytes(),
        )?;
        let source_files = self.sources.write_into(&scratch.path().join("sources"))?;

        let mut command = clean_command("mmdebstrap");
        command
            .arg("--variant=minbase")
            .arg("--mode=root")
            .arg("--format=directory")
            .arg(format!("--include={}", BASE_OS_PACKAGES.join(",")))
            // Every package at exactly its resolved version, whichever source has it.
            .arg(format!(
                "--setup-hook=mkdir -p \"$1/etc/apt/preferences.d\" && cp {} \"$1/{PINS_FILE}\"",
                shell_quote(&pins)
            ))
            // Before apt's lists are cleaned: the index stanza (with the SHA-256 apt verified
            // the .deb against) of every installed package version, for the lock file.
            .arg(format!(
                "--customize-hook=chroot \"$1\" sh -c 'dpkg-query -W -f \"\\${{Package}}=\\${{Version}}\\n\" | xargs apt-cache show --no-all-versions' > {}",
                shell_quote(&hashes)
            ))
            .arg("--customize-hook=printf 'localhost\\n' > \"$1/etc/hostname\"")
            .arg("--customize-hook=: > \"$1/etc/resolv.conf\"")
            .arg(BASE_OS_SUITE)
            .arg(&root);
        for source in source_files {
            command.arg(source);
        }
        report("mmdebstrap: resolving and downloading packages");
        let mut last = String::new();
        run_streaming(command, &log, Duration::from_secs(10), &mut |output| {
            if let Output::Line(line) = output
                && let Some(step) = line.strip_prefix("I: ")
            {
                last = step.to_owned();
                report(&format!("mmdebstrap: {step}"));
            } else if let Output::Quiet = output {
                report(&format!("mmdebstrap: {last} (still working)"));
            }
        })?;

        report("checking the installed packages against the resolved set");
        let installed = installed_packages(&root, &hashes)?;
        let changes = crate::lock::package_changes("base-os", &self.packages, &installed);
        if !changes.is_empty() {
            return Err(ImageError::LockMismatch {
                changes: changes.iter().map(ToString::to_string).collect(),
            });
        }
        write(
            &out.join("packages.lock"),
            format!("{PACKAGES_LOCK_HEADER}{}", installed.package_lines()).as_bytes(),
        )?;

        report("removing what is host-specific or unused");
        clean_tree(&root)?;
        let release = kernel_release(&root)?;
        prune_modules(&root, &release)?;
        let mut depmod = clean_command("depmod");
        depmod.arg("-b").arg(&root).arg(&release);
        run_quiet(depmod)?;

        let boot = root.join("boot");
        copy(
            &boot.join(format!("vmlinuz-{release}")),
            &out.join("vmlinuz"),
            0o644,
        )?;
        write(
            &out.join("kernel-release"),
            format!("{release}\n").as_bytes(),
        )?;
        initrd_parts(&root, &release, &out.join("initrd"))?;
        // The kernel and its initramfs live outside the root filesystem.
        remove_dir_contents(&boot)?;

        report("packing rootfs.squashfs");
        squashfs(&root, &out.join(BASE_OS_ROOTFS), IMAGE_EPOCH, true, false)?;
        Ok(())
    }
}

impl Builder for BaseOs {
    fn kind(&self) -> &str {
        "kiln-image.base-os"
    }

    fn version(&self) -> u32 {
        2
    }

    fn params(&self) -> Params {
        // The sources are not here: a mirror serves the same `.deb` files, checked by hash.
        #[derive(serde::Serialize)]
        struct Encoded {
            suite: &'static str,
            packages: &'static [&'static str],
            disabled: &'static [&'static str],
            epoch: i64,
            modules: &'static [&'static str],
            pruned: &'static [&'static str],
            resolved: Vec<String>,
        }
        Params::of(&Encoded {
            suite: BASE_OS_SUITE,
            packages: BASE_OS_PACKAGES,
            disabled: DISABLED_PACKAGE_UNITS,
            epoch: IMAGE_EPOCH,
            modules: INITRD_MODULES,
            pruned: PRUNED_MODULE_DIRS,
            resolved: self
                .packages
                .packages
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        self.build_into(ctx.out(), &|message| ctx.report(message))
            .map_err(BuildError::from_error)
    }
}

/// The base OS made of exactly `packages`, fetched from `sources`: a fixed-output derivation
/// addressed by the set's content hash when the lock records one, otherwise addressed by the
/// set itself (so a moved archive rebuilds it, and an unchanged one does not).
pub fn base_os(packages: &PackageSetLock, sources: &AptSources) -> Derivation {
    let derivation = Derivation::new(
        BASE_OS_DERIVATION_NAME,
        std::sync::Arc::new(BaseOs::new(packages, sources)),
    );
    match packages.content_hash {
        Some(content_hash) => derivation.fixed(content_hash),
        None => derivation,
    }
}

/// Where the build puts its version pins inside the new system (removed before packing).
const PINS_FILE: &str = "etc/apt/preferences.d/kiln-pins.pref";

/// The first line of the output's `packages.lock`.
const PACKAGES_LOCK_HEADER: &str =
    "# kiln base OS: every installed package, its version, architecture and .deb SHA-256.\n";

/// A command with a cleared environment: what reaches the output must not depend on the caller's
/// locale, time zone or paths.
pub(crate) fn clean_command(program: &str) -> Command {
    let mut command = Command::new(program);
    command
        .env_clear()
        .env("PATH", SYSTEM_PATH)
        .env("LANG", "C.UTF-8")
        .env("LC_ALL", "C.UTF-8")
        .env("TZ", "UTC")
        .env("SOURCE_DATE_EPOCH", IMAGE_EPOCH.to_string())
        .env("DEBIAN_FRONTEND", "noninteractive");
    command
}

fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
}

/// Every installed package with its version, architecture and `.deb` SHA-256, sorted by name.
fn installed_packages(root: &Path, hashes: &Path) -> Result<PackageSetLock, ImageError> {
    let output = clean_command("dpkg-query")
        .arg(format!(
            "--admindir={}",
            root.join("var/lib/dpkg").display()
        ))
        .args(["-W", "-f", "${Package} ${Version} ${Architecture}\\n"])
        .output()
        .map_err(|error| ImageError::io("dpkg-query", error))?;
    if !output.status.success() {
        return Err(ImageError::Assembly {
            what: "packages.lock".into(),
            reason: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    let index = fs::read_to_string(hashes).map_err(|error| ImageError::io(hashes, error))?;
    let sha256 = index_hashes(&index);
    let mut packages = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, version, arch] = fields[..] else {
            continue;
        };
        let hash = sha256
            .get(&(name.to_owned(), version.to_owned()))
            .map_or("-", String::as_str);
        packages.push(LockedPackage {
            name: name.to_owned(),
            version: version.to_owned(),
            architecture: arch.to_owned(),
            sha256: hash.to_owned(),
        });
    }
    packages.sort();
    Ok(PackageSetLock {
        packages,
        content_hash: None,
    })
}

/// `(package, version)` → SHA-256 of its `.deb`, from apt index stanzas (`apt-cache show`).
///
/// ```
/// let index = "Package: a\nVersion: 1\nSHA256: ab12\n\nPackage: b\nVersion: 2\nSHA256: cd34\n";
/// let hashes = kiln_image::os::base::index_hashes(index);
/// assert_eq!(hashes[&("b".to_owned(), "2".to_owned())], "cd34");
/// ```
pub fn index_hashes(index: &str) -> BTreeMap<(String, String), String> {
    let mut hashes = BTreeMap::new();
    for stanza in index.split("\n\n") {
        let field = |name: &str| {
            stanza.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key == name).then(|| value.trim().to_owned())
            })
        };
        if let (Some(package), Some(version), Some(sha256)) =
            (field("Package"), field("Version"), field("SHA256"))
        {
            hashes.entry((package, version)).or_insert(sha256);
        }
    }
    hashes
}

/// The units the packages enable on installation that a node runs only when one of its roles
/// asks for it (the node's own layer enables them then), and apt's timers, which have no
/// sources to fetch from. Left enabled, every worker would start Debian's default etcd on
/// 127.0.0.1:2379, and a static-pod control plane's etcd would find the port taken.
pub const DISABLED_PACKAGE_UNITS: &[&str] = &[
    "etc/systemd/system/multi-user.target.wants/etcd.service",
    "etc/systemd/system/multi-user.target.wants/nginx.service",
    "etc/systemd/system/timers.target.wants/apt-daily.timer",
    "etc/systemd/system/timers.target.wants/apt-daily-upgrade.timer",
];

/// Removes what would tie the tree to the build machine or is not used by a node: apt's
/// sources (they name the build machine's mirrors) and caches, logs of the installation, and
/// the [`DISABLED_PACKAGE_UNITS`].
fn clean_tree(root: &Path) -> Result<(), ImageError> {
    for unit in DISABLED_PACKAGE_UNITS {
        let path = root.join(unit);
        if path.symlink_metadata().is_err() {
            return Err(ImageError::Assembly {
                what: "the base OS".into(),
                reason: format!(
                    "{} is not there to disable: did a package stop enabling it?",
                    path.display()
                ),
            });
        }
        remove_file_if_present(&path)?;
    }
    for file in [
        PINS_FILE,
        "etc/apt/sources.list",
        "var/log/dpkg.log",
        "var/log/alternatives.log",
        "var/cache/ldconfig/aux-cache",
    ] {
        remove_file_if_present(&root.join(file))?;
    }
    for dir in [
        "etc/apt/sources.list.d",
        "var/cache/apt",
        "var/lib/apt/lists",
        "var/log/apt",
        "tmp",
        "var/tmp",
    ] {
        remove_dir_contents(&root.join(dir))?;
    }
    Ok(())
}

fn kernel_release(root: &Path) -> Result<String, ImageError> {
    let modules = root.join("usr/lib/modules");
    let mut releases: Vec<String> = fs::read_dir(&modules)
        .map_err(|error| ImageError::io(&modules, error))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    releases.sort();
    match releases.as_slice() {
        [one] => Ok(one.clone()),
        _ => Err(ImageError::Assembly {
            what: "the kernel".into(),
            reason: format!(
                "expected exactly one kernel under {}, found {releases:?}",
                modules.display()
            ),
        }),
    }
}

fn prune_modules(root: &Path, release: &str) -> Result<(), ImageError> {
    let kernel = root.join("usr/lib/modules").join(release).join("kernel");
    for dir in PRUNED_MODULE_DIRS {
        let path = kernel.join(dir);
        match fs::remove_dir_all(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(ImageError::io(path, error)),
        }
    }
    Ok(())
}

/// Copies busybox and the [`INITRD_MODULES`] with their dependencies into `dir`:
/// `busybox`, `modules/<file>.ko`, and `modules.load` (file names in load order).
fn initrd_parts(root: &Path, release: &str, dir: &Path) -> Result<(), ImageError> {
    let modules_dir = root.join("usr/lib/modules").join(release);
    let dep_file = modules_dir.join("modules.dep");
    let deps_text =
        fs::read_to_string(&dep_file).map_err(|error| ImageError::io(&dep_file, error))?;
    let deps = parse_modules_dep(&deps_text);
    let order = load_order(&deps, INITRD_MODULES).map_err(|reason| ImageError::Assembly {
        what: "initrd modules".into(),
        reason,
    })?;
    fs::create_dir_all(dir.join("modules")).map_err(|error| ImageError::io(dir, error))?;
    copy(&root.join("usr/bin/busybox"), &dir.join("busybox"), 0o755)?;
    let mut load = String::new();
    for path in &order {
        let file = Path::new(path)
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or(path);
        copy(
            &modules_dir.join(path),
            &dir.join("modules").join(file),
            0o644,
        )?;
        load.push_str(file);
        load.push('\n');
    }
    write(&dir.join("modules.load"), load.as_bytes())
}

/// `modules.dep` as module path → dependency paths.
pub fn parse_modules_dep(text: &str) -> BTreeMap<String, Vec<String>> {
    text.lines()
        .filter_map(|line| {
            let (module, deps) = line.split_once(':')?;
            Some((
                module.trim().to_owned(),
                deps.split_whitespace().map(str::to_owned).collect(),
            ))
        })
        .collect()
}

/// The module paths to load, dependencies first, for the modules named `wanted` (names as
/// `modprobe` takes them: `-` and `_` are the same).
///
/// ```
/// let deps = kiln_image::os::base::parse_modules_dep(
///     "kernel/a/virtio_blk.ko: kernel/a/virtio_ring.ko kernel/a/virtio.ko\nkernel/a/virtio_ring.ko: kernel/a/virtio.ko\nkernel/a/virtio.ko:\n",
/// );
/// assert_eq!(
///     kiln_image::os::base::load_order(&deps, &["virtio-blk"]).unwrap(),
///     ["kernel/a/virtio.ko", "kernel/a/virtio_ring.ko", "kernel/a/virtio_blk.ko"],
/// );
/// ```
///
/// # Errors
///
/// If a wanted module is not in `deps`.
pub fn load_order(
    deps: &BTreeMap<String, Vec<String>>,
    wanted: &[&str],
) -> Result<Vec<String>, String> {
    let normal = |name: &str| name.replace('-', "_");
    let by_name: BTreeMap<String, &String> = deps
        .keys()
        .map(|path| {
            let file = Path::new(path)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or(path);
            let stem = file.split(".ko").next().unwrap_or(file);
            (normal(stem), path)
        })
        .collect();
    fn visit(
        path: &str,
        deps: &BTreeMap<String, Vec<String>>,
        order: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) {
        if !seen.insert(path.to_owned()) {
            return;
        }
        // modules.dep lists dependencies so that the last must load first.
        for dep in deps.get(path).into_iter().flatten().rev() {
            visit(dep, deps, order, seen);
        }
        order.push(path.to_owned());
    }
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    for name in wanted {
        let path = by_name
            .get(&normal(name))
            .ok_or_else(|| format!("kernel module {name} is not in modules.dep"))?;
        visit(path, deps, &mut order, &mut seen);
    }
    Ok(order)
}

/// Unpacks the subtrees `paths` (relative, such as `usr`) of the squashfs image `image` into
/// the new directory `into`, without extended attributes; a path the image lacks is skipped.
///
/// # Errors
///
/// If `unsquashfs` fails.
pub fn unsquashfs(image: &Path, into: &Path, paths: &[&str]) -> Result<(), ImageError> {
    let mut command = clean_command("unsquashfs");
    command
        .args(["-no-progress", "-no-xattrs", "-d"])
        .arg(into)
        .arg(image)
        .args(paths);
    run_quiet(command)
}

/// Packs `tree` into a squashfs image at `image`, reproducibly: every time `epoch`, entries
/// sorted (squashfs requires it), zstd-compressed when `compress`, else stored; owners kept, or
/// all root when `all_root`.
///
/// # Errors
///
/// If `mksquashfs` fails.
pub fn squashfs(
    tree: &Path,
    image: &Path,
    epoch: i64,
    compress: bool,
    all_root: bool,
) -> Result<(), ImageError> {
    let mut command = clean_command("mksquashfs");
    // mksquashfs refuses SOURCE_DATE_EPOCH together with the explicit times below.
    command.env_remove("SOURCE_DATE_EPOCH");
    command
        .arg(tree)
        .arg(image)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args([
            "-mkfs-time",
            &epoch.to_string(),
            "-all-time",
            &epoch.to_string(),
        ]);
    if all_root {
        command.arg("-all-root");
    }
    if compress {
        command.args(["-comp", "zstd"]);
    } else {
        command.args(["-noI", "-noD", "-noF", "-noX"]);
    }
    run_quiet(command)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
    fs::write(path, bytes).map_err(|error| ImageError::io(path, error))
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<(), ImageError> {
    use std::os::unix::fs::PermissionsExt;
    fs::copy(from, to).map_err(|error| ImageError::io(from, error))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))
        .map_err(|error| ImageError::io(to, error))
}

fn remove_file_if_present(path: &Path) -> Result<(), ImageError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(ImageError::io(path, error)),
    }
}

fn remove_dir_contents(dir: &Path) -> Result<(), ImageError> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(ImageError::io(dir, error)),
    };
    for entry in entries {
        let entry = entry.map_err(|error| ImageError::io(dir, error))?;
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        result.map_err(|error| ImageError::io(&path, error))?;
    }
    Ok(())
}
