//! Real-client conformance: matrix-rust-sdk (the SDK inside Element X)
//! against a running homeserver, through simplified sliding sync.
//!
//! What it owns: one scripted conversation between two users, Alice and
//! Bob, each a `matrix_sdk::Client` with an SQLite store and end-to-end
//! encryption, each running `matrix_sdk_ui::sync_service::SyncService`
//! (which runs `RoomListService` and `EncryptionSyncService` on their own
//! sliding-sync connections, as Element X does). Alice watches her room
//! list (`RoomList::entries_with_dynamic_adapters`, the sorted view Element
//! X shows) and her rooms' `Timeline`s; Bob acts through ordinary client
//! calls. Every step prints one line, `PASS <step>` or `FAIL <step>: <why>`
//! (or `SKIP <step>` after an earlier failure), and the run closes with
//! `conformance: N passed, N failed, N skipped`; the exit status is
//! non-zero if any step failed.
//!
//! Invariants:
//! - Bounded: every wait is for a signal (a room-list diff, a timeline
//!   diff, a room-info update) under a deadline (`STEP_S` per step), and
//!   every HTTP request has a client-side timeout.
//! - Honest: a step passes only if the SDK's own view (its room list,
//!   timeline, room info) shows what a user of Element X would see. The
//!   room order is checked before any room subscription, so it is the
//!   server's `bump_stamp` order and not the client's local echo.
//!
//! Who runs it: `conformance/run` (which builds it with its own target
//! directory, starts a fresh `myelin serve` and passes `--homeserver`).
//! Usage: `myelin-rust-sdk-conformance --homeserver http://127.0.0.1:PORT`.

#![recursion_limit = "256"]

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{Stream, StreamExt};
use matrix_sdk::config::RequestConfig;
use matrix_sdk::ruma::api::client::account::register;
use matrix_sdk::ruma::api::client::receipt::create_receipt::v3::ReceiptType;
use matrix_sdk::ruma::api::client::room::create_room;
use matrix_sdk::ruma::api::client::uiaa;
use matrix_sdk::ruma::events::room::encryption::RoomEncryptionEventContent;
use matrix_sdk::ruma::events::room::message::RoomMessageEventContent;
use matrix_sdk::ruma::events::{EmptyStateKey, InitialStateEvent};
use matrix_sdk::ruma::serde::Raw;
use matrix_sdk::ruma::{OwnedRoomId, OwnedUserId, RoomId};
use matrix_sdk::sliding_sync::VersionBuilder;
use matrix_sdk::{Client, Room, RoomState};
use matrix_sdk_ui::eyeball_im::Vector;
use matrix_sdk_ui::room_list_service::RoomListItem;
use matrix_sdk_ui::room_list_service::filters::new_filter_non_left;
use matrix_sdk_ui::sync_service::SyncService;
use matrix_sdk_ui::timeline::{RoomExt, Timeline};
use tokio::sync::watch;

/// The cap of one step, seconds.
const STEP_S: u64 = 30;
/// The client-side timeout of one HTTP request, seconds.
const REQUEST_S: u64 = 30;

/// One user: the logged-in client, its sync service, and (for the one
/// who watches) the room list as Element X shows it.
struct User {
    client: Client,
    sync: SyncService,
    /// The sorted, non-left room list: room IDs and states, in order.
    list: watch::Receiver<Vec<(OwnedRoomId, RoomState)>>,
    _list_task: tokio::task::JoinHandle<()>,
    _store: tempfile::TempDir,
}

impl User {
    fn id(&self) -> OwnedUserId {
        self.client.user_id().expect("logged in").to_owned()
    }

    fn room(&self, id: &RoomId) -> Result<Room> {
        self.client
            .get_room(id)
            .ok_or_else(|| anyhow!("the client does not know room {id}"))
    }

    /// Waits until the room list satisfies `ok`; the error names the list.
    async fn list_until(
        &self,
        what: &str,
        ok: impl Fn(&[(OwnedRoomId, RoomState)]) -> bool,
    ) -> Result<()> {
        let mut rx = self.list.clone();
        let waited = tokio::time::timeout(
            Duration::from_secs(STEP_S),
            rx.wait_for(|l| ok(l.as_slice())),
        )
        .await;
        match waited {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => bail!("the room list stream ended"),
            Err(_) => bail!("{what}: the room list is {:?}", *self.list.borrow()),
        }
    }
}

