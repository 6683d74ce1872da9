//! kiln-spec (skeleton; being written).
