//! What several xtask test binaries share.

use std::path::PathBuf;

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
