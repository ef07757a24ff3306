//! Room purge: removing every key of one room from the `rooms` database
//! (the admin API's room delete with `purge`, `docs/admin-api.md`), in
//! pages, each one bounded transaction ([`RoomsDb::purge_page`]).
//!
//! What a room leaves, and how each is found (`keys`):
//! - keyed by the room first (`rooms/state`, `extremity`, `member`,
//!   `timeline/stream`, `topological`, `state_log/*`, `receipts/*`,
//!   `relations/*`, `aliases/room_alias`, `public_rooms/listed`,
//!   `rooms/bump`): range clears of the room's prefix, or single clears;
//! - keyed by event (`events/pdu`, `events/redaction`): the event IDs are
//!   the values of the room's `timeline/stream` entries (every stored event
//!   has exactly one);
//! - keyed by position (`timeline/changed`, and `meta/wake`, the wake feed's
//!   transitory entries): the positions of the room's `timeline/stream` and
//!   `receipts/log` entries;
//! - keyed by user (`memberships/user_room`, `forgotten`, `txns/txn`): the
//!   users of the room's `rooms/member` entries (everyone who ever had a
//!   membership, so everyone who could send);
//! - `aliases/alias`: the aliases of the room's `aliases/room_alias`
//!   entries, where the alias still names the room;
//! - last, `rooms/room`: while it is there the room exists, so a purge that
//!   stopped part-way is found and finished by running it again.
//!
//! Kept: `rooms/blocked` (a blocked room stays blocked) and `rooms/deletion`
//! (the status). Outside this database, typing entries of the room
//! (`transitory`) expire on their own.
//!
//! Invariants: a page never reads more than its `page` entries of any range
//! (clears of whole ranges are single mutations, whatever they hold); the
//! pages need no state between them but the position within one user's
//! transaction IDs, kept with the progress in the deletion's status record
//! in the same transaction; so every page is safe to run twice, and a purge
//! stopped between pages (a crash) is finished by any later purge of the
//! room. Events sent into the room while it is purged may be left behind:
//! callers kick the members first (and block the room to keep them out).
//!
//! Who may import this: its parent, `db::rooms`.

use foundationdb_tuple::Versionstamp;
use ruma::RoomId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{AliasRecord, Error, Result, RoomsDb, keys};
use crate::db::codec::{decode, unpack};
use crate::db::notify::Topic;
use crate::kv::{RangeOption, Transaction};

/// Entries a purge page reads per range, by default.
pub const PURGE_PAGE: usize = 500;

/// What one [`RoomsDb::purge_page`] left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PurgeStep {
    /// Keys of the room remain: run another page.
    More,
    /// The room is gone.
    Done,
}

/// The progress of a purge, kept under `"purge"` in the deletion's status
/// record (`rooms/deletion`), where `delete_status` shows it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Progress {
    /// The step the latest page worked on: `events`, `receipts`,
    /// `members`, `ranges` or `done`.
    phase: String,
    /// Pages committed.
    pages: u64,
    /// Events removed (with their indexes).
    events_removed: u64,
    /// Members whose memberships and transaction IDs were removed.
    members_removed: u64,
    /// Hex key after which the current member's transaction IDs continue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    txn_cursor: Option<String>,
}

/// What a page did, before its progress is recorded.
struct Page {
    phase: &'static str,
    events: u64,
    members: u64,
    txn_cursor: Option<Vec<u8>>,
    step: PurgeStep,
}

