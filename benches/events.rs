//! Benchmarks of event building, hashing and signing (`src/events/`), the
//! CPU work of every event send, for each supported room version.
//!
//! Groups (one element = one event), each with `v10`, `v11`, `v12`:
//! - `events/build_pdu`: [`build_pdu`] of an `m.room.message` (a 100-byte
//!   body, one `prev_event`, three `auth_events`): canonical JSON, content
//!   hash, redaction, ed25519 signature and the event ID (reference hash);
//! - `events/event_id`: [`recompute_event_id`] of that event alone (redact,
//!   canonical JSON, SHA-256), the hashing share of the above;
//! - `events/sign`: ruma's `hash_and_sign_event` (content hash and
//!   signature, what `build_pdu` calls) on the unsigned event object, the
//!   signing share.
//!
//! Run: `cargo bench --bench events`. Results: `docs/performance.md`
//! ("Server under load").

use std::hint::black_box;
use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput};
use myelin::events::{PduTemplate, Signer, build_pdu, recompute_event_id, rules};
use ruma::signatures::{Ed25519KeyPair, hash_and_sign_event};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId,
    RoomVersionId, UInt, UserId,
};

fn signer() -> Signer {
    let der = Ed25519KeyPair::generate();
    Signer {
        server_name: "example.org".try_into().expect("server name"),
        key: Arc::new(Ed25519KeyPair::from_der(&der, "1".into()).expect("key parses")),
    }
}

fn event_ids(n: usize) -> Vec<OwnedEventId> {
    (0..n)
        .map(|i| {
            OwnedEventId::try_from(format!("$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Z{i}"))
                .expect("event ID")
        })
        .collect()
}

const VERSIONS: [(&str, RoomVersionId); 3] = [
    ("v10", RoomVersionId::V10),
    ("v11", RoomVersionId::V11),
    ("v12", RoomVersionId::V12),
];

fn events(c: &mut Criterion) {
    let signer = signer();
    let room_id = <&RoomId>::try_from("!aBcDeFgHiJkLmNoPqR:example.org").expect("room ID");
    let sender = <&UserId>::try_from("@alice:example.org").expect("user ID");
    let content = serde_json::json!({"msgtype": "m.text", "body": "x".repeat(100)});
    let prev = event_ids(1);
    let auth = event_ids(3);
    let template = |version| PduTemplate {
        room_version: version,
        room_id: Some(room_id),
        sender,
        event_type: "m.room.message",
        state_key: None,
        content: &content,
        redacts: None,
        prev_events: &prev,
        auth_events: &auth,
        depth: 42,
        origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new_saturating(1_700_000_000_000)),
    };

    let mut g = c.benchmark_group("events/build_pdu");
    g.throughput(Throughput::Elements(1));
    for (name, version) in &VERSIONS {
        g.bench_function(*name, |b| {
            b.iter(|| build_pdu(black_box(&template(version)), &signer).expect("builds"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("events/event_id");
    g.throughput(Throughput::Elements(1));
    for (name, version) in &VERSIONS {
        let pdu = build_pdu(&template(version), &signer).expect("builds");
        assert_eq!(
            &recompute_event_id(&pdu, version).expect("hashes"),
            pdu.event_id()
        );
        g.bench_function(*name, |b| {
            b.iter(|| recompute_event_id(black_box(&pdu), version).expect("hashes"))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("events/sign");
    g.throughput(Throughput::Elements(1));
    for (name, version) in &VERSIONS {
        let redaction = rules(version).expect("supported").redaction;
        let mut unsigned: CanonicalJsonObject = build_pdu(&template(version), &signer)
            .expect("builds")
            .to_object();
        unsigned.insert(
            "hashes".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        unsigned.insert(
            "signatures".into(),
            CanonicalJsonValue::Object(Default::default()),
        );
        g.bench_function(*name, |b| {
            b.iter_batched_ref(
                || unsigned.clone(),
                |object| {
                    hash_and_sign_event("example.org", signer.key.as_ref(), object, &redaction)
                        .expect("signs")
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Runs every group (what `criterion_main!` expands to, written out so the
/// crate has no undocumented public function).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    events(&mut criterion);
    criterion.final_summary();
}