fn request_config() -> RequestConfig {
    RequestConfig::new()
        .timeout(Duration::from_secs(REQUEST_S))
        .retry_limit(3)
}

/// Registers `localpart` (open registration, `m.login.dummy`) without
/// logging in.
async fn register(url: &str, localpart: &str, password: &str) -> Result<()> {
    let c = Client::builder()
        .homeserver_url(url)
        .request_config(request_config())
        .build()
        .await?;
    let mut req = register::v3::Request::new();
    req.username = Some(localpart.to_owned());
    req.password = Some(password.to_owned());
    req.auth = Some(uiaa::AuthData::Dummy(uiaa::Dummy::new()));
    req.inhibit_login = true;
    // Registrations are rate limited per IP, and the nio and js steps
    // registered from this address seconds ago: like those clients, wait
    // out a 429 `M_LIMIT_EXCEEDED` (1 s, more than the server's
    // `retry_after_ms`) and try again, at most three times.
    let mut waits_left = 3;
    loop {
        match c.matrix_auth().register(req.clone()).await {
            Ok(_) => return Ok(()),
            Err(e)
                if waits_left > 0
                    && matches!(
                        e.client_api_error_kind(),
                        Some(matrix_sdk::ruma::api::error::ErrorKind::LimitExceeded(_))
                    ) =>
            {
                waits_left -= 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("register {localpart}")),
        }
    }
}

/// Logs `localpart` in as Element X would (SQLite store, encryption,
/// sliding sync discovered from `/versions`) and starts its
/// `SyncService` and room list.
async fn login(url: &str, localpart: &str, password: &str) -> Result<User> {
    let store = tempfile::tempdir()?;
    let client = Client::builder()
        .homeserver_url(url)
        .sliding_sync_version_builder(VersionBuilder::DiscoverNative)
        .sqlite_store(store.path(), None)
        .request_config(request_config())
        .build()
        .await
        .context("build the client (discovers simplified sliding sync in /versions)")?;
    client
        .matrix_auth()
        .login_username(localpart, password)
        .initial_device_display_name("conformance rust-sdk")
        .await
        .with_context(|| format!("log {localpart} in"))?;
    let sync = SyncService::builder(client.clone())
        .build()
        .await
        .context("build the sync service")?;
    sync.start().await;

    // The room list as Element X shows it: sorted (latest event, recency,
    // name), non-left rooms, in one page large enough for the test.
    let (tx, rx) = watch::channel(Vec::new());
    let rls = sync.room_list_service();
    let list_task = tokio::spawn(async move {
        let Ok(all) = rls.all_rooms().await else {
            return;
        };
        let (stream, controller) = all.entries_with_dynamic_adapters(100);
        controller.set_filter(Box::new(new_filter_non_left()));
        let mut stream = std::pin::pin!(stream);
        let mut items: Vector<RoomListItem> = Vector::new();
        while let Some(diffs) = stream.next().await {
            for diff in diffs {
                diff.apply(&mut items);
            }
            let view = items
                .iter()
                .map(|r| (r.room_id().to_owned(), r.state()))
                .collect();
            if tx.send(view).is_err() {
                return;
            }
        }
    });
    Ok(User {
        client,
        sync,
        list: rx,
        _list_task: list_task,
        _store: store,
    })
}

/// Bob creates a room named `name`, inviting `invite`, encrypted or not.
async fn create_room(
    by: &User,
    name: &str,
    invite: &[OwnedUserId],
    encrypted: bool,
) -> Result<OwnedRoomId> {
    let mut req = create_room::v3::Request::new();
    req.name = Some(name.to_owned());
    req.invite = invite.to_vec();
    if encrypted {
        let content = RoomEncryptionEventContent::with_recommended_defaults();
        let event = InitialStateEvent::new(EmptyStateKey, content);
        req.initial_state = vec![Raw::new(&event)?.cast_unchecked()];
    }
    let room = by
        .client
        .create_room(req)
        .await
        .with_context(|| format!("create room {name}"))?;
    Ok(room.room_id().to_owned())
}

async fn send_text(by: &User, room: &RoomId, body: &str) -> Result<()> {
    by.room(room)?
        .send(RoomMessageEventContent::text_plain(body))
        .await
        .with_context(|| format!("send {body:?}"))?;
    Ok(())
}

