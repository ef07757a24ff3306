//! The JSON shapes of the game API (`/_myelin/game/v1/...`, issue 17) and
//! their validation: limits, grammar and permissions that do not need the
//! store. What passes here is turned into `db::game` requests.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::Error;
use crate::db::game as db;

/// Longest collection, key, idempotency key and item type, in bytes.
pub const MAX_NAME_BYTES: usize = 128;
/// Largest storage value (serialized JSON), in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Largest metadata (serialized JSON), in bytes.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Most objects, updates, grants or items in one request.
pub const MAX_BATCH: usize = 100;
/// Most currencies in one changeset or trade side.
pub const MAX_CURRENCIES: usize = 16;
/// Longest currency name, in bytes.
pub const MAX_CURRENCY_BYTES: usize = 64;

/// A field that may be absent (`None`), null (`Some(Null)`) or a value.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// One object of `PUT /storage` (and of a server transaction's writes).
#[derive(Clone, Debug, Deserialize)]
pub struct WriteObject {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// A JSON object.
    pub value: Value,
    /// Absent: unconditional; `"*"`: create only; else the expected version.
    #[serde(default)]
    pub version: Option<String>,
    /// 0, 1 or 2 (default 1).
    #[serde(default)]
    pub permission_read: Option<u8>,
    /// 0 or 1 (default 1).
    #[serde(default)]
    pub permission_write: Option<u8>,
    /// Admins only: the owner (a user ID, or null for a system object).
    #[serde(default, deserialize_with = "present")]
    pub owner: Option<Value>,
}

/// `PUT /storage` body.
#[derive(Clone, Debug, Deserialize)]
pub struct WriteObjects {
    /// The batch.
    pub objects: Vec<WriteObject>,
}

/// An object named by a read.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadId {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The owner's user ID; absent or null for a system object.
    #[serde(default)]
    pub owner: Option<String>,
}

/// `POST /storage/read` body.
#[derive(Clone, Debug, Deserialize)]
pub struct ReadObjects {
    /// The objects.
    pub object_ids: Vec<ReadId>,
}

/// An object named by a delete.
#[derive(Clone, Debug, Deserialize)]
pub struct DeleteId {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The expected version, if any.
    #[serde(default)]
    pub version: Option<String>,
    /// Admins only: the owner (a user ID, or null for a system object).
    #[serde(default, deserialize_with = "present")]
    pub owner: Option<Value>,
}

/// `POST /storage/delete` body.
#[derive(Clone, Debug, Deserialize)]
pub struct DeleteObjects {
    /// The objects.
    pub object_ids: Vec<DeleteId>,
}