impl RoomsDb {
    /// Runs one page of the purge of `room_id`, recording its progress in
    /// the status record of deletion `delete_id` (if there is one), in one
    /// transaction that reads at most `page` entries of any range: the
    /// room's next `page` events (their records, redactions and feed
    /// entries go with them), else its next `page` receipts, else one
    /// member's next `page` transaction IDs (and when they are done, the
    /// member's memberships), else every remaining range and the room
    /// record. [`PurgeStep::Done`] once the room record is gone.
    ///
    /// Safe to run twice (`commit_unknown_result`): each page reads what is
    /// left and clears it; a second run finds the next page (or nothing).
    ///
    /// Errors: the store's; [`Error::Corrupt`] for keys or records that do
    /// not decode.
    pub async fn purge_page(
        &self,
        room_id: &RoomId,
        delete_id: &str,
        page: usize,
    ) -> Result<PurgeStep> {
        let page = page.max(1);
        let room = room_id.as_str();
        let status_key = self.layout.rooms.key(&keys::DELETION, &(delete_id,));
        // Safe to run twice: see the doc above; the progress record is
        // read and replaced in the same transaction.
        self.db
            .run(|tx, _| {
                let status_key = status_key.clone();
                async move {
                    let status = tx.get(&status_key, false).await?;
                    let mut status: Option<Value> = status
                        .map(|s| serde_json::from_slice(&s))
                        .transpose()
                        .map_err(|e| Error::corrupt("deletion", e))?;
                    let mut progress: Progress = status
                        .as_ref()
                        .and_then(|s| s.get("purge"))
                        .and_then(|p| serde_json::from_value(p.clone()).ok())
                        .unwrap_or_default();
                    let cursor = progress
                        .txn_cursor
                        .as_deref()
                        .and_then(|c| hex::decode(c).ok());
                    let done = self.purge_in(&tx, room, page, cursor).await?;
                    progress.phase = done.phase.to_owned();
                    progress.pages += 1;
                    progress.events_removed += done.events;
                    progress.members_removed += done.members;
                    progress.txn_cursor = done.txn_cursor.map(hex::encode);
                    if let Some(status) = status.as_mut().and_then(Value::as_object_mut) {
                        let progress =
                            serde_json::to_value(&progress).expect("the progress serializes");
                        status.insert("purge".to_owned(), progress);
                        let bytes = serde_json::to_vec(&status).expect("JSON values serialize");
                        tx.set(&status_key, &bytes);
                    }
                    Ok(done.step)
                }
            })
            .await
    }

