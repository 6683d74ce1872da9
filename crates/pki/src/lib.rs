//! kiln-pki (skeleton; being written).
