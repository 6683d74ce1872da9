//! Derivations whose output is a set of rendered files, written with their modes.
//!
//! The renderers are pure functions of the plan. A [`RenderBuilder`] holds the plan and a
//! render function, and its parameters are a *projection* of the plan: exactly the values the
//! renderer reads (or more, never less), so the digest changes whenever the output could.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use kiln_graph::{BuildContext, BuildError, Builder, Derivation, DrvId, Graph, Params};
use kiln_spec::{NodePlan, Plan};

use crate::{Artifacts, ClusterError};

/// One file a renderer produced.
pub(crate) use kiln_spec::RenderedFile as File;

/// A renderer of one node's files, errors as text.
pub(crate) type Render = dyn Fn(&Plan, &NodePlan) -> Result<Vec<File>, String> + Send + Sync;

/// Renders one node's files from the plan when built.
pub(crate) struct RenderBuilder {
    pub(crate) kind: &'static str,
    pub(crate) version: u32,
    pub(crate) plan: Arc<Plan>,
    /// The node's name: the one place a renderer's node is looked up by name.
    pub(crate) node: String,
    pub(crate) params: Params,
    pub(crate) render: Arc<Render>,
    /// Whether what it renders holds a secret (see [`NodeRenderer::holding_secrets`]).
    pub(crate) secret: bool,
}

impl Builder for RenderBuilder {
    fn holds_secrets(&self) -> bool {
        self.secret
    }

    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn params(&self) -> Params {
        self.params.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let node = self
            .plan
            .node(&self.node)
            .ok_or_else(|| BuildError::new(format!("the plan has no node `{}`", self.node)))?;
        let files = (self.render)(&self.plan, node).map_err(BuildError::new)?;
        write_files(ctx.out(), &files)
    }
}

/// Writes `files` under `out`, creating directories, with each file's mode.
///
/// Each file is created with its mode already read-only (its write bits cleared, as the
/// store's seal would), so sealing the output changes nothing; each directory is created once.
pub(crate) fn write_files(out: &Path, files: &[File]) -> Result<(), BuildError> {
    let mut dirs = Dirs::default();
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
            dirs.create(dir)?;
        }
        write_read_only(&path, &file.contents, file.mode)?;
    }
    Ok(())
}

/// `mode` less its write bits: what the store's seal leaves of a file's mode.
pub(crate) fn read_only(mode: u32) -> u32 {
    mode & !0o222
}

/// Creates `path` (which must not exist) holding `contents`, with `mode` less its write bits,
/// whatever the umask.
pub(crate) fn write_read_only(path: &Path, contents: &[u8], mode: u32) -> Result<(), BuildError> {
    let mode = read_only(mode);
    let mut written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|error| BuildError::io(path, error))?;
    written
        .write_all(contents)
        .map_err(|error| BuildError::io(path, error))?;
    // The umask may have taken bits away from the mode `open` was given.
    written
        .set_permissions(std::fs::Permissions::from_mode(mode))
        .map_err(|error| BuildError::io(path, error))
}

/// The directories a builder has created under its output, so that each is created once
/// however many files it holds.
#[derive(Default)]
pub(crate) struct Dirs(std::collections::BTreeSet<std::path::PathBuf>);

impl Dirs {
    /// Creates `dir` and its missing parents, unless this builder did already.
    pub(crate) fn create(&mut self, dir: &Path) -> Result<(), BuildError> {
        if self.0.contains(dir) {
            return Ok(());
        }
        std::fs::create_dir_all(dir).map_err(|error| BuildError::io(dir, error))?;
        self.0.insert(dir.to_owned());
        Ok(())
    }
}

/// One renderer of per-node files: the artifact it produces, its builder kind, and the function.
pub(crate) struct NodeRenderer {
    pub(crate) artifact: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) render: Arc<Render>,
    /// Whether its files hold a secret, such as a key derived from the root secret.
    pub(crate) secret: bool,
}

impl NodeRenderer {
    /// A renderer crate's `render_node`, producing the node artifact `artifact`.
    pub(crate) fn new<E>(
        artifact: &'static str,
        kind: &'static str,
        render: fn(&Plan, &NodePlan) -> Result<Vec<File>, E>,
    ) -> NodeRenderer
    where
        E: std::fmt::Display + 'static,
    {
        let render: Arc<Render> = Arc::new(move |plan: &Plan, node: &NodePlan| {
            render(plan, node).map_err(|error| error.to_string())
        });
        NodeRenderer {
            artifact,
            kind,
            render,
            secret: false,
        }
    }

    /// The same renderer, its files holding a secret: never shared beyond this machine
    /// ([`kiln_graph::Builder::holds_secrets`]).
    #[must_use]
    pub(crate) fn holding_secrets(mut self) -> NodeRenderer {
        self.secret = true;
        self
    }

    /// A renderer given as a function that already yields [`File`]s (for renderers that need
    /// more than the plan, such as a key derived from the root secret).
    pub(crate) fn from_fn(
        artifact: &'static str,
        kind: &'static str,
        render: Arc<Render>,
    ) -> NodeRenderer {
        NodeRenderer {
            artifact,
            kind,
            render,
            secret: false,
        }
    }

    /// Adds `node/<node>/<artifact>` with parameters `params` (a projection of the plan holding
    /// everything the renderer reads) and records it as the node's artifact.
    pub(crate) fn add(
        &self,
        graph: &mut Graph,
        artifacts: &mut Artifacts,
        plan: &Arc<Plan>,
        node: &str,
        params: Params,
    ) -> Result<(), ClusterError> {
        let id = DrvId::new(format!("node/{node}/{}", self.artifact));
        let builder = RenderBuilder {
            kind: self.kind,
            version: 1,
            plan: Arc::clone(plan),
            node: node.to_owned(),
            params,
            render: Arc::clone(&self.render),
            secret: self.secret,
        };
        let name = format!("{node}-{}", self.artifact);
        graph.add(id.clone(), Derivation::new(name, Arc::new(builder)))?;
        artifacts
            .nodes
            .entry(node.to_owned())
            .or_default()
            .insert(self.artifact.to_owned(), id);
        Ok(())
    }
}
