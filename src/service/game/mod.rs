//! The game service: the rules between the game API
//! (`/_myelin/game/v1/...`, issue 17) and the `game` database.
//!
//! Each method takes the authenticated caller and a parsed JSON body,
//! validates it ([`shapes`]: limits, grammar, who may name which owner),
//! decides authority (server-authoritative calls need the account's admin
//! flag, read once per call through [`Accounts::is_admin`]), runs one
//! `db::game` transaction and shapes the JSON answer. It knows nothing of
//! HTTP: failures are [`Error`] values that `api::error` maps to errcodes.
//!
//! Calls whose effect is not naturally idempotent (wallet updates, grants,
//! consumes, server transactions) always carry an idempotency key: the
//! caller's, or one made here per request, so a retry inside the
//! transaction runner after `commit_unknown_result` applies nothing twice.
//! Item and trade IDs are made here, before the transaction, for the same
//! reason. The time of every change comes from the injected [`Clock`].
//!
//! Leaderboards and tournaments (issue 18) are in [`leaderboard`].
//!
//! Who may import this: `api`, `sync` (for the `game` section), `cli`.

pub mod leaderboard;
pub mod shapes;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::db::game::{self as db, Actor, GameDb, IdempotencyKey, MultiUpdate, TradeState};
use crate::service::{Accounts, Authed, Clock};
use shapes::*;

/// Why a game call failed; `api::error` maps each to an errcode and status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database refused (version mismatch, funds, items, trade state)
    /// or failed.
    #[error(transparent)]
    Db(#[from] db::Error),
    /// The caller may not do this (403 M_FORBIDDEN).
    #[error("{0}")]
    Forbidden(String),
    /// No such thing, or not the caller's to see (404 M_NOT_FOUND).
    #[error("{0}")]
    NotFound(String),
    /// A parameter is out of range or malformed (400 M_INVALID_PARAM).
    #[error("{0}")]
    InvalidParam(String),
    /// The JSON has the wrong shape (400 M_BAD_JSON).
    #[error("{0}")]
    BadJson(String),
    /// A value is over its size limit (413 M_TOO_LARGE).
    #[error("{0}")]
    TooLarge(String),
    /// Reading the caller's account failed.
    #[error(transparent)]
    Accounts(#[from] crate::service::Error),
}

/// Result of a game call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The game service. Cheap to share (`Arc`).
pub struct Game {
    db: GameDb,
    accounts: Arc<Accounts>,
    clock: Arc<dyn Clock>,
}

/// A fresh random ID (128 bits, hex) for items, trades and idempotency
/// keys made by the server.
pub(crate) fn random_id() -> String {
    let mut bytes = [0u8; 16];
    crate::random::Random::os().fill(&mut bytes);
    hex::encode(bytes)
}

/// A `limit` query parameter: 1 to `max`, `default` when absent.
fn limit(given: Option<usize>, max: usize) -> Result<usize> {
    match given {
        None => Ok(max),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Error::InvalidParam(format!("limit must be 1 to {max}"))),
    }
}

impl Game {
    /// The service over the `game` database.
    pub fn new(
        databases: &crate::db::Databases,
        accounts: Arc<Accounts>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Game {
            db: GameDb::new(&databases.game),
            accounts,
            clock,
        }
    }

    /// The database (for sync and tools).
    pub fn db(&self) -> &GameDb {
        &self.db
    }

    async fn actor(&self, authed: &Authed) -> Result<Actor> {
        Ok(Actor {
            user_id: authed.user_id.to_string(),
            admin: self.accounts.is_admin(authed).await?,
        })
    }

    async fn admin(&self, authed: &Authed) -> Result<Actor> {
        let actor = self.actor(authed).await?;
        if !actor.admin {
            return Err(Error::Forbidden("this call needs an admin account".into()));
        }
        Ok(actor)
    }

    /// The caller's idempotency key in `scope`, or a fresh one.
    fn key(scope: &'static str, given: Option<&str>) -> Result<IdempotencyKey> {
        if let Some(k) = given {
            check_name("idempotency_key", k)?;
        }
        Ok(IdempotencyKey {
            scope,
            key: given.map_or_else(|| format!("~{}", random_id()), str::to_owned),
        })
    }

