//! Files picked out of a root file system (kiln's base OS) into an image layer: each with every
//! directory and symbolic link on its way as the root has them, and each ELF file with its
//! program interpreter and the shared libraries it needs, found as the dynamic loader finds
//! them. What a program needs is therefore read from the program, not listed by hand.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::OciEntry;
use super::needed::dynamic;
use crate::error::ImageError;

/// Where the dynamic loader of Debian's x86-64 glibc looks for a library no `DT_RUNPATH`
/// names, in its order (with no `/etc/ld.so.cache`, which a picked root does not have).
pub(crate) const LIBRARY_DIRS: [&str; 4] = [
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib",
    "/usr/lib",
];

/// How many symbolic links one path may pass through, as Linux allows (`ELOOP` past 40).
const MAX_LINKS: usize = 40;

/// The entries picked from one root, by their path in the layer (relative, no leading `/`).
pub(crate) struct Picker<'a> {
    root: &'a Path,
    what: &'a str,
    entries: BTreeMap<String, OciEntry>,
    /// ELF files already read for their libraries (resolved paths).
    linked: BTreeSet<String>,
}

impl<'a> Picker<'a> {
    /// A picker of files from the tree at `root`, for the image called `what` (named in
    /// errors).
    pub(crate) fn new(root: &'a Path, what: &'a str) -> Self {
        Picker {
            root,
            what,
            entries: BTreeMap::new(),
            linked: BTreeSet::new(),
        }
    }

    fn error(&self, reason: String) -> ImageError {
        ImageError::Assembly {
            what: self.what.to_owned(),
            reason,
        }
    }

    /// Adds `path` (absolute) with each directory and symbolic link it passes through, and
    /// returns the path of the file or directory it resolves to, relative.
    ///
    /// # Errors
    ///
    /// If the root lacks it, it loops, or a link target is not UTF-8.
    pub(crate) fn add(&mut self, path: &str) -> Result<String, ImageError> {
        self.walk(path, true)
    }

    /// Whether `path` (absolute) resolves to something in the root, every link followed inside
    /// the root (never the machine's own, as `Path::exists` would for an absolute link).
    fn exists(&mut self, path: &str) -> bool {
        self.walk(path, false).is_ok()
    }

