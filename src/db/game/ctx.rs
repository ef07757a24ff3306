//! The transaction context every write of the `game` database goes
//! through: it reads balances, items and idempotency keys once (caching
//! them), applies changes in memory, and at the end ([`Ctx::flush`]) writes
//! everything: balances, ledger entries, items, inventory entries, each
//! concerned user's change log and the wake feed.
//!
//! Why every closure built on it is safe to run twice: a closure starts a
//! fresh context per attempt, reads before it writes, and guards effects
//! that are not naturally idempotent (atomic adds, ledger appends, grants)
//! behind an idempotency key or a state it reads with a conflict range
//! (a trade's state, an item's owner and quantity, a balance it debits).

use std::collections::{BTreeMap, BTreeSet};

use foundationdb_tuple::Versionstamp;

use super::keys;
use super::{Error, Layout, MultiOutcome, Result, decode, encode};
use super::{ItemRecord, LedgerEntry, UserChange, WalletResult};
use crate::db::notify::{self, Topic};
use crate::kv::{MutationType, RangeOption, Transaction};

/// Largest idempotency-result part, below FoundationDB's 100 kB value limit.
const PART_BYTES: usize = 90_000;

/// One balance as this transaction sees it.
struct Balance {
    /// As read at the read version.
    stored: i64,
    /// The net change this transaction makes.
    delta: i64,
}

/// One item as read and as it will be written.
struct ItemSlot {
    before: Option<ItemRecord>,
    after: Option<ItemRecord>,
}

/// One attempt of a `game` transaction (module docs).
pub(super) struct Ctx<'a> {
    pub tx: &'a Transaction,
    pub layout: &'a Layout,
    pub now_ms: u64,
    /// The next user version for a versionstamped key or value.
    order: u16,
    balances: BTreeMap<(String, String), Balance>,
    items: BTreeMap<String, ItemSlot>,
    ledger: Vec<(String, LedgerEntry)>,
    log: BTreeMap<String, UserChange>,
}

impl<'a> Ctx<'a> {
    pub fn new(tx: &'a Transaction, layout: &'a Layout, now_ms: u64) -> Self {
        Ctx {
            tx,
            layout,
            now_ms,
            order: 0,
            balances: BTreeMap::new(),
            items: BTreeMap::new(),
            ledger: Vec::new(),
            log: BTreeMap::new(),
        }
    }

    /// The next order within the commit (user version of a versionstamp).
    pub fn next_order(&mut self) -> u16 {
        let order = self.order;
        self.order += 1;
        order
    }

    /// The change-log entry of `user` in this commit.
    pub fn log(&mut self, user: &str) -> &mut UserChange {
        self.log.entry(user.to_owned()).or_default()
    }

    /// Reads the balances of `pairs` (user, currency, debited): debited
    /// ones with a conflict range (their check must hold at commit), the
    /// others at snapshot isolation (a credit conflicts with nothing).
    pub async fn read_balances(&mut self, pairs: BTreeMap<(String, String), bool>) -> Result<()> {
        for ((user, currency), debited) in pairs {
            if self
                .balances
                .contains_key(&(user.clone(), currency.clone()))
            {
                continue;
            }
            let key = self.layout.wallet.key(&keys::BALANCE, &(&user, &currency));
            let stored = match self.tx.get(&key, !debited).await? {
                None => 0,
                Some(v) => super::decode_balance(&v)?,
            };
            self.balances
                .insert((user, currency), Balance { stored, delta: 0 });
        }
        Ok(())
    }

