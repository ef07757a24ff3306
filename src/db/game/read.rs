//! Reads of the `game` database: storage objects and listings, wallets and
//! the ledger, inventories, trades, and each user's change log for sync.
//! All at snapshot isolation (one read-only transaction each: no conflicts,
//! nothing to retry twice).

use std::collections::BTreeMap;

use foundationdb_tuple::Versionstamp;

use super::storage::{object, owner_key};
use super::{GameDb, Item, LedgerEntry, LedgerRow, ObjectId, Position, Result, StorageObject};
use super::{Trade, TradeState, UserChange, decode, keys, position_of, unpack};
use crate::kv::{KeySelector, RangeOption};

/// One page of a collection's objects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObjectPage {
    /// The objects the caller may read, in key order (owner, then key).
    pub objects: Vec<StorageObject>,
    /// Where the next page starts (the last object visited, owner and
    /// key), or `None` at the end of the collection.
    pub next: Option<(String, String)>,
}

/// One page of a user's ledger, newest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerPage {
    /// The entries.
    pub entries: Vec<LedgerRow>,
    /// The ID of the last entry, when more may follow.
    pub next: Option<String>,
}

/// The balances in `rows` of one user's `wallet/balance` range, by
/// currency.
pub(super) fn balances_of(
    space: &crate::keys::Space,
    rows: &[crate::kv::KeyValue],
) -> Result<BTreeMap<String, i64>> {
    rows.iter()
        .map(|row| {
            let (_, currency): (String, String) = unpack(space, &keys::BALANCE, &row.key)?;
            Ok((currency, super::decode_balance(&row.value)?))
        })
        .collect()
}

/// Most objects a listing visits (readable or not) for one page, so a page
/// of a collection of mostly private objects stays bounded.
const LIST_SCAN_LIMIT: usize = 1000;

impl GameDb {
    /// The objects named by `ids` that exist, in request order, with
    /// `readable` deciding which the caller sees.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn read_objects(&self, ids: &[ObjectId]) -> Result<Vec<StorageObject>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let mut out = Vec::new();
                for id in ids {
                    let key = layout.storage.key(
                        &keys::OBJECT,
                        &(&id.collection, owner_key(&id.owner), &id.key),
                    );
                    if let Some(v) = tx.get(&key, true).await? {
                        out.push(object(id, &v)?);
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Lists `collection` after `cursor` (the last owner and key visited),
    /// only `owner`'s objects when given, keeping those `readable` accepts,
    /// up to `limit`. Each object is visited once across pages: pages
    /// follow key order and a cursor is a key, and keys never move.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn list_objects(
        &self,
        collection: &str,
        owner: Option<&Option<String>>,
        cursor: Option<&(String, String)>,
        limit: usize,
        readable: &(dyn Fn(&StorageObject) -> bool + Sync),
    ) -> Result<ObjectPage> {
        let layout = &*self.layout;
        let space = &layout.storage;
        let (begin, end) = match owner {
            Some(o) => space.range(&keys::OBJECT, &(collection, owner_key(o))),
            None => space.range(&keys::OBJECT, &(collection,)),
        };
        let begin = match cursor {
            Some((o, k)) => {
                KeySelector::first_greater_than(space.key(&keys::OBJECT, &(collection, o, k)))
            }
            None => KeySelector::first_greater_or_equal(begin),
        };
        let range = RangeOption {
            begin,
            end: KeySelector::first_greater_or_equal(end),
            limit: Some(LIST_SCAN_LIMIT),
            reverse: false,
        };
        let rows = self.db.read_range(range).await?;
        let mut page = ObjectPage::default();
        let scanned_all = rows.len() < LIST_SCAN_LIMIT;
        for row in &rows {
            let (_, o, k): (String, String, String) = unpack(space, &keys::OBJECT, &row.key)?;
            let id = ObjectId {
                collection: collection.to_owned(),
                owner: (!o.is_empty()).then(|| o.clone()),
                key: k.clone(),
            };
            let obj = object(&id, &row.value)?;
            page.next = Some((o, k));
            if readable(&obj) {
                page.objects.push(obj);
                if page.objects.len() == limit {
                    return Ok(page);
                }
            }
        }
        if scanned_all {
            page.next = None;
        }
        Ok(page)
    }

    /// `user`'s balances, every currency they ever held.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn balances(&self, user: &str) -> Result<BTreeMap<String, i64>> {
        let space = &self.layout.wallet;
        let (begin, end) = space.range(&keys::BALANCE, &(user,));
        let rows = self.db.read_range(RangeOption::new(begin, end)).await?;
        balances_of(space, &rows)
    }

