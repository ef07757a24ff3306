//! The records of the `game` database (what its values decode to) and the
//! requests and results of its transactions. Pure data.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who runs a transaction: the authenticated user and whether they are an
/// admin (server-authoritative calls; storage permission 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The user's Matrix ID.
    pub user_id: String,
    /// Whether the account has the admin flag.
    pub admin: bool,
}

/// `storage/object` value after its 12-byte version: a storage object's
/// value and metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredObject {
    /// The JSON object, as text.
    pub value: String,
    /// 0: only admins read it, 1: also the owner, 2: everyone.
    pub permission_read: u8,
    /// 0: only admins write it, 1: also the owner.
    pub permission_write: u8,
    /// When it was first written (ms since the epoch).
    pub create_ms: u64,
    /// When it was last written (ms since the epoch).
    pub update_ms: u64,
}

/// A storage object as read: its identity, version and record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageObject {
    /// The collection.
    pub collection: String,
    /// The key within the collection and owner.
    pub key: String,
    /// The owner's user ID; `None` for a system object.
    pub owner: Option<String>,
    /// The opaque version: 24 hex digits of the writing commit's position.
    pub version: String,
    /// Value, permissions and times.
    pub record: StoredObject,
}

/// Which object a read or delete names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ObjectId {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The owner; `None` for a system object.
    pub owner: Option<String>,
}

/// The condition on the stored version a write must meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionCheck {
    /// Unconditional.
    Any,
    /// Create only: the object must not exist (`"*"`).
    Absent,
    /// The stored version must equal this one.
    Equals(String),
}

/// One object of a storage write batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectWrite {
    /// Which object (its owner already decided by the service).
    pub id: ObjectId,
    /// The JSON object, as text (validated above this layer).
    pub value: String,
    /// The version condition.
    pub version: VersionCheck,
    /// 0, 1 or 2.
    pub permission_read: u8,
    /// 0 or 1.
    pub permission_write: u8,
}

/// One object of a storage delete batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectDelete {
    /// Which object.
    pub id: ObjectId,
    /// `Some`: the stored version must equal it (and the object exist).
    pub version: Option<String>,
}

/// A written object, acknowledged: `version` is known only at commit, so
/// this holds its index in the commit until then.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAck {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The owner; `None` for a system object.
    pub owner: Option<String>,
    /// The object's index in its commit (the last 2 bytes of its version).
    pub order: u16,
}

impl PendingAck {
    /// The object's version once its commit's versionstamp is known.
    pub fn version(&self, stamp: &[u8; 10]) -> String {
        let mut bytes = [0u8; 12];
        bytes[..10].copy_from_slice(stamp);
        bytes[10..].copy_from_slice(&self.order.to_be_bytes());
        hex::encode(bytes)
    }
}

/// `wallet/ledger` value: one change of a user's wallet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// Currency -> signed amount.
    pub changeset: BTreeMap<String, i64>,
    /// The caller's JSON metadata, as text.
    pub metadata: String,
    /// When it was applied (ms since the epoch).
    pub ts_ms: u64,
    /// The trade that caused it, if any.
    pub trade_id: Option<String>,
}

/// A ledger entry as listed: its ID (24 hex digits of its position) and
/// the entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LedgerRow {
    /// The entry's opaque ID, also the listing cursor.
    pub id: String,
    /// The entry.
    pub entry: LedgerEntry,
}

/// One wallet changeset of a wallet update or server transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalletUpdate {
    /// Whose wallet.
    pub user_id: String,
    /// Currency -> signed amount.
    pub changeset: BTreeMap<String, i64>,
    /// JSON metadata for the ledger, as text.
    pub metadata: String,
}

/// What one [`WalletUpdate`] did: the balances of its currencies before and
/// after. Credited currencies are read without a conflict range (so credits
/// never conflict): concurrent credits committed after this transaction's
/// read version are not in these figures (`docs/game.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalletResult {
    /// Whose wallet.
    pub user_id: String,
    /// The balances after the update.
    pub balances: BTreeMap<String, i64>,
    /// The balances before.
    pub previous: BTreeMap<String, i64>,
}

/// `items/item` value: one item instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The owner's user ID.
    pub owner: String,
    /// The item's type (game-defined).
    #[serde(rename = "type")]
    pub item_type: String,
    /// How many, at least 1.
    pub quantity: u64,
    /// JSON metadata, as text.
    pub metadata: String,
    /// When it was granted (ms).
    pub create_ms: u64,
    /// When it last changed (ms).
    pub update_ms: u64,
}

/// An item as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    /// The item's ID.
    pub item_id: String,
    /// The record.
    pub record: ItemRecord,
}

/// One item to grant; its ID is chosen before the transaction (so a retry
/// writes the same item).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewItem {
    /// The new item's ID.
    pub item_id: String,
    /// The item's type.
    pub item_type: String,
    /// How many, at least 1.
    pub quantity: u64,
    /// JSON metadata, as text.
    pub metadata: String,
}

/// Items granted to one user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemGrant {
    /// The recipient.
    pub user_id: String,
    /// The items.
    pub items: Vec<NewItem>,
}

/// An item moving to another owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemTransfer {
    /// The item.
    pub item_id: String,
    /// The new owner.
    pub to: String,
}

