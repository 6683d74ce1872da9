//! The scenarios: each a list of steps, each step a function over a running [`crate::Cluster`].
