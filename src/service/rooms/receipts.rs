//! Receipts and read markers: `POST /rooms/{roomId}/receipt/...` and
//! `/read_markers`, and the read sync uses to deliver `m.receipt`
//! ephemeral events.
//!
//! Receipts are stored in the rooms database (`receipts/*`, see
//! `db::rooms`); the `m.fully_read` marker is room account data, written
//! through the accounts service's storage (it is server-managed: clients
//! cannot `PUT` it as account data).
//!
//! Source: <https://spec.matrix.org/v1.16/client-server-api/#receipts>,
//! <https://spec.matrix.org/v1.16/client-server-api/#fully-read-markers>.

use ruma::events::room::member::MembershipState;
use ruma::{OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};

use super::{Error, ReceiptRecord, Result, Rooms, StreamPosition};

/// The receipt types a client may send.
pub const RECEIPT_TYPES: [&str; 2] = ["m.read", "m.read.private"];

impl Rooms {
    /// Checks that `user` is joined to `room_id` and may see `event_id`.
    async fn check_readable(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &OwnedEventId,
    ) -> Result<()> {
        let joined = self.db.membership(room_id, user).await?;
        if joined.map(|m| m.membership) != Some(MembershipState::Join) {
            if self.db.room(room_id).await?.is_none() {
                return Err(Error::NotFound(format!("room {room_id} not found")));
            }
            return Err(Error::Forbidden(format!("{user} is not in {room_id}")));
        }
        self.event(user, room_id, event_id).await.map(|_| ())
    }

    /// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}` for `m.read`
    /// and `m.read.private`: the user's receipt in `thread` (`None`:
    /// unthreaded; `"main"` or a thread root's ID). Returns its position.
    ///
    /// Errors: [`Error::InvalidParam`] for another receipt type,
    /// [`Error::Forbidden`] if not joined, [`Error::NotFound`] for an
    /// unknown room or an event the user cannot see.
    pub async fn receipt(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &OwnedEventId,
        thread: Option<&str>,
    ) -> Result<StreamPosition> {
        let record = self
            .checked_receipt(user, room_id, receipt_type, event_id, thread)
            .await?;
        let updates = self.db.put_receipts(room_id, &[record]).await?;
        Ok(updates[0].position)
    }

    /// The receipt record of [`Rooms::receipt`], once its type, thread and
    /// event are checked.
    async fn checked_receipt(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &OwnedEventId,
        thread: Option<&str>,
    ) -> Result<ReceiptRecord> {
        if !RECEIPT_TYPES.contains(&receipt_type) {
            return Err(Error::InvalidParam(format!(
                "unsupported receipt type {receipt_type}"
            )));
        }
        if let Some(thread) = thread
            && thread != "main"
            && <&ruma::EventId>::try_from(thread).is_err()
        {
            return Err(Error::InvalidParam(format!("invalid thread_id {thread:?}")));
        }
        self.check_readable(user, room_id, event_id).await?;
        Ok(ReceiptRecord {
            user_id: user.to_owned(),
            receipt_type: receipt_type.to_owned(),
            thread: thread.unwrap_or_default().to_owned(),
            event_id: event_id.clone(),
            ts: self.clock.now_ms(),
        })
    }

    /// Sets the `m.fully_read` marker (room account data) of `user`.
    ///
    /// Errors: as [`Rooms::receipt`]; [`Error::Accounts`] from the
    /// accounts storage; [`Error::InvalidParam`] without an accounts
    /// service.
    pub async fn set_fully_read(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &OwnedEventId,
    ) -> Result<()> {
        self.check_readable(user, room_id, event_id).await?;
        let accounts = self
            .accounts
            .as_ref()
            .ok_or_else(|| Error::InvalidParam("read markers need the accounts service".into()))?;
        let content = serde_json::value::to_raw_value(&json!({ "event_id": event_id }))
            .map_err(|e| Error::BadJson(e.to_string()))?;
        accounts
            .db()
            .set_account_data(
                user.as_str(),
                Some(room_id.as_str()),
                "m.fully_read",
                &content,
            )
            .await
            .map_err(crate::service::Error::from)?;
        Ok(())
    }

    /// `POST /rooms/{roomId}/read_markers`: any of the fully-read marker,
    /// the public and the private read receipt. Everything is checked
    /// first; the receipts are then set in one `rooms` transaction and the
    /// marker in one `accounts` transaction (the two databases may live on
    /// different clusters). Each write is idempotent, so a client that
    /// retries after a failure between them completes the change.
    pub async fn set_read_markers(
        &self,
        user: &UserId,
        room_id: &RoomId,
        fully_read: Option<&OwnedEventId>,
        read: Option<&OwnedEventId>,
        read_private: Option<&OwnedEventId>,
    ) -> Result<()> {
        let mut receipts = Vec::new();
        for (receipt_type, event) in [("m.read", read), ("m.read.private", read_private)] {
            if let Some(e) = event {
                receipts.push(
                    self.checked_receipt(user, room_id, receipt_type, e, None)
                        .await?,
                );
            }
        }
        if let Some(e) = fully_read {
            self.check_readable(user, room_id, e).await?;
        }
        if !receipts.is_empty() {
            self.db.put_receipts(room_id, &receipts).await?;
        }
        if let Some(e) = fully_read {
            self.set_fully_read(user, room_id, e).await?;
        }
        Ok(())
    }

    /// **For sync.** The `m.receipt` ephemeral event of `room_id` for
    /// `user`: the receipts set at positions `after < p <= up_to` (all
    /// current receipts with `after = None`), without other users'
    /// `m.read.private` receipts; `None` if there are none. Also returns
    /// the highest position included. One range read.
    ///
    /// Shape: `{"type": "m.receipt", "content": {"$event": {"m.read":
    /// {"@user:server": {"ts": 1, "thread_id": "main"}}}}}`.
    pub async fn receipt_event(
        &self,
        user: &UserId,
        room_id: &RoomId,
        after: Option<StreamPosition>,
        up_to: Option<StreamPosition>,
    ) -> Result<Option<(Value, StreamPosition)>> {
        let receipts = self.db.receipts_since(room_id, after, up_to).await?;
        let mut content = json!({});
        let mut last = None;
        for (position, r) in receipts {
            if r.receipt_type == "m.read.private" && r.user_id != user {
                continue;
            }
            let mut entry = json!({ "ts": r.ts });
            if !r.thread.is_empty() {
                entry["thread_id"] = r.thread.into();
            }
            content[r.event_id.as_str()][r.receipt_type.as_str()][r.user_id.as_str()] = entry;
            last = Some(position);
        }
        Ok(last.map(|p| (json!({ "type": "m.receipt", "content": content }), p)))
    }
}
