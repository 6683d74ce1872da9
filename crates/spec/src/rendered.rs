//! What every renderer produces.

/// One file a renderer produced for a node's root file system (or for the operator's output
/// directory): its path, relative and without a leading `/`
/// (`etc/systemd/system/kubelet.service`), its bytes and its Unix permission bits (`0o644`).
///
/// kiln-netplan, kiln-units, kiln-manifests and kiln-kubeconfig all return this type, and
/// kiln-cluster writes it into the store.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RenderedFile {
    /// The path relative to the root, without a leading `/`.
    pub path: String,
    /// The file's bytes.
    pub contents: Vec<u8>,
    /// Unix permission bits, such as `0o644`.
    pub mode: u32,
}
