//! Myelin: a Matrix homeserver-style data service layered on FoundationDB.
//!
//! The crate reads bottom-up; imports flow one way:
//!
//! ```text
//! kv (interface, backends, directory layer)
//! ```
pub mod api;
pub mod bench;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod keys;
pub mod kv;
pub mod service;
pub mod sync;
