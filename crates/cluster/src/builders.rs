//! Builders that write a view of the plan as JSON: the parameters are the view itself.

use kiln_graph::{BuildContext, BuildError, Builder};
use kiln_spec::{ClusterPlan, NodePlan, OptionsPlan};
use serde::Serialize;

use crate::ClusterError;

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
/// Its parameters are the value's compact JSON, whose field order is fixed by the types and
/// whose maps are `BTreeMap`s, so equal values always give equal digests.
#[derive(Debug)]
pub struct JsonView {
    kind: &'static str,
    file: &'static str,
    compact: Vec<u8>,
}

impl JsonView {
    /// A builder of kind `kind` writing `value` to `file`.
    pub fn new(
        kind: &'static str,
        file: &'static str,
        value: &impl Serialize,
    ) -> Result<JsonView, ClusterError> {
        let compact = serde_json::to_vec(value).map_err(|error| ClusterError::Encode {
            what: file.to_owned(),
            message: error.to_string(),
        })?;
        Ok(JsonView {
            kind,
            file,
            compact,
        })
    }
}

impl Builder for JsonView {
    fn kind(&self) -> &str {
        self.kind
    }

    fn version(&self) -> u32 {
        1
    }

    fn params(&self) -> Vec<u8> {
        self.compact.clone()
    }

    fn build(&self, ctx: &BuildContext<'_>) -> Result<(), BuildError> {
        let value: serde_json::Value =
            serde_json::from_slice(&self.compact).map_err(BuildError::from_error)?;
        let mut text = serde_json::to_string_pretty(&value).map_err(BuildError::from_error)?;
        text.push('\n');
        let path = ctx.out().join(self.file);
        std::fs::write(&path, text).map_err(|error| BuildError::io(&path, error))
    }
}