/// Part of an item used up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemConsume {
    /// The item.
    pub item_id: String,
    /// How many, at least 1.
    pub quantity: u64,
    /// `Some`: the item must belong to this user (a client consuming its
    /// own item); `None`: any owner (an admin).
    pub owner: Option<String>,
}

/// A server transaction (Nakama's MultiUpdate): everything applies or
/// nothing does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MultiUpdate {
    /// Wallet changesets, applied in order.
    pub wallets: Vec<WalletUpdate>,
    /// Items granted.
    pub grants: Vec<ItemGrant>,
    /// Items moved.
    pub transfers: Vec<ItemTransfer>,
    /// Items used up.
    pub consumes: Vec<ItemConsume>,
    /// Storage objects written.
    pub writes: Vec<ObjectWrite>,
    /// Storage objects deleted.
    pub deletes: Vec<ObjectDelete>,
}

/// What a [`MultiUpdate`] did; stored under its idempotency key so a
/// repeat returns it unchanged.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiOutcome {
    /// One result per wallet update, in request order.
    pub wallets: Vec<WalletResult>,
    /// The granted items' IDs, in request order.
    pub item_ids: Vec<String>,
    /// The written objects, in request order.
    pub acks: Vec<PendingAck>,
}

/// A committed [`MultiOutcome`] with its commit's versionstamp.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    /// What the transaction did.
    pub outcome: MultiOutcome,
    /// The versionstamp of the commit that applied it (the first one, for
    /// a repeated idempotency key).
    pub stamp: [u8; 10],
    /// Whether this call found the idempotency key already applied.
    pub repeated: bool,
}

/// A trade's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TradeState {
    /// Offered; nothing has moved.
    Open,
    /// Executed: items and currency moved.
    Completed,
    /// Withdrawn by either party; nothing moved.
    Cancelled,
}

impl TradeState {
    /// The state's name in keys and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::Open => "open",
            TradeState::Completed => "completed",
            TradeState::Cancelled => "cancelled",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<TradeState> {
        match s {
            "open" => Some(TradeState::Open),
            "completed" => Some(TradeState::Completed),
            "cancelled" => Some(TradeState::Cancelled),
            _ => None,
        }
    }
}

/// What one side of a trade hands over.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeSide {
    /// Item IDs.
    pub items: Vec<String>,
    /// Currency -> positive amount.
    pub currency: BTreeMap<String, i64>,
}

/// `trades/trade` value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TradeRecord {
    /// Who offered it.
    pub initiator: String,
    /// Who may accept it.
    pub counterparty: String,
    /// What the initiator gives.
    pub give: TradeSide,
    /// What the counterparty gives.
    pub take: TradeSide,
    /// Its state.
    pub state: TradeState,
    /// When it was offered (ms).
    pub create_ms: u64,
    /// When its state last changed (ms).
    pub update_ms: u64,
}

/// A trade with its ID.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trade {
    /// The trade's ID.
    pub trade_id: String,
    /// The record.
    pub record: TradeRecord,
}

/// `changes/user_log` value: what one commit changed for one user, as sync
/// delivers it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserChange {
    /// Some balance changed.
    pub wallet: bool,
    /// Some item was granted, moved or consumed.
    pub inventory: bool,
    /// Trades offered to, accepted or cancelled for the user.
    pub trades: Vec<String>,
    /// Objects of the user's written or deleted by someone else
    /// (collection, key).
    pub storage: Vec<(String, String)>,
    /// The user's own leaderboard records submitted or deleted (board ID,
    /// window expiry ms). Absent in entries written before leaderboards.
    #[serde(default)]
    pub leaderboards: Vec<(String, u64)>,
    /// Tournament windows the user joined (tournament ID, expiry ms).
    #[serde(default)]
    pub joins: Vec<(String, u64)>,
}

impl UserChange {
    /// Adds `other`'s changes to these (trades and objects once each).
    pub fn merge(&mut self, other: UserChange) {
        self.wallet |= other.wallet;
        self.inventory |= other.inventory;
        for t in other.trades {
            if !self.trades.contains(&t) {
                self.trades.push(t);
            }
        }
        for s in other.storage {
            if !self.storage.contains(&s) {
                self.storage.push(s);
            }
        }
        for b in other.leaderboards {
            if !self.leaderboards.contains(&b) {
                self.leaderboards.push(b);
            }
        }
        for j in other.joins {
            if !self.joins.contains(&j) {
                self.joins.push(j);
            }
        }
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        !self.wallet
            && !self.inventory
            && self.trades.is_empty()
            && self.storage.is_empty()
            && self.leaderboards.is_empty()
            && self.joins.is_empty()
    }
}

/// A written storage object's acknowledgement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectAck {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The owner; `None` for a system object.
    pub owner: Option<String>,
    /// The object's new version.
    pub version: String,
}

impl Applied {
    /// The written objects' acknowledgements, with their versions.
    pub fn acks(&self) -> Vec<ObjectAck> {
        self.outcome
            .acks
            .iter()
            .map(|a| ObjectAck {
                collection: a.collection.clone(),
                key: a.key.clone(),
                owner: a.owner.clone(),
                version: a.version(&self.stamp),
            })
            .collect()
    }
}
