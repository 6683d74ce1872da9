//! OCI images as image-layout archives: one uncompressed layer, the image
//! configuration, the manifest and the index, in a deterministic tar.

use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::tar::{self, OciEntry};
use crate::error::ImageError;

/// The index annotation containerd's importer takes an image's full name from.
pub const CONTAINERD_IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest in an image layout (here, the tag).
pub const OCI_REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// A single-layer linux/amd64 image, before it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// The full reference containerd registers, such as `kiln.local/pause:3.2`.
    pub reference: String,
    /// The layer's files, in any order (they are written sorted by path).
    pub layer: Vec<OciEntry>,
    /// The configuration's `Entrypoint` (empty for none).
    pub entrypoint: Vec<String>,
    /// The configuration's `Cmd` (empty for none).
    pub cmd: Vec<String>,
    /// The configuration's `Env`, as `NAME=value`.
    pub env: Vec<String>,
    /// Ports the image documents as exposed, such as `8080/tcp`.
    pub exposed_ports: Vec<String>,
}

/// A written image-layout archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciArchive {
    /// The tar's bytes.
    pub bytes: Vec<u8>,
    /// The manifest's digest, `sha256:<hex>`: the image's identity in containerd.
    pub manifest_digest: String,
    /// The uncompressed layer's digest (the configuration's only `diff_id`).
    pub layer_digest: String,
}

/// Writes `image` as an OCI image-layout tar archive.
///
/// Every timestamp (the tar entries' mtimes, the configuration's `created`)
/// is `source_date_epoch` (seconds since 1970), every owner is 0:0 without
/// names, and entries are sorted, so the same image and epoch give the same
/// bytes. The archive holds `oci-layout`, `index.json` and
/// `blobs/sha256/<hex>` for the layer, the configuration and the manifest;
/// the index's one descriptor carries the platform and both
/// [`CONTAINERD_IMAGE_NAME_ANNOTATION`] (the full reference) and
/// [`OCI_REF_NAME_ANNOTATION`] (the tag).
///
/// ```
/// use kiln_image::{OciEntry, OciImage, oci_archive};
///
/// let image = OciImage {
///     reference: "kiln.local/hello:1".into(),
///     layer: vec![OciEntry::file("hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec())],
///     entrypoint: vec!["/hello".into()],
///     cmd: vec![],
///     env: vec![],
///     exposed_ports: vec![],
/// };
/// let archive = oci_archive(&image, 0)?;
/// assert_eq!(archive.bytes, oci_archive(&image, 0)?.bytes);
/// assert!(archive.manifest_digest.starts_with("sha256:"));
/// # Ok::<(), kiln_image::ImageError>(())
/// ```
///
/// # Errors
///
/// If two layer entries have the same path, or a path is too long for ustar.
pub fn oci_archive(image: &OciImage, source_date_epoch: u64) -> Result<OciArchive, ImageError> {
    let mut layer_entries = image.layer.clone();
    layer_entries.sort_by(|left, right| left.path.cmp(&right.path));
    if let Some(pair) = layer_entries
        .windows(2)
        .find(|pair| pair[0].path == pair[1].path)
    {
        return Err(assembly_error(
            &image.reference,
            &format!("{} appears twice in the layer", pair[0].path),
        ));
    }
    let layer = tar_bytes(&image.reference, &layer_entries, source_date_epoch)?;
    let layer_digest = sha256(&layer);
    let created =
        kiln_spec::time::format_rfc3339(i64::try_from(source_date_epoch).unwrap_or(i64::MAX));

    let mut config = serde_json::Map::new();
    config.insert("Env".into(), json!(image.env));
    if !image.entrypoint.is_empty() {
        config.insert("Entrypoint".into(), json!(image.entrypoint));
    }
    if !image.cmd.is_empty() {
        config.insert("Cmd".into(), json!(image.cmd));
    }
    if !image.exposed_ports.is_empty() {
        let ports: serde_json::Map<String, Value> = image
            .exposed_ports
            .iter()
            .map(|port| (port.clone(), json!({})))
            .collect();
        config.insert("ExposedPorts".into(), Value::Object(ports));
    }
    config.insert("WorkingDir".into(), json!("/"));
    let image_config = canonical(&json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "config": config,
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": created, "created_by": "kiln" }],
    }));
    let config_digest = sha256(&image_config);

    let manifest = canonical(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": config_digest,
            "size": image_config.len(),
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": layer_digest,
            "size": layer.len(),
        }],
    }));
    let manifest_digest = sha256(&manifest);

    let tag = image
        .reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or("latest", |(_, tag)| tag);
    let index = canonical(&json!({
        "schemaVersion": 2,
        "mediaType": INDEX_MEDIA_TYPE,
        "manifests": [{
            "mediaType": MANIFEST_MEDIA_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                CONTAINERD_IMAGE_NAME_ANNOTATION: image.reference,
                OCI_REF_NAME_ANNOTATION: tag,
            },
        }],
    }));
    let layout = canonical(&json!({ "imageLayoutVersion": "1.0.0" }));

    let mut entries = vec![
        OciEntry::directory("blobs", 0o755),
        OciEntry::directory("blobs/sha256", 0o755),
        OciEntry::file("index.json", 0o644, index),
        OciEntry::file("oci-layout", 0o644, layout),
    ];
    for (digest, blob) in [
        (&layer_digest, layer),
        (&config_digest, image_config),
        (&manifest_digest, manifest),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        entries.push(OciEntry::file(format!("blobs/sha256/{hex}"), 0o644, blob));
    }
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    Ok(OciArchive {
        bytes: tar_bytes(&image.reference, &entries, source_date_epoch)?,
        manifest_digest,
        layer_digest,
    })
}