/// Waits, under the step's deadline, until `ok()` holds, re-checking after
/// each item of `signal`.
async fn until<S, F>(what: &str, signal: S, ok: F) -> Result<()>
where
    S: Stream,
    F: AsyncFn() -> Result<bool>,
{
    let mut signal = std::pin::pin!(signal);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(STEP_S);
    loop {
        if ok().await? {
            return Ok(());
        }
        match tokio::time::timeout_at(deadline, signal.next()).await {
            Ok(Some(_)) => {}
            Ok(None) => bail!("{what}: the stream ended"),
            Err(_) => bail!("{what}: not seen in {STEP_S} s"),
        }
    }
}

/// Whether `timeline` holds a message whose body is `body` (decrypted, for
/// an encrypted room).
async fn timeline_has(timeline: &Timeline, body: &str) -> bool {
    timeline.items().await.iter().any(|item| {
        item.as_event()
            .and_then(|e| e.content().as_message().map(|m| m.body() == body))
            .unwrap_or(false)
    })
}

/// Waits until `timeline` shows `body`; the error lists what it shows.
async fn timeline_until(timeline: &Timeline, body: &str) -> Result<()> {
    let (_, diffs) = timeline.subscribe().await;
    let waited = until("the message", diffs, async || {
        Ok(timeline_has(timeline, body).await)
    })
    .await;
    if waited.is_err() {
        let shown: Vec<String> = timeline
            .items()
            .await
            .iter()
            .filter_map(|i| i.as_event())
            .map(|e| {
                let c = e.content();
                match c.as_message() {
                    Some(m) => format!("message {:?}", m.body()),
                    None if c.is_unable_to_decrypt() => "unable to decrypt".to_owned(),
                    None => "other".to_owned(),
                }
            })
            .collect();
        bail!("{body:?} not in the timeline, which shows {shown:?}");
    }
    Ok(())
}

/// The steps' bookkeeping: one line per step, counts at the end.
#[derive(Default)]
struct Report {
    passed: usize,
    failed: usize,
    skipped: usize,
}

impl Report {
    /// Runs one step (capped at `STEP_S` plus a margin) unless an earlier
    /// one failed; `None` when it did not pass.
    async fn step<T>(&mut self, name: &str, f: impl Future<Output = Result<T>>) -> Option<T> {
        if self.failed > 0 {
            self.skipped += 1;
            println!("SKIP {name}: an earlier step failed");
            return None;
        }
        let started = Instant::now();
        let cap = Duration::from_secs(STEP_S + 15);
        let outcome = match tokio::time::timeout(cap, f).await {
            Ok(r) => r,
            Err(_) => Err(anyhow!("over the step's cap of {} s", cap.as_secs())),
        };
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(v) => {
                self.passed += 1;
                println!("PASS {name} ({ms} ms)");
                Some(v)
            }
            Err(e) => {
                self.failed += 1;
                println!("FAIL {name}: {e:#} ({ms} ms)");
                None
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let mut homeserver = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--homeserver" => homeserver = args.next(),
            other => bail!("unknown argument {other:?} (usage: --homeserver URL)"),
        }
    }
    let url = homeserver.context("--homeserver URL is required")?;
    let run = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis()
    );
    let password = format!("conformance-{run}");
    let (alice_name, bob_name) = (format!("sdk-alice-{run}"), format!("sdk-bob-{run}"));
    println!("matrix-rust-sdk 0.18 (RoomListService, EncryptionSyncService) against {url}");

    let mut report = Report::default();
    let mut users = None;
    if let Some(u) = report
        .step("register and log in two users", async {
            register(&url, &alice_name, &password).await?;
            register(&url, &bob_name, &password).await?;
            let alice = login(&url, &alice_name, &password).await?;
            let bob = login(&url, &bob_name, &password).await?;
            Ok((alice, bob))
        })
        .await
    {
        users = Some(u);
    }
    if let Some((alice, bob)) = &users {
        scenario(&mut report, alice, bob).await;
        for u in [alice, bob] {
            u.sync.stop().await;
        }
    } else {
        report.skipped += 6;
    }
    println!(
        "conformance: {} passed, {} failed, {} skipped",
        report.passed, report.failed, report.skipped
    );
    if report.failed > 0 {
        std::process::exit(1);
    }
    Ok(())
}

