//! OCI images as image-layout archives: the uncompressed layers, the image
//! configuration, the manifest and the index, in a deterministic tar.

use std::{collections::BTreeMap, str::FromStr as _};

use oci_spec::image::{
    Arch, ConfigBuilder, Descriptor, Digest, HistoryBuilder, ImageConfigurationBuilder,
    ImageIndexBuilder, ImageManifestBuilder, MediaType, OciLayoutBuilder, Os, PlatformBuilder,
    RootFsBuilder, Sha256Digest,
};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::tar::{self, OciEntry};
use crate::error::ImageError;

/// The index annotation containerd's importer takes an image's full name from.
pub const CONTAINERD_IMAGE_NAME_ANNOTATION: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest in an image layout (here, the tag).
pub const OCI_REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";

/// The manifests' and index's `schemaVersion`.
const SCHEMA_VERSION: u32 = 2;
/// The `imageLayoutVersion` of the archive's `oci-layout` file.
const LAYOUT_VERSION: &str = "1.0.0";

/// A linux/amd64 image, before it is written: its own layer on top of the layers of the
/// image it was made from, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciImage {
    /// The full reference containerd registers, such as `kiln.local/pause:3.2`.
    pub reference: String,
    /// The layers under [`layer`](Self::layer), bottom first: those of the image this one
    /// was made from (empty for an image of one layer). A layer with the same files is
    /// written to the same bytes, so an image made from another shares its layers by
    /// digest, and containerd stores and unpacks them once.
    pub base_layers: Vec<Vec<OciEntry>>,
    /// The files of the image's own (top) layer, in any order (they are written sorted by
    /// path).
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
    /// The uncompressed layers' digests, bottom first (the configuration's `diff_ids`; the
    /// last is [`OciImage::layer`]'s).
    pub layer_digests: Vec<String>,
}

/// Writes `image` as an OCI image-layout tar archive.
///
/// Every timestamp (the tar entries' mtimes, the configuration's `created`)
/// is `source_date_epoch` (seconds since 1970), every owner is 0:0 without
/// names, and entries are sorted, so the same image and epoch give the same
/// bytes. The archive holds `oci-layout`, `index.json` and
/// `blobs/sha256/<hex>` for each layer, the configuration and the manifest;
/// the index's one descriptor carries the platform and both
/// [`CONTAINERD_IMAGE_NAME_ANNOTATION`] (the full reference) and
/// [`OCI_REF_NAME_ANNOTATION`] (the tag).
///
/// ```
/// use kiln_image::oci::{OciEntry, OciImage, oci_archive};
///
/// let image = OciImage {
///     reference: "kiln.local/hello:1".into(),
///     base_layers: vec![],
///     layer: vec![OciEntry::file("hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec())],
///     entrypoint: vec!["/hello".into()],
///     cmd: vec![],
///     env: vec![],
///     exposed_ports: vec![],
/// };
/// let archive = oci_archive(&image, 0)?;
/// assert_eq!(archive.bytes, oci_archive(&image, 0)?.bytes);
/// assert!(archive.manifest_digest.starts_with("sha256:"));
///
/// // An image made from it shares its layer.
/// let greeting = OciImage {
///     reference: "kiln.local/greeting:1".into(),
///     base_layers: vec![image.layer.clone()],
///     layer: vec![OciEntry::file("greeting", 0o644, b"hi\n".to_vec())],
///     ..image.clone()
/// };
/// let layers = oci_archive(&greeting, 0)?.layer_digests;
/// assert_eq!((layers.len(), &layers[0]), (2, &archive.layer_digests[0]));
/// # Ok::<(), kiln_image::ImageError>(())
/// ```
///
/// # Errors
///
/// If two entries of a layer have the same path, or a path is too long for ustar.
pub fn oci_archive(image: &OciImage, source_date_epoch: u64) -> Result<OciArchive, ImageError> {
    let manifested = manifested(image, source_date_epoch)?;
    let (manifest_digest, layer_digests) = (
        manifested.manifest_digest.to_string(),
        manifested.layer_digests.clone(),
    );
    Ok(OciArchive {
        bytes: layout_bytes(&image.reference, vec![manifested], source_date_epoch)?,
        manifest_digest,
        layer_digests,
    })
}

