//! The FoundationDB directory layer, written against the `kv` interface.