/// The steps after log-in.
async fn scenario(report: &mut Report, alice: &User, bob: &User) {
    let alice_id = alice.id();

    // Three rooms Bob creates and Alice joins, then Bob talks in them in
    // the order r1, r2, r3: the list must show r3, r2, r1.
    let rooms = report
        .step("the room list loads, ordered by activity", async {
            let mut rooms = Vec::new();
            for name in ["sdk r1", "sdk r2", "sdk r3"] {
                let id = create_room(bob, name, std::slice::from_ref(&alice_id), false).await?;
                alice.client.join_room_by_id(&id).await?;
                rooms.push(id);
            }
            for (i, id) in rooms.iter().enumerate() {
                send_text(bob, id, &format!("hello {}", i + 1)).await?;
            }
            let want: Vec<&OwnedRoomId> = rooms.iter().rev().collect();
            alice
                .list_until("r3, r2, r1 joined", |l| {
                    let ids: Vec<&OwnedRoomId> = l.iter().map(|(r, _)| r).collect();
                    ids == want && l.iter().all(|(_, s)| *s == RoomState::Joined)
                })
                .await?;
            Ok(rooms)
        })
        .await;
    let Some(rooms) = rooms else {
        report.skipped += 5;
        return;
    };
    let (r1, r2, r3) = (&rooms[0], &rooms[1], &rooms[2]);

    report
        .step("a new message moves its room to the top", async {
            send_text(bob, r1, "bump r1").await?;
            alice
                .list_until("r1, r3, r2", |l| {
                    let ids: Vec<&OwnedRoomId> = l.iter().map(|(r, _)| r).collect();
                    ids == [r1, r3, r2]
                })
                .await
        })
        .await;

    let timeline = report
        .step("a new message arrives in the room's Timeline", async {
            // As Element X does when the room is opened: subscribe to it,
            // then build its timeline.
            alice
                .sync
                .room_list_service()
                .subscribe_to_rooms(&[r1.as_ref()])
                .await;
            let timeline = alice.room(r1)?.timeline().await?;
            timeline_until(&timeline, "bump r1").await?;
            send_text(bob, r1, "live in r1").await?;
            timeline_until(&timeline, "live in r1").await?;
            Ok(timeline)
        })
        .await;

    report
        .step("unread counts reset after a read receipt", async {
            let timeline = timeline.as_ref().context("no timeline")?;
            let room = alice.room(r1)?;
            let unread = |room: &Room| {
                let server = room.unread_notification_counts().notification_count;
                (server, room.num_unread_messages())
            };
            // The badge Element X shows is the client-side count (MSC4186
            // leaves push counts to the client; Synapse sends none); the
            // server's count, where sent, must reset too.
            until(
                "unread messages above 0",
                room.subscribe_info(),
                async || Ok(unread(&room).1 > 0),
            )
            .await
            .with_context(|| format!("(server, client) unread = {:?}", unread(&room)))?;
            timeline.mark_as_read(ReceiptType::Read).await?;
            until("unread counts at 0", room.subscribe_info(), async || {
                Ok(unread(&room) == (0, 0))
            })
            .await
            .with_context(|| format!("(server, client) unread = {:?}", unread(&room)))
        })
        .await;

    report
        .step("an invite appears in the list and is accepted", async {
            let id = create_room(bob, "sdk invite", std::slice::from_ref(&alice_id), false).await?;
            alice
                .list_until("the invite", |l| {
                    l.iter().any(|(r, s)| *r == id && *s == RoomState::Invited)
                })
                .await?;
            alice.room(&id)?.join().await?;
            alice
                .list_until("the invite joined", |l| {
                    l.iter().any(|(r, s)| *r == id && *s == RoomState::Joined)
                })
                .await
        })
        .await;

    report
        .step("an encrypted message is decrypted", async {
            let id =
                create_room(bob, "sdk encrypted", std::slice::from_ref(&alice_id), true).await?;
            alice
                .list_until("the encrypted room's invite", |l| {
                    l.iter().any(|(r, s)| *r == id && *s == RoomState::Invited)
                })
                .await?;
            alice.room(&id)?.join().await?;
            alice
                .sync
                .room_list_service()
                .subscribe_to_rooms(&[id.as_ref()])
                .await;
            let timeline = alice.room(&id)?.timeline().await?;
            // Bob's client must see Alice's join before it shares the
            // room key with her devices.
            let bob_room = bob.room(&id)?;
            until(
                "Alice's join at Bob",
                bob_room.subscribe_info(),
                async || Ok(bob_room.joined_members_count() >= 2),
            )
            .await?;
            send_text(bob, &id, "secret hello").await?;
            timeline_until(&timeline, "secret hello").await
        })
        .await;
}
