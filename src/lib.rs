//! Myelin: a Matrix homeserver-style data service layered on FoundationDB.
//!
//! The crate reads bottom-up (see `docs/architecture.md`):
//!
//! ```text
//! cli      myelin serve | keys | user | bench
//! bench    load generator: speaks only HTTP, to any homeserver
//! api      axum routes, one file per API area; errcode mapping in api/error.rs
//! app      every service of a process, wired once (App::open), for api and cli
//! sync     position tokens, notifier, /sync assembly
//! backup   backup and restore: every store read at one version, chunked, checksummed
//! service  accounts, rooms, transitory, e2ee: logic spanning databases
//! db       accounts | rooms | transitory | game | media, and what they share (open, notify, positions)
//! events   Matrix PDUs: build, hash, sign, redact (pure)
//! kv       FoundationDB-shaped interface, retry runner, backends, directory layer
//! keys     tuple helpers, subspace schemas (pure byte work)
//! config   one documented Config, read by cli and app
//! random   the injected random source (pure; every layer may import it)
//! metrics  Prometheus metrics: the process's registry and recording API
//! ```
//!
//! # Dependency rules
//!
//! Each part may import only what its row allows. `tests/architecture.rs`
//! holds the same table as data (`PARTS`, `FORBIDDEN`, `CRATES`) and checks
//! every `crate::`/`super::` path and every `axum`/`foundationdb` path of
//! `src/` against it; a new database or layer is one line there and one
//! row here.
//!
//! | part | rank | may import |
//! |------|------|------------|
//! | `keys`, `config`, `random`, `metrics` | 0 | nothing above them |
//! | `kv` | 10 | `keys`, `config`, `random`; only `kv::fdb` names the `foundationdb` crate (`foundationdb_tuple` is free to use) |
//! | `events` | 20 | the parts below |
//! | `db` (open, `meta`, `codec`, `notify`, `position`, `json_text`, `split`, `leaderboard`) | 30 | the parts below, and the databases |
//! | `db::accounts`, `db::rooms`, `db::transitory`, `db::game`, `db::media` | 30 | the parts below and `db`'s shared modules; never another database |
//! | `service` | 40 | the parts below |
//! | `backup` | 45 | the parts below (it reads `kv` directly: a store's snapshot at one version) |
//! | `sync` | 50 | the parts below (it reads `kv` directly for read versions and watches) |
//! | `app` | 55 | the parts below: it wires every service of a process once (`App::open`) |
//! | `api` | 60 | the parts below except `kv`: a handler calls a service |
//! | `bench` | 65 | nothing from the crate: it speaks only HTTP |
//! | `cli` | 70 | everything |
//!
//! Imports flow only down the ranks; parts of equal rank may import each
//! other (`db` and its databases) unless a row says otherwise. Only `api`
//! and `cli` name `axum`.
pub mod api;
pub mod app;
pub mod backup;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod keys;
pub mod kv;
pub mod metrics;
pub mod random;
pub mod service;
pub mod sync;