/// Several images written as one OCI image-layout archive, see [`oci_archive_of`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciMultiArchive {
    /// The tar's bytes.
    pub bytes: Vec<u8>,
    /// Each image's manifest digest, `sha256:<hex>`, in the order of the images.
    pub manifest_digests: Vec<String>,
}

/// Writes `images` as one OCI image-layout tar archive, as [`oci_archive`] writes one: the
/// index lists each image's manifest, in order, with its annotations, and each blob is
/// written once, so images that share layers (one made from another, see
/// [`OciImage::base_layers`]) hold them once, and `ctr images import` reads and digests them
/// once. An archive of one image is [`oci_archive`]'s, byte for byte.
///
/// ```
/// use kiln_image::oci::{OciEntry, OciImage, oci_archive, oci_archive_of};
///
/// let hello = OciImage {
///     reference: "kiln.local/hello:1".into(),
///     base_layers: vec![],
///     layer: vec![OciEntry::file("hello", 0o755, b"#!/bin/sh\necho hi\n".to_vec())],
///     entrypoint: vec!["/hello".into()],
///     cmd: vec![],
///     env: vec![],
///     exposed_ports: vec![],
/// };
/// let greeting = OciImage {
///     reference: "kiln.local/greeting:1".into(),
///     base_layers: vec![hello.layer.clone()],
///     layer: vec![OciEntry::file("greeting", 0o644, b"hi\n".to_vec())],
///     ..hello.clone()
/// };
/// let both = oci_archive_of(&[hello.clone(), greeting], 0)?;
/// assert_eq!(both.manifest_digests[0], oci_archive(&hello, 0)?.manifest_digest);
/// assert_eq!(oci_archive_of(&[hello.clone()], 0)?.bytes, oci_archive(&hello, 0)?.bytes);
/// # Ok::<(), kiln_image::ImageError>(())
/// ```
///
/// # Errors
///
/// As [`oci_archive`]'s, or if `images` is empty or two of them have the same reference.
pub fn oci_archive_of(
    images: &[OciImage],
    source_date_epoch: u64,
) -> Result<OciMultiArchive, ImageError> {
    let references: Vec<&str> = images
        .iter()
        .map(|image| image.reference.as_str())
        .collect();
    let what = references.join(", ");
    if images.is_empty() {
        return Err(assembly_error("no image", "an archive needs an image"));
    }
    let mut sorted = references.clone();
    sorted.sort_unstable();
    if let Some(pair) = sorted.windows(2).find(|pair| pair[0] == pair[1]) {
        return Err(assembly_error(
            &what,
            &format!("{} appears twice among the images", pair[0]),
        ));
    }
    let manifested = images
        .iter()
        .map(|image| manifested(image, source_date_epoch))
        .collect::<Result<Vec<_>, _>>()?;
    let manifest_digests = manifested
        .iter()
        .map(|image| image.manifest_digest.to_string())
        .collect();
    Ok(OciMultiArchive {
        bytes: layout_bytes(&what, manifested, source_date_epoch)?,
        manifest_digests,
    })
}

/// One image's blobs (its layers, configuration and manifest) and its descriptor in an index.
struct Manifested {
    descriptor: Descriptor,
    manifest_digest: Digest,
    layer_digests: Vec<String>,
    blobs: Vec<(Digest, Vec<u8>)>,
}

