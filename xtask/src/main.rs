//! kiln's command line (skeleton; being written).
fn main() {}
