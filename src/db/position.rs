//! Positions in a database's change streams: [`Position<D>`], one type per
//! database.
//!
//! A position is a 10-byte FoundationDB commit versionstamp of one
//! database's store (8-byte big-endian commit version, 2-byte big-endian
//! order of the transaction within its commit batch). Positions order
//! bytewise, which is commit order, but only within one store: databases may
//! sit on different clusters whose versions are unrelated. So the type
//! carries its database as a marker `D` (the database's handle type, e.g.
//! `AccountsDb`), and positions of two databases neither compare nor mix:
//!
//! ```
//! use myelin::db::accounts;
//! assert!(accounts::Position::ZERO < accounts::Position::at_read_version(1));
//! ```
//!
//! ```compile_fail
//! use myelin::db::{accounts, rooms};
//! // error: `Position<AccountsDb>` and `Position<RoomsDb>` are different types.
//! let _ = accounts::Position::ZERO < rooms::Position::ZERO;
//! ```
//!
//! A database declares its position type with one line beside its handle:
//! `pub type Position = crate::db::Position<GameDb>;`.
//!
//! A read version `rv` ("everything committed so far") becomes the position
//! `rv ++ ff ff` ([`Position::at_read_version`]): it sorts after every
//! versionstamp of a commit at or before `rv` and before every later one.
//!
//! Who may import this: the databases (`db::*`) and every layer above `db`.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::marker::PhantomData;

use foundationdb_tuple::Versionstamp;

/// Length of a position in bytes: a commit versionstamp without its user
/// version.
pub const POSITION_BYTES: usize = 10;

/// A position in database `D`'s change streams: a 10-byte commit
/// versionstamp of `D`'s store. Ordered bytewise (commit order) against
/// positions of the same database only; see the module docs.
///
/// `D` is a marker (the database's handle type) and is never stored: the
/// type is `Copy`, `Send` and `Sync` whatever `D` is.
pub struct Position<D> {
    bytes: [u8; POSITION_BYTES],
    database: PhantomData<fn() -> D>,
}

impl<D> Position<D> {
    /// Before every change: the position of a client that has seen nothing.
    pub const ZERO: Self = Self::from_bytes([0; POSITION_BYTES]);

    /// The position with these versionstamp bytes (as stored in keys,
    /// values and sync tokens).
    pub const fn from_bytes(bytes: [u8; POSITION_BYTES]) -> Self {
        Position {
            bytes,
            database: PhantomData,
        }
    }

    /// The versionstamp bytes.
    pub const fn to_bytes(self) -> [u8; POSITION_BYTES] {
        self.bytes
    }

    /// The commit part of a complete tuple versionstamp (its 10 transaction
    /// bytes; the 2-byte user version is dropped).
    pub fn of_versionstamp(stamp: &Versionstamp) -> Self {
        let mut bytes = [0; POSITION_BYTES];
        bytes.copy_from_slice(stamp.transaction_version());
        Self::from_bytes(bytes)
    }

    /// The position "every commit at or before read version `rv`":
    /// `rv` big-endian followed by `ff ff`.
    pub fn at_read_version(rv: u64) -> Self {
        let mut bytes = [0xff; POSITION_BYTES];
        bytes[..8].copy_from_slice(&rv.to_be_bytes());
        Self::from_bytes(bytes)
    }

    /// The commit version part (first 8 bytes, big-endian).
    pub fn version(&self) -> u64 {
        let mut version = [0; 8];
        version.copy_from_slice(&self.bytes[..8]);
        u64::from_be_bytes(version)
    }

    /// The newest read version whose every change this position has
    /// delivered: its version if it is the end of that commit
    /// ([`Position::at_read_version`]), else the version before (a position
    /// inside a commit leaves the rest of that commit undelivered).
    pub fn delivered_through(&self) -> u64 {
        if self.bytes[8..] == [0xff, 0xff] {
            self.version()
        } else {
            self.version().saturating_sub(1)
        }
    }
}

// The traits are implemented by hand: derives would require `D` to
// implement them too, and `D` is only a marker.

impl<D> Clone for Position<D> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<D> Copy for Position<D> {}

impl<D> Default for Position<D> {
    /// [`Position::ZERO`].
    fn default() -> Self {
        Self::ZERO
    }
}

impl<D> PartialEq for Position<D> {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl<D> Eq for Position<D> {}

impl<D> PartialOrd for Position<D> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<D> Ord for Position<D> {
    /// Bytewise, which is commit order within one store.
    fn cmp(&self, other: &Self) -> Ordering {
        self.bytes.cmp(&other.bytes)
    }
}

impl<D> Hash for Position<D> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

impl<D> fmt::Debug for Position<D> {
    /// `Position<AccountsDb>(00000000000000070001)`: the marker's name and
    /// the bytes in hex.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let marker = std::any::type_name::<D>();
        let marker = marker.rsplit("::").next().unwrap_or(marker);
        write!(f, "Position<{marker}>({})", hex::encode(self.bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database marker for the tests.
    struct Test;

    type P = Position<Test>;

    fn stamp(version: u64, order: u16) -> P {
        let mut bytes = [0u8; POSITION_BYTES];
        bytes[..8].copy_from_slice(&version.to_be_bytes());
        bytes[8..].copy_from_slice(&order.to_be_bytes());
        P::from_bytes(bytes)
    }

    #[test]
    fn read_version_positions_sort_between_commits() {
        let rv = 1000u64;
        let p = P::at_read_version(rv);
        assert!(stamp(rv, 0xfffe) < p);
        assert!(stamp(rv - 1, 0xffff) < p);
        assert!(stamp(rv + 1, 0) > p);
        assert_eq!(p.version(), rv);
        assert_eq!(p.to_bytes(), [0, 0, 0, 0, 0, 0, 0x03, 0xe8, 0xff, 0xff]);
    }

    #[test]
    fn a_position_inside_a_commit_has_not_delivered_that_commit() {
        assert_eq!(P::at_read_version(7).delivered_through(), 7);
        assert_eq!(stamp(7, 3).delivered_through(), 6);
        assert_eq!(P::ZERO.delivered_through(), 0);
        assert_eq!(P::default(), P::ZERO);
    }

    #[test]
    fn a_versionstamp_gives_its_commit_part() {
        let transaction = [0, 0, 0, 0, 0, 0, 0, 9, 0, 2];
        let p = P::of_versionstamp(&Versionstamp::complete(transaction, 0x0304));
        assert_eq!(p.to_bytes(), transaction);
        assert_eq!(p, stamp(9, 2));
    }

    #[test]
    fn debug_names_the_database() {
        assert_eq!(
            format!("{:?}", stamp(7, 1)),
            "Position<Test>(00000000000000070001)"
        );
    }
}
