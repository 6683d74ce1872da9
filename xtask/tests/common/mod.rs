//! What several xtask test binaries share: the examples, the xtask binary run as a user runs
//! it, and the result manifest read back. Each test binary uses part of it.
#![allow(
    dead_code,
    reason = "each test binary compiles this module and uses part of it"
)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository's `examples/` directory.
pub fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The default store, found as `cargo xtask` finds it: `$KILN_STORE`, else
/// `$XDG_DATA_HOME/kiln/store`, else `~/.local/share/kiln/store`. Tests use it only as a
/// substituter for fixed-output paths.
pub fn default_store() -> Option<PathBuf> {
    let set = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
    if let Some(dir) = set("KILN_STORE") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = set("XDG_DATA_HOME") {
        return Some(PathBuf::from(dir).join("kiln/store"));
    }
    set("HOME").map(|home| PathBuf::from(home).join(".local/share/kiln/store"))
}

/// Runs the xtask binary with `args` in `dir`, through `sh` so that the umask can be set, with
/// `env` added. The caller's `KILN_STORE` and `KILN_SUBSTITUTERS` are removed, so a test uses
/// only the stores its arguments name.
pub fn xtask(dir: &Path, umask: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .current_dir(dir)
        .env_remove("KILN_STORE")
        .env_remove("KILN_SUBSTITUTERS");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the xtask binary runs")
}

/// `output`'s stdout, failing the test with its stderr if the command failed.
pub fn succeeded(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The artifacts of a result directory's `manifest.json`, by derivation id.
pub fn artifacts(result: &Path) -> BTreeMap<String, serde_json::Value> {
    let text =
        std::fs::read_to_string(result.join("manifest.json")).expect("manifest.json written");
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest is JSON");
    manifest["artifacts"]
        .as_object()
        .expect("artifacts map")
        .iter()
        .map(|(id, entry)| (id.clone(), entry.clone()))
        .collect()
}

/// Every artifact's digest and content hash from a result directory's manifest.
pub fn hashes(result: &Path) -> BTreeMap<String, (String, String)> {
    artifacts(result)
        .into_iter()
        .map(|(id, entry)| {
            let field = |name: &str| entry[name].as_str().expect("hex digest").to_owned();
            (id, (field("digest"), field("content_hash")))
        })
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub fn base64_encode(bytes: &[u8]) -> String {
    let mut text = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (index, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if index <= chunk.len() {
                text.push(char::from(BASE64[((n >> shift) & 63) as usize]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

/// Decodes standard base64 (padding and whitespace ignored); panics on anything else.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let mut bytes = Vec::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for character in text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
    {
        let value = BASE64
            .iter()
            .position(|b| *b == character)
            .unwrap_or_else(|| panic!("not base64: {text:?}"));
        buffer = (buffer << 6) | u32::try_from(value).expect("< 64");
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push(u8::try_from((buffer >> bits) & 0xff).expect("a byte"));
        }
    }
    bytes
}

/// What a file holds that counts as a private key: PEM key blocks, and the keys kubeconfigs
/// embed as `client-key-data` (base64 of a PEM key).
pub fn private_keys_in(bytes: &[u8]) -> Vec<Vec<u8>> {
    let text = String::from_utf8_lossy(bytes);
    let mut keys = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let header_end = block.find('\n').unwrap_or(block.len());
        if !block[..header_end].contains("PRIVATE KEY") {
            rest = &block[header_end..];
            continue;
        }
        let end = block
            .find("-----END ")
            .and_then(|end| block[end..].find('\n').map(|newline| end + newline + 1))
            .unwrap_or(block.len());
        keys.push(block.as_bytes()[..end].to_vec());
        rest = &block[end..];
    }
    for line in text.lines() {
        if let Some((_, value)) = line.split_once("client-key-data:") {
            keys.push(base64_decode(value.trim()));
        }
    }
    keys
}
