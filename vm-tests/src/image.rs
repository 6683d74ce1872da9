//! The node image contract: `manifest.json` in each `result/nodes/<node>/image` directory.

use std::path::{Path, PathBuf};

use kiln_image::os::node::ImageManifest;

use crate::Error;

/// One node's bootable image: its `manifest.json` ([`kiln_image::os::node::ImageManifest`], the contract
/// kiln-image writes) with the files it names resolved against the image directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeImage {
    /// The manifest as kiln-image wrote it (node name, command line, memory, CPUs, MAC,
    /// addresses, roles, state disk); its paths are relative, the fields below resolve them.
    pub manifest: ImageManifest,
    /// The kernel.
    pub kernel: PathBuf,
    /// The initramfs.
    pub initrd: PathBuf,
    /// Read-only raw disks, attached as virtio-blk in this order (`vda`, `vdb`, ...).
    pub disks: Vec<PathBuf>,
}

impl NodeImage {
    /// Reads `dir/manifest.json` and resolves its paths against `dir`; every referenced file must
    /// exist.
    pub fn load(dir: &Path) -> crate::Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .map_err(|error| Error::io(format!("reading {}", path.display()), error))?;
        let manifest: ImageManifest =
            serde_json::from_str(&text).map_err(|error| Error::Image {
                path: path.clone(),
                reason: error.to_string(),
            })?;
        let resolve = |file: &str| -> crate::Result<PathBuf> {
            let file = Path::new(file);
            if file.is_absolute() {
                return Err(Error::Image {
                    path: path.clone(),
                    reason: format!("{} is absolute; paths are relative", file.display()),
                });
            }
            let resolved = dir.join(file);
            if !resolved.is_file() {
                return Err(Error::Image {
                    path: path.clone(),
                    reason: format!("{} does not exist", resolved.display()),
                });
            }
            Ok(resolved)
        };
        let image = NodeImage {
            kernel: resolve(&manifest.kernel)?,
            initrd: resolve(&manifest.initrd)?,
            disks: manifest
                .disks
                .iter()
                .map(|disk| resolve(disk))
                .collect::<crate::Result<_>>()?,
            manifest,
        };
        if image.manifest.cpus == 0 || image.manifest.memory_mib < 128 {
            return Err(Error::Image {
                path,
                reason: format!(
                    "{} CPUs and {} MiB cannot boot a node",
                    image.manifest.cpus, image.manifest.memory_mib
                ),
            });
        }
        Ok(image)
    }

    /// The node's name (`node1`).
    pub fn node(&self) -> &str {
        &self.manifest.node
    }

    /// Whether the node has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.manifest.roles.iter().any(|r| r == role)
    }

    /// The node's first private address without its prefix length (`192.168.50.11`).
    pub fn address(&self) -> Option<&str> {
        self.manifest
            .addresses
            .first()
            .map(|address| address.split('/').next().unwrap_or(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_contract_example_and_resolves_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        for file in ["vmlinuz", "initrd.img", "layers/node.squashfs"] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, b"x").expect("write");
        }
        std::fs::write(
            dir.path().join("manifest.json"),
            r#"{"cluster":"two-node","node":"node1","kernel":"vmlinuz","initrd":"initrd.img",
                "cmdline":"console=ttyS0 net.ifnames=0","disks":["layers/node.squashfs"],
                "memory_mib":2048,"cpus":2,"mac":"52:54:00:00:00:11",
                "addresses":["192.168.50.11/24"],"roles":["control-plane","etcd","worker"],
                "layers":[{"name":"node","file":"layers/node.squashfs","bytes":1,
                "sha256":"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
                "shared":false}]}"#,
        )
        .expect("write");
        let image = NodeImage::load(dir.path()).expect("load");
        assert_eq!(image.node(), "node1");
        assert_eq!(image.disks, [dir.path().join("layers/node.squashfs")]);
        assert_eq!(image.address(), Some("192.168.50.11"));
        assert!(image.has_role("etcd"));
        assert!(!image.has_role("load-balancer"));

        std::fs::remove_file(dir.path().join("layers/node.squashfs")).expect("rm");
        let error = NodeImage::load(dir.path()).expect_err("a missing disk");
        assert!(
            error.to_string().contains("node.squashfs does not exist"),
            "{error}"
        );
    }
}
