//! The key schema of the `game` database: the contract between the code
//! that writes it and every reader, tool and older or newer version of Myelin.
//!
//! Every directory lives under `<root>/game` (root from
//! `databases.game.root`, default `myelin`) and holds keys
//! `prefix ++ pack((tag, fields...))`. [`SPEC`] below is the machine-readable
//! form of this list, from which `myelin keys layout` and
//! `docs/key-layout.md` are generated; keep the two in step. The design
//! behind it (transactions, conflict ranges, invariants) is `docs/game.md`.
//!
//! Schema version: 1 ([`SCHEMA_VERSION`], stored in `meta/schema_version`;
//! the `meta` rows below are [`crate::db::meta`]'s, the same in every
//! database).
//!
//! | Directory | Tag | Subspace | Key tuple | Value |
//! |-----------|----:|----------|-----------|-------|
//! | `meta` | 0 | `schema_version` | `(0)` | u64 little-endian |
//! | `meta` | 1 | `notify` | `(1)` | u64 little-endian change counter (`db::notify`) |
//! | `meta` | 2 | `wake` | `(2, position, kind, id)` | empty: the wake feed (`db::notify`) |
//! | `meta` | 3 | `wake_floor` | `(3)` | u64 little-endian |
//! | `storage` | 0 | `object` | `(0, collection: str, owner: str, key: str)` | 12-byte version, then msgpack `StoredObject` |
//! | `wallet` | 0 | `balance` | `(0, user_id: str, currency: str)` | i64 little-endian balance |
//! | `wallet` | 1 | `ledger` | `(1, user_id: str, position: versionstamp)` | msgpack `LedgerEntry` |
//! | `items` | 0 | `item` | `(0, item_id: str)` | msgpack `ItemRecord` |
//! | `items` | 1 | `inventory` | `(1, owner: str, item_id: str)` | empty |
//! | `trades` | 0 | `trade` | `(0, trade_id: str)` | msgpack `TradeRecord` |
//! | `trades` | 1 | `by_user` | `(1, user_id: str, state: str, trade_id: str)` | empty |
//! | `changes` | 0 | `idempotency` | `(0, scope: str, key: str, part: int)` | part of the first result's JSON |
//! | `changes` | 1 | `user_log` | `(1, user_id: str, position: versionstamp)` | msgpack `UserChange` |
//! | `leaderboards` | 0 | `board` | `(0, board_id: str)` | msgpack `BoardRecord` |
//! | `leaderboards` | 1 | `record` | `(1, board_id: str, expiry: int, owner: str)` | msgpack record (`db::leaderboard`) |
//! | `leaderboards` | 2 | `rank` | `(2, board_id: str, expiry: int, level: int, element: bytes)` | i64 little-endian count (`kv::ranked_set`) |
//! | `leaderboards` | 3 | `by_category` | `(3, category: int, board_id: str)` | empty |
//! | `leaderboards` | 4 | `joined` | `(4, board_id: str, expiry: int, owner: str)` | empty |
//! | `leaderboards` | 5 | `join_count` | `(5, board_id: str, expiry: int, shard: int)` | i64 little-endian |
//! | `leaderboards` | 6 | `by_owner` | `(6, owner: str, board_id: str, kind: int)` | i64 little-endian expiry |
//!
//! System objects (owner `null` in the API) have owner `""` in `object`
//! keys. A storage object's version is the 12-byte position of the commit
//! that wrote it (10-byte versionstamp, 2-byte index in the batch), set with
//! `SetVersionstampedValue`, so a version is never reused, even after a
//! delete and re-create.
//!
//! To add a subspace: declare a `SubspaceSpec` constant (next free tag in its
//! directory), list it in its directory's `subspaces`, add an encoder where
//! the database builds its keys, and add a row above. Changing the meaning
//! or encoding of existing keys requires a new schema version.
//!
//! Who may import this: `db::game` and `db` (to open the database), the CLI
//! and tests. Pure byte work.

use crate::db::meta;
use crate::keys::{DatabaseSpec, DirectorySpec, Field, FieldType, SubspaceSpec, ValueEncoding};

/// The key-schema version this code writes and understands.
pub const SCHEMA_VERSION: u32 = 1;

/// The `game` database's key schema.
pub static SPEC: DatabaseSpec = DatabaseSpec {
    name: "game",
    schema_version: SCHEMA_VERSION,
    doc: "Game data: storage objects, wallets and their ledger, items and inventories, trades, idempotency keys and each user's change log for sync.",
    directories: &[
        meta::DIRECTORY,
        STORAGE,
        WALLET,
        ITEMS,
        TRADES,
        CHANGES,
        LEADERBOARDS,
    ],
};

const fn str_field(name: &'static str) -> Field {
    Field {
        name,
        ty: FieldType::Str,
    }
}