    /// The work of one page in `tx` (see [`RoomsDb::purge_page`]).
    async fn purge_in(
        &self,
        tx: &Transaction,
        room: &str,
        page: usize,
        txn_cursor: Option<Vec<u8>>,
    ) -> Result<Page> {
        let l = &self.layout;
        // The room's events: their records and feed entries, then the
        // timeline entries that named them.
        let (begin, end) = l.timeline.range(&keys::STREAM, &(room,));
        let entries = read_page(tx, &begin, &end, page).await?;
        if let Some(last) = entries.last() {
            for kv in &entries {
                let (_, _, stamp): (i64, String, Versionstamp) =
                    unpack("stream", &l.timeline, &kv.key)?;
                let id = std::str::from_utf8(&kv.value).map_err(|e| Error::corrupt("stream", e))?;
                tx.clear(&l.events.key(&keys::PDU, &(id,)));
                tx.clear(&l.events.key(&keys::REDACTION, &(id,)));
                self.clear_feeds(tx, room, &stamp);
            }
            tx.clear_range(&begin, &after(&last.key));
            return Ok(Page::of("events", PurgeStep::More).events(entries.len()));
        }
        // The room's receipts: their feed entries, then the log.
        let (begin, end) = l.receipts.range(&keys::RECEIPT_LOG, &(room,));
        let entries = read_page(tx, &begin, &end, page).await?;
        if let Some(last) = entries.last() {
            for kv in &entries {
                let (_, _, stamp): (i64, String, Versionstamp) =
                    unpack("receipt_log", &l.receipts, &kv.key)?;
                self.clear_feeds(tx, room, &stamp);
            }
            tx.clear_range(&begin, &after(&last.key));
            return Ok(Page::of("receipts", PurgeStep::More));
        }
        // One member: their transaction IDs in the room, then their
        // memberships.
        let (begin, end) = l.rooms.range(&keys::MEMBER, &(room,));
        if let Some(member) = read_page(tx, &begin, &end, 1).await?.pop() {
            let (_, _, user): (i64, String, String) = unpack("member", &l.rooms, &member.key)?;
            let (begin, end) = l.txns.range(&keys::TXN, &(user.as_str(),));
            let from = txn_cursor.unwrap_or(begin);
            let txns = read_page(tx, &from, &end, page).await?;
            for kv in &txns {
                let (_, _, _, txn_room, _): (i64, String, String, String, String) =
                    unpack("txn", &l.txns, &kv.key)?;
                if txn_room == room {
                    tx.clear(&kv.key);
                }
            }
            if txns.len() == page {
                let cursor = txns.last().map(|kv| after(&kv.key));
                return Ok(Page {
                    txn_cursor: cursor,
                    ..Page::of("members", PurgeStep::More)
                });
            }
            let user = user.as_str();
            tx.clear(&l.memberships.key(&keys::USER_ROOM, &(user, room)));
            tx.clear(&l.memberships.key(&keys::FORGOTTEN, &(user, room)));
            tx.clear(&member.key);
            return Ok(Page {
                members: 1,
                ..Page::of("members", PurgeStep::More)
            });
        }
        // The aliases that still name the room.
        let (begin, end) = l.aliases.range(&keys::ROOM_ALIAS, &(room,));
        let aliases = read_page(tx, &begin, &end, page).await?;
        for kv in &aliases {
            let (_, _, alias): (i64, String, String) = unpack("room_alias", &l.aliases, &kv.key)?;
            let key = l.aliases.key(&keys::ALIAS, &(alias.as_str(),));
            if let Some(record) = tx.get(&key, false).await? {
                let record: AliasRecord = decode("alias", &record)?;
                if record.room_id.as_str() == room {
                    tx.clear(&key);
                }
            }
            tx.clear(&kv.key);
        }
        if aliases.len() == page {
            return Ok(Page::of("ranges", PurgeStep::More));
        }
        // Everything else keyed by the room: single range clears.
        let ranges = [
            l.rooms.range(&keys::STATE, &(room,)),
            l.rooms.range(&keys::EXTREMITY, &(room,)),
            l.timeline.range(&keys::TOPOLOGICAL, &(room,)),
            l.state_log.range(&keys::STATE_CHANGE, &(room,)),
            l.state_log.range(&keys::STATE_HISTORY, &(room,)),
            l.receipts.range(&keys::RECEIPT_LATEST, &(room,)),
            l.relations.range(&keys::RELATION, &(room,)),
            l.relations.range(&keys::THREAD, &(room,)),
        ];
        for (begin, end) in &ranges {
            tx.clear_range(begin, end);
        }
        tx.clear(&l.public_rooms.key(&keys::LISTED, &(room,)));
        tx.clear(&l.rooms.key(&keys::BUMP, &(room,)));
        tx.clear(&l.rooms.key(&keys::ROOM, &(room,)));
        Ok(Page::of("done", PurgeStep::Done))
    }

    /// Clears the feed entries of a change of `room` at `stamp`: its
    /// `timeline/changed` entry and its `meta/wake` entry (written at the
    /// commit's versionstamp with order 0).
    fn clear_feeds(&self, tx: &Transaction, room: &str, stamp: &Versionstamp) {
        let l = &self.layout;
        tx.clear(&l.timeline.key(&keys::CHANGED, &(stamp, room)));
        let mut commit = [0; 10];
        commit.copy_from_slice(&stamp.as_bytes()[..10]);
        let wake = Versionstamp::complete(commit, 0);
        tx.clear(&l.notify.wake_key(&wake, Topic::Room(room)));
    }
}

impl Page {
    fn of(phase: &'static str, step: PurgeStep) -> Page {
        Page {
            phase,
            events: 0,
            members: 0,
            txn_cursor: None,
            step,
        }
    }

    fn events(self, n: usize) -> Page {
        Page {
            events: n as u64,
            ..self
        }
    }
}

/// At most `limit` entries of `[begin, end)`, in key order, at snapshot
/// isolation (a purge's keys are its own; nothing else writes them once
/// the members are gone).
async fn read_page(
    tx: &Transaction,
    begin: &[u8],
    end: &[u8],
    limit: usize,
) -> Result<Vec<crate::kv::KeyValue>> {
    let range = RangeOption::new(begin.to_vec(), end.to_vec()).limit(limit);
    Ok(tx.get_range_all(range, true).await?)
}

/// The first key after `key`.
fn after(key: &[u8]) -> Vec<u8> {
    let mut next = key.to_vec();
    next.push(0x00);
    next
}
