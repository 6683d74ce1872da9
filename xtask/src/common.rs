//! What several tasks share: finding and loading the spec, and the default locations.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use kiln_spec::Plan;

/// The spec a task uses when none is given: the two-node example in this repository.
pub fn default_spec() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/two-node.toml")
}

/// Reads and validates the spec at `path`, printing its warnings; errors carry every diagnostic.
pub fn load_plan(path: &Path) -> anyhow::Result<Plan> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("reading the spec {}", path.display()))?;
    match kiln_spec::load(&source, &path.display().to_string()) {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                eprintln!("{}", loaded.warnings);
            }
            Ok(loaded.plan)
        }
        Err(diagnostics) => {
            // Diagnostics carry their own `error:` prefixes; the summary goes through main's.
            eprintln!("{diagnostics}");
            let count = diagnostics.errors().count();
            bail!(
                "{count} error{} in {}",
                if count == 1 { "" } else { "s" },
                path.display()
            )
        }
    }
}

/// The store directory: `--store`, else `$KILN_STORE`, else `$XDG_DATA_HOME/kiln/store`, else
/// `~/.local/share/kiln/store`.
pub fn store_dir(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = explicit {
        return Ok(dir);
    }
    if let Some(dir) = std::env::var_os("KILN_STORE").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|dir| !dir.is_empty()) {
        return Ok(PathBuf::from(dir).join("kiln/store"));
    }
    let home = std::env::var_os("HOME")
        .filter(|dir| !dir.is_empty())
        .context("no store directory: pass --store, or set KILN_STORE, XDG_DATA_HOME or HOME")?;
    Ok(PathBuf::from(home).join(".local/share/kiln/store"))
}

/// The secrets directory of a cluster: `--secrets`, else `.kiln-secrets` beside the spec, with
/// one subdirectory per cluster name.
#[allow(dead_code)] // Used once the PKI derivations are wired in.
pub fn secrets_dir(explicit: Option<PathBuf>, spec: &Path, cluster: &str) -> PathBuf {
    let base = explicit.unwrap_or_else(|| {
        spec.parent()
            .unwrap_or_else(|| Path::new("."))
            .join(".kiln-secrets")
    });
    base.join(cluster)
}
