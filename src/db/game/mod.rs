//! The `game` database: storage objects, wallets and their ledger, items
//! and inventories, player-to-player trades and server transactions. Its
//! key schema is in [`keys`]; the design in `docs/game.md`.
//!
//! Who may import this: `db`, `service`, `sync`, the CLI and tests; never
//! the other databases.

pub mod keys;
