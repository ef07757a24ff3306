//! The `transitory` database. Its key schema is in [`keys`].
//!
//! Who may import this: `db` and layers above it; never the other databases.

pub mod keys;
