//! Myelin: a Matrix homeserver-style data service layered on FoundationDB.
//!
//! The crate reads bottom-up; imports flow one way, from each layer only to
//! the layers listed below it (see `docs/architecture.md`):
//!
//! ```text
//! cli      myelin serve | keys | user | bench
//! api      axum routes, one file per API area; errcode mapping in api/error.rs
//! app      every service of a process, wired once (App::open), for api and cli
//! sync     position tokens, notifier, /sync assembly
//! service  accounts, rooms, transitory, e2ee: logic spanning databases
//! db       accounts | rooms | transitory (never import each other); keys.rs per database
//! events   Matrix PDUs: build, hash, sign, redact (pure)
//! kv       FoundationDB-shaped interface, retry runner, backends, directory layer
//! keys     tuple helpers, subspace schemas (pure byte work)
//! config   one documented Config, read by cli and app
//! random   the injected random source (pure; every layer may import it)
//! ```
//!
//! `bench` is the odd one out: a load generator that speaks only HTTP to any
//! homeserver and imports nothing else from the crate.
pub mod api;
pub mod app;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod keys;
pub mod kv;
pub mod random;
pub mod service;
pub mod sync;
