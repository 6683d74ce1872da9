//! A store path as an OCI artifact, and back.
//!
//! The artifact of `<digest>-<name>` is tagged with the digest's hex digits and has:
//! - one layer, [`LAYER_MEDIA_TYPE`]: a tar archive of the tree, written the same way on every
//!   machine (entries in byte order of names, parents first; owner and group 0, time 0; each
//!   file's and directory's permission bits as the store holds them, since builders read them
//!   from their inputs although the content hash covers only the owner's `x`; symlinks as they
//!   are), so the same path gives the same blob everywhere;
//! - a config, [`CONFIG_MEDIA_TYPE`]: the path's name, digest and content hash;
//! - the manifest's `artifactType` [`ARTIFACT_TYPE`], and annotations naming the path.
//!
//! Pulling checks every blob against its digest, then the unpacked tree against the content
//! hash (the store does that as the path enters it), so a corrupt or substituted artifact never
//! becomes a store path.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt, symlink};
use std::path::{Component, Path, PathBuf};
use std::str::FromStr;

use kiln_store::{BuildFailure, Digest, Store, StoreObject};
use oci_spec::image::{Descriptor, ImageManifest, ImageManifestBuilder, MediaType};

use crate::OciError;
use crate::client::{Blob, Client, into_oci};

/// The manifest's `artifactType`: a kiln store path.
pub const ARTIFACT_TYPE: &str = "application/vnd.kiln.store-path.v1";
/// The config's media type: [`PathConfig`] as JSON.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.kiln.store-path.config.v1+json";
/// The layer's media type: the tree as an uncompressed tar archive.
pub const LAYER_MEDIA_TYPE: &str = "application/vnd.kiln.store-path.layer.v1.tar";

/// What an artifact's config says of its store path.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathConfig {
    /// The store name (`<digest>-<name>`'s name).
    pub name: String,
    /// The derivation's digest.
    pub digest: Digest,
    /// The tree hash of the path's content.
    pub content_hash: Digest,
}

/// The tag of the artifact of a path with digest `digest`: its hex digits.
pub fn tag(digest: &Digest) -> String {
    digest.to_hex()
}

/// What [`push_path`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pushed {
    /// Sent: the layer blob (the config and manifest are small).
    Sent(Blob),
    /// The repository already had this path with this content.
    Present,
    /// The repository has the path's tag with another content hash (a build that is not
    /// reproducible, or another machine's different output): left as it is.
    Differs(Digest),
}

/// Pushes the store path `object` (named `name`) to `client`'s repository, unless the
/// repository has its tag already. The layer is written and sent in one streaming pass; the
/// manifest goes last, so the tag appears only when every blob is there.
///
/// # Errors
///
/// Reading the tree; transport, status and authentication errors.
pub fn push_path(client: &Client, name: &str, object: &StoreObject) -> Result<Pushed, OciError> {
    if let Some(config) = remote_config(client, &object.digest, name)? {
        return Ok(if config.content_hash == object.content_hash {
            Pushed::Present
        } else {
            Pushed::Differs(config.content_hash)
        });
    }
    let config = PathConfig {
        name: name.to_owned(),
        digest: object.digest,
        content_hash: object.content_hash,
    };
    let config_bytes = serde_json::to_vec(&config)
        .map_err(|error| OciError::archive(name, format!("encoding its config: {error}")))?;
    let config_blob = client.push_bytes(&config_bytes)?;

    let (mut reader, writer) =
        io::pipe().map_err(|error| OciError::io("opening a pipe for the archive", error))?;
    let root = object.path.clone();
    let layer = std::thread::scope(|scope| {
        let archiver = scope.spawn(move || write_tar(&root, writer));
        let sent = client.push_stream(&mut reader);
        drop(reader);
        let archived = archiver
            .join()
            .unwrap_or_else(|_| Err(OciError::archive(name, "the archive writer panicked")));
        // The archive's own error explains a failed upload better than the broken pipe does.
        archived?;
        sent
    })?;

    let manifest = manifest(
        name,
        &object.digest,
        &object.content_hash,
        &config_blob,
        &layer,
    )?;
    client.put_manifest(&tag(&object.digest), &manifest)?;
    Ok(Pushed::Sent(layer))
}

