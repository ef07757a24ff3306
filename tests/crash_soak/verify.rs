//! The checks after a restart: every acknowledged write is there exactly
//! once, and `/sync` from an old token delivers everything after it.

use std::collections::{HashMap, HashSet};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Bounds, Ledger, Session, User, enc, sync_path};

/// Checks the room, account data, keys and devices after the restart that
/// ended `cycle`, and `/sync` from `since` (taken when `cycle` began).
/// Returns how many checks of acknowledged writes it made.
pub(super) async fn verify(
    cycle: u32,
    users: &[User],
    room: &str,
    since: &str,
    ledger: &mut Ledger,
    failures: &mut Vec<String>,
) -> u64 {
    let mut checks = 0;
    let reader = &users[0].main.session;
    // A transaction ID sent again gives back its event, and adds none.
    for (u, user) in users.iter().enumerate() {
        let Some((txn, event_id)) = &ledger.last_send[u] else {
            continue;
        };
        let path = format!(
            "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
            enc(room)
        );
        let content = json!({"msgtype": "m.text", "body": "a retry", "soak_id": "retry"});
        let body = user
            .main
            .session
            .ok(Method::PUT, &path, Some(content))
            .await;
        checks += 1;
        if body["event_id"].as_str() != Some(event_id) {
            failures.push(format!(
                "cycle {cycle}: {txn} sent again gave {} instead of {event_id}",
                body["event_id"]
            ));
        }
    }

    // The whole timeline, newest first.
    let mut timeline = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
            enc(room)
        );
        if let Some(from) = &from {
            path.push_str(&format!("&from={}", enc(from)));
        }
        let page = reader.ok(Method::GET, &path, None).await;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        if chunk.is_empty() {
            break;
        }
        timeline.extend(chunk);
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let mut seen: HashMap<String, u32> = HashMap::new();
    let mut event_ids = HashSet::new();
    for event in &timeline {
        let event_id = event["event_id"].as_str().unwrap_or_default();
        if !event_ids.insert(event_id.to_owned()) {
            failures.push(format!("cycle {cycle}: /messages gave {event_id} twice"));
        }
        if let Some(id) = event["content"]["soak_id"].as_str() {
            *seen.entry(id.to_owned()).or_default() += 1;
        }
    }
    for (id, write) in &ledger.timeline {
        let n = seen.get(id).copied().unwrap_or(0);
        if write.acked {
            checks += 1;
        }
        if (write.acked && n != 1) || n > 1 {
            failures.push(format!(
                "cycle {cycle}: {id} (acknowledged: {}) is in the timeline {n} times",
                write.acked
            ));
        }
    }
    for id in seen.keys() {
        if !ledger.timeline.contains_key(id) {
            failures.push(format!(
                "cycle {cycle}: the timeline holds {id}, never sent"
            ));
        }
    }

    // /sync from the token taken before this cycle's writes.
    let expected: HashSet<&str> = timeline
        .iter()
        .filter(|e| e["content"]["cycle"].as_u64() == Some(u64::from(cycle)))
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let mut delivered: Vec<String> = Vec::new();
    let mut token = since.to_owned();
    loop {
        let body = reader.ok(Method::GET, &sync_path(Some(&token)), None).await;
        let joined = &body["rooms"]["join"][room]["timeline"];
        let events = joined["events"].as_array().cloned().unwrap_or_default();
        if joined["limited"].as_bool() == Some(true) {
            let prev = joined["prev_batch"]
                .as_str()
                .expect("prev_batch")
                .to_owned();
            delivered.extend(gap(reader, room, &prev, cycle).await);
        }
        let new = events.len();
        delivered.extend(
            events
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned)),
        );
        token = body["next_batch"].as_str().expect("next_batch").to_owned();
        if new == 0 {
            break;
        }
    }
    let unique: HashSet<&str> = delivered.iter().map(String::as_str).collect();
    checks += expected.len() as u64;
    if unique.len() != delivered.len() {
        failures.push(format!(
            "cycle {cycle}: /sync from the cycle's first token delivered {} events, {} of them duplicates",
            delivered.len(),
            delivered.len() - unique.len()
        ));
    }
    if unique != expected {
        failures.push(format!(
            "cycle {cycle}: /sync from the cycle's first token delivered {} events, the timeline has {} written since; missing {:?}, extra {:?}",
            unique.len(),
            expected.len(),
            expected.difference(&unique).take(5).collect::<Vec<_>>(),
            unique.difference(&expected).take(5).collect::<Vec<_>>()
        ));
    }

    for (u, user) in users.iter().enumerate() {
        let session = &user.main.session;
        let account_data = format!(
            "/_matrix/client/v3/user/{}/account_data/m.soak",
            enc(&user.user_id)
        );
        let state = format!(
            "/_matrix/client/v3/rooms/{}/state/m.soak/{}",
            enc(room),
            enc(&user.user_id)
        );
        for (what, path, bounds) in [
            ("account data", account_data, ledger.account_data[u]),
            ("state", state, ledger.state[u]),
        ] {
            if bounds.sent == 0 {
                continue;
            }
            let (status, body) = session.call(Method::GET, &path, None).await.expect("GET");
            let seq = if status == 200 {
                body["seq"].as_u64()
            } else {
                None
            };
            checks += u64::from(bounds.acked > 0);
            if !in_bounds(seq, bounds) {
                failures.push(format!(
                    "cycle {cycle}: {} {what} seq {seq:?}, expected {}..={}",
                    user.user_id, bounds.acked, bounds.sent
                ));
            }
        }
        let bounds = ledger.one_time_keys[u];
        let body = session
            .ok(
                Method::POST,
                "/_matrix/client/v3/keys/upload",
                Some(json!({})),
            )
            .await;
        let count = body["one_time_key_counts"]["signed_curve25519"]
            .as_u64()
            .unwrap_or(0);
        checks += u64::from(bounds.acked > 0);
        if !(bounds.acked..=bounds.sent).contains(&count) {
            failures.push(format!(
                "cycle {cycle}: {} has {count} one-time keys, expected {}..={}",
                user.user_id, bounds.acked, bounds.sent
            ));
        }
    }

    // Devices: tokens work, keys are queryable.
    let query: serde_json::Map<String, Value> = users
        .iter()
        .map(|u| (u.user_id.clone(), json!([])))
        .collect();
    let body = reader
        .ok(
            Method::POST,
            "/_matrix/client/v3/keys/query",
            Some(json!({"device_keys": query})),
        )
        .await;
    for user in users {
        for device in std::iter::once(&user.main).chain(&user.devices) {
            checks += 2;
            let key = &body["device_keys"][&user.user_id][&device.device_id]["keys"]
                [format!("ed25519:{}", device.device_id)];
            if key.as_str() != Some(&device.ed25519) {
                failures.push(format!(
                    "cycle {cycle}: /keys/query gives {key} for {} {}",
                    user.user_id, device.device_id
                ));
            }
            let (status, _) = device
                .session
                .call(Method::GET, "/_matrix/client/v3/account/whoami", None)
                .await
                .expect("whoami");
            if status != 200 {
                failures.push(format!(
                    "cycle {cycle}: the token of {} {} answers {status}",
                    user.user_id, device.device_id
                ));
            }
        }
    }
    checks
}