fn manifested(image: &OciImage, source_date_epoch: u64) -> Result<Manifested, ImageError> {
    let layers = image
        .base_layers
        .iter()
        .chain([&image.layer])
        .map(|entries| {
            let layer = layer_bytes(&image.reference, entries, source_date_epoch)?;
            Ok((sha256_digest(&layer), layer))
        })
        .collect::<Result<Vec<_>, ImageError>>()?;
    let created =
        kiln_spec::time::format_rfc3339(i64::try_from(source_date_epoch).unwrap_or(i64::MAX));
    let oci = |what: &str, error: oci_spec::OciSpecError| {
        assembly_error(&image.reference, &format!("{what}: {error}"))
    };

    let mut config = ConfigBuilder::default()
        .env(image.env.clone())
        .working_dir("/".to_owned());
    // Empty lists are left out, as they were when kiln wrote this JSON by hand.
    if !image.entrypoint.is_empty() {
        config = config.entrypoint(image.entrypoint.clone());
    }
    if !image.cmd.is_empty() {
        config = config.cmd(image.cmd.clone());
    }
    if !image.exposed_ports.is_empty() {
        config = config.exposed_ports(image.exposed_ports.clone());
    }
    let image_config = ImageConfigurationBuilder::default()
        .architecture(Arch::Amd64)
        .os(Os::Linux)
        .created(created.clone())
        .config(
            config
                .build()
                .map_err(|error| oci("its configuration", error))?,
        )
        .rootfs(
            RootFsBuilder::default()
                .typ("layers")
                .diff_ids(
                    layers
                        .iter()
                        .map(|(digest, _)| digest.to_string())
                        .collect::<Vec<_>>(),
                )
                .build()
                .map_err(|error| oci("its root file system", error))?,
        )
        .history(
            layers
                .iter()
                .map(|_| {
                    HistoryBuilder::default()
                        .created(created.clone())
                        .created_by("kiln".to_owned())
                        .build()
                        .map_err(|error| oci("its history", error))
                })
                .collect::<Result<Vec<_>, _>>()?,
        )
        .build()
        .map_err(|error| oci("its image configuration", error))?;
    let image_config = canonical(&image_config)?;
    let config_digest = sha256_digest(&image_config);

    let manifest = ImageManifestBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageManifest)
        .config(Descriptor::new(
            MediaType::ImageConfig,
            image_config.len() as u64,
            config_digest.clone(),
        ))
        .layers(
            layers
                .iter()
                .map(|(digest, layer)| {
                    Descriptor::new(MediaType::ImageLayer, layer.len() as u64, digest.clone())
                })
                .collect::<Vec<_>>(),
        )
        .build()
        .map_err(|error| oci("its manifest", error))?;
    let manifest = canonical(&manifest)?;
    let manifest_digest = sha256_digest(&manifest);

    let tag = image
        .reference
        .rsplit_once(':')
        .filter(|(_, tag)| !tag.contains('/'))
        .map_or("latest", |(_, tag)| tag);
    let mut descriptor = Descriptor::new(
        MediaType::ImageManifest,
        manifest.len() as u64,
        manifest_digest.clone(),
    );
    descriptor.set_platform(Some(
        PlatformBuilder::default()
            .architecture(Arch::Amd64)
            .os(Os::Linux)
            .build()
            .map_err(|error| oci("its platform", error))?,
    ));
    descriptor.set_annotations(Some(
        [
            (CONTAINERD_IMAGE_NAME_ANNOTATION, image.reference.as_str()),
            (OCI_REF_NAME_ANNOTATION, tag),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect(),
    ));
    let layer_digests = layers
        .iter()
        .map(|(digest, _)| digest.to_string())
        .collect();
    Ok(Manifested {
        descriptor,
        manifest_digest: manifest_digest.clone(),
        layer_digests,
        blobs: layers
            .into_iter()
            .chain([(config_digest, image_config), (manifest_digest, manifest)])
            .collect(),
    })
}

