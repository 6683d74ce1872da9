//! Node images: the base OS, the initrd, filesystem layers and the image that stacks them.

pub mod base;
pub mod cpio;
pub mod initrd;
pub mod layer;
pub mod node;