fn in_bounds(value: Option<u64>, bounds: Bounds) -> bool {
    match value {
        Some(v) => (bounds.acked..=bounds.sent).contains(&v),
        None => bounds.acked == 0,
    }
}

/// The events of `cycle` a limited sync left out: `/messages` backwards from
/// `prev_batch` until an event of an earlier cycle or the room's start.
async fn gap(reader: &Session, room: &str, prev_batch: &str, cycle: u32) -> Vec<String> {
    let mut events = Vec::new();
    let mut from = prev_batch.to_owned();
    loop {
        let path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000&from={}",
            enc(room),
            enc(&from)
        );
        let page = reader.ok(Method::GET, &path, None).await;
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        for event in &chunk {
            if event["content"]["cycle"].as_u64() != Some(u64::from(cycle)) {
                return events;
            }
            events.extend(event["event_id"].as_str().map(str::to_owned));
        }
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = end.to_owned(),
            _ => return events,
        }
    }
}

/// Drains every user's to-device inbox over its chain of `/sync` tokens and
/// checks each message was delivered once at most, and each acknowledged one
/// exactly once. Returns how many checks of acknowledged writes it made.
pub(super) async fn verify_to_device(
    users: &mut [User],
    ledger: &mut Ledger,
    failures: &mut Vec<String>,
) -> u64 {
    for user in users.iter_mut() {
        loop {
            let path = sync_path(user.to_device_since.as_deref());
            let body = user.main.session.ok(Method::GET, &path, None).await;
            let events = body["to_device"]["events"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for event in &events {
                if let Some(id) = event["content"]["soak_id"].as_str() {
                    *ledger.delivered.entry(id.to_owned()).or_default() += 1;
                }
            }
            user.to_device_since = body["next_batch"].as_str().map(str::to_owned);
            if events.is_empty() {
                break;
            }
        }
    }
    let mut checks = 0;
    for (id, write) in &ledger.to_device {
        let n = ledger.delivered.get(id).copied().unwrap_or(0);
        checks += u64::from(write.acked);
        if (write.acked && n != 1) || n > 1 {
            failures.push(format!(
                "to-device {id} of cycle {} (acknowledged: {}) delivered {n} times",
                write.cycle, write.acked
            ));
        }
    }
    for id in ledger.delivered.keys() {
        if !ledger.to_device.contains_key(id) {
            failures.push(format!("to-device {id} delivered, never sent"));
        }
    }
    checks
}