/// The config of the artifact tagged with `digest`, if the repository has one; checked to
/// be a kiln store path of that name and digest.
///
/// # Errors
///
/// Transport, status and authentication errors; [`OciError::Artifact`] if the tag holds
/// something else.
pub fn remote_config(
    client: &Client,
    digest: &Digest,
    name: &str,
) -> Result<Option<PathConfig>, OciError> {
    Ok(remote(client, digest, name)?.map(|(config, _)| config))
}

/// The artifact tagged with `digest`: its config and layer, checked as [`remote_config`].
fn remote(
    client: &Client,
    digest: &Digest,
    name: &str,
) -> Result<Option<(PathConfig, Blob)>, OciError> {
    let tag = tag(digest);
    let Some(bytes) = client.manifest(&tag)? else {
        return Ok(None);
    };
    let refuse = |reason: String| OciError::Artifact {
        repository: client.repository().to_string(),
        tag: tag.clone(),
        name: name.to_owned(),
        reason,
    };
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|error| refuse(format!("its manifest does not parse: {error}")))?;
    let blob = |descriptor: &Descriptor, media_type: &str, what: &str| {
        if descriptor.media_type().to_string() != media_type {
            return Err(refuse(format!(
                "its {what} is {}, not {media_type}",
                descriptor.media_type()
            )));
        }
        let digest = descriptor.digest().to_string();
        if !digest.starts_with("sha256:") {
            return Err(refuse(format!(
                "its {what}'s digest {digest} is not sha256"
            )));
        }
        Ok(Blob {
            digest,
            size: descriptor.size(),
        })
    };
    let config_blob = blob(manifest.config(), CONFIG_MEDIA_TYPE, "config")?;
    let [layer] = manifest.layers().as_slice() else {
        return Err(refuse(format!(
            "it has {} layers, not one",
            manifest.layers().len()
        )));
    };
    let layer = blob(layer, LAYER_MEDIA_TYPE, "layer")?;
    let config_bytes = client.blob_bytes(&config_blob)?;
    let config: PathConfig = serde_json::from_slice(&config_bytes)
        .map_err(|error| refuse(format!("its config does not parse: {error}")))?;
    if config.name != name || config.digest != *digest {
        return Err(refuse(format!(
            "it holds {}-{}",
            config.digest, config.name
        )));
    }
    Ok(Some((config, layer)))
}

/// What [`pull_path`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The path is now in the store, unpacked and verified.
    Added(StoreObject),
    /// The repository has no artifact for it.
    Missing,
}

/// Fetches the store path `<digest>-<name>` from `client`'s repository into `store`: the
/// layer streams from the registry straight into the store's private build directory, checked
/// against its digest, then the tree against `expected` (a fixed-output path's pin) or, for
/// other paths, the content hash the artifact's config records. Nothing enters the store
/// unless every check passes.
///
/// # Errors
///
/// Transport, status and authentication errors; [`OciError::Artifact`] if the tag holds
/// something else or its content hash differs from `expected`; [`OciError::BlobDigest`] for
/// corrupt bytes; [`OciError::Archive`] for an archive that is not a plain tree; a content
/// hash mismatch from the store.
pub fn pull_path(
    client: &Client,
    store: &Store,
    digest: &Digest,
    name: &str,
    expected: Option<&Digest>,
) -> Result<Pulled, OciError> {
    let Some((config, layer)) = remote(client, digest, name)? else {
        return Ok(Pulled::Missing);
    };
    if let Some(expected) = expected
        && *expected != config.content_hash
    {
        return Err(OciError::Artifact {
            repository: client.repository().to_string(),
            tag: tag(digest),
            name: name.to_owned(),
            reason: format!(
                "it records the content hash {}, but the path is pinned to {expected}",
                config.content_hash
            ),
        });
    }
    let object = store
        .build_fixed(digest, name, &config.content_hash, |out| {
            let reader = client.blob(&layer)?;
            unpack_tar(reader, out)
        })
        .map_err(|failure| match failure {
            BuildFailure::Builder(error) => error,
            BuildFailure::Store(error) => OciError::Store(error),
        })?;
    Ok(Pulled::Added(object))
}

