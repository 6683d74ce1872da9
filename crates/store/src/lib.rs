//! kiln-store (skeleton; being written).
