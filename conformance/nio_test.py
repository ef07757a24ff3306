"""Real-client conformance test: matrix-nio against a running `myelin serve`.

What it owns: one scripted conversation between two users, driven only through
matrix-nio's `AsyncClient` (a client library nobody here wrote), with its own
end-to-end encryption (matrix-nio's `e2e` extra, backed by vodozemac). Every
step prints one line, `PASS <step>`, `FAIL <step>: <why>` or
`PENDING <step>: <reason>`, and the run closes with
`conformance: N passed, N failed, N skipped` (skipped = pending).

Invariants:
- Bounded: every request has a client-side timeout, every wait for a sync
  result has a deadline (`WAIT_S`), every step has a cap (`STEP_S`) and the
  whole run has a cap (`RUN_S`).
- Honest: a step passes only if the library saw what a real client needs to
  see. A step that fails and is listed in `PENDING` below prints `PENDING`
  instead of `FAIL`; any other failure makes the exit status non-zero. A
  listed step that passes prints `PASS` and a note to remove it from the list.

Who runs it: `conformance/run`, which starts a fresh server, passes its URL
as `--homeserver` and always stops the server afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import os
import sys
import tempfile
import time
import uuid
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any
from collections.abc import Awaitable, Callable

from nio import (
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    MemoryDownloadResponse,
    ProfileGetAvatarResponse,
    ProfileSetAvatarResponse,
    RoomMessageImage,
    ThumbnailResponse,
    UploadResponse,
    JoinResponse,
    KeysUploadResponse,
    LoginResponse,
    MegolmEvent,
    MessageDirection,
    PresenceSetResponse,
    ReceiptEvent,
    RegisterResponse,
    RoomCreateEvent,
    RoomCreateResponse,
    RoomInviteResponse,
    RoomLeaveResponse,
    RoomMemberEvent,
    RoomMessagesResponse,
    RoomMessageText,
    RoomNameEvent,
    RoomPutStateResponse,
    RoomSendResponse,
    RoomTopicEvent,
    RoomTypingResponse,
    SyncResponse,
    ToDeviceMessage,
    ToDeviceResponse,
    TypingNoticeEvent,
    UnknownToDeviceEvent,
    UpdateReceiptMarkerResponse,
)

# ---------------------------------------------------------------------------
# Known-pending steps: the ONLY place where a failing step is tolerated.
#
# Each entry is `step name: what the server still lacks`. A listed step that
# fails prints `PENDING <step>: <reason>` and does not fail CI; a listed step
# that passes prints `PASS` plus a reminder to delete its entry. Keep this as
# short as the truth allows: delete an entry as soon as the server does it.
# A step blocked only because a step it needs is pending is reported as
# pending too (with that reason), never as PASS.
# ---------------------------------------------------------------------------
PENDING: dict[str, str] = {}

WAIT_S = 10.0  # longest wait for something to show up through sync
PENDING_WAIT_S = 3.0  # the same for a step listed in PENDING (expected to fail)
STEP_S = 45.0  # cap of one step
RUN_S = 240.0  # cap of the whole run
POLL_MS = 2000  # long-poll timeout of each sync inside a wait
REQUEST_S = 20.0  # client-side timeout of one HTTP request (beyond long-polls)

RUN = uuid.uuid4().hex[:8]  # makes user names and bodies unique per run
PASSWORD = "conformance-" + RUN


# The sync wait of the step now running (WAIT_S, or PENDING_WAIT_S for a
# pending step); set by `run`.
STEP_WAIT_S = [WAIT_S]


class Failed(Exception):
    """A step's check did not hold; the message says what was seen."""


class Blocked(Exception):
    """A step could not run because a step it needs did not pass."""

    def __init__(self, needed: str, pending_reason: str | None):
        super().__init__(needed)
        self.needed = needed
        self.pending_reason = pending_reason


def expect(response: Any, kind: type, what: str) -> Any:
    """Returns `response` if it is a `kind`, else fails with the server's answer."""
    if not isinstance(response, kind):
        detail = getattr(response, "message", None) or repr(response)
        status = getattr(response, "status_code", None)
        raise Failed(f"{what}: expected {kind.__name__}, got {type(response).__name__} {status or ''} {detail}")
    return response


