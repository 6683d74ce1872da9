//! kiln-graph (skeleton; being written).