    /// Applies a changeset to `user`'s wallet (balances read first with
    /// [`Ctx::read_balances`]) and queues its ledger entry.
    ///
    /// Errors: [`Error::InsufficientFunds`] for the first currency that
    /// would go below zero, [`Error::BalanceOverflow`].
    pub fn apply_wallet(
        &mut self,
        user: &str,
        changeset: &BTreeMap<String, i64>,
        metadata: &str,
        trade_id: Option<&str>,
    ) -> Result<WalletResult> {
        let mut result = WalletResult {
            user_id: user.to_owned(),
            balances: BTreeMap::new(),
            previous: BTreeMap::new(),
        };
        for (currency, &delta) in changeset {
            let balance = self
                .balances
                .get_mut(&(user.to_owned(), currency.clone()))
                .expect("balances are read before they change");
            let previous = balance.stored + balance.delta;
            let next = previous.checked_add(delta);
            match next {
                Some(n) if n < 0 => {
                    return Err(Error::InsufficientFunds {
                        user_id: user.to_owned(),
                        currency: currency.clone(),
                        balance: previous,
                        delta,
                    });
                }
                Some(n) if n <= super::BALANCE_MAX => {}
                _ => {
                    return Err(Error::BalanceOverflow {
                        user_id: user.to_owned(),
                        currency: currency.clone(),
                    });
                }
            }
            balance.delta += delta;
            result.previous.insert(currency.clone(), previous);
            result.balances.insert(currency.clone(), previous + delta);
        }
        self.ledger.push((
            user.to_owned(),
            LedgerEntry {
                changeset: changeset.clone(),
                metadata: metadata.to_owned(),
                ts_ms: self.now_ms,
                trade_id: trade_id.map(str::to_owned),
            },
        ));
        self.log(user).wallet = true;
        Ok(result)
    }

    /// The item `item_id` as this transaction sees it (read once, with a
    /// conflict range: every use of an item depends on its owner).
    pub async fn item(&mut self, item_id: &str) -> Result<Option<ItemRecord>> {
        if let Some(slot) = self.items.get(item_id) {
            return Ok(slot.after.clone());
        }
        let key = self.layout.items.key(&keys::ITEM, &(item_id,));
        let before: Option<ItemRecord> = match self.tx.get(&key, false).await? {
            None => None,
            Some(v) => Some(decode("item", &v)?),
        };
        self.items.insert(
            item_id.to_owned(),
            ItemSlot {
                after: before.clone(),
                before,
            },
        );
        Ok(self.items[item_id].after.clone())
    }

    /// Sets the item's new state (read first with [`Ctx::item`], or new),
    /// logging an inventory change for its old and new owners.
    pub fn put_item(&mut self, item_id: &str, after: Option<ItemRecord>) {
        let slot = self.items.entry(item_id.to_owned()).or_insert(ItemSlot {
            before: None,
            after: None,
        });
        let owners: Vec<String> = [slot.after.as_ref(), after.as_ref()]
            .into_iter()
            .flatten()
            .map(|r| r.owner.clone())
            .collect();
        slot.after = after;
        for owner in owners {
            self.log(&owner).inventory = true;
        }
    }

    /// Moves `item_id` to `to`, checking it belongs to `from` when given.
    ///
    /// Errors: [`Error::InsufficientItems`] if it is gone or not `from`'s.
    pub async fn move_item(&mut self, item_id: &str, from: Option<&str>, to: &str) -> Result<()> {
        let item = self.item(item_id).await?;
        let Some(mut record) = item.filter(|r| from.is_none_or(|f| r.owner == f)) else {
            return Err(Error::InsufficientItems {
                item_id: item_id.to_owned(),
                held: 0,
                wanted: 1,
            });
        };
        record.owner = to.to_owned();
        record.update_ms = self.now_ms;
        self.put_item(item_id, Some(record));
        Ok(())
    }