/// The image-layout tar of `images` (`what` names them in errors): `oci-layout`, the index of
/// their descriptors in order, and every blob once, by its digest.
fn layout_bytes(
    what: &str,
    images: Vec<Manifested>,
    source_date_epoch: u64,
) -> Result<Vec<u8>, ImageError> {
    let oci = |part: &str, error: oci_spec::OciSpecError| {
        assembly_error(what, &format!("{part}: {error}"))
    };
    let mut descriptors = Vec::new();
    // A blob is its digest's file: a layer two images (or two layers) share is written once.
    let mut blobs: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for image in images {
        descriptors.push(image.descriptor);
        for (digest, blob) in image.blobs {
            blobs.insert(digest.digest().to_owned(), blob);
        }
    }
    let index = ImageIndexBuilder::default()
        .schema_version(SCHEMA_VERSION)
        .media_type(MediaType::ImageIndex)
        .manifests(descriptors)
        .build()
        .map_err(|error| oci("its index", error))?;
    let index = canonical(&index)?;
    let layout = canonical(
        &OciLayoutBuilder::default()
            .image_layout_version(LAYOUT_VERSION.to_owned())
            .build()
            .map_err(|error| oci("its oci-layout", error))?,
    )?;

    let mut entries = vec![
        OciEntry::directory("blobs", 0o755),
        OciEntry::directory("blobs/sha256", 0o755),
        OciEntry::file("index.json", 0o644, index),
        OciEntry::file("oci-layout", 0o644, layout),
    ];
    for (hex, blob) in blobs {
        entries.push(OciEntry::file(format!("blobs/sha256/{hex}"), 0o644, blob));
    }
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    tar_bytes(what, &entries, source_date_epoch)
}

/// One layer's tar: `entries` sorted by path, each path once.
fn layer_bytes(
    reference: &str,
    entries: &[OciEntry],
    source_date_epoch: u64,
) -> Result<Vec<u8>, ImageError> {
    let mut entries = entries.to_vec();
    entries.sort_by(|left, right| left.path.cmp(&right.path));
    if let Some(pair) = entries.windows(2).find(|pair| pair[0].path == pair[1].path) {
        return Err(assembly_error(
            reference,
            &format!("{} appears twice in the layer", pair[0].path),
        ));
    }
    tar_bytes(reference, &entries, source_date_epoch)
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

/// The SHA-256 digest of `bytes`, which prints as `sha256:<hex>`.
fn sha256_digest(bytes: &[u8]) -> Digest {
    let hex = hex::encode(Sha256::digest(bytes));
    Sha256Digest::from_str(&hex)
        .map(Digest::from)
        .unwrap_or_else(|_| unreachable!("sha2 gives 64 lower-case hex digits"))
}

/// Compact JSON with object keys sorted: the document goes through
/// `serde_json::Value`, whose map is a `BTreeMap` (kiln does not enable
/// serde_json's `preserve_order`), so key order is not oci-spec's field
/// order. `archive_bytes_are_pinned` would show a change.
fn canonical(document: &impl Serialize) -> Result<Vec<u8>, ImageError> {
    serde_json::to_value(document)
        .map(|value| value.to_string().into_bytes())
        .map_err(|error| ImageError::Assembly {
            what: "an OCI document".to_owned(),
            reason: error.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the configuration and every kind of entry.
    fn sample() -> OciImage {
        OciImage {
            reference: "kiln.local/sample:v1.2.3".into(),
            base_layers: Vec::new(),
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

    #[test]
    fn an_archive_of_images_needs_one_and_each_reference_once() {
        let message = oci_archive_of(&[], 0).expect_err("no image").to_string();
        assert!(message.contains("needs an image"), "{message}");
        let message = oci_archive_of(&[sample(), sample()], 0)
            .expect_err("a reference twice")
            .to_string();
        assert!(
            message.contains("kiln.local/sample:v1.2.3 appears twice among the images"),
            "{message}"
        );
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
                sha256_digest(&archive.bytes).to_string().as_str(),
                archive.manifest_digest.as_str(),
                archive.layer_digests.join(" ").as_str()
            ),
            (
                "sha256:d67cb707602602f4f8fd323c988f3a6f6757da72360ec750411df1ee840c1d07",
                "sha256:92ba615359e551efc6120427aa8f891720f49f4b6e59d748568565cd3df089a1",
                "sha256:988abf107ea0ee6eef0e430deb92a220abc3371f7dc06683e237557c30a3912c",
            ),
        );
    }
}