/// The artifact's manifest, as JSON.
fn manifest(
    name: &str,
    digest: &Digest,
    content_hash: &Digest,
    config: &Blob,
    layer: &Blob,
) -> Result<Vec<u8>, OciError> {
    let oci =
        |error: oci_spec::OciSpecError| OciError::archive(name, format!("its manifest: {error}"));
    let descriptor = |media_type: &str, blob: &Blob| -> Result<Descriptor, OciError> {
        let digest = oci_spec::image::Digest::from_str(&blob.digest).map_err(oci)?;
        Ok(Descriptor::new(
            MediaType::Other(media_type.to_owned()),
            blob.size,
            digest,
        ))
    };
    let annotations: BTreeMap<&str, String> = [
        (
            "org.opencontainers.image.title",
            kiln_store::base_name(digest, name),
        ),
        ("dev.kiln.store-path.name", name.to_owned()),
        ("dev.kiln.store-path.content-hash", content_hash.to_hex()),
    ]
    .into_iter()
    .collect();
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ARTIFACT_TYPE.to_owned()))
        .config(descriptor(CONFIG_MEDIA_TYPE, config)?)
        .layers(vec![descriptor(LAYER_MEDIA_TYPE, layer)?])
        .annotations(
            annotations
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect::<std::collections::HashMap<_, _>>(),
        )
        .build()
        .map_err(oci)?;
    // serde_json::Value keeps object keys sorted, so the bytes do not depend on a hash map's
    // iteration order.
    let value = serde_json::to_value(&manifest)
        .map_err(|error| OciError::archive(name, format!("its manifest: {error}")))?;
    serde_json::to_vec(&value)
        .map_err(|error| OciError::archive(name, format!("its manifest: {error}")))
}

/// Writes the tree at `root` (a directory) as kiln's deterministic tar archive (see the
/// module's documentation) to `out`.
///
/// # Errors
///
/// [`OciError::Archive`] for an entry that is neither a file, a directory nor a symlink, or a
/// file that changes size while it is read; [`OciError::Io`] for reading or writing.
pub fn write_tar(root: &Path, out: impl Write) -> Result<(), OciError> {
    let metadata = fs::symlink_metadata(root)
        .map_err(|error| OciError::io(format!("reading {}", root.display()), error))?;
    if !metadata.is_dir() {
        return Err(OciError::archive(
            root.display().to_string(),
            "not a directory",
        ));
    }
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    append_children(&mut builder, root, Path::new(""))?;
    builder
        .into_inner()
        .and_then(|mut out| out.flush())
        .map_err(|error| OciError::io("finishing the archive", error))?;
    Ok(())
}

fn append_children<W: Write>(
    builder: &mut tar::Builder<W>,
    dir: &Path,
    relative: &Path,
) -> Result<(), OciError> {
    let io_error = |what: &str, path: &Path, error: io::Error| {
        OciError::io(format!("{what} {}", path.display()), error)
    };
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|error| io_error("listing", dir, error))?
        .map(|entry| entry.map(|entry| entry.file_name()))
        .collect::<Result<_, _>>()
        .map_err(|error| io_error("listing", dir, error))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = dir.join(&name);
        let inside = relative.join(&name);
        let metadata =
            fs::symlink_metadata(&path).map_err(|error| io_error("reading", &path, error))?;
        let mut header = tar::Header::new_gnu();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let file_type = metadata.file_type();
        let mode = metadata.permissions().mode() & 0o777;
        let written = if file_type.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            header.set_mode(mode);
            header.set_size(0);
            builder.append_data(&mut header, &inside, io::empty())
        } else if file_type.is_symlink() {
            let target = fs::read_link(&path).map_err(|error| io_error("reading", &path, error))?;
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_mode(0o777);
            header.set_size(0);
            builder.append_link(&mut header, &inside, &target)
        } else if file_type.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mode(mode);
            header.set_size(metadata.len());
            let file = File::open(&path).map_err(|error| io_error("opening", &path, error))?;
            let mut exact = Exact {
                inner: file,
                left: metadata.len(),
                path: &path,
            };
            builder.append_data(&mut header, &inside, &mut exact)
        } else {
            return Err(OciError::archive(
                path.display().to_string(),
                "neither a file, a directory nor a symlink",
            ));
        };
        written.map_err(|error| into_oci(error, || format!("archiving {}", path.display())))?;
        if file_type.is_dir() {
            append_children(builder, &path, &inside)?;
        }
    }
    Ok(())
}

/// A file's bytes, exactly as many as its size said when its header was written.
struct Exact<'a> {
    inner: File,
    left: u64,
    path: &'a Path,
}

