//! The parts of a Matrix filter (`FilterDefinition`, spec "Filtering") that
//! `/sync` applies, resolved once per request.
//!
//! Applied: `room.rooms` / `room.not_rooms`, `room.include_leave`,
//! `room.timeline` (`limit`, `types`, `not_types`, `senders`,
//! `not_senders`, `unread_thread_notifications`), `room.state` (`types`, `not_types`, `lazy_load_members`,
//! also honoured on `room.timeline`), `room.ephemeral` and
//! `room.account_data` (`types`, `not_types`), global `account_data` and
//! `presence` (`types`, `not_types`, `senders`, `not_senders`). Not applied:
//! `event_fields`, `event_format`, `contains_url` in sync, `include_redundant_members`
//! (members are always sent again: the spec allows redundant members).
//!
//! Who may import this: `sync` and `api::sync`.

use ruma::OwnedRoomId;
use ruma::api::client::filter::{Filter, FilterDefinition, LazyLoadOptions, RoomEventFilter};
use serde_json::Value;

use crate::service::rooms::EventFilter;

/// Timeline events per room when the filter sets no limit.
pub const DEFAULT_TIMELINE_LIMIT: usize = 10;

/// The most timeline events per room whatever the filter asks.
pub const MAX_TIMELINE_LIMIT: usize = 100;

/// A resolved sync filter.
#[derive(Clone, Debug)]
pub struct SyncFilter {
    /// At most this many timeline events per room (`room.timeline.limit`).
    pub timeline_limit: usize,
    /// Which timeline events to return.
    pub timeline: EventFilter,
    /// Which state events to return.
    pub state: EventFilter,
    /// Which ephemeral events to return.
    pub ephemeral: EventFilter,
    /// Which room account data types to return.
    pub room_account_data: EventFilter,
    /// Which global account data types to return.
    pub account_data: EventFilter,
    /// Which presence events to return.
    pub presence: EventFilter,
    /// Only these rooms (all if `None`).
    pub rooms: Option<Vec<OwnedRoomId>>,
    /// Never these rooms.
    pub not_rooms: Vec<OwnedRoomId>,
    /// Only the member events of timeline senders (and the user) in state.
    pub lazy_load_members: bool,
    /// Whether an initial or `full_state` sync lists rooms the user left.
    pub include_leave: bool,
    /// Per-thread unread counts (`room.timeline.unread_thread_notifications`):
    /// joined rooms carry `unread_thread_notifications` and their
    /// `unread_notifications` count the main timeline only.
    pub unread_thread_notifications: bool,
}

impl Default for SyncFilter {
    fn default() -> Self {
        SyncFilter::from_definition(&FilterDefinition::default())
    }
}

fn room_event_filter(f: &RoomEventFilter) -> EventFilter {
    EventFilter {
        types: f.types.clone(),
        not_types: f.not_types.clone(),
        senders: f.senders.clone(),
        not_senders: f.not_senders.clone(),
        contains_url: None,
        lazy_load_members: matches!(f.lazy_load_options, LazyLoadOptions::Enabled { .. }),
    }
}

fn event_filter(f: &Filter) -> EventFilter {
    EventFilter {
        types: f.types.clone(),
        not_types: f.not_types.clone(),
        senders: f.senders.clone(),
        not_senders: f.not_senders.clone(),
        contains_url: None,
        lazy_load_members: false,
    }
}

impl SyncFilter {
    /// Resolves a filter definition.
    pub fn from_definition(def: &FilterDefinition) -> Self {
        let room = &def.room;
        let timeline_limit = room
            .timeline
            .limit
            .map_or(DEFAULT_TIMELINE_LIMIT, |l| {
                usize::try_from(u64::from(l)).unwrap_or(MAX_TIMELINE_LIMIT)
            })
            .min(MAX_TIMELINE_LIMIT);
        let timeline = room_event_filter(&room.timeline);
        let state = room_event_filter(&room.state);
        SyncFilter {
            timeline_limit,
            lazy_load_members: state.lazy_load_members || timeline.lazy_load_members,
            timeline,
            state,
            ephemeral: room_event_filter(&room.ephemeral),
            room_account_data: room_event_filter(&room.account_data),
            account_data: event_filter(&def.account_data),
            presence: event_filter(&def.presence),
            rooms: room.rooms.clone(),
            not_rooms: room.not_rooms.clone(),
            include_leave: room.include_leave,
            unread_thread_notifications: room.timeline.unread_thread_notifications,
        }
    }

    /// Whether the filter lets `room` through.
    pub fn allows_room(&self, room: &ruma::RoomId) -> bool {
        if self.not_rooms.iter().any(|r| r == room) {
            return false;
        }
        self.rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room))
    }

    /// Whether an account data event type passes `filter` (no sender).
    pub fn allows_type(filter: &EventFilter, event_type: &str) -> bool {
        filter.matches(&serde_json::json!({ "type": event_type }))
    }

    /// Whether a client-format event passes `filter`.
    pub fn allows_event(filter: &EventFilter, event: &Value) -> bool {
        filter.matches(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> SyncFilter {
        SyncFilter::from_definition(&serde_json::from_str(json).expect("filter"))
    }

    #[test]
    fn defaults_and_limits() {
        let f = SyncFilter::default();
        assert_eq!(f.timeline_limit, DEFAULT_TIMELINE_LIMIT);
        assert!(!f.lazy_load_members && !f.include_leave && !f.unread_thread_notifications);
        // Only the timeline filter's option counts, as in Synapse.
        assert!(
            parse(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#)
                .unread_thread_notifications
        );
        assert!(
            !parse(r#"{"room":{"state":{"unread_thread_notifications":true}}}"#)
                .unread_thread_notifications
        );
        assert_eq!(
            parse(r#"{"room":{"timeline":{"limit":100000}}}"#).timeline_limit,
            MAX_TIMELINE_LIMIT
        );
        assert_eq!(
            parse(r#"{"room":{"timeline":{"limit":2}}}"#).timeline_limit,
            2
        );
    }

    #[test]
    fn rooms_types_and_lazy_loading() {
        let f = parse(
            r#"{"room":{"rooms":["!a:x"],"not_rooms":["!b:x"],"include_leave":true,
               "state":{"lazy_load_members":true},
               "timeline":{"not_types":["m.room.member"]}},
               "account_data":{"types":["m.push*"]}}"#,
        );
        assert!(f.allows_room(<&ruma::RoomId>::try_from("!a:x").unwrap()));
        assert!(!f.allows_room(<&ruma::RoomId>::try_from("!b:x").unwrap()));
        assert!(!f.allows_room(<&ruma::RoomId>::try_from("!c:x").unwrap()));
        assert!(f.lazy_load_members && f.include_leave);
        assert!(!SyncFilter::allows_event(
            &f.timeline,
            &serde_json::json!({"type": "m.room.member", "sender": "@a:x"})
        ));
        assert!(SyncFilter::allows_type(&f.account_data, "m.push_rules"));
        assert!(!SyncFilter::allows_type(&f.account_data, "m.direct"));
    }
}