@dataclass
class User:
    """One user: its logged-in, encryption-enabled client and what its syncs saw."""

    name: str
    client: AsyncClient
    # Timeline event IDs seen per room across incremental syncs (for repeats).
    seen: dict[str, set[str]] = field(default_factory=dict)
    repeats: list[str] = field(default_factory=list)
    tokens: list[str] = field(default_factory=list)  # every next_batch, in order
    undecrypted: dict[str, MegolmEvent] = field(default_factory=dict)

    @property
    def user_id(self) -> str:
        return self.client.user_id

    async def sync_once(self, timeout_ms: int, sync_filter: Any = None) -> SyncResponse:
        """One incremental sync from the client's last `next_batch`, then the
        housekeeping `sync_forever` would do (key upload/query/claim, queued
        to-device messages), and records repeats of timeline events."""
        since = self.client.next_batch or None
        resp = await self.client.sync(timeout=max(1, timeout_ms), sync_filter=sync_filter, since=since)
        resp = expect(resp, SyncResponse, f"{self.name}'s /sync")
        if not resp.next_batch:
            raise Failed(f"{self.name}'s /sync returned an empty next_batch")
        self.tokens.append(resp.next_batch)
        for room_id, info in list(resp.rooms.join.items()) + list(resp.rooms.leave.items()):
            seen = self.seen.setdefault(room_id, set())
            for ev in info.timeline.events:
                eid = getattr(ev, "event_id", None)
                if eid is None:
                    continue
                if eid in seen and since is not None:
                    self.repeats.append(f"{eid} in {room_id} (since={since})")
                seen.add(eid)
                if isinstance(ev, MegolmEvent):
                    self.undecrypted[eid] = ev
        await self.housekeeping()
        return resp

    async def housekeeping(self) -> None:
        c = self.client
        if c.should_upload_keys:
            expect(await c.keys_upload(), KeysUploadResponse, f"{self.name}'s /keys/upload")
        if c.should_query_keys:
            await c.keys_query()
        if c.should_claim_keys:
            await c.keys_claim(c.get_users_for_key_claiming())
        await c.send_to_device_messages()

    async def sync_until(
        self,
        pred: Callable[[SyncResponse], Any],
        what: str,
        sync_filter: Any = None,
        wait_s: float | None = None,
    ) -> Any:
        """Syncs until `pred(response)` is truthy and returns its value; fails
        after `wait_s` seconds saying what was not seen."""
        wait_s = wait_s or STEP_WAIT_S[0]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise Failed(f"{self.name} did not see {what} through /sync within {wait_s:.0f}s")
            resp = await self.sync_once(int(min(POLL_MS, left * 1000)), sync_filter)
            got = pred(resp)
            if got:
                return got


def timeline(resp: SyncResponse, room_id: str) -> list:
    info = resp.rooms.join.get(room_id) or resp.rooms.leave.get(room_id)
    return list(info.timeline.events) if info else []


def joined_state_and_timeline(resp: SyncResponse, room_id: str) -> list:
    info = resp.rooms.join.get(room_id)
    return list(info.state) + list(info.timeline.events) if info else []


async def raw_get(client: AsyncClient, path: str) -> tuple[int, Any]:
    """GET `path` with the client's token, bypassing nio's parsing (for checks
    of what the server stored, e.g. that an encrypted event has no plaintext)."""
    resp = await client.send("GET", path, headers={"Authorization": f"Bearer {client.access_token}"}, timeout=REQUEST_S)
    try:
        body = await resp.json(content_type=None)
    except (ValueError, json.JSONDecodeError):
        body = await resp.text()
    return resp.status, body


async def joined_members(observer: User, room_id: str) -> tuple[int, set[str]]:
    status, answer = await raw_get(observer.client, f"/_matrix/client/v3/rooms/{room_id}/joined_members")
    return status, set(answer.get("joined", {})) if isinstance(answer, dict) else set()


async def ensure_membership(user: User, observer: User, room_id: str, action: str) -> None:
    """Makes `user` join or leave `room_id` with matrix-nio's own call (it
    sends no request body) unless `observer`'s /joined_members shows it done
    already, and checks the result there."""
    c, want = user.client, action == "join"
    _, members = await joined_members(observer, room_id)
    if (user.user_id in members) == want:
        return
    if want:
        r = await c.join(room_id)
        ok, path = isinstance(r, JoinResponse), f"/_matrix/client/v3/join/{room_id}"
    else:
        r = await c.room_leave(room_id)
        ok, path = isinstance(r, RoomLeaveResponse), f"/_matrix/client/v3/rooms/{room_id}/leave"
    if not ok:
        raise Failed(f"{action} ({path}) refused: {r}")
    status, members = await joined_members(observer, room_id)
    if (user.user_id in members) != want:
        raise Failed(f"after {action}, /joined_members (HTTP {status}) lists {sorted(members)}")


def new_client(homeserver: str, user_id: str, store: str | None) -> AsyncClient:
    config = AsyncClientConfig(
        encryption_enabled=store is not None,
        store_sync_tokens=False,
        request_timeout=REQUEST_S,
        max_timeouts=0,  # a timed-out request raises instead of being retried
        max_limit_exceeded=2,  # at most two waits on M_LIMIT_EXCEEDED
    )
    return AsyncClient(homeserver, user_id, store_path=store or "", config=config)


