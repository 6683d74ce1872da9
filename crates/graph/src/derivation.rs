//! Derivations: what to build (a recipe and its named inputs) and how its
//! output is addressed.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use kiln_store::Digest;

use crate::builder::Builder;

/// The key of a derivation in a graph, chosen by the graph's author, for
/// example `"pki/ca"` or `"node/node1/plan"`.
///
/// It names the derivation in errors, progress lines and the dot output; it
/// is not part of any digest, so renaming a key never changes an output.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DrvId(String);

impl DrvId {
    /// Wraps a key.
    pub fn new(id: impl Into<String>) -> DrvId {
        DrvId(id.into())
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DrvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for DrvId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl From<&str> for DrvId {
    fn from(id: &str) -> DrvId {
        DrvId(id.to_owned())
    }
}

impl From<String> for DrvId {
    fn from(id: String) -> DrvId {
        DrvId(id)
    }
}

impl From<&DrvId> for DrvId {
    fn from(id: &DrvId) -> DrvId {
        id.clone()
    }
}

impl Borrow<str> for DrvId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for DrvId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// How a derivation's output is addressed in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// By its inputs: the digest covers the builder's kind, version and
    /// parameters, the name, and the digests of all inputs, so any change
    /// upstream gives a new store path.
    Inputs,
    /// By its promised output (a fixed-output derivation, such as a pinned
    /// download): the digest covers only the name and this content hash, so
    /// the recipe can change without changing the path or any dependent's
    /// digest. After a build, the output's content hash is verified, and a
    /// mismatch fails naming both hashes.
    Fixed {
        /// The [`tree_hash`](kiln_store::tree_hash) the output must have.
        content_hash: Digest,
    },
}

/// One node of a graph: a builder, its named inputs, and how its output is
/// addressed.
#[derive(Clone)]
pub struct Derivation {
    /// The store name suffix (`<digest>-<name>`); checked by
    /// [`kiln_store::validate_name`] when the derivation is added to a graph.
    pub name: String,
    /// The recipe.
    pub builder: Arc<dyn Builder>,
    /// Inputs by the name the builder asks for them with, mapped to the
    /// derivations that produce them.
    pub inputs: BTreeMap<String, DrvId>,
    /// How the output is addressed.
    pub addressing: Addressing,
    /// For an input-addressed derivation: whether its digest leaves out the graph's recipe
    /// ([`Graph::with_recipe`](crate::Graph::with_recipe)), so that it depends only on the
    /// builder's kind, version and parameters and the inputs. For builders that are expensive to
    /// run and whose [`Builder::version`] is bumped whenever their output changes (such as a Go
    /// compile), so an unrelated change to kiln's code does not rebuild them, and a graph with a
    /// recipe and one without share their outputs.
    pub ignores_recipe: bool,
}

impl Derivation {
    /// An input-addressed derivation without inputs; add them with
    /// [`Derivation::input`].
    pub fn new(name: impl Into<String>, builder: Arc<dyn Builder>) -> Derivation {
        Derivation {
            name: name.into(),
            builder,
            inputs: BTreeMap::new(),
            addressing: Addressing::Inputs,
            ignores_recipe: false,
        }
    }

    /// Leaves the graph's recipe out of this derivation's digest (see
    /// [`Derivation::ignores_recipe`]).
    #[must_use]
    pub fn ignoring_recipe(mut self) -> Derivation {
        self.ignores_recipe = true;
        self
    }

    /// Adds (or replaces) the input `name`, produced by derivation `id`.
    #[must_use]
    pub fn input(mut self, name: impl Into<String>, id: impl Into<DrvId>) -> Derivation {
        self.inputs.insert(name.into(), id.into());
        self
    }

    /// Makes this a fixed-output derivation whose output must hash to `content_hash`.
    #[must_use]
    pub fn fixed(mut self, content_hash: Digest) -> Derivation {
        self.addressing = Addressing::Fixed { content_hash };
        self
    }
}

impl fmt::Debug for Derivation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Derivation")
            .field("name", &self.name)
            .field("builder", &self.builder.kind())
            .field("version", &self.builder.version())
            .field("inputs", &self.inputs)
            .field("addressing", &self.addressing)
            .field("ignores_recipe", &self.ignores_recipe)
            .finish()
    }
}