/// One changeset of `POST /wallets/update`.
#[derive(Clone, Debug, Deserialize)]
pub struct WalletUpdate {
    /// Whose wallet.
    pub user_id: String,
    /// Currency -> signed amount.
    pub changeset: BTreeMap<String, i64>,
    /// Ledger metadata (a JSON object; default `{}`).
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `POST /wallets/update` body.
#[derive(Clone, Debug, Deserialize)]
pub struct WalletsUpdate {
    /// The changesets, applied in order.
    pub updates: Vec<WalletUpdate>,
    /// Repeats return the first result.
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// One item of a grant.
#[derive(Clone, Debug, Deserialize)]
pub struct GrantItem {
    /// The item's type.
    #[serde(rename = "type")]
    pub item_type: String,
    /// How many (default 1).
    #[serde(default)]
    pub quantity: Option<u64>,
    /// Metadata (a JSON object; default `{}`).
    #[serde(default)]
    pub metadata: Option<Value>,
}

/// `POST /items/grant` body (also one grant of a server transaction).
#[derive(Clone, Debug, Deserialize)]
pub struct Grant {
    /// The recipient.
    pub user_id: String,
    /// The items.
    pub items: Vec<GrantItem>,
    /// Repeats return the first result (ignored inside a transaction).
    #[serde(default)]
    pub idempotency_key: Option<String>,
}

/// `POST /items/consume` body (also one consume of a server transaction).
#[derive(Clone, Debug, Deserialize)]
pub struct Consume {
    /// The item.
    pub item_id: String,
    /// How many (default 1).
    #[serde(default)]
    pub quantity: Option<u64>,
}

/// One transfer of a server transaction.
#[derive(Clone, Debug, Deserialize)]
pub struct Transfer {
    /// The item.
    pub item_id: String,
    /// The new owner.
    pub to: String,
}

/// What one side of a trade hands over.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Side {
    /// Item IDs.
    #[serde(default)]
    pub items: Vec<String>,
    /// Currency -> positive amount.
    #[serde(default)]
    pub currency: BTreeMap<String, i64>,
}

/// `POST /trades` body.
#[derive(Clone, Debug, Deserialize)]
pub struct OpenTrade {
    /// Who may accept.
    pub counterparty: String,
    /// What the caller gives.
    #[serde(default)]
    pub give: Side,
    /// What the counterparty gives.
    #[serde(default)]
    pub take: Side,
}

/// The item part of a server transaction.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TransactionItems {
    /// Grants.
    #[serde(default)]
    pub grant: Vec<Grant>,
    /// Transfers.
    #[serde(default)]
    pub transfer: Vec<Transfer>,
    /// Consumptions (any owner).
    #[serde(default)]
    pub consume: Vec<Consume>,
}

/// The storage part of a server transaction.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct TransactionStorage {
    /// Writes (`owner` names whose).
    #[serde(default)]
    pub write: Vec<WriteObject>,
    /// Deletes (`owner` names whose).
    #[serde(default)]
    pub delete: Vec<DeleteId>,
}

/// `POST /transactions` body.
#[derive(Clone, Debug, Deserialize)]
pub struct ServerTransaction {
    /// Repeats return the first result.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Wallet changesets.
    #[serde(default)]
    pub wallets: Vec<WalletUpdate>,
    /// Item changes.
    #[serde(default)]
    pub items: TransactionItems,
    /// Storage changes.
    #[serde(default)]
    pub storage: TransactionStorage,
}

/// A storage object as answered.
#[derive(Clone, Debug, Serialize)]
pub struct ObjectOut {
    /// The collection.
    pub collection: String,
    /// The key.
    pub key: String,
    /// The owner (null for a system object).
    pub owner: Option<String>,
    /// The JSON value.
    pub value: Value,
    /// The version.
    pub version: String,
    /// Read permission.
    pub permission_read: u8,
    /// Write permission.
    pub permission_write: u8,
    /// Created (ms).
    pub create_ts: u64,
    /// Updated (ms).
    pub update_ts: u64,
}

impl From<db::StorageObject> for ObjectOut {
    fn from(o: db::StorageObject) -> Self {
        ObjectOut {
            value: parse_stored(&o.record.value),
            collection: o.collection,
            key: o.key,
            owner: o.owner,
            version: o.version,
            permission_read: o.record.permission_read,
            permission_write: o.record.permission_write,
            create_ts: o.record.create_ms,
            update_ts: o.record.update_ms,
        }
    }
}

/// Stored JSON text as a value (validated when written; `{}` if not).
pub fn parse_stored(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Map::new()))
}

/// A trade as answered.
pub fn trade_json(t: &db::Trade) -> Value {
    let side = |s: &db::TradeSide| serde_json::json!({"items": s.items, "currency": s.currency});
    serde_json::json!({
        "trade_id": t.trade_id,
        "initiator": t.record.initiator,
        "counterparty": t.record.counterparty,
        "give": side(&t.record.give),
        "take": side(&t.record.take),
        "state": t.record.state.as_str(),
        "create_ts": t.record.create_ms,
        "update_ts": t.record.update_ms,
    })
}