    /// `user`'s ledger, newest first, before entry `cursor` (an entry ID),
    /// up to `limit` entries.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn ledger(
        &self,
        user: &str,
        cursor: Option<&[u8; 12]>,
        limit: usize,
    ) -> Result<LedgerPage> {
        let space = &self.layout.wallet;
        let (begin, end) = space.range(&keys::LEDGER, &(user,));
        let end = match cursor {
            Some(c) => space.key(&keys::LEDGER, &(user, Versionstamp::from(*c))),
            None => end,
        };
        let range = RangeOption::new(begin, end).limit(limit).reverse(true);
        let rows = self.db.read_range(range).await?;
        let mut page = LedgerPage::default();
        for row in &rows {
            let (_, stamp): (String, Versionstamp) = unpack(space, &keys::LEDGER, &row.key)?;
            let entry: LedgerEntry = decode("ledger", &row.value)?;
            page.entries.push(LedgerRow {
                id: hex::encode(stamp.as_bytes()),
                entry,
            });
        }
        if page.entries.len() == limit {
            page.next = page.entries.last().map(|e| e.id.clone());
        }
        Ok(page)
    }

    /// `user`'s items, by item ID.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn inventory(&self, user: &str) -> Result<Vec<Item>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let (begin, end) = layout.items.range(&keys::INVENTORY, &(user,));
                let rows = tx.get_range_all(RangeOption::new(begin, end), true).await?;
                let mut items = Vec::with_capacity(rows.len());
                for row in rows {
                    let (_, item_id): (String, String) =
                        unpack(&layout.items, &keys::INVENTORY, &row.key)?;
                    let key = layout.items.key(&keys::ITEM, &(&item_id,));
                    let value = tx
                        .get(&key, true)
                        .await?
                        .ok_or_else(|| super::corrupt("inventory", "names a missing item"))?;
                    items.push(Item {
                        item_id,
                        record: decode("item", &value)?,
                    });
                }
                Ok(items)
            })
            .await
    }

    /// The item `item_id`, if it exists.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn item(&self, item_id: &str) -> Result<Option<Item>> {
        let key = self.layout.items.key(&keys::ITEM, &(item_id,));
        self.db
            .read(&key)
            .await?
            .map(|v| {
                Ok(Item {
                    item_id: item_id.to_owned(),
                    record: decode("item", &v)?,
                })
            })
            .transpose()
    }

    /// The trade `trade_id`, if it exists.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn trade(&self, trade_id: &str) -> Result<Option<Trade>> {
        let key = self.layout.trades.key(&keys::TRADE, &(trade_id,));
        self.db
            .read(&key)
            .await?
            .map(|v| {
                Ok(Trade {
                    trade_id: trade_id.to_owned(),
                    record: decode("trade", &v)?,
                })
            })
            .transpose()
    }

    /// The trades involving `user`, in `state` if given, up to `limit`, by
    /// state then trade ID.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn trades(
        &self,
        user: &str,
        state: Option<TradeState>,
        limit: usize,
    ) -> Result<Vec<Trade>> {
        let layout = &*self.layout;
        // Read-only: safe to run any number of times.
        self.db
            .run(|tx, _| async move {
                let space = &layout.trades;
                let (begin, end) = match state {
                    Some(s) => space.range(&keys::TRADE_BY_USER, &(user, s.as_str())),
                    None => space.range(&keys::TRADE_BY_USER, &(user,)),
                };
                let rows = tx
                    .get_range_all(RangeOption::new(begin, end).limit(limit), true)
                    .await?;
                let mut out = Vec::with_capacity(rows.len());
                for row in rows {
                    let (_, _, trade_id): (String, String, String) =
                        unpack(space, &keys::TRADE_BY_USER, &row.key)?;
                    let key = space.key(&keys::TRADE, &(&trade_id,));
                    let value = tx
                        .get(&key, true)
                        .await?
                        .ok_or_else(|| super::corrupt("by_user", "names a missing trade"))?;
                    out.push(Trade {
                        trade_id,
                        record: decode("trade", &value)?,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// The current read version of the store.
    ///
    /// Errors: the store's.
    pub async fn read_version(&self) -> Result<u64> {
        // Read-only: safe to run any number of times.
        Ok(self
            .db
            .run(|tx, _| async move { tx.get_read_version().await })
            .await?)
    }

    /// What changed for `user` after position `since` (everything if
    /// `None`) up to and including read version `upto`, merged, with the
    /// position of the last change read.
    ///
    /// Errors: the store's, corrupt values.
    pub async fn changes(
        &self,
        user: &str,
        since: Option<Position>,
        upto: u64,
    ) -> Result<(UserChange, Option<Position>)> {
        let space = &self.layout.changes;
        let stamp_at = |p: Position, user_version: u16| {
            let mut bytes = [0u8; 12];
            bytes[..10].copy_from_slice(&p);
            bytes[10..].copy_from_slice(&user_version.to_be_bytes());
            Versionstamp::from(bytes)
        };
        let (all_begin, _) = space.range(&keys::USER_LOG, &(user,));
        let begin = match since {
            Some(p) => KeySelector::first_greater_than(
                space.key(&keys::USER_LOG, &(user, stamp_at(p, 0xffff))),
            ),
            None => KeySelector::first_greater_or_equal(all_begin),
        };
        let mut end_pos = [0xffu8; 10];
        end_pos[..8].copy_from_slice(&upto.to_be_bytes());
        let end = KeySelector::first_greater_than(
            space.key(&keys::USER_LOG, &(user, stamp_at(end_pos, 0xffff))),
        );
        let range = RangeOption {
            begin,
            end,
            limit: None,
            reverse: false,
        };
        let rows = self.db.read_range(range).await?;
        let mut merged = UserChange::default();
        let mut last = None;
        for row in &rows {
            let (_, stamp): (String, Versionstamp) = unpack(space, &keys::USER_LOG, &row.key)?;
            merged.merge(decode("user_log", &row.value)?);
            last = Some(position_of(&stamp));
        }
        Ok((merged, last))
    }
}
