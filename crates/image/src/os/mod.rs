//! Node images: the base OS, the initrd, filesystem layers and the image that stacks them.

pub(crate) mod base;
pub(crate) mod cpio;
pub(crate) mod initrd;
pub(crate) mod layer;
pub(crate) mod node;