class Conversation:
    """The shared state of the scripted run; each `step_*` checks one thing."""

    def __init__(self, homeserver: str, store_root: str):
        self.hs = homeserver
        self.store_root = store_root
        self.users: dict[str, User] = {}
        self.room_id = ""
        self.sent: list[str] = []  # event IDs of the ordered messages, in send order
        self.bodies: list[str] = []
        self.paged: list[str] = []  # event IDs of the pagination batch, in send order
        self.enc_room_id = ""
        self.before_messages = ""  # B's next_batch just before the ordered messages
        self.wake_id = ""  # the message sent during B's long-poll
        self.wake_s = 0.0  # how long after that send the long-poll saw it
        self.plain_clients: list[AsyncClient] = []
        self.image = png(64, 48)
        self.image_uri = ""  # the image A sent in a message

    @property
    def a(self) -> User:
        return self.users["a"]

    @property
    def b(self) -> User:
        return self.users["b"]

    async def close(self) -> None:
        for c in self.plain_clients + [u.client for u in self.users.values()]:
            await c.close()

    # -- accounts ----------------------------------------------------------

    async def register(self, who: str) -> None:
        localpart = f"nio_{who}_{RUN}"
        c = new_client(self.hs, "", None)
        self.plain_clients.append(c)
        r = expect(
            await c.register(localpart, PASSWORD, device_name="conformance register"), RegisterResponse, "register"
        )
        if not r.user_id.startswith(f"@{localpart}:") or not r.access_token or not r.device_id:
            raise Failed(f"register answered user_id={r.user_id!r} token={bool(r.access_token)} device={r.device_id!r}")

    async def login(self, who: str) -> None:
        reg = next(c for c in self.plain_clients if c.user_id.startswith(f"@nio_{who}_"))
        store = os.path.join(self.store_root, who)
        os.makedirs(store, exist_ok=True)
        c = new_client(self.hs, reg.user_id, store)
        r = expect(await c.login(PASSWORD, device_name=f"conformance {who}"), LoginResponse, "login")
        if r.device_id == reg.device_id or not c.logged_in:
            raise Failed(f"login gave device {r.device_id!r}, the registration's was {reg.device_id!r}")
        if not c.olm:
            raise Failed("matrix-nio did not load its crypto store (is the e2e extra installed?)")
        self.users[who] = User(name=who.upper(), client=c)

    async def step_keys_uploaded(self) -> None:
        for u in (self.a, self.b):
            if not u.client.should_upload_keys:
                raise Failed(f"{u.name}: nio does not want to upload keys after login")
            r = expect(await u.client.keys_upload(), KeysUploadResponse, f"{u.name}'s /keys/upload")
            if not r.signed_curve25519_count:
                raise Failed(f"{u.name}: /keys/upload counted no signed_curve25519 one-time keys: {r}")
            if not u.client.olm_account_shared:
                raise Failed(f"{u.name}: nio does not consider its device keys uploaded")

    async def step_initial_sync(self) -> None:
        for u in (self.a, self.b):
            await u.sync_once(1)
            if len(u.tokens) != 1:
                raise Failed(f"{u.name}: no next_batch recorded")

    # -- a room ------------------------------------------------------------

    async def step_create_room(self) -> None:
        r = expect(
            await self.a.client.room_create(name=f"Conformance {RUN}", topic="first topic"),
            RoomCreateResponse,
            "createRoom",
        )
        self.room_id = r.room_id

    async def step_sees_room(self) -> None:
        def seen(resp: SyncResponse) -> bool:
            evs = joined_state_and_timeline(resp, self.room_id)
            return any(
                isinstance(e, RoomMemberEvent) and e.state_key == self.a.user_id and e.membership == "join" for e in evs
            )

        await self.a.sync_until(seen, "the new room in rooms.join with its own join")
        room = self.a.client.rooms.get(self.room_id)
        if room is None or room.name != f"Conformance {RUN}" or room.topic != "first topic":
            raise Failed(
                f"nio's room after sync: name={getattr(room, 'name', None)!r} topic={getattr(room, 'topic', None)!r}"
            )

    async def step_invite(self) -> None:
        expect(await self.a.client.room_invite(self.room_id, self.b.user_id), RoomInviteResponse, "invite")

    async def step_sees_invite(self) -> None:
        def invited(resp: SyncResponse) -> bool:
            info = resp.rooms.invite.get(self.room_id)
            return bool(info) and any(
                isinstance(e, InviteMemberEvent) and e.state_key == self.b.user_id and e.membership == "invite"
                for e in info.invite_state
            )

        await self.b.sync_until(invited, "the invite in rooms.invite with its stripped m.room.member")

    async def step_join(self) -> None:
        r = expect(await self.b.client.join(self.room_id), JoinResponse, "join")
        if r.room_id != self.room_id:
            raise Failed(f"join answered room_id {r.room_id}")

    async def step_member(self) -> None:
        await ensure_membership(self.b, self.a, self.room_id, "join")

    async def step_sees_join(self) -> None:
        def joined(resp: SyncResponse) -> bool:
            return any(
                isinstance(e, RoomMemberEvent) and e.state_key == self.b.user_id and e.membership == "join"
                for e in joined_state_and_timeline(resp, self.room_id)
            )

        await self.b.sync_until(joined, "the room in rooms.join with its own join")
        await self.a.sync_until(joined, "B's join in the room's timeline")

    async def step_messages_in_order(self) -> None:
        before = self.before_messages = self.b.client.next_batch
        self.bodies = [f"message {i} of run {RUN}" for i in range(1, 6)]
        for body in self.bodies:
            r = expect(
                await self.a.client.room_send(self.room_id, "m.room.message", {"msgtype": "m.text", "body": body}),
                RoomSendResponse,
                "send",
            )
            self.sent.append(r.event_id)
        got: list[str] = []

        def collect(resp: SyncResponse) -> bool:
            for e in timeline(resp, self.room_id):
                if isinstance(e, RoomMessageText) and e.event_id in self.sent:
                    got.append(e.event_id)
                    if e.body != self.bodies[self.sent.index(e.event_id)] or e.sender != self.a.user_id:
                        raise Failed(f"event {e.event_id}: body {e.body!r} sender {e.sender}")
            return len(got) >= len(self.sent)

        await self.b.sync_until(collect, "A's 5 messages")
        if got != self.sent:
            raise Failed(f"B saw {got}, A sent {self.sent}")
        if self.b.client.next_batch == before:
            raise Failed("next_batch did not move although 5 events arrived")

    async def step_next_batch(self) -> str:
        b = self.b
        if b.repeats:
            raise Failed(f"incremental syncs repeated events: {b.repeats[:3]}")
        # Nothing new: an incremental sync from the latest token carries no
        # timeline events for the room.
        resp = await b.sync_once(1)
        if timeline(resp, self.room_id):
            raise Failed(f"sync from the latest token repeated {len(timeline(resp, self.room_id))} events")
        # Tokens are positions: replaying the token from before the messages
        # gives the same messages again, in order (raw, so nio's state is
        # untouched).
        status, body = await raw_get(b.client, f"/_matrix/client/v3/sync?since={self.before_messages}&timeout=0")
        if status != 200 or not isinstance(body, dict):
            raise Failed(f"replaying since={self.before_messages}: HTTP {status} {body}")
        evs = body.get("rooms", {}).get("join", {}).get(self.room_id, {}).get("timeline", {}).get("events", [])
        replayed = [e.get("event_id") for e in evs if e.get("event_id") in self.sent]
        if replayed != self.sent:
            raise Failed(f"replaying the next_batch from before the messages gave {replayed}, expected {self.sent}")
        # A long-poll (timeout 20 s) wakes for a new message: it comes back
        # with it well before the timeout. (A poll may also come back earlier
        # for other news; polling on from its token must then see the message.)
        poll = asyncio.ensure_future(b.client.sync(timeout=20000, since=b.client.next_batch))
        await asyncio.sleep(0.3)
        body = {"msgtype": "m.text", "body": f"wake {RUN}"}
        r = expect(await self.a.client.room_send(self.room_id, "m.room.message", body), RoomSendResponse, "send")
        self.wake_id = r.event_id
        t0 = time.monotonic()
        polls = 0
        while True:
            polls += 1
            try:
                resp = await asyncio.wait_for(poll, max(0.1, 10 - (time.monotonic() - t0)))
            except TimeoutError:
                raise Failed(
                    f"a 20 s long-poll had not seen the new message 10 s after the send ({polls} polls)"
                ) from None
            expect(resp, SyncResponse, "B's long-poll")
            if r.event_id in [e.event_id for e in timeline(resp, self.room_id)]:
                break
            poll = asyncio.ensure_future(b.client.sync(timeout=20000, since=b.client.next_batch))
        self.wake_s = time.monotonic() - t0
        await b.housekeeping()
        return f"a 20 s long-poll saw the new message {self.wake_s * 1000:.0f} ms after the send returned"

    async def step_paginate(self) -> None:
        self.paged = []
        for i in range(1, 13):
            r = expect(
                await self.a.client.room_send(
                    self.room_id, "m.room.message", {"msgtype": "m.text", "body": f"page {i} of run {RUN}"}
                ),
                RoomSendResponse,
                "send",
            )
            self.paged.append(r.event_id)
        limit3 = {"room": {"timeline": {"limit": 3}}}

        def limited(resp: SyncResponse):
            info = resp.rooms.join.get(self.room_id)
            return info if info and info.timeline.events else None

        info = await self.b.sync_until(limited, "the 12 new messages", sync_filter=limit3)
        tl = [e.event_id for e in info.timeline.events]
        if tl != self.paged[-3:]:
            raise Failed(f"timeline with limit 3 was {tl}, expected the last 3 sent {self.paged[-3:]}")
        if not info.timeline.limited or not info.timeline.prev_batch:
            raise Failed(f"limited={info.timeline.limited} prev_batch={info.timeline.prev_batch!r}")
        token, back, pages = info.timeline.prev_batch, [], 0
        while pages < 20:
            pages += 1
            m = expect(
                await self.b.client.room_messages(self.room_id, start=token, direction=MessageDirection.back, limit=5),
                RoomMessagesResponse,
                "/messages",
            )
            back += m.chunk
            if not m.chunk or not m.end or m.end == token:
                break
            token = m.end
        older = [getattr(e, "event_id", None) for e in reversed(back)]
        if set(older) & set(self.paged[-3:]):
            raise Failed("/messages back from prev_batch repeated events already in the timeline")
        want = self.sent + ([self.wake_id] if self.wake_id else []) + self.paged[:-3]
        got = [e for e in older if e in want]
        if got != want:
            raise Failed(
                f"/messages back from prev_batch gave {len(got)} of the {len(want)} earlier messages (or out of order)"
            )
        if not back or not isinstance(back[-1], RoomCreateEvent):
            last = type(back[-1]).__name__ if back else None
            raise Failed(f"paginating back did not end at m.room.create (last: {last}, {pages} pages)")

    async def step_state_change(self, event_type: str, content: dict, cls: type, attr: str) -> None:
        expect(await self.a.client.room_put_state(self.room_id, event_type, content), RoomPutStateResponse, event_type)
        want = next(iter(content.values()))

        def seen(resp: SyncResponse) -> bool:
            return any(
                isinstance(e, cls) and getattr(e, attr) == want for e in joined_state_and_timeline(resp, self.room_id)
            )

        await self.b.sync_until(seen, f"the new {event_type}")
        room = self.b.client.rooms.get(self.room_id)
        if getattr(room, attr, None) != want:
            raise Failed(f"nio's room {attr} is {getattr(room, attr, None)!r}, expected {want!r}")

    # -- ephemeral and transitory -------------------------------------------

    def ephemeral(self, resp: SyncResponse, cls: type) -> list:
        info = resp.rooms.join.get(self.room_id)
        return [e for e in info.ephemeral if isinstance(e, cls)] if info else []

    async def step_typing(self) -> None:
        expect(await self.b.client.room_typing(self.room_id, True, 20000), RoomTypingResponse, "typing")
        await self.a.sync_until(
            lambda r: any(self.b.user_id in e.users for e in self.ephemeral(r, TypingNoticeEvent)),
            "B typing (m.typing)",
        )
        expect(await self.b.client.room_typing(self.room_id, False), RoomTypingResponse, "typing stop")
        await self.a.sync_until(
            lambda r: any(self.b.user_id not in e.users for e in self.ephemeral(r, TypingNoticeEvent)),
            "B stop typing (m.typing without B)",
        )

    async def step_receipt(self) -> None:
        r = expect(
            await self.a.client.room_send(
                self.room_id, "m.room.message", {"msgtype": "m.text", "body": f"read me {RUN}"}
            ),
            RoomSendResponse,
            "send",
        )
        last = r.event_id
        expect(await self.b.client.update_receipt_marker(self.room_id, last), UpdateReceiptMarkerResponse, "receipt")
        await self.a.sync_until(
            lambda r: any(
                rc.user_id == self.b.user_id and rc.event_id == last and rc.receipt_type == "m.read"
                for e in self.ephemeral(r, ReceiptEvent)
                for rc in e.receipts
            ),
            "B's m.read receipt on the last message",
        )

    async def step_to_device(self) -> None:
        kind = "org.myelin.conformance.ping"
        content = {"run": RUN, "n": 1}
        msg = ToDeviceMessage(kind, self.b.user_id, self.b.client.device_id, content)
        expect(await self.a.client.to_device(msg, tx_id=f"ping-{RUN}"), ToDeviceResponse, "sendToDevice")

        def got(resp: SyncResponse) -> list:
            return [
                e
                for e in resp.to_device_events
                if isinstance(e, UnknownToDeviceEvent) and e.type == kind and e.source.get("content") == content
            ]

        first = await self.b.sync_until(got, "A's to-device message")
        if len(first) != 1 or first[0].sender != self.a.user_id:
            raise Failed(f"to-device delivered {len(first)} times in one sync, sender {first[0].sender}")
        again = got(await self.b.sync_once(1))
        if again:
            raise Failed("the to-device message came again after the sync that acknowledged it")

    async def step_presence(self) -> None:
        status = f"testing {RUN}"
        expect(await self.b.client.set_presence("online", status), PresenceSetResponse, "presence")
        await self.a.sync_until(
            lambda r: any(
                p.user_id == self.b.user_id and p.presence == "online" and p.status_msg == status
                for p in r.presence_events
            ),
            "B's presence (online, with status message)",
        )

    # -- end-to-end encryption ---------------------------------------------

    async def step_e2ee_room(self) -> None:
        enc = {"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}
        r = expect(
            await self.a.client.room_create(name=f"Secret {RUN}", invite=[self.b.user_id], initial_state=[enc]),
            RoomCreateResponse,
            "createRoom (encrypted)",
        )
        self.enc_room_id = r.room_id
        await self.b.sync_until(lambda resp: self.enc_room_id in resp.rooms.invite, "the invite to the encrypted room")
        await ensure_membership(self.b, self.a, self.enc_room_id, "join")
        for u in (self.a, self.b):

            def ready(_resp: SyncResponse, u: User = u) -> bool:
                room = u.client.rooms.get(self.enc_room_id)
                return bool(room and room.encrypted and self.b.user_id in room.users and self.a.user_id in room.users)

            await u.sync_until(ready, "the encrypted room with both members")

    async def exchange(self, sender: User, receiver: User, body: str) -> None:
        r = expect(
            await sender.client.room_send(
                self.enc_room_id, "m.room.message", {"msgtype": "m.text", "body": body}, ignore_unverified_devices=True
            ),
            RoomSendResponse,
            f"{sender.name}'s encrypted send",
        )
        status, raw = await raw_get(receiver.client, f"/_matrix/client/v3/rooms/{self.enc_room_id}/event/{r.event_id}")
        kind = raw.get("type") if isinstance(raw, dict) else raw
        if status != 200 or kind != "m.room.encrypted" or body in json.dumps(raw):
            raise Failed(f"the stored event is not ciphertext only: HTTP {status} type={kind}")

        def decrypted(resp: SyncResponse) -> bool:
            for e in timeline(resp, self.enc_room_id):
                if isinstance(e, RoomMessageText) and e.event_id == r.event_id:
                    if e.body != body or not e.decrypted:
                        raise Failed(f"decrypted body {e.body!r} (decrypted={e.decrypted})")
                    return True
            late = receiver.undecrypted.get(r.event_id)
            if late is not None:  # the room key came after the event: retry
                try:
                    e = receiver.client.decrypt_event(late)
                except Exception:  # noqa: BLE001 - still no key; keep syncing
                    return False
                return isinstance(e, RoomMessageText) and e.body == body
            return False

        await receiver.sync_until(decrypted, f"{sender.name}'s encrypted message, decrypted")

    async def step_e2ee_a_to_b(self) -> None:
        await self.exchange(self.a, self.b, f"secret from A {RUN}")

    async def step_e2ee_b_to_a(self) -> None:
        await self.exchange(self.b, self.a, f"secret from B {RUN}")

    # -- media ---------------------------------------------------------------

    async def upload(self, u: User, data: bytes, content_type: str, filename: str) -> str:
        r, _ = await u.client.upload(io.BytesIO(data), content_type=content_type, filename=filename, filesize=len(data))
        r = expect(r, UploadResponse, f"{u.name}'s upload")
        if not r.content_uri.startswith("mxc://"):
            raise Failed(f"upload answered content_uri {r.content_uri!r}")
        return r.content_uri

    async def download(self, u: User, uri: str, what: str) -> bytes:
        r = expect(await u.client.download(mxc=uri), MemoryDownloadResponse, f"{u.name} downloads {what}")
        return r.body

    async def step_avatar(self) -> None:
        avatar = png(32, 32)
        uri = await self.upload(self.a, avatar, "image/png", "avatar.png")
        expect(await self.a.client.set_avatar(uri), ProfileSetAvatarResponse, "A sets the avatar")
        r = expect(await self.b.client.get_avatar(self.a.user_id), ProfileGetAvatarResponse, "B reads A's avatar")
        if r.avatar_url != uri:
            raise Failed(f"B sees avatar_url {r.avatar_url!r}, A set {uri!r}")
        if await self.download(self.b, uri, "A's avatar") != avatar:
            raise Failed("B downloaded other bytes than A's avatar")

    async def step_image_message(self) -> None:
        self.image_uri = await self.upload(self.a, self.image, "image/png", "picture.png")
        content = {
            "msgtype": "m.image",
            "body": "picture.png",
            "url": self.image_uri,
            "info": {"mimetype": "image/png", "size": len(self.image), "w": 64, "h": 48},
        }
        r = expect(await self.a.client.room_send(self.room_id, "m.room.message", content), RoomSendResponse, "send")
        urls: list[str] = []

        def seen(resp: SyncResponse) -> bool:
            urls.extend(
                e.url for e in timeline(resp, self.room_id) if isinstance(e, RoomMessageImage) and e.event_id == r.event_id
            )
            return bool(urls)

        await self.b.sync_until(seen, "A's image message")
        if urls[0] != self.image_uri:
            raise Failed(f"B's image event has url {urls[0]!r}, A sent {self.image_uri!r}")
        if await self.download(self.b, urls[0], "the image") != self.image:
            raise Failed("B downloaded other bytes than A's image")

    async def step_thumbnail(self) -> None:
        server_name, media_id = self.image_uri[len("mxc://") :].split("/", 1)
        r = expect(
            await self.b.client.thumbnail(server_name, media_id, 32, 32),
            ThumbnailResponse,
            "B's thumbnail of the image",
        )
        if r.content_type != "image/png" or not r.body.startswith(b"\x89PNG"):
            raise Failed(f"thumbnail is {r.content_type!r}, {len(r.body)} bytes")
        width, height = struct.unpack(">II", r.body[16:24])
        # A 64×48 original within the snapped 320×240 `scale` size is served as is.
        if (width, height) != (64, 48):
            raise Failed(f"thumbnail is {width}×{height}, expected the 64×48 original")

    # -- leaving -------------------------------------------------------------

    async def step_leave(self) -> None:
        expect(await self.b.client.room_leave(self.room_id), RoomLeaveResponse, "leave")

    async def step_left(self) -> None:
        await ensure_membership(self.b, self.a, self.room_id, "leave")

    async def step_sees_leave(self) -> None:
        await self.b.sync_until(lambda r: self.room_id in r.rooms.leave, "the room in rooms.leave")
        await self.a.sync_until(
            lambda r: any(
                isinstance(e, RoomMemberEvent) and e.state_key == self.b.user_id and e.membership == "leave"
                for e in timeline(r, self.room_id)
            ),
            "B's leave in the room's timeline",
        )


def png(width: int, height: int) -> bytes:
    """A `width` × `height` RGB PNG (a gradient), made without an image library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    raw = b"".join(
        b"\x00" + b"".join(bytes((x * 4 % 256, y * 5 % 256, 128)) for x in range(width)) for y in range(height)
    )
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def plan(c: Conversation) -> list[tuple[str, list[str], Callable[[], Awaitable[str | None]]]]:
    """The steps in order: (name, steps it needs, body). A step needs another
    only when it cannot run without it (e.g. no room to join)."""
    login_a, login_b = "log in A (new device, crypto store)", "log in B (new device, crypto store)"
    keys, initial = "e2ee: device and one-time keys uploaded", "initial sync gives next_batch"
    create, invite = "A creates a room (name, topic)", "A invites B"
    nio_join, join = "B joins with matrix-nio's join (POST /join, no body)", "B is a member (/joined_members)"
    nio_leave, leave = "B leaves with matrix-nio's room_leave (POST .../leave, no body)", "B has left (/joined_members)"
    messages = "messages arrive in order through sync"
    enc_room = "e2ee: encrypted room joined by both"
    return [
        ("register A", [], lambda: c.register("a")),
        ("register B", [], lambda: c.register("b")),
        (login_a, ["register A"], lambda: c.login("a")),
        (login_b, ["register B"], lambda: c.login("b")),
        (keys, [login_a, login_b], c.step_keys_uploaded),
        (initial, [login_a, login_b], c.step_initial_sync),
        (create, [initial], c.step_create_room),
        ("A sees the new room, its name, topic and own join through sync", [create], c.step_sees_room),
        (invite, [create], c.step_invite),
        ("B sees the invite through sync (stripped state)", [invite], c.step_sees_invite),
        (nio_join, [invite], c.step_join),
        (join, [invite], c.step_member),
        ("both see B's join through sync", [join], c.step_sees_join),
        (messages, [join], c.step_messages_in_order),
        ("next_batch progression (no repeats, replayable tokens, long-poll wakes)", [messages], c.step_next_batch),
        ("limited timeline, then /messages back from prev_batch", [join], c.step_paginate),
        (
            "room name change seen",
            [join],
            lambda: c.step_state_change("m.room.name", {"name": f"Renamed {RUN}"}, RoomNameEvent, "name"),
        ),
        (
            "room topic change seen",
            [join],
            lambda: c.step_state_change("m.room.topic", {"topic": f"New topic {RUN}"}, RoomTopicEvent, "topic"),
        ),
        ("typing seen by the other user", [join], c.step_typing),
        ("read receipt seen", [join], c.step_receipt),
        ("to-device message delivered once", [initial], c.step_to_device),
        ("presence seen", [join], c.step_presence),
        ("media: A uploads an avatar, sets it, and B downloads it", [login_a, login_b], c.step_avatar),
        ("media: A sends an image message that B downloads", [join], c.step_image_message),
        ("media: B gets a thumbnail of the image", ["media: A sends an image message that B downloads"], c.step_thumbnail),
        (enc_room, [keys, initial], c.step_e2ee_room),
        ("e2ee: B decrypts A's message", [enc_room], c.step_e2ee_a_to_b),
        ("e2ee: A decrypts B's reply", [enc_room], c.step_e2ee_b_to_a),
        (nio_leave, [join], c.step_leave),
        (leave, [join], c.step_left),
        ("both see the leave through sync", [leave], c.step_sees_leave),
    ]


async def run(homeserver: str, only: set[str] | None) -> int:
    outcome: dict[str, str] = {}  # step -> "pass" | "fail" | "pending"
    why_pending: dict[str, str] = {}
    counts = {"pass": 0, "fail": 0, "pending": 0}
    unknown = set(PENDING) - {name for name, _, _ in plan(Conversation("", ""))}
    if unknown:
        print(f"FAIL pending list: names no step: {sorted(unknown)}")
        counts["fail"] += 1
    with tempfile.TemporaryDirectory(prefix="nio-store-") as store:
        conv = Conversation(homeserver, store)
        started = time.monotonic()
        try:
            for name, needs, body in plan(conv):
                if only and name not in only:
                    continue
                t0 = time.monotonic()
                STEP_WAIT_S[0] = PENDING_WAIT_S if name in PENDING else WAIT_S
                try:
                    for need in needs:
                        if outcome.get(need) != "pass":
                            raise Blocked(need, why_pending.get(need))
                    note = await asyncio.wait_for(body(), STEP_S)
                    result, detail = "pass", f": {note}" if note else ""
                except Blocked as e:
                    if e.pending_reason is not None:
                        result, detail = "pending", f"needs '{e.needed}', which is pending ({e.pending_reason})"
                    else:
                        result, detail = "fail", f"needs '{e.needed}', which did not pass"
                except TimeoutError:
                    result, detail = "fail", f"step did not finish within {STEP_S:.0f}s"
                except Failed as e:
                    result, detail = "fail", str(e)
                except Exception as e:  # noqa: BLE001 - a library or transport error is a failure of this step
                    result, detail = "fail", f"{type(e).__name__}: {e}"
                took = time.monotonic() - t0
                if result == "fail" and name in PENDING:
                    result, detail = "pending", f"{PENDING[name]} [saw: {detail}]"
                outcome[name] = result
                counts[result] += 1
                if result == "pass":
                    stale = "  (listed in PENDING but passed: delete its entry)" if name in PENDING else ""
                    print(f"PASS {name} ({took:.2f}s){detail}{stale}", flush=True)
                elif result == "pending":
                    why_pending[name] = PENDING.get(name, detail)
                    print(f"PENDING {name}: {detail}", flush=True)
                else:
                    print(f"FAIL {name}: {detail} ({took:.2f}s)", flush=True)
        finally:
            await conv.close()
        total = time.monotonic() - started
    print(f"\nmatrix-nio conformance against {homeserver}: {total:.1f}s; skipped = known-pending (see PENDING lines)")
    print(f"conformance: {counts['pass']} passed, {counts['fail']} failed, {counts['pending']} skipped")
    return 1 if counts["fail"] else 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--homeserver", required=True, help="base URL, e.g. http://127.0.0.1:8008")
    p.add_argument("--only", action="append", help="run only this step (repeatable; its needs must be listed too)")
    p.add_argument("-v", "--verbose", action="store_true", help="show matrix-nio's own log")
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, stream=sys.stderr)
    try:
        return asyncio.run(asyncio.wait_for(run(args.homeserver, set(args.only or []) or None), RUN_S))
    except TimeoutError:
        print(f"FAIL whole run: did not finish within {RUN_S:.0f}s")
        print("conformance: 0 passed, 1 failed")
        return 1


if __name__ == "__main__":
    sys.exit(main())
