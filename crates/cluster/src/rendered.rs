//! Derivations whose output is a set of rendered files, written with their modes.
//!
//! The renderers are pure functions of the plan. A [`RenderBuilder`] holds the plan and a
//! render function, and its parameters are a *projection* of the plan: exactly the values the
//! renderer reads (or more, never less), so the digest changes whenever the output could.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder};
use kiln_spec::Plan;

/// One file a renderer produced, in the shape every renderer crate uses.
pub(crate) struct File {
    pub(crate) path: String,
    pub(crate) contents: Vec<u8>,
    pub(crate) mode: u32,
}

/// A renderer of one node's files, errors as text.
pub(crate) type Render = dyn Fn(&Plan, &str) -> Result<Vec<File>, String> + Send + Sync;

/// Renders one node's files from the plan when built.
pub(crate) struct RenderBuilder {
    pub(crate) kind: &'static str,
    pub(crate) version: u32,
    pub(crate) plan: Arc<Plan>,
    pub(crate) node: String,
    pub(crate) params: Vec<u8>,
    pub(crate) render: Arc<Render>,
}

impl Builder for RenderBuilder {
    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn params(&self) -> Vec<u8> {
        self.params.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let files = (self.render)(&self.plan, &self.node).map_err(BuildError::new)?;
        write_files(ctx.out(), &files)
    }
}

/// Writes `files` under `out`, creating directories, with each file's mode.
pub(crate) fn write_files(out: &Path, files: &[File]) -> Result<(), BuildError> {
    for file in files {
        let relative = Path::new(&file.path);
        if relative.is_absolute() || relative.components().any(|part| part.as_os_str() == "..") {
            return Err(BuildError::new(format!(
                "a renderer produced the unsafe path {}",
                file.path
            )));
        }
        let path = out.join(relative);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|error| BuildError::io(dir, error))?;
        }
        std::fs::write(&path, &file.contents).map_err(|error| BuildError::io(&path, error))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(file.mode))
            .map_err(|error| BuildError::io(&path, error))?;
    }
    Ok(())
}
