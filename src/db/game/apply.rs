//! The write transactions of the `game` database other than trades:
//! storage batches, and [`GameDb::apply`], the one transaction behind
//! wallet updates, item grants, item consumption and server transactions.

use std::collections::{BTreeMap, BTreeSet};

use super::ctx::Ctx;
use super::{Actor, Applied, Error, GameDb, MultiOutcome, MultiUpdate, ObjectDelete, ObjectWrite};
use super::{ItemRecord, PendingAck, Result};

/// An idempotency key: which kind of call (`wallets`, `items`,
/// `transactions`) and the caller's key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The kind of call; keys of different kinds never collide.
    pub scope: &'static str,
    /// The caller's key.
    pub key: String,
}

impl GameDb {
    /// Writes a batch of storage objects in one transaction, all or none.
    /// Returns the acknowledgements in batch order, with their versions.
    ///
    /// Safe to run twice: the closure writes the same values; an
    /// unconditional write repeats harmlessly, and a conditional one that
    /// did commit reports a version mismatch on its retry (the caller
    /// re-reads; `docs/game.md`).
    ///
    /// Errors: [`Error::PermissionDenied`], [`Error::VersionMismatch`] (the
    /// first failing object), the store's.
    pub async fn write_objects(
        &self,
        actor: &Actor,
        writes: &[ObjectWrite],
        now_ms: u64,
    ) -> Result<Vec<super::ObjectAck>> {
        let multi = MultiUpdate {
            writes: writes.to_vec(),
            ..MultiUpdate::default()
        };
        let applied = self.apply(actor, None, &multi, now_ms).await?;
        Ok(applied.acks())
    }

    /// Deletes a batch of storage objects in one transaction, all or none.
    ///
    /// Errors: as [`GameDb::write_objects`].
    pub async fn delete_objects(
        &self,
        actor: &Actor,
        deletes: &[ObjectDelete],
        now_ms: u64,
    ) -> Result<()> {
        let multi = MultiUpdate {
            deletes: deletes.to_vec(),
            ..MultiUpdate::default()
        };
        self.apply(actor, None, &multi, now_ms).await.map(|_| ())
    }

    /// Applies a [`MultiUpdate`] in one transaction: wallet changesets in
    /// order, then grants, transfers, consumptions, storage writes and
    /// deletes. Everything or nothing. With an idempotency key, a key
    /// already applied returns its first outcome and applies nothing.
    ///
    /// Reads (with conflict ranges): the idempotency key's range, debited
    /// balances, every item named, every storage object named. Snapshot
    /// reads: credited balances. Writes: see `Ctx::flush`, the storage
    /// objects, the idempotency key.
    ///
    /// Safe to run twice: with an idempotency key, a retry after an unknown
    /// commit result finds the key and returns its outcome; without one
    /// (storage batches, a client's consume) the effect is guarded by what
    /// the retry re-reads (an object's version, an item's quantity).
    ///
    /// Errors: [`Error::InsufficientFunds`], [`Error::BalanceOverflow`],
    /// [`Error::InsufficientItems`], [`Error::PermissionDenied`],
    /// [`Error::VersionMismatch`], the store's.
    pub async fn apply(
        &self,
        actor: &Actor,
        idempotency: Option<&IdempotencyKey>,
        multi: &MultiUpdate,
        now_ms: u64,
    ) -> Result<Applied> {
        let layout = &*self.layout;
        let (found, info) = self
            .db
            .run_committed(|tx, _maybe_committed| async move {
                let mut ctx = Ctx::new(&tx, layout, now_ms);
                if let Some(key) = idempotency
                    && let Some((stamp, outcome)) = ctx.idempotent(key.scope, &key.key).await?
                {
                    return Ok((Some(stamp), outcome));
                }
                let outcome = apply_in(&mut ctx, actor, multi).await?;
                if let Some(key) = idempotency {
                    ctx.record_idempotent(key.scope, &key.key, &outcome);
                }
                ctx.flush();
                Ok::<_, Error>((None, outcome))
            })
            .await?;
        let (stamp, outcome) = found;
        Ok(Applied {
            repeated: stamp.is_some(),
            // A transaction that wrote nothing (an empty batch) has no stamp.
            stamp: stamp.or(info.versionstamp).unwrap_or_default(),
            outcome,
        })
    }
}

/// Applies `multi` inside `ctx` (see [`GameDb::apply`]).
async fn apply_in(ctx: &mut Ctx<'_>, actor: &Actor, multi: &MultiUpdate) -> Result<MultiOutcome> {
    let mut pairs: BTreeMap<(String, String), bool> = BTreeMap::new();
    for update in &multi.wallets {
        for (currency, &delta) in &update.changeset {
            *pairs
                .entry((update.user_id.clone(), currency.clone()))
                .or_default() |= delta < 0;
        }
    }
    ctx.read_balances(pairs).await?;
    let mut outcome = MultiOutcome::default();
    for update in &multi.wallets {
        let result =
            ctx.apply_wallet(&update.user_id, &update.changeset, &update.metadata, None)?;
        outcome.wallets.push(result);
    }
    for grant in &multi.grants {
        for item in &grant.items {
            // A fresh ID: read it anyway, so a (vanishingly unlikely)
            // collision cannot overwrite an item.
            if ctx.item(&item.item_id).await?.is_some() {
                return Err(super::corrupt("item", "a new item's ID is taken"));
            }
            ctx.put_item(
                &item.item_id,
                Some(ItemRecord {
                    owner: grant.user_id.clone(),
                    item_type: item.item_type.clone(),
                    quantity: item.quantity,
                    metadata: item.metadata.clone(),
                    create_ms: ctx.now_ms,
                    update_ms: ctx.now_ms,
                }),
            );
            outcome.item_ids.push(item.item_id.clone());
        }
    }
    for transfer in &multi.transfers {
        ctx.move_item(&transfer.item_id, None, &transfer.to).await?;
    }
    for consume in &multi.consumes {
        let item = ctx.item(&consume.item_id).await?;
        let held = item
            .as_ref()
            .filter(|r| consume.owner.as_ref().is_none_or(|o| *o == r.owner))
            .map_or(0, |r| r.quantity);
        if held < consume.quantity {
            return Err(Error::InsufficientItems {
                item_id: consume.item_id.clone(),
                held,
                wanted: consume.quantity,
            });
        }
        let mut record = item.expect("held > 0 implies the item exists");
        record.quantity -= consume.quantity;
        record.update_ms = ctx.now_ms;
        let after = (record.quantity > 0).then_some(record.clone());
        ctx.put_item(&consume.item_id, after);
        ctx.log(&record.owner).inventory = true;
    }
    let mut seen = BTreeSet::new();
    for (index, write) in multi.writes.iter().enumerate() {
        debug_assert!(
            seen.insert(write.id.clone()),
            "batches are deduplicated above"
        );
        let ack: PendingAck = ctx.write_object(actor, index, write).await?;
        outcome.acks.push(ack);
    }
    for (index, delete) in multi.deletes.iter().enumerate() {
        debug_assert!(
            seen.insert(delete.id.clone()),
            "batches are deduplicated above"
        );
        ctx.delete_object(actor, index, delete).await?;
    }
    Ok(outcome)
}