    /// Resolves `path` inside the root, component by component, adding what it passes through
    /// when `record`; returns the resolved path, relative.
    fn walk(&mut self, path: &str, record: bool) -> Result<String, ImageError> {
        let mut pending: Vec<String> = components(path).rev().map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(component) = pending.pop() {
            if component == ".." {
                current.pop();
                continue;
            }
            current.push(component);
            let relative = current.join("/");
            let host = self.root.join(&relative);
            let metadata = fs::symlink_metadata(&host)
                .map_err(|error| self.error(format!("/{relative} (for {path}): {error}")))?;
            let mode = metadata.permissions().mode() & 0o7777;
            if metadata.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return Err(self.error(format!("{path}: too many symbolic links")));
                }
                let target = fs::read_link(&host).map_err(|error| ImageError::io(&host, error))?;
                let target = target
                    .to_str()
                    .ok_or_else(|| self.error(format!("/{relative}: a link target not UTF-8")))?
                    .to_owned();
                if record {
                    self.entries
                        .entry(relative.clone())
                        .or_insert_with(|| OciEntry::symlink(relative, target.clone()));
                }
                current.pop();
                if target.starts_with('/') {
                    current.clear();
                }
                pending.extend(components(&target).rev().map(str::to_owned));
            } else if metadata.is_dir() {
                if record {
                    self.entries
                        .entry(relative.clone())
                        .or_insert_with(|| OciEntry::directory(relative, mode));
                }
            } else if metadata.is_file() {
                if !pending.is_empty() {
                    return Err(self.error(format!("/{relative} (for {path}) is not a directory")));
                }
                if record && !self.entries.contains_key(&relative) {
                    let bytes = fs::read(&host).map_err(|error| ImageError::io(&host, error))?;
                    self.entries
                        .insert(relative.clone(), OciEntry::file(relative, mode, bytes));
                }
            } else {
                return Err(self.error(format!("/{relative} is not a file, directory or link")));
            }
        }
        Ok(current.join("/"))
    }

    /// Adds `path` as [`Picker::add`] does and, if it is an ELF file, its interpreter and every
    /// library it needs, transitively, each looked up in its `DT_RUNPATH` and then
    /// [`LIBRARY_DIRS`].
    ///
    /// # Errors
    ///
    /// If the root lacks the file or a library it needs (naming both), or an ELF file cannot
    /// be read.
    pub(crate) fn add_program(&mut self, path: &str) -> Result<(), ImageError> {
        let resolved = self.add(path)?;
        if !self.linked.insert(resolved.clone()) {
            return Ok(());
        }
        let Some(OciEntry {
            kind: super::OciEntryKind::File(bytes),
            ..
        }) = self.entries.get(&resolved)
        else {
            return Ok(());
        };
        let Some(linking) =
            dynamic(bytes).map_err(|reason| self.error(format!("/{resolved}: {reason}")))?
        else {
            return Ok(());
        };
        if let Some(interpreter) = &linking.interpreter {
            self.add_program(interpreter)?;
        }
        let origin = match resolved.rsplit_once('/') {
            Some((dir, _)) => format!("/{dir}"),
            None => "/".to_owned(),
        };
        let runpath: Vec<String> = linking
            .runpath
            .iter()
            .flat_map(|runpath| runpath.split(':'))
            .map(|dir| dir.replace("$ORIGIN", &origin))
            .collect();
        for library in &linking.needed {
            let found = runpath
                .iter()
                .map(String::as_str)
                .chain(LIBRARY_DIRS)
                .map(|dir| format!("{dir}/{library}"))
                .find(|candidate| self.exists(candidate));
            let Some(found) = found else {
                return Err(self.error(format!(
                    "{library}, which /{resolved} needs, is in none of {}",
                    runpath
                        .iter()
                        .map(String::as_str)
                        .chain(LIBRARY_DIRS)
                        .collect::<Vec<_>>()
                        .join(", ")
                )));
            };
            self.add_program(&found)?;
        }
        Ok(())
    }

    /// Adds every entry directly in the directory `dir` (absolute) but its subdirectories with
    /// [`Picker::add_program`], in name order: files, and links as links (iptables opens
    /// `libxt_DNAT.so`, a link to `libxt_NAT.so`, by the link's name).
    ///
    /// # Errors
    ///
    /// As [`Picker::add_program`], or if the directory cannot be listed.
    pub(crate) fn add_programs_in(&mut self, dir: &str) -> Result<(), ImageError> {
        let resolved = self.add(dir)?;
        let host = self.root.join(&resolved);
        let mut names = Vec::new();
        for entry in fs::read_dir(&host).map_err(|error| ImageError::io(&host, error))? {
            let entry = entry.map_err(|error| ImageError::io(&host, error))?;
            if !entry
                .file_type()
                .map_err(|error| ImageError::io(entry.path(), error))?
                .is_dir()
            {
                names.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        names.sort();
        for name in names {
            self.add_program(&format!("/{resolved}/{name}"))?;
        }
        Ok(())
    }

    /// The picked entries, parents before children.
    pub(crate) fn into_entries(self) -> Vec<OciEntry> {
        self.entries.into_values().collect()
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/')
        .filter(|component| !component.is_empty() && *component != ".")
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::oci::OciEntryKind;

    #[test]
    fn follows_links_as_the_root_has_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        fs::create_dir_all(root.join("usr/sbin")).expect("mkdir");
        fs::create_dir_all(root.join("etc/alternatives")).expect("mkdir");
        symlink("usr/sbin", root.join("sbin")).expect("link");
        fs::write(root.join("usr/sbin/multi"), b"#!/bin/sh\n").expect("write");
        symlink("multi", root.join("usr/sbin/tool-nft")).expect("link");
        symlink("/usr/sbin/tool-nft", root.join("etc/alternatives/tool")).expect("link");
        symlink("/etc/alternatives/tool", root.join("usr/sbin/tool")).expect("link");
        symlink("loop", root.join("usr/sbin/loop")).expect("link");

        let mut picker = Picker::new(root, "test");
        assert_eq!(picker.add("/sbin/tool").expect("adds"), "usr/sbin/multi");
        picker
            .add_program("/sbin/tool")
            .expect("a script needs nothing");
        let entries = picker.into_entries();
        let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "etc",
                "etc/alternatives",
                "etc/alternatives/tool",
                "sbin",
                "usr",
                "usr/sbin",
                "usr/sbin/multi",
                "usr/sbin/tool",
                "usr/sbin/tool-nft",
            ]
        );
        assert!(entries.iter().any(|entry| entry.path == "sbin"
            && entry.kind == OciEntryKind::Symlink("usr/sbin".to_owned())));

        // A directory's links are picked as links, beside the files they name.
        fs::create_dir_all(root.join("usr/lib/ext/sub")).expect("mkdir");
        fs::write(root.join("usr/lib/ext/libxt_NAT.so"), b"not ELF").expect("write");
        symlink("libxt_NAT.so", root.join("usr/lib/ext/libxt_DNAT.so")).expect("link");
        let mut picker = Picker::new(root, "test");
        picker.add_programs_in("/usr/lib/ext").expect("adds");
        let paths: Vec<String> = picker
            .into_entries()
            .into_iter()
            .map(|entry| entry.path)
            .collect();
        assert_eq!(
            paths,
            [
                "usr",
                "usr/lib",
                "usr/lib/ext",
                "usr/lib/ext/libxt_DNAT.so",
                "usr/lib/ext/libxt_NAT.so",
            ]
        );

        // An absolute link resolves inside the root, never on the machine: /etc/passwd is the
        // machine's, not the root's.
        symlink("/etc/passwd", root.join("usr/sbin/machines")).expect("link");
        let mut picker = Picker::new(root, "test");
        assert!(Path::new("/etc/passwd").exists());
        assert!(!picker.exists("/usr/sbin/machines"));
        assert!(picker.exists("/sbin/tool"));
        assert!(picker.into_entries().is_empty(), "a lookup adds nothing");

        let mut picker = Picker::new(root, "test");
        let error = picker.add("/usr/sbin/loop").expect_err("loops");
        assert!(
            error.to_string().contains("too many symbolic links"),
            "{error}"
        );
        let error = picker.add("/usr/sbin/nosuch").expect_err("missing");
        assert!(error.to_string().contains("/usr/sbin/nosuch"), "{error}");
    }

    /// This test program's own libraries, picked from the machine's root (a glibc system), are exactly what
    /// binutils' `readelf` says it needs, with the interpreter.
    #[test]
    fn picks_a_programs_libraries_from_a_real_root() {
        let exe = std::env::current_exe().expect("current exe");
        let bytes = fs::read(&exe).expect("read");
        let linking = dynamic(&bytes).expect("parses").expect("ELF");
        let exe = exe.to_str().expect("a UTF-8 path");
        let mut picker = Picker::new(Path::new("/"), "test");
        picker.add_program(exe).expect("picks");
        let entries = picker.into_entries();
        // Each is picked at the place the machine resolves it to (through its links).
        let picked = |path: &Path| {
            let real = fs::canonicalize(path).expect("resolves");
            let relative = real
                .strip_prefix("/")
                .expect("absolute")
                .to_str()
                .expect("UTF-8");
            assert!(
                entries.iter().any(|entry| entry.path == relative),
                "{} ({relative}) not picked",
                path.display()
            );
        };
        for library in &linking.needed {
            let found = LIBRARY_DIRS
                .iter()
                .map(|dir| Path::new(dir).join(library))
                .find(|path| path.exists())
                .expect("the machine has it");
            picked(&found);
        }
        picked(Path::new(&linking.interpreter.expect("interpreter")));
    }
}