    /// `PUT /storage`: writes the caller's objects (an admin: anyone's),
    /// all or none. Answers `{"acks":[{collection,key,owner,version}]}`.
    pub async fn write_objects(&self, authed: &Authed, body: WriteObjects) -> Result<Value> {
        check_batch("objects", body.objects.len())?;
        let actor = self.actor(authed).await?;
        let writes = object_writes(&actor, &body.objects)?;
        let acks = self
            .db
            .write_objects(&actor, &writes, self.clock.now_ms())
            .await?;
        Ok(json!({ "acks": acks_json(&acks) }))
    }

    /// `POST /storage/read`: the named objects the caller may read.
    pub async fn read_objects(&self, authed: &Authed, body: ReadObjects) -> Result<Value> {
        check_batch("object_ids", body.object_ids.len())?;
        let actor = self.actor(authed).await?;
        let mut ids = Vec::with_capacity(body.object_ids.len());
        for r in &body.object_ids {
            check_name("collection", &r.collection)?;
            check_name("key", &r.key)?;
            ids.push(db::ObjectId {
                collection: r.collection.clone(),
                key: r.key.clone(),
                owner: r.owner.clone(),
            });
        }
        let objects: Vec<ObjectOut> = self
            .db
            .read_objects(&ids)
            .await?
            .into_iter()
            .filter(|o| readable(&actor, o))
            .map(ObjectOut::from)
            .collect();
        Ok(json!({ "objects": objects }))
    }