const USER_ID: Field = str_field("user_id");
const POSITION: Field = Field {
    name: "position",
    ty: FieldType::Versionstamp,
};

/// `storage/object`: `(0, collection, owner, key) -> 12-byte version ++
/// msgpack StoredObject`.
pub const OBJECT: SubspaceSpec = SubspaceSpec {
    name: "object",
    tag: 0,
    key: &[
        str_field("collection"),
        str_field("owner"),
        str_field("key"),
    ],
    value: ValueEncoding::PositionThenMsgPack("StoredObject"),
    doc: "A storage object (owner \"\" for system objects): its version (the position of the commit that wrote it), then its JSON value, permissions and timestamps (ms).",
};

/// `storage`: storage objects by collection, owner and key.
pub const STORAGE: DirectorySpec = DirectorySpec {
    path: &["storage"],
    doc: "Storage objects, listed by collection then owner then key.",
    subspaces: &[OBJECT],
};

/// `wallet/balance`: `(0, user_id, currency) -> i64 LE`.
pub const BALANCE: SubspaceSpec = SubspaceSpec {
    name: "balance",
    tag: 0,
    key: &[USER_ID, str_field("currency")],
    value: ValueEncoding::I64Le,
    doc: "A user's balance of one currency; credits are atomic adds, debits read and check; never below zero.",
};

/// `wallet/ledger`: `(1, user_id, versionstamp) -> msgpack LedgerEntry`.
pub const LEDGER: SubspaceSpec = SubspaceSpec {
    name: "ledger",
    tag: 1,
    key: &[USER_ID, POSITION],
    value: ValueEncoding::MsgPack("LedgerEntry"),
    doc: "One change of a user's wallet, at the versionstamp of its commit (written in the same transaction as the balances): changeset, metadata, time (ms), trade ID.",
};

/// `wallet`: balances and the ledger.
pub const WALLET: DirectorySpec = DirectorySpec {
    path: &["wallet"],
    doc: "Wallet balances per (user, currency) and each user's ledger.",
    subspaces: &[BALANCE, LEDGER],
};

/// `items/item`: `(0, item_id) -> msgpack ItemRecord`.
pub const ITEM: SubspaceSpec = SubspaceSpec {
    name: "item",
    tag: 0,
    key: &[str_field("item_id")],
    value: ValueEncoding::MsgPack("ItemRecord"),
    doc: "An item instance: owner, type, quantity (>= 1), JSON metadata.",
};

/// `items/inventory`: `(1, owner, item_id) -> empty`.
pub const INVENTORY: SubspaceSpec = SubspaceSpec {
    name: "inventory",
    tag: 1,
    key: &[str_field("owner"), str_field("item_id")],
    value: ValueEncoding::Empty,
    doc: "The item is in the owner's inventory (written with every change of an item's owner).",
};

/// `items`: item instances and the inventory index.
pub const ITEMS: DirectorySpec = DirectorySpec {
    path: &["items"],
    doc: "Item instances and each user's inventory.",
    subspaces: &[ITEM, INVENTORY],
};

/// `trades/trade`: `(0, trade_id) -> msgpack TradeRecord`.
pub const TRADE: SubspaceSpec = SubspaceSpec {
    name: "trade",
    tag: 0,
    key: &[str_field("trade_id")],
    value: ValueEncoding::MsgPack("TradeRecord"),
    doc: "A player-to-player trade: parties, what each side gives, state (open, completed, cancelled), times (ms).",
};

/// `trades/by_user`: `(1, user_id, state, trade_id) -> empty`.
pub const TRADE_BY_USER: SubspaceSpec = SubspaceSpec {
    name: "by_user",
    tag: 1,
    key: &[USER_ID, str_field("state"), str_field("trade_id")],
    value: ValueEncoding::Empty,
    doc: "The trade involves the user and is in this state (moved with every change of state).",
};

/// `trades`: trades and their per-user index.
pub const TRADES: DirectorySpec = DirectorySpec {
    path: &["trades"],
    doc: "Player-to-player trades and the trades of each user by state.",
    subspaces: &[TRADE, TRADE_BY_USER],
};

/// `changes/idempotency`: `(0, scope, key, part) -> bytes`.
pub const IDEMPOTENCY: SubspaceSpec = SubspaceSpec {
    name: "idempotency",
    tag: 0,
    key: &[
        str_field("scope"),
        str_field("key"),
        Field {
            name: "part",
            ty: FieldType::Int,
        },
    ],
    value: ValueEncoding::Raw,
    doc: "An idempotency key already applied (scope: wallets, items or transactions), with the first result's JSON split into parts below the value limit; written in the transaction it guards.",
};

