//! Builders that write a view of the plan as JSON: the parameters are the view itself.

use kiln_graph::{BuildContext, BuildError, Builder, Params};
use kiln_spec::{ClusterPlan, NodePlan, OptionsPlan};
use serde::Serialize;

/// What one node needs to know of the cluster: the cluster-wide plan, the options and itself.
/// Other nodes' data reach it only through cluster-wide values (the endpoint, etcd's members).
#[derive(Debug, Serialize)]
pub struct NodeView<'a> {
    /// Cluster-wide values.
    pub cluster: &'a ClusterPlan,
    /// Cluster options.
    pub options: &'a OptionsPlan,
    /// The node.
    pub node: &'a NodePlan,
}

/// A builder that writes one serializable value as pretty JSON into `file`.
///
/// Its parameters are the value (see [`Params`]), so equal values give equal digests, and the
/// file is those parameters pretty-printed: object keys sorted, two-space indents, a final
/// newline.
#[derive(Debug)]
pub struct JsonView {
    kind: &'static str,
    file: &'static str,
    value: Params,
}

impl JsonView {
    /// A builder of kind `kind` writing `value` to `file`.
    pub fn new(kind: &'static str, file: &'static str, value: &impl Serialize) -> JsonView {
        JsonView {
            kind,
            file,
            value: Params::of(value),
        }
    }
}

impl Builder for JsonView {
    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Params {
        self.value.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let value: serde_json::Value = self.value.decode().map_err(BuildError::from_error)?;
        let mut text = serde_json::to_string_pretty(&value).map_err(BuildError::from_error)?;
        text.push('\n');
        let path = ctx.out().join(self.file);
        crate::rendered::write_read_only(&path, text.as_bytes(), 0o444)
    }
}