/// Checks a name (collection, key, idempotency key, item type).
pub fn check_name(what: &str, s: &str) -> Result<(), Error> {
    if s.is_empty() || s.len() > MAX_NAME_BYTES {
        return Err(Error::InvalidParam(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Checks a batch's length.
pub fn check_batch(what: &str, len: usize) -> Result<(), Error> {
    if len == 0 || len > MAX_BATCH {
        return Err(Error::InvalidParam(format!(
            "{what} must hold 1 to {MAX_BATCH} entries"
        )));
    }
    Ok(())
}

/// Checks a user ID's grammar.
pub fn check_user(what: &str, s: &str) -> Result<(), Error> {
    ruma::UserId::parse(s)
        .map(|_| ())
        .map_err(|_| Error::InvalidParam(format!("{what} is not a user ID")))
}

/// A JSON object of at most `limit` bytes, as text; `None` is `{}`.
pub fn object_text(what: &str, value: Option<&Value>, limit: usize) -> Result<String, Error> {
    let Some(value) = value else {
        return Ok("{}".into());
    };
    if !value.is_object() {
        return Err(Error::BadJson(format!("{what} must be a JSON object")));
    }
    let text = value.to_string();
    if text.len() > limit {
        return Err(Error::TooLarge(format!(
            "{what} is {} bytes, more than {limit}",
            text.len()
        )));
    }
    Ok(text)
}

/// Checks a changeset: 1 to 16 currencies, names 1 to 64 bytes, amounts
/// within the balance range (`positive`: above zero, for trades).
pub fn check_changeset(c: &BTreeMap<String, i64>, positive: bool) -> Result<(), Error> {
    if c.len() > MAX_CURRENCIES {
        return Err(Error::InvalidParam(format!(
            "at most {MAX_CURRENCIES} currencies"
        )));
    }
    for (name, &amount) in c {
        if name.is_empty() || name.len() > MAX_CURRENCY_BYTES {
            return Err(Error::InvalidParam(format!(
                "currency names must be 1 to {MAX_CURRENCY_BYTES} bytes"
            )));
        }
        if amount.unsigned_abs() > db::BALANCE_MAX as u64 || (positive && amount <= 0) {
            return Err(Error::InvalidParam(format!(
                "amount of {name} out of range"
            )));
        }
    }
    Ok(())
}

/// The owner a write or delete names: the caller's own objects, unless an
/// admin names another (a user ID or null for a system object).
pub fn owner_of(actor: &db::Actor, owner: Option<&Value>) -> Result<Option<String>, Error> {
    match owner {
        None => Ok(Some(actor.user_id.clone())),
        Some(Value::String(s)) if *s == actor.user_id => Ok(Some(s.clone())),
        Some(_) if !actor.admin => Err(Error::Forbidden(
            "only admins write other owners' objects".into(),
        )),
        Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            check_user("owner", s)?;
            Ok(Some(s.clone()))
        }
        Some(_) => Err(Error::BadJson("owner must be a user ID or null".into())),
    }
}

/// Turns storage writes into the database's, checking every limit.
pub fn object_writes(
    actor: &db::Actor,
    objects: &[WriteObject],
) -> Result<Vec<db::ObjectWrite>, Error> {
    let mut seen = BTreeSet::new();
    objects
        .iter()
        .map(|o| {
            check_name("collection", &o.collection)?;
            check_name("key", &o.key)?;
            let value = object_text("value", Some(&o.value), MAX_VALUE_BYTES)?;
            let permission_read = o.permission_read.unwrap_or(1);
            let permission_write = o.permission_write.unwrap_or(1);
            if permission_read > 2 || permission_write > 1 {
                return Err(Error::InvalidParam(
                    "permission_read is 0 to 2, permission_write 0 or 1".into(),
                ));
            }
            let id = db::ObjectId {
                collection: o.collection.clone(),
                key: o.key.clone(),
                owner: owner_of(actor, o.owner.as_ref())?,
            };
            if !seen.insert(id.clone()) {
                return Err(Error::InvalidParam(
                    "an object appears twice in the batch".into(),
                ));
            }
            let version = match o.version.as_deref() {
                None => db::VersionCheck::Any,
                Some("*") => db::VersionCheck::Absent,
                Some(v) => db::VersionCheck::Equals(v.to_owned()),
            };
            Ok(db::ObjectWrite {
                id,
                value,
                version,
                permission_read,
                permission_write,
            })
        })
        .collect()
}

/// Turns storage deletes into the database's.
pub fn object_deletes(actor: &db::Actor, ids: &[DeleteId]) -> Result<Vec<db::ObjectDelete>, Error> {
    let mut seen = BTreeSet::new();
    ids.iter()
        .map(|d| {
            check_name("collection", &d.collection)?;
            check_name("key", &d.key)?;
            let id = db::ObjectId {
                collection: d.collection.clone(),
                key: d.key.clone(),
                owner: owner_of(actor, d.owner.as_ref())?,
            };
            if !seen.insert(id.clone()) {
                return Err(Error::InvalidParam(
                    "an object appears twice in the batch".into(),
                ));
            }
            Ok(db::ObjectDelete {
                id,
                version: d.version.clone(),
            })
        })
        .collect()
}

/// Turns wallet updates into the database's.
pub fn wallet_updates(updates: &[WalletUpdate]) -> Result<Vec<db::WalletUpdate>, Error> {
    updates
        .iter()
        .map(|u| {
            check_user("user_id", &u.user_id)?;
            check_changeset(&u.changeset, false)?;
            Ok(db::WalletUpdate {
                user_id: u.user_id.clone(),
                changeset: u.changeset.clone(),
                metadata: object_text("metadata", u.metadata.as_ref(), MAX_METADATA_BYTES)?,
            })
        })
        .collect()
}

/// Turns a grant into the database's, with fresh item IDs.
pub fn item_grant(g: &Grant, random: &crate::random::Random) -> Result<db::ItemGrant, Error> {
    check_user("user_id", &g.user_id)?;
    check_batch("items", g.items.len())?;
    let items = g
        .items
        .iter()
        .map(|i| {
            check_name("type", &i.item_type)?;
            let quantity = i.quantity.unwrap_or(1);
            if quantity == 0 || quantity > db::BALANCE_MAX as u64 {
                return Err(Error::InvalidParam("quantity must be at least 1".into()));
            }
            Ok(db::NewItem {
                item_id: super::random_id(random),
                item_type: i.item_type.clone(),
                quantity,
                metadata: object_text("metadata", i.metadata.as_ref(), MAX_METADATA_BYTES)?,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok(db::ItemGrant {
        user_id: g.user_id.clone(),
        items,
    })
}

/// Checks a consume's quantity and names the owner it must have.
pub fn item_consume(c: &Consume, owner: Option<&str>) -> Result<db::ItemConsume, Error> {
    check_name("item_id", &c.item_id)?;
    let quantity = c.quantity.unwrap_or(1);
    if quantity == 0 {
        return Err(Error::InvalidParam("quantity must be at least 1".into()));
    }
    Ok(db::ItemConsume {
        item_id: c.item_id.clone(),
        quantity,
        owner: owner.map(str::to_owned),
    })
}

/// Checks one side of a trade.
pub fn trade_side(s: &Side) -> Result<db::TradeSide, Error> {
    if s.items.len() > MAX_BATCH {
        return Err(Error::InvalidParam(format!(
            "at most {MAX_BATCH} items a side"
        )));
    }
    for item in &s.items {
        check_name("item_id", item)?;
    }
    check_changeset(&s.currency, true)?;
    Ok(db::TradeSide {
        items: s.items.clone(),
        currency: s.currency.clone(),
    })
}
