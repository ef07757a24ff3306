//! Known vectors from the spec's signing appendix, and property checks of
//! built PDUs per room version (event ID = reference hash, signature and
//! content hash verify, redaction keeps what each version keeps,
//! authorization accepts and rejects).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine;
use ruma::events::StateEventType;
use ruma::serde::Base64;
use ruma::signatures::{Ed25519KeyPair, Verified, hash_and_sign_event, sign_json, verify_event};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, RoomVersionId, UInt, room_id, user_id};
use serde_json::json;

use super::*;

/// The spec's test signing key (appendices, "Signing details"): seed
/// `YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1`, key ID `ed25519:1`.
fn spec_key() -> Ed25519KeyPair {
    // The spec's seed has non-zero trailing bits; decode leniently.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::general_purpose::NO_PAD.with_decode_allow_trailing_bits(true),
    );
    let seed = lenient
        .decode("YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")
        .unwrap();
    // PKCS#8 v1 wrapping of an ed25519 seed (RFC 8410).
    let mut der = hex::decode("302e020100300506032b657004220420").unwrap();
    der.extend_from_slice(&seed);
    Ed25519KeyPair::from_der(&der, "1".into()).unwrap()
}

fn signer() -> Signer {
    Signer {
        server_name: "example.org".try_into().unwrap(),
        key: Arc::new(spec_key()),
    }
}

fn verify(pdu: &Pdu, version: &RoomVersionId) -> Verified {
    let key = spec_key();
    let public = Base64::new(key.public_key().to_vec());
    let mut set = BTreeMap::new();
    set.insert("ed25519:1".to_string(), public);
    let mut map = BTreeMap::new();
    map.insert("example.org".to_string(), set);
    verify_event(&map, &pdu.to_object(), &rules(version).unwrap()).unwrap()
}

#[test]
fn spec_vector_signing_empty_object() {
    let mut object = ruma::CanonicalJsonObject::new();
    sign_json("domain", &spec_key(), &mut object).unwrap();
    assert_eq!(
        serde_json::to_string(&object).unwrap(),
        r#"{"signatures":{"domain":{"ed25519:1":"K8280/U9SSy9IVtjBuVeLr+HpOB4BQFWbg+UZaADMtTdGYI7Geitb76LTrr5QV/7Xg4ahLwYGYZzuHGZKM5ZAQ"}}}"#
    );
}

#[test]
fn spec_vector_signing_event() {
    let mut object: ruma::CanonicalJsonObject = serde_json::from_value(json!({
        "room_id": "!x:domain", "sender": "@a:domain", "origin": "domain",
        "origin_server_ts": 1000000, "signatures": {}, "hashes": {}, "type": "X",
        "content": {}, "prev_events": [], "auth_events": [], "depth": 3,
        "unsigned": {"age_ts": 1000000}
    }))
    .unwrap();
    let rules = rules(&RoomVersionId::V10).unwrap();
    hash_and_sign_event("domain", &spec_key(), &mut object, &rules.redaction).unwrap();
    assert_eq!(
        serde_json::to_value(&object["hashes"]).unwrap(),
        json!({"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"})
    );
    assert_eq!(
        serde_json::to_value(&object["signatures"]).unwrap(),
        json!({"domain": {"ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"}})
    );
}

/// A create event, the creator's join and power levels, built for `version`.
fn genesis(version: &RoomVersionId) -> (ruma::OwnedRoomId, Vec<Pdu>) {
    let alice = user_id!("@alice:example.org");
    let v1_room = room_id!("!room:example.org");
    let ts = MilliSecondsSinceUnixEpoch(UInt::new(1_700_000_000_000).unwrap());
    let mut create_content = json!({"room_version": version.as_str()});
    if *version == RoomVersionId::V10 {
        create_content["creator"] = alice.as_str().into();
    }
    let v12 = *version == RoomVersionId::V12;
    let create = build_pdu(
        &PduTemplate {
            room_version: version,
            room_id: (!v12).then_some(v1_room),
            sender: alice,
            event_type: "m.room.create",
            state_key: Some(""),
            content: &create_content,
            redacts: None,
            prev_events: &[],
            auth_events: &[],
            depth: 1,
            origin_server_ts: ts,
        },
        &signer(),
    )
    .unwrap();
    let room_id = if v12 {
        room_id_of_create(create.event_id()).unwrap()
    } else {
        v1_room.to_owned()
    };
    let create_auth: Vec<OwnedEventId> = if v12 {
        vec![]
    } else {
        vec![create.event_id().clone()]
    };
    let join = build_pdu(
        &PduTemplate {
            room_version: version,
            room_id: Some(&room_id),
            sender: alice,
            event_type: "m.room.member",
            state_key: Some(alice.as_str()),
            content: &json!({"membership": "join"}),
            redacts: None,
            prev_events: std::slice::from_ref(create.event_id()),
            auth_events: &create_auth,
            depth: 2,
            origin_server_ts: ts,
        },
        &signer(),
    )
    .unwrap();
    let mut pl_auth = create_auth.clone();
    pl_auth.push(join.event_id().clone());
    let users = if v12 {
        json!({})
    } else {
        json!({alice.as_str(): 100})
    };
    let pl = build_pdu(
        &PduTemplate {
            room_version: version,
            room_id: Some(&room_id),
            sender: alice,
            event_type: "m.room.power_levels",
            state_key: Some(""),
            content: &json!({"users": users, "invite": 50, "events_default": 0}),
            redacts: None,
            prev_events: std::slice::from_ref(join.event_id()),
            auth_events: &pl_auth,
            depth: 3,
            origin_server_ts: ts,
        },
        &signer(),
    )
    .unwrap();
    (room_id, vec![create, join, pl])
}

