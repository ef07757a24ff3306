//! `unread_notifications` of a joined room in `/sync`: how many events the
//! user has not read yet would notify them, and how many would highlight,
//! by the user's push rules (`docs/sync.md`).
//!
//! Definition (spec, Client-Server API "Receiving notifications", as
//! Synapse computes it): the events after the user's own latest
//! unthreaded or main-timeline `m.read` / `m.read.private` receipt in the
//! room (the later of the two; without one, after the user's current
//! member event), not sent by the user, that the user may see; an event
//! counts in `notification_count` if the actions of the first push rule
//! it matches contain `notify`, and in `highlight_count` if they contain
//! the `highlight` tweak. Rules are evaluated with ruma
//! ([`Ruleset::get_actions`]) in a context of the room's current state: the
//! joined member count, the user's current display name in the room, and
//! the room's power levels (`@room` needs them).
//!
//! Invariant (cost bound): at most [`MAX_COUNTED`] events are read per
//! room; when more are unread the counts are those of the newest
//! [`MAX_COUNTED`], so both are at most [`MAX_COUNTED`]. Reads per room:
//! the user's receipts (one range read and one read each), the receipt
//! events' positions, the member list, the member and power-levels events,
//! and one timeline page.
//!
//! Not computed: per-thread counts (`unread_thread_notifications`);
//! threaded receipts other than `main` are ignored.
//!
//! Who may import this: `sync::rooms`.

use std::collections::BTreeMap;

use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
use ruma::power_levels::NotificationPowerLevels;
use ruma::push::{PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset};
use ruma::room_version_rules::RoomPowerLevelsRules;
use ruma::serde::Raw;
use ruma::{Int, OwnedEventId, OwnedUserId, RoomId, UInt, UserId};
use serde_json::Value;

use super::Error;
use super::rooms::Ctx;
use crate::db::rooms::{Direction, StreamPosition};
use crate::service::rooms::Viewer;

/// At most this many unread events are evaluated per room (the counts are
/// capped at it).
pub const MAX_COUNTED: usize = 100;

/// The receipt types that mark the room read.
const READ_TYPES: [&str; 2] = ["m.read", "m.read.private"];

/// The counts of `room` for `ctx.user`, whose current member event
/// `member_event` is at `joined_at`, as of `ctx.window.upto`.
pub(super) async fn unread_notifications(
    ctx: &Ctx<'_>,
    room: &RoomId,
    member_event: &OwnedEventId,
    joined_at: StreamPosition,
) -> Result<UnreadNotificationsCount, Error> {
    let db = ctx.rooms.db();
    let upto = ctx.window.upto;
    // Where reading starts: the latest receipt's event, else the join.
    let mut start = joined_at;
    for (set_at, receipt) in db.own_receipts(room, ctx.user).await? {
        if set_at > upto
            || !READ_TYPES.contains(&receipt.receipt_type.as_str())
            || !(receipt.thread.is_empty() || receipt.thread == "main")
        {
            continue;
        }
        if let Some(p) = db.position(&receipt.event_id).await? {
            start = start.max(p);
        }
    }
    let viewer = Viewer {
        user: ctx.user,
        device: ctx.device,
    };
    let page = ctx
        .rooms
        .timeline(
            viewer,
            room,
            Some(start),
            Some(upto),
            Direction::Backward,
            MAX_COUNTED,
        )
        .await?;
    let mut counts = UnreadNotificationsCount::new();
    counts.notification_count = Some(UInt::MIN);
    counts.highlight_count = Some(UInt::MIN);
    let unread: Vec<&Value> = page
        .events
        .iter()
        .map(|(_, e)| e)
        .filter(|e| e["sender"].as_str() != Some(ctx.user.as_str()))
        .collect();
    if unread.is_empty() {
        return Ok(counts);
    }
    let push_ctx = room_ctx(ctx, room, member_event).await?;
    let (mut notify, mut highlight) = (0u64, 0u64);
    for event in unread {
        let raw: Raw<Value> =
            Raw::from_json(serde_json::value::to_raw_value(event).expect("JSON values serialize"));
        let actions = ctx.push_rules.get_actions(&raw, &push_ctx).await;
        if actions.iter().any(|a| a.should_notify()) {
            notify += 1;
        }
        if actions.iter().any(|a| a.is_highlight()) {
            highlight += 1;
        }
    }
    counts.notification_count = Some(UInt::new_saturating(notify));
    counts.highlight_count = Some(UInt::new_saturating(highlight));
    Ok(counts)
}

/// The push-rule context of `room` for `ctx.user` (current state).
async fn room_ctx(
    ctx: &Ctx<'_>,
    room: &RoomId,
    member_event: &OwnedEventId,
) -> Result<PushConditionRoomCtx, Error> {
    let db = ctx.rooms.db();
    let joined = db
        .members(room)
        .await?
        .iter()
        .filter(|(_, m)| m.membership == "join")
        .count();
    let display_name = db
        .event(member_event)
        .await?
        .and_then(|e| {
            e.pdu.content_value()["displayname"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let push_ctx = PushConditionRoomCtx::new(
        room.to_owned(),
        UInt::new_saturating(joined as u64),
        ctx.user.to_owned(),
        display_name,
    );
    let Some(record) = db.room(room).await? else {
        return Ok(push_ctx);
    };
    let content = db
        .state_event(room, "m.room.power_levels", "")
        .await?
        .map(|e| e.pdu.content_value())
        .unwrap_or(Value::Null);
    let users: BTreeMap<OwnedUserId, Int> = content
        .get("users")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    let users_default = content
        .get("users_default")
        .and_then(|u| serde_json::from_value(u.clone()).ok())
        .unwrap_or_default();
    let notifications: NotificationPowerLevels = content
        .get("notifications")
        .and_then(|n| serde_json::from_value(n.clone()).ok())
        .unwrap_or_default();
    let rules = match record.version.rules() {
        Some(r) => RoomPowerLevelsRules::new(&r.authorization, [record.creator]),
        None => return Ok(push_ctx),
    };
    Ok(push_ctx.with_power_levels(PushConditionPowerLevelsCtx::new(
        users,
        users_default,
        notifications,
        rules,
    )))
}

/// The user's push rule set: the stored one, else the server defaults.
///
/// Errors: a stored set that is not a rule set is `Corrupt`.
pub(super) fn parse_ruleset(user: &UserId, stored: Option<&[u8]>) -> Result<Ruleset, Error> {
    match stored {
        None => Ok(Ruleset::server_default(user)),
        Some(json) => serde_json::from_slice(json).map_err(|e| {
            Error::Storage(crate::db::accounts::Error::Corrupt {
                subspace: "push_rules",
                source: Box::new(e),
            })
        }),
    }
}
