//! What a dynamically linked ELF file needs before it can run: its program interpreter
//! (`PT_INTERP`) and the shared libraries it names (`DT_NEEDED`), read from the file's bytes as
//! the dynamic loader reads them. Only 64-bit little-endian ELF (x86-64) is read, the one kind
//! kiln's nodes run.

/// The dynamic-linking requirements of one ELF file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Dynamic {
    /// The program interpreter (`/lib64/ld-linux-x86-64.so.2`), for an executable.
    pub interpreter: Option<String>,
    /// The sonames of `DT_NEEDED`, in the file's order.
    pub needed: Vec<String>,
    /// `DT_RUNPATH` or `DT_RPATH`, if the file has one.
    pub runpath: Option<String>,
}

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;

fn u16_at(bytes: &[u8], offset: usize) -> Result<u16, String> {
    bytes
        .get(offset..offset.saturating_add(2))
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| format!("truncated at byte {offset}"))
}

fn u32_at(bytes: &[u8], offset: usize) -> Result<u32, String> {
    bytes
        .get(offset..offset.saturating_add(4))
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| format!("truncated at byte {offset}"))
}

fn u64_at(bytes: &[u8], offset: usize) -> Result<u64, String> {
    bytes
        .get(offset..offset.saturating_add(8))
        .map(|b| u64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .ok_or_else(|| format!("truncated at byte {offset}"))
}

fn usize_of(value: u64) -> Result<usize, String> {
    usize::try_from(value).map_err(|_| format!("offset {value} out of range"))
}

/// The NUL-terminated string at `offset`.
fn c_string(bytes: &[u8], offset: usize) -> Result<String, String> {
    let tail = bytes
        .get(offset..)
        .ok_or_else(|| format!("string at byte {offset} is past the end"))?;
    let end = tail
        .iter()
        .position(|byte| *byte == 0)
        .ok_or_else(|| format!("string at byte {offset} is not terminated"))?;
    String::from_utf8(tail[..end].to_vec())
        .map_err(|_| format!("string at byte {offset} is not UTF-8"))
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// The requirements of `bytes`: `Ok(None)` when it is not an ELF file at all (a script), and
/// `Ok(Some(..))` with empty fields for a static one.
///
/// # Errors
///
/// If it is ELF but not 64-bit little-endian, or its headers point outside the file.
pub(crate) fn dynamic(bytes: &[u8]) -> Result<Option<Dynamic>, String> {
    if !bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".to_owned());
    }
    let phoff = usize_of(u64_at(bytes, 0x20)?)?;
    let phentsize = usize::from(u16_at(bytes, 0x36)?);
    let phnum = usize::from(u16_at(bytes, 0x38)?);
    if phnum > 0 && phentsize < 56 {
        return Err(format!("program headers of {phentsize} bytes"));
    }
    let mut segments = Vec::with_capacity(phnum);
    for index in 0..phnum {
        let at = phoff.saturating_add(index * phentsize);
        segments.push(Segment {
            kind: u32_at(bytes, at)?,
            offset: u64_at(bytes, at + 8)?,
            vaddr: u64_at(bytes, at + 16)?,
            filesz: u64_at(bytes, at + 32)?,
        });
    }
    let mut found = Dynamic::default();
    if let Some(interp) = segments.iter().find(|segment| segment.kind == PT_INTERP) {
        found.interpreter = Some(c_string(bytes, usize_of(interp.offset)?)?);
    }
    let Some(dynamic) = segments.iter().find(|segment| segment.kind == PT_DYNAMIC) else {
        return Ok(Some(found));
    };
    // The dynamic section: (tag, value) pairs up to DT_NULL.
    let mut entries = Vec::new();
    let start = usize_of(dynamic.offset)?;
    let count = usize_of(dynamic.filesz)? / 16;
    for index in 0..count {
        let at = start.saturating_add(index * 16);
        let tag = u64_at(bytes, at)?;
        if tag == DT_NULL {
            break;
        }
        entries.push((tag, u64_at(bytes, at.saturating_add(8))?));
    }
    let strtab = entries
        .iter()
        .find(|(tag, _)| *tag == DT_STRTAB)
        .map(|(_, value)| *value)
        .ok_or("a dynamic section with no string table")?;
    // DT_STRTAB is an address: the loadable segment holding it gives its place in the file.
    let strtab = segments
        .iter()
        .filter(|segment| segment.kind == PT_LOAD)
        .find(|segment| {
            segment.vaddr <= strtab && strtab < segment.vaddr.saturating_add(segment.filesz)
        })
        .map(|segment| (strtab - segment.vaddr).saturating_add(segment.offset))
        .ok_or_else(|| format!("string table address {strtab:#x} is in no loaded segment"))?;
    let string = |value: u64| c_string(bytes, usize_of(strtab.saturating_add(value))?);
    for (tag, value) in entries {
        match tag {
            DT_NEEDED => found.needed.push(string(value)?),
            DT_RUNPATH => found.runpath = Some(string(value)?),
            DT_RPATH if found.runpath.is_none() => found.runpath = Some(string(value)?),
            _ => {}
        }
    }
    Ok(Some(found))
}

#[cfg(test)]
mod tests {
    use std::process::Command;

    use super::*;

    /// The reader agrees with binutils' `readelf` on this test program itself (a dynamically
    /// linked executable built by the toolchain).
    #[test]
    fn agrees_with_readelf() {
        let exe = std::env::current_exe().expect("current exe");
        let bytes = std::fs::read(&exe).expect("read exe");
        let found = dynamic(&bytes).expect("parses").expect("is ELF");
        let Ok(output) = Command::new("readelf")
            .args(["--wide", "--dynamic", "--program-headers"])
            .arg(&exe)
            .env("LC_ALL", "C")
            .output()
        else {
            panic!("readelf (binutils) is needed for this test");
        };
        assert!(output.status.success());
        let text = String::from_utf8_lossy(&output.stdout);
        let needed: Vec<String> = text
            .lines()
            .filter(|line| line.contains("(NEEDED)"))
            .filter_map(|line| {
                let start = line.find('[')? + 1;
                let end = line.rfind(']')?;
                Some(line[start..end].to_owned())
            })
            .collect();
        assert!(!needed.is_empty(), "{text}");
        assert_eq!(found.needed, needed);
        let interpreter = text
            .lines()
            .find_map(|line| {
                let rest = line.split("Requesting program interpreter: ").nth(1)?;
                Some(rest.trim_end_matches(']').to_owned())
            })
            .expect("readelf names an interpreter");
        assert_eq!(found.interpreter.as_deref(), Some(interpreter.as_str()));
    }

    #[test]
    fn non_elf_static_and_broken_files() {
        assert_eq!(dynamic(b"#!/bin/sh\n").expect("script"), None);
        let pause = super::super::elf::pause_program();
        assert_eq!(
            dynamic(&pause).expect("pause").expect("ELF"),
            Dynamic::default()
        );
        let mut truncated = pause.clone();
        truncated.truncate(0x30);
        assert!(dynamic(&truncated).is_err());
        // Offsets at the end of the address space are errors, not overflows.
        let mut far = pause.clone();
        far[0x20..0x28].copy_from_slice(&u64::MAX.to_le_bytes());
        far[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        assert!(dynamic(&far).is_err());
        let mut thirty_two = pause;
        thirty_two[4] = 1;
        assert!(dynamic(&thirty_two).is_err());
    }
}