#[test]
fn built_pdus_have_reference_hash_ids_and_verify() {
    for version in SUPPORTED_ROOM_VERSIONS {
        let (room_id, events) = genesis(&version);
        for pdu in &events {
            assert_eq!(
                &recompute_event_id(pdu, &version).unwrap(),
                pdu.event_id(),
                "{version}"
            );
            assert!(pdu.event_id().as_str().starts_with('$'));
            assert!(!pdu.json().contains("\"event_id\""));
            assert!(!pdu.json().contains("\"unsigned\""));
            assert_eq!(verify(pdu, &version), Verified::All, "{version}");
        }
        let create = &events[0];
        if version == RoomVersionId::V12 {
            assert!(create.room_id_field().is_none());
            assert_eq!(room_id.as_str()[1..], create.event_id().as_str()[1..]);
        } else {
            assert_eq!(create.room_id_field(), Some(&*room_id));
        }
        // Tampering with content the redaction drops breaks the content
        // hash but not the signature.
        let mut tampered = events[1].to_object();
        tampered.insert(
            "content".into(),
            serde_json::from_value(json!({"membership": "join", "displayname": "x"})).unwrap(),
        );
        let tampered = Pdu::from_stored(
            events[1].event_id().clone(),
            serde_json::to_string(&tampered).unwrap(),
        )
        .unwrap();
        assert_eq!(verify(&tampered, &version), Verified::Signatures);
    }
}

#[test]
fn pdus_are_canonical_json() {
    let (_, events) = genesis(&RoomVersionId::V11);
    for pdu in &events {
        let value: serde_json::Value = serde_json::from_str(pdu.json()).unwrap();
        // serde_json's Value keeps keys sorted and prints compactly, which is
        // canonical JSON for these (ASCII, integer-only) events.
        assert_eq!(serde_json::to_string(&value).unwrap(), pdu.json());
    }
}

#[test]
fn floats_are_not_canonical() {
    let (room_id, events) = genesis(&RoomVersionId::V11);
    let err = build_pdu(
        &PduTemplate {
            room_version: &RoomVersionId::V11,
            room_id: Some(&room_id),
            sender: user_id!("@alice:example.org"),
            event_type: "m.room.message",
            state_key: None,
            content: &json!({"body": "x", "n": 1.5}),
            redacts: None,
            prev_events: std::slice::from_ref(events[2].event_id()),
            auth_events: &[],
            depth: 4,
            origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(1).unwrap()),
        },
        &signer(),
    )
    .unwrap_err();
    assert!(matches!(err, EventError::NotCanonical(_)), "{err}");
}

#[test]
fn redaction_follows_each_room_version() {
    for version in SUPPORTED_ROOM_VERSIONS {
        let (_, events) = genesis(&version);
        let create = redact(&events[0], &version).unwrap();
        let content = serde_json::to_value(&create["content"]).unwrap();
        // v10 keeps only `creator` of a create event; v11 and later keep all.
        if version == RoomVersionId::V10 {
            assert_eq!(
                content,
                json!({"creator": "@alice:example.org"}),
                "{version}"
            );
        } else {
            assert_eq!(content["room_version"], version.as_str(), "{version}");
        }
        let pl = redact(&events[2], &version).unwrap();
        let content = serde_json::to_value(&pl["content"]).unwrap();
        // `invite` survives redaction of power levels from v11 on.
        assert_eq!(
            content.get("invite").is_some(),
            version != RoomVersionId::V10,
            "{version}: {content}"
        );
        assert!(content.get("users").is_some());
        // The redacted form still carries the same reference hash.
        let redacted = Pdu::from_stored(
            events[2].event_id().clone(),
            serde_json::to_string(&pl).unwrap(),
        )
        .unwrap();
        assert_eq!(
            &recompute_event_id(&redacted, &version).unwrap(),
            events[2].event_id()
        );
    }
}

#[test]
fn authorization_accepts_the_creator_and_rejects_a_stranger() {
    for version in SUPPORTED_ROOM_VERSIONS {
        let (room_id, events) = genesis(&version);
        let mut by_id = HashMap::new();
        let mut state = HashMap::new();
        for pdu in &events {
            check_auth(pdu, &version, &by_id, &state).unwrap_or_else(|e| panic!("{version}: {e}"));
            by_id.insert(pdu.event_id().clone(), pdu.clone());
            state.insert(
                (
                    StateEventType::from(pdu.kind().to_string()),
                    pdu.state_key().unwrap().to_owned(),
                ),
                pdu.clone(),
            );
        }
        let v12 = version == RoomVersionId::V12;
        let message = |sender: &str| {
            let sender = ruma::UserId::parse(sender).unwrap();
            let mut auth = vec![events[2].event_id().clone()];
            if !v12 {
                auth.push(events[0].event_id().clone());
            }
            if sender == "@alice:example.org" {
                auth.push(events[1].event_id().clone());
            }
            build_pdu(
                &PduTemplate {
                    room_version: &version,
                    room_id: Some(&room_id),
                    sender: &sender,
                    event_type: "m.room.message",
                    state_key: None,
                    content: &json!({"msgtype": "m.text", "body": "hi"}),
                    redacts: None,
                    prev_events: std::slice::from_ref(events[2].event_id()),
                    auth_events: &auth,
                    depth: 4,
                    origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(1).unwrap()),
                },
                &signer(),
            )
            .unwrap()
        };
        check_auth(&message("@alice:example.org"), &version, &by_id, &state)
            .unwrap_or_else(|e| panic!("{version}: {e}"));
        let err =
            check_auth(&message("@mallory:example.org"), &version, &by_id, &state).unwrap_err();
        assert!(err.contains("membership"), "{version}: {err}");
    }
}
