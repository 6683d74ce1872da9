//! kiln-cluster (skeleton; being written).