    /// `GET /storage/{collection}?owner=&limit=&cursor=`: one page of the
    /// collection's objects the caller may read (another owner's only when
    /// public), with `next_cursor` while more may follow.
    pub async fn list_objects(
        &self,
        authed: &Authed,
        collection: &str,
        owner: Option<&str>,
        page_limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Value> {
        check_name("collection", collection)?;
        let page_limit = limit(page_limit, 100)?;
        if let Some(o) = owner {
            check_user("owner", o)?;
        }
        let cursor = cursor.map(decode_cursor).transpose()?;
        let actor = self.actor(authed).await?;
        let owner = owner.map(|o| Some(o.to_owned()));
        let page = self
            .db
            .list_objects(
                collection,
                owner.as_ref(),
                cursor.as_ref(),
                page_limit,
                &|o| readable(&actor, o),
            )
            .await?;
        let objects: Vec<ObjectOut> = page.objects.into_iter().map(ObjectOut::from).collect();
        Ok(json!({
            "objects": objects,
            "next_cursor": page.next.map(|c| encode_cursor(&c)),
        }))
    }

    /// `POST /storage/delete`: deletes the caller's objects (an admin:
    /// anyone's), all or none.
    pub async fn delete_objects(&self, authed: &Authed, body: DeleteObjects) -> Result<Value> {
        check_batch("object_ids", body.object_ids.len())?;
        let actor = self.actor(authed).await?;
        let deletes = object_deletes(&actor, &body.object_ids)?;
        self.db
            .delete_objects(&actor, &deletes, self.clock.now_ms())
            .await?;
        Ok(json!({}))
    }

    /// `GET /wallet`: the caller's balances.
    pub async fn wallet(&self, authed: &Authed) -> Result<Value> {
        let balances = self.db.balances(authed.user_id.as_str()).await?;
        Ok(json!({ "balances": balances }))
    }

    /// `GET /wallet/ledger?limit=&cursor=`: the caller's ledger, newest
    /// first.
    pub async fn ledger(
        &self,
        authed: &Authed,
        page_limit: Option<usize>,
        cursor: Option<&str>,
    ) -> Result<Value> {
        let page_limit = limit(page_limit, 100)?;
        let cursor = cursor
            .map(|c| {
                hex::decode(c)
                    .ok()
                    .and_then(|b| <[u8; 12]>::try_from(b).ok())
                    .ok_or_else(|| Error::InvalidParam("cursor is not a ledger entry ID".into()))
            })
            .transpose()?;
        let page = self
            .db
            .ledger(authed.user_id.as_str(), cursor.as_ref(), page_limit)
            .await?;
        let entries: Vec<Value> = page
            .entries
            .iter()
            .map(|row| {
                let mut entry = json!({
                    "id": row.id,
                    "changeset": row.entry.changeset,
                    "metadata": parse_stored(&row.entry.metadata),
                    "ts": row.entry.ts_ms,
                });
                if let Some(t) = &row.entry.trade_id {
                    entry["trade_id"] = json!(t);
                }
                entry
            })
            .collect();
        Ok(json!({ "entries": entries, "next_cursor": page.next }))
    }

    /// `POST /wallets/update` (admin): every changeset in one transaction.
    pub async fn update_wallets(&self, authed: &Authed, body: WalletsUpdate) -> Result<Value> {
        check_batch("updates", body.updates.len())?;
        let multi = MultiUpdate {
            wallets: wallet_updates(&body.updates)?,
            ..MultiUpdate::default()
        };
        let key = Self::key("wallets", body.idempotency_key.as_deref())?;
        let actor = self.admin(authed).await?;
        let applied = self
            .db
            .apply(&actor, Some(&key), &multi, self.clock.now_ms())
            .await?;
        Ok(json!({ "results": applied.outcome.wallets }))
    }

    /// `POST /items/grant` (admin): new items for a user.
    pub async fn grant_items(&self, authed: &Authed, body: Grant) -> Result<Value> {
        let multi = MultiUpdate {
            grants: vec![item_grant(&body)?],
            ..MultiUpdate::default()
        };
        let key = Self::key("items", body.idempotency_key.as_deref())?;
        let actor = self.admin(authed).await?;
        let applied = self
            .db
            .apply(&actor, Some(&key), &multi, self.clock.now_ms())
            .await?;
        Ok(json!({ "item_ids": applied.outcome.item_ids }))
    }

    /// `GET /inventory`: the caller's items.
    pub async fn inventory(&self, authed: &Authed) -> Result<Value> {
        let items: Vec<Value> = self
            .db
            .inventory(authed.user_id.as_str())
            .await?
            .iter()
            .map(item_json)
            .collect();
        Ok(json!({ "items": items }))
    }

    /// `POST /items/consume`: uses up some of one of the caller's items.
    /// Answers the item as it is now (`quantity` 0 once used up).
    pub async fn consume_item(&self, authed: &Authed, body: Consume) -> Result<Value> {
        let user = authed.user_id.as_str();
        let multi = MultiUpdate {
            consumes: vec![item_consume(&body, Some(user))?],
            ..MultiUpdate::default()
        };
        let actor = self.actor(authed).await?;
        let key = Self::key("consume", None)?;
        self.db
            .apply(&actor, Some(&key), &multi, self.clock.now_ms())
            .await?;
        let item = self.db.item(&body.item_id).await?;
        let remaining = item
            .as_ref()
            .filter(|i| i.record.owner == user)
            .map_or(0, |i| i.record.quantity);
        Ok(json!({ "item_id": body.item_id, "quantity": remaining }))
    }

    /// `POST /trades`: offers a trade to `counterparty`; nothing moves.
    pub async fn open_trade(&self, authed: &Authed, body: OpenTrade) -> Result<Value> {
        check_user("counterparty", &body.counterparty)?;
        if body.counterparty == authed.user_id.as_str() {
            return Err(Error::InvalidParam("a trade needs two parties".into()));
        }
        let give = trade_side(&body.give)?;
        let take = trade_side(&body.take)?;
        let mut items: Vec<&String> = give.items.iter().chain(&take.items).collect();
        let count = items.len();
        items.sort();
        items.dedup();
        if items.len() != count {
            return Err(Error::InvalidParam(
                "an item appears twice in the trade".into(),
            ));
        }
        if count == 0 && give.currency.is_empty() && take.currency.is_empty() {
            return Err(Error::InvalidParam("the trade is empty".into()));
        }
        let trade = self
            .db
            .open_trade(
                &random_id(),
                authed.user_id.as_str(),
                &body.counterparty,
                &give,
                &take,
                self.clock.now_ms(),
            )
            .await?;
        Ok(json!({ "trade_id": trade.trade_id }))
    }

    /// `POST /trades/{id}/accept` (the counterparty).
    pub async fn accept_trade(&self, authed: &Authed, trade_id: &str) -> Result<Value> {
        check_name("trade_id", trade_id)?;
        let trade = self
            .db
            .accept_trade(trade_id, authed.user_id.as_str(), self.clock.now_ms())
            .await?;
        Ok(trade_json(&trade))
    }

    /// `POST /trades/{id}/cancel` (either party, while open).
    pub async fn cancel_trade(&self, authed: &Authed, trade_id: &str) -> Result<Value> {
        check_name("trade_id", trade_id)?;
        let trade = self
            .db
            .cancel_trade(trade_id, authed.user_id.as_str(), self.clock.now_ms())
            .await?;
        Ok(trade_json(&trade))
    }

    /// `GET /trades/{id}`: a trade the caller is party to (an admin: any).
    pub async fn trade(&self, authed: &Authed, trade_id: &str) -> Result<Value> {
        check_name("trade_id", trade_id)?;
        let user = authed.user_id.as_str();
        let trade = self.db.trade(trade_id).await?;
        let visible = match &trade {
            Some(t) if t.record.initiator == user || t.record.counterparty == user => true,
            Some(_) => self.actor(authed).await?.admin,
            None => false,
        };
        match trade {
            Some(t) if visible => Ok(trade_json(&t)),
            _ => Err(Error::NotFound("no such trade".into())),
        }
    }

    /// `GET /trades?state=`: the trades involving the caller (up to 100).
    pub async fn trades(&self, authed: &Authed, state: Option<&str>) -> Result<Value> {
        let state = state
            .map(|s| {
                TradeState::parse(s).ok_or_else(|| {
                    Error::InvalidParam("state is open, completed or cancelled".into())
                })
            })
            .transpose()?;
        let trades: Vec<Value> = self
            .db
            .trades(authed.user_id.as_str(), state, 100)
            .await?
            .iter()
            .map(trade_json)
            .collect();
        Ok(json!({ "trades": trades }))
    }

    /// `POST /transactions` (admin): wallets, items and storage in one
    /// transaction, all or nothing, idempotent by key.
    pub async fn transaction(&self, authed: &Authed, body: ServerTransaction) -> Result<Value> {
        let actor = self.admin(authed).await?;
        let total = body.wallets.len()
            + body.items.grant.len()
            + body.items.transfer.len()
            + body.items.consume.len()
            + body.storage.write.len()
            + body.storage.delete.len();
        check_batch("the transaction", total)?;
        let mut multi = MultiUpdate {
            wallets: wallet_updates(&body.wallets)?,
            writes: object_writes(&actor, &body.storage.write)?,
            deletes: object_deletes(&actor, &body.storage.delete)?,
            ..MultiUpdate::default()
        };
        for g in &body.items.grant {
            multi.grants.push(item_grant(g)?);
        }
        for t in &body.items.transfer {
            check_name("item_id", &t.item_id)?;
            check_user("to", &t.to)?;
            multi.transfers.push(db::ItemTransfer {
                item_id: t.item_id.clone(),
                to: t.to.clone(),
            });
        }
        for c in &body.items.consume {
            multi.consumes.push(item_consume(c, None)?);
        }
        let key = Self::key("transactions", body.idempotency_key.as_deref())?;
        let applied = self
            .db
            .apply(&actor, Some(&key), &multi, self.clock.now_ms())
            .await?;
        Ok(json!({
            "wallets": applied.outcome.wallets,
            "item_ids": applied.outcome.item_ids,
            "acks": acks_json(&applied.acks()),
        }))
    }
}

/// Whether `actor` may read `o`: admins all; everyone public objects;
/// owners their own unless `permission_read` is 0.
fn readable(actor: &Actor, o: &db::StorageObject) -> bool {
    actor.admin
        || o.record.permission_read == 2
        || (o.record.permission_read == 1 && o.owner.as_deref() == Some(actor.user_id.as_str()))
}

fn acks_json(acks: &[db::ObjectAck]) -> Vec<Value> {
    acks.iter()
        .map(|a| json!({"collection": a.collection, "key": a.key, "owner": a.owner, "version": a.version}))
        .collect()
}

fn item_json(i: &db::Item) -> Value {
    json!({
        "item_id": i.item_id,
        "type": i.record.item_type,
        "quantity": i.record.quantity,
        "metadata": parse_stored(&i.record.metadata),
    })
}

/// A listing cursor: the last (owner, key) visited, as base64url JSON.
fn encode_cursor(c: &(String, String)) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(c).expect("strings serialize"))
}

fn decode_cursor(s: &str) -> Result<(String, String)> {
    URL_SAFE_NO_PAD
        .decode(s)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::InvalidParam("cursor is not one this server gave".into()))
}