fn tar_bytes(reference: &str, entries: &[OciEntry], mtime: u64) -> Result<Vec<u8>, ImageError> {
    tar::write(entries, mtime).map_err(|reason| assembly_error(reference, &reason))
}

fn assembly_error(reference: &str, reason: &str) -> ImageError {
    ImageError::Assembly {
        what: format!("the OCI archive of {reference}"),
        reason: reason.to_owned(),
    }
}

/// `sha256:<hex>` of `bytes`.
fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Compact JSON with object keys sorted (serde_json's map is a `BTreeMap`).
fn canonical(value: &Value) -> Vec<u8> {
    value.to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the configuration and every kind of entry.
    fn sample() -> OciImage {
        OciImage {
            reference: "kiln.local/sample:v1.2.3".into(),
            layer: vec![
                OciEntry::file("bin/hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec()),
                OciEntry::directory("bin", 0o755),
                OciEntry::symlink("bin/sh", "hello"),
                OciEntry::file(
                    format!("{}/{}", "d".repeat(120), "f".repeat(90)),
                    0o600,
                    b"long".to_vec(),
                ),
            ],
            entrypoint: vec!["/bin/hello".into()],
            cmd: vec!["--flag".into(), "value".into()],
            env: vec!["PATH=/bin".into(), "HOME=/".into()],
            exposed_ports: vec!["8080/tcp".into(), "53/udp".into()],
        }
    }

    /// The bytes of an archive are pinned: if this digest moves, every
    /// component image, and so every node image, changes. A dependency
    /// update (oci-spec, or a feature such as serde_json's
    /// `preserve_order` turned on elsewhere) that changes the JSON shows
    /// here first.
    #[test]
    fn archive_bytes_are_pinned() {
        let archive = oci_archive(&sample(), 1_672_531_200).expect("archive");
        assert_eq!(
            (
                sha256(&archive.bytes).as_str(),
                archive.manifest_digest.as_str(),
                archive.layer_digest.as_str()
            ),
            (
                "sha256:d67cb707602602f4f8fd323c988f3a6f6757da72360ec750411df1ee840c1d07",
                "sha256:92ba615359e551efc6120427aa8f891720f49f4b6e59d748568565cd3df089a1",
                "sha256:988abf107ea0ee6eef0e430deb92a220abc3371f7dc06683e237557c30a3912c",
            ),
        );
    }
}