/// `changes/user_log`: `(1, user_id, versionstamp) -> msgpack UserChange`.
pub const USER_LOG: SubspaceSpec = SubspaceSpec {
    name: "user_log",
    tag: 1,
    key: &[USER_ID, POSITION],
    value: ValueEncoding::MsgPack("UserChange"),
    doc: "What a commit changed for a user (wallet, inventory, trades, storage objects written by someone else), at its versionstamp: the user's sync feed.",
};

/// `changes`: idempotency keys and the per-user change log.
pub const CHANGES: DirectorySpec = DirectorySpec {
    path: &["changes"],
    doc: "Idempotency keys and each user's change log (sync).",
    subspaces: &[IDEMPOTENCY, USER_LOG],
};

const BOARD_ID: Field = str_field("board_id");
const EXPIRY: Field = Field {
    name: "expiry",
    ty: FieldType::Int,
};

/// `leaderboards/board`: `(0, board_id) -> msgpack BoardRecord`.
pub const BOARD: SubspaceSpec = SubspaceSpec {
    name: "board",
    tag: 0,
    key: &[BOARD_ID],
    value: ValueEncoding::MsgPack("BoardRecord"),
    doc: "A leaderboard or tournament: sort, operator, reset, authority, metadata, creation time (ms) and, for a tournament, its category, title, times and limits.",
};

/// `leaderboards/record`: `(1, board_id, expiry, owner) -> msgpack record`.
pub const RECORD: SubspaceSpec = SubspaceSpec {
    name: "record",
    tag: 1,
    key: &[BOARD_ID, EXPIRY, str_field("owner")],
    value: ValueEncoding::MsgPack("leaderboard::Stored"),
    doc: "An owner's record in one window of a board (expiry ms, 0: never): score, subscore, num_score, metadata, times, the last submission IDs (db::leaderboard).",
};

/// `leaderboards/rank`: `(2, board_id, expiry, level, element) -> i64 LE`.
pub const RANK: SubspaceSpec = SubspaceSpec {
    name: "rank",
    tag: 2,
    key: &[
        BOARD_ID,
        EXPIRY,
        Field {
            name: "level",
            ty: FieldType::Int,
        },
        Field {
            name: "element",
            ty: FieldType::Bytes,
        },
    ],
    value: ValueEncoding::I64Le,
    doc: "The ranked set of one window of a board (kv::ranked_set): per level, each element's count of elements up to the next key of that level.",
};

/// `leaderboards/by_category`: `(3, category, board_id) -> empty`.
pub const BY_CATEGORY: SubspaceSpec = SubspaceSpec {
    name: "by_category",
    tag: 3,
    key: &[
        Field {
            name: "category",
            ty: FieldType::Int,
        },
        BOARD_ID,
    ],
    value: ValueEncoding::Empty,
    doc: "The board is a tournament of this category (0 to 127): the tournament listing.",
};

/// `leaderboards/joined`: `(4, board_id, expiry, owner) -> empty`.
pub const JOINED: SubspaceSpec = SubspaceSpec {
    name: "joined",
    tag: 4,
    key: &[BOARD_ID, EXPIRY, str_field("owner")],
    value: ValueEncoding::Empty,
    doc: "The owner joined this window of a tournament.",
};

/// `leaderboards/join_count`: `(5, board_id, expiry, shard) -> i64 LE`.
pub const JOIN_COUNT: SubspaceSpec = SubspaceSpec {
    name: "join_count",
    tag: 5,
    key: &[
        BOARD_ID,
        EXPIRY,
        Field {
            name: "shard",
            ty: FieldType::Int,
        },
    ],
    value: ValueEncoding::I64Le,
    doc: "Joins of one window of a tournament counted in one of 16 shards, each capped at its share of max_size, so joins rarely conflict and the total never passes max_size.",
};

/// `leaderboards/by_owner`: `(6, owner, board_id, kind) -> i64 LE expiry`.
pub const BY_OWNER: SubspaceSpec = SubspaceSpec {
    name: "by_owner",
    tag: 6,
    key: &[
        str_field("owner"),
        BOARD_ID,
        Field {
            name: "kind",
            ty: FieldType::Int,
        },
    ],
    value: ValueEncoding::I64Le,
    doc: "The boards an owner has a record on (kind 0) or joined (kind 1), with the window's expiry (ms; 0: never): an initial sync's list of the owner's records and joins. Not cleared when the board is deleted: readers check the board and the record or join.",
};

/// `leaderboards`: boards, their records and ranked sets, tournaments.
pub const LEADERBOARDS: DirectorySpec = DirectorySpec {
    path: &["leaderboards"],
    doc: "Leaderboards and tournaments: definitions, records and ranked sets per window, the tournament listing, joins, each owner's boards.",
    subspaces: &[
        BOARD,
        RECORD,
        RANK,
        BY_CATEGORY,
        JOINED,
        JOIN_COUNT,
        BY_OWNER,
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_is_well_formed() {
        SPEC.check().unwrap();
    }
}