impl Read for Exact<'_> {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let changed = || {
            io::Error::new(
                io::ErrorKind::InvalidData,
                OciError::archive(
                    self.path.display().to_string(),
                    "changed size while archived",
                ),
            )
        };
        let limit = buffer
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        if limit == 0 {
            // At the promised end the file must end too.
            let mut probe = [0u8; 1];
            return match self.inner.read(&mut probe)? {
                0 => Ok(0),
                _ => Err(changed()),
            };
        }
        let count = self.inner.read(&mut buffer[..limit])?;
        if count == 0 {
            return Err(changed());
        }
        self.left -= count as u64;
        Ok(count)
    }
}

/// Unpacks an archive that [`write_tar`] wrote into the empty directory `out`, then reads
/// `reader` to its end (so a [`BlobReader`](crate::BlobReader) checks its digest).
///
/// Only files, directories and symlinks are accepted, each at a relative path of plain
/// components whose parent is a directory unpacked before it (never through a symlink), each
/// once. Files and directories get the archive's permission bits (directories once everything
/// is unpacked, so that a read-only one can be filled first), never set-id or sticky bits.
///
/// # Errors
///
/// [`OciError::Archive`] for anything else; the reader's own errors (a corrupt blob).
pub fn unpack_tar(reader: impl Read, out: &Path) -> Result<(), OciError> {
    let mut archive = tar::Archive::new(reader);
    let mut directories: BTreeSet<PathBuf> = BTreeSet::from([PathBuf::new()]);
    let mut seen: BTreeSet<PathBuf> = BTreeSet::new();
    let mut directory_modes: Vec<(PathBuf, u32)> = Vec::new();
    let read_error =
        |error: io::Error| into_oci(error, || "reading the layer from the registry".to_owned());
    for entry in archive.entries().map_err(read_error)? {
        let mut entry = entry.map_err(read_error)?;
        let relative = entry.path().map_err(read_error)?.into_owned();
        let shown = relative.display().to_string();
        let plain = relative
            .components()
            .all(|component| matches!(component, Component::Normal(_)));
        if !plain || relative.as_os_str().is_empty() {
            return Err(OciError::archive(shown, "not a plain relative path"));
        }
        let parent = relative.parent().unwrap_or(Path::new("")).to_owned();
        if !directories.contains(&parent) {
            return Err(OciError::archive(
                shown,
                "its directory is not in the archive before it",
            ));
        }
        if !seen.insert(relative.clone()) {
            return Err(OciError::archive(shown, "in the archive twice"));
        }
        let path = out.join(&relative);
        let write_error =
            |error: io::Error| OciError::io(format!("writing {}", path.display()), error);
        let mode = entry.header().mode().map_err(read_error)? & 0o777;
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir(&path).map_err(write_error)?;
                directory_modes.push((path.clone(), mode));
                directories.insert(relative);
            }
            tar::EntryType::Regular => {
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(write_error)?;
                io::copy(&mut entry, &mut file).map_err(read_error)?;
                // Exactly the archive's bits, whatever the umask.
                file.set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(write_error)?;
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(read_error)?
                    .ok_or_else(|| OciError::archive(&shown, "a symlink without a target"))?
                    .into_owned();
                symlink(&target, &path).map_err(write_error)?;
            }
            other => {
                return Err(OciError::archive(
                    shown,
                    format!("a {other:?} entry: only files, directories and symlinks are kept"),
                ));
            }
        }
    }
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(read_error)?;
    // Deepest first, so a directory made read-only never stops its children being changed.
    for (path, mode) in directory_modes.into_iter().rev() {
        fs::set_permissions(&path, fs::Permissions::from_mode(mode))
            .map_err(|error| OciError::io(format!("writing {}", path.display()), error))?;
    }
    Ok(())
}

/// The lines of the PEM bodies of private keys, to find copies of them (see
/// [`find_key_lines`]).
#[derive(Clone, Debug, Default)]
pub struct KeyLines {
    lines: BTreeSet<Vec<u8>>,
}

impl KeyLines {
    /// Collects the body lines of every PEM private key block (`-----BEGIN ... PRIVATE
    /// KEY-----`) in `text`; lines shorter than 40 characters (a block's last) are left out.
    pub fn add_pem(&mut self, text: &[u8]) {
        let mut inside = false;
        for line in text.split(|&byte| byte == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.starts_with(b"-----BEGIN ") && line.ends_with(b"PRIVATE KEY-----") {
                inside = true;
            } else if line.starts_with(b"-----END ") {
                inside = false;
            } else if inside && line.len() >= 40 {
                self.lines.insert(line.to_vec());
            }
        }
    }