    /// The stored result of idempotency key `(scope, key)`, if applied:
    /// the stamp of the commit that applied it and its outcome. Read with a
    /// conflict range, so two concurrent uses of one key serialize.
    pub async fn idempotent(
        &self,
        scope: &str,
        key: &str,
    ) -> Result<Option<([u8; 10], MultiOutcome)>> {
        let (begin, end) = self.layout.changes.range(&keys::IDEMPOTENCY, &(scope, key));
        let parts = self
            .tx
            .get_range_all(RangeOption::new(begin, end), false)
            .await?;
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        let stamp: [u8; 10] = first
            .value
            .get(..10)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| super::corrupt("idempotency", "part 0 shorter than a stamp"))?;
        let mut json = first.value[10..].to_vec();
        for part in &parts[1..] {
            json.extend_from_slice(&part.value);
        }
        let outcome =
            serde_json::from_slice(&json).map_err(|e| super::corrupt("idempotency", e))?;
        Ok(Some((stamp, outcome)))
    }

    /// Records idempotency key `(scope, key)` with `outcome`: part 0 holds
    /// the commit's versionstamp (`SetVersionstampedValue`) and the first
    /// bytes of the outcome's JSON; later parts hold the rest.
    pub fn record_idempotent(&self, scope: &str, key: &str, outcome: &MultiOutcome) {
        let json = serde_json::to_vec(outcome).expect("outcomes always serialize");
        let mut chunks = json.chunks(PART_BYTES);
        let first = chunks.next().unwrap_or(&[]);
        let mut value = vec![0u8; 10];
        value.extend_from_slice(first);
        value.extend_from_slice(&0u32.to_le_bytes());
        let key0 = self
            .layout
            .changes
            .key(&keys::IDEMPOTENCY, &(scope, key, 0i64));
        self.tx
            .atomic_op(&key0, &value, MutationType::SetVersionstampedValue);
        for (i, chunk) in chunks.enumerate() {
            let part = i as i64 + 1;
            let k = self
                .layout
                .changes
                .key(&keys::IDEMPOTENCY, &(scope, key, part));
            self.tx.set(&k, chunk);
        }
    }

    /// Writes everything this transaction changed: balances (atomic adds
    /// of the net change), ledger entries, items and inventory entries,
    /// each concerned user's change log, and the wake feed. Blind writes:
    /// no read, so nothing here adds a conflict range.
    pub fn flush(mut self) {
        for ((user, currency), balance) in &self.balances {
            if balance.delta != 0 {
                let key = self.layout.wallet.key(&keys::BALANCE, &(user, currency));
                self.tx
                    .atomic_op(&key, &balance.delta.to_le_bytes(), MutationType::Add);
            }
        }
        for (user, entry) in std::mem::take(&mut self.ledger) {
            let stamp = Versionstamp::incomplete(self.next_order());
            let key = self
                .layout
                .wallet
                .versionstamped_key(&keys::LEDGER, &(&user, &stamp));
            self.tx
                .atomic_op(&key, &encode(&entry), MutationType::SetVersionstampedKey);
        }
        for (item_id, slot) in &self.items {
            if slot.before == slot.after {
                continue;
            }
            let key = self.layout.items.key(&keys::ITEM, &(item_id,));
            match &slot.after {
                Some(record) => self.tx.set(&key, &encode(record)),
                None => self.tx.clear(&key),
            }
            let before = slot.before.as_ref().map(|r| r.owner.as_str());
            let after = slot.after.as_ref().map(|r| r.owner.as_str());
            if before != after {
                if let Some(owner) = before {
                    let k = self.layout.items.key(&keys::INVENTORY, &(owner, item_id));
                    self.tx.clear(&k);
                }
                if let Some(owner) = after {
                    let k = self.layout.items.key(&keys::INVENTORY, &(owner, item_id));
                    self.tx.set(&k, b"");
                }
            }
        }
        let log = std::mem::take(&mut self.log);
        let users: BTreeSet<&str> = log
            .iter()
            .filter(|(_, c)| !c.is_empty())
            .map(|(u, _)| u.as_str())
            .collect();
        for user in &users {
            let stamp = Versionstamp::incomplete(self.next_order());
            let key = self
                .layout
                .changes
                .versionstamped_key(&keys::USER_LOG, &(*user, &stamp));
            self.tx.atomic_op(
                &key,
                &encode(&log[*user]),
                MutationType::SetVersionstampedKey,
            );
        }
        if !users.is_empty() {
            let topics: Vec<Topic<'_>> = users.iter().map(|u| Topic::User(u)).collect();
            notify::bump(self.tx, &self.layout.notify, &topics);
        }
    }
}