    /// How many lines are collected.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line is collected.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }
}

/// The first file under `root` with a line of one of `keys`' private keys, as a path relative
/// to `root`.
///
/// # Errors
///
/// Reading the tree.
pub fn find_key_lines(root: &Path, keys: &KeyLines) -> Result<Option<PathBuf>, OciError> {
    if keys.is_empty() {
        return Ok(None);
    }
    let lengths: BTreeSet<usize> = keys.lines.iter().map(Vec::len).collect();
    let mut stack = vec![root.to_owned()];
    while let Some(path) = stack.pop() {
        let metadata = fs::symlink_metadata(&path)
            .map_err(|error| OciError::io(format!("reading {}", path.display()), error))?;
        if metadata.is_dir() {
            for entry in fs::read_dir(&path)
                .map_err(|error| OciError::io(format!("listing {}", path.display()), error))?
            {
                let entry = entry
                    .map_err(|error| OciError::io(format!("listing {}", path.display()), error))?;
                stack.push(entry.path());
            }
        } else if metadata.is_file() && file_has_line(&path, keys, &lengths)? {
            return Ok(Some(path.strip_prefix(root).unwrap_or(&path).to_owned()));
        }
    }
    Ok(None)
}

/// Whether the file at `path` has a line (ended by `\n` or `\r`, or the file's end) among
/// `keys`, read in chunks: a line longer than the longest key line is skipped, not kept.
fn file_has_line(
    path: &Path,
    keys: &KeyLines,
    lengths: &BTreeSet<usize>,
) -> Result<bool, OciError> {
    let longest = lengths.last().copied().unwrap_or(0);
    let error = |error: io::Error| OciError::io(format!("reading {}", path.display()), error);
    let mut file = File::open(path).map_err(error)?;
    let mut buffer = vec![0u8; 1 << 16];
    let mut line: Vec<u8> = Vec::with_capacity(longest);
    let mut length = 0usize;
    let ends = |line: &[u8], length: usize| {
        length == line.len() && lengths.contains(&length) && keys.lines.contains(line)
    };
    loop {
        let count = file.read(&mut buffer).map_err(error)?;
        if count == 0 {
            return Ok(ends(&line, length));
        }
        for &byte in &buffer[..count] {
            if byte == b'\n' || byte == b'\r' {
                if ends(&line, length) {
                    return Ok(true);
                }
                line.clear();
                length = 0;
            } else {
                length += 1;
                if length <= longest {
                    line.push(byte);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree with every kind of entry: nested directories, an executable, a long name, links.
    fn sample(root: &Path) {
        fs::create_dir_all(root.join("bin")).expect("mkdir");
        fs::create_dir_all(root.join("etc/deep/er")).expect("mkdir");
        fs::write(root.join("bin/tool"), b"#!/bin/sh\necho hi\n").expect("write");
        fs::set_permissions(root.join("bin/tool"), fs::Permissions::from_mode(0o755))
            .expect("chmod");
        fs::write(root.join("etc/deep/er/config"), vec![7u8; 100_000]).expect("write");
        fs::set_permissions(
            root.join("etc/deep/er/config"),
            fs::Permissions::from_mode(0o644),
        )
        .expect("chmod");
        let long = "n".repeat(150);
        fs::write(root.join("etc").join(&long), b"long name").expect("write");
        fs::write(root.join("empty"), b"").expect("write");
        symlink("../etc/deep/er/config", root.join("bin/link")).expect("symlink");
        symlink(format!("../../{}", "t".repeat(120)), root.join("far")).expect("symlink");
    }

    fn archive(root: &Path) -> Vec<u8> {
        let mut bytes = Vec::new();
        write_tar(root, &mut bytes).expect("archive");
        bytes
    }

    #[test]
    fn a_tree_goes_and_comes_back_the_same_and_its_archive_is_the_same_everywhere() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second, out) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("out"),
        );
        sample(&first);
        sample(&second);
        // Permission bits, as builders set them (a private file, a read-only directory), go
        // with the tree; times do not reach the archive.
        for root in [&first, &second] {
            fs::set_permissions(root.join("empty"), fs::Permissions::from_mode(0o400))
                .expect("chmod");
            fs::set_permissions(root.join("etc/deep"), fs::Permissions::from_mode(0o555))
                .expect("chmod");
        }
        let bytes = archive(&first);
        let other = archive(&second);
        let differ = bytes.iter().zip(&other).position(|(a, b)| a != b);
        assert!(
            bytes.len() == other.len() && differ.is_none(),
            "the same tree, the same archive: {} and {} bytes, first difference at {differ:?}: {:?}",
            bytes.len(),
            other.len(),
            differ.map(
                |at| String::from_utf8_lossy(&bytes[at.saturating_sub(120)..at + 8]).into_owned()
            )
        );
        fs::create_dir(&out).expect("mkdir");
        unpack_tar(bytes.as_slice(), &out).expect("unpack");
        assert_eq!(
            kiln_store::tree_hash(&out).expect("hash"),
            kiln_store::tree_hash(&first).expect("hash")
        );
        assert_eq!(
            fs::metadata(out.join("bin/tool"))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777,
            0o755
        );
        let mode = |path: &str| {
            fs::metadata(out.join(path))
                .expect("meta")
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("empty"), 0o400);
        assert_eq!(mode("etc/deep"), 0o555);
        assert_eq!(mode("etc/deep/er/config"), 0o644);
        for root in [&first, &second, &out] {
            fs::set_permissions(root.join("etc/deep"), fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
    }

    /// An archive of the entries `(path, type, link target)`, written raw.
    fn raw(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, kind, target) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(*kind);
            header.set_mode(0o644);
            header.set_size(0);
            let name = header.as_old_mut().name.as_mut_slice();
            name[..path.len()].copy_from_slice(path.as_bytes());
            if !target.is_empty() {
                header.set_link_name(target).expect("target");
            }
            header.set_cksum();
            builder.append(&header, io::empty()).expect("append");
        }
        builder.into_inner().expect("finish")
    }

    #[test]
    fn an_archive_that_is_not_a_plain_tree_is_refused() {
        use tar::EntryType::{Directory, Fifo, Link, Regular, Symlink};
        for (entries, says) in [
            (
                vec![("/etc/passwd", Regular, "")],
                "not a plain relative path",
            ),
            (vec![("../x", Regular, "")], "not a plain relative path"),
            (vec![("a/b", Regular, "")], "not in the archive before it"),
            // Through a symlink to outside: the link's "directory" is never one.
            (
                vec![("a", Symlink, "/tmp"), ("a/x", Regular, "")],
                "not in the archive before it",
            ),
            (vec![("f", Regular, ""), ("f", Regular, "")], "twice"),
            (vec![("d", Directory, ""), ("d", Directory, "")], "twice"),
            (
                vec![("h", Link, "f")],
                "only files, directories and symlinks",
            ),
            (
                vec![("p", Fifo, "")],
                "only files, directories and symlinks",
            ),
        ] {
            let dir = tempfile::tempdir().expect("tempdir");
            let error = unpack_tar(raw(&entries).as_slice(), dir.path()).expect_err(says);
            assert!(error.to_string().contains(says), "{entries:?}: {error}");
        }
    }

    #[test]
    fn key_lines_are_found_in_copies_only() {
        let key = b"-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBq3bXqW0m1vY8z0b8nY0aP2c5cQm3b2wq7nU3kYp7hWoAoGCCqGSM49\nAwEHoUQDQgAE\n-----END EC PRIVATE KEY-----\n";
        let mut keys = KeyLines::default();
        keys.add_pem(b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAKHBfpegPjMCMA0GCSqGSIb3DQEBCwUAMBExDzANBgNVBAMMBnRl\n-----END CERTIFICATE-----\n");
        assert!(keys.is_empty(), "certificates are no keys");
        keys.add_pem(key);
        assert_eq!(keys.len(), 1, "the short last line is left out");
        let dir = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(dir.path().join("a/b")).expect("mkdir");
        fs::write(dir.path().join("a/clean"), vec![b'x'; 200_000]).expect("write");
        assert_eq!(find_key_lines(dir.path(), &keys).expect("scan"), None);
        let mut copied = b"prefix\r\n".to_vec();
        copied.extend_from_slice(key);
        fs::write(dir.path().join("a/b/copy.pem"), copied).expect("write");
        assert_eq!(
            find_key_lines(dir.path(), &keys).expect("scan"),
            Some(PathBuf::from("a/b/copy.pem"))
        );
    }
}
