//! Shared set-up of the rooms tests: an embedded store in a temporary
//! directory and the rooms service over it, signing with a fixed key.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use myelin::db::Databases;
use myelin::db::rooms::RoomsDb;
use myelin::service::ManualClock;
use myelin::service::rooms::{CreateRoom, Preset, Rooms};
use ruma::signatures::Ed25519KeyPair;
use ruma::{OwnedRoomId, OwnedUserId, RoomVersionId, UserId};

/// A fixed ed25519 seed, so events are reproducible across runs.
pub const SEED: [u8; 32] = [7; 32];

/// The signing key of the test server.
pub fn key() -> Ed25519KeyPair {
    let mut der = hex::decode("302e020100300506032b657004220420").expect("the DER prefix is hex");
    der.extend_from_slice(&SEED);
    Ed25519KeyPair::from_der(&der, "test".into()).expect("the test key parses")
}

/// The rooms service over the store in `dir`, on a manual clock.
pub async fn open(dir: &Path) -> (Rooms, ManualClock) {
    let dbs = myelin::db::open_embedded_at(dir)
        .await
        .expect("the embedded store opens");
    service(&dbs)
}

/// The rooms service over opened databases, on a manual clock.
pub fn service(dbs: &Databases) -> (Rooms, ManualClock) {
    let clock = ManualClock::new(1_700_000_000_000);
    let rooms = Rooms::new(
        RoomsDb::new(&dbs.rooms),
        "example.org".try_into().expect("a valid server name"),
        key(),
        Arc::new(clock.clone()),
    );
    (rooms, clock)
}

/// A local user ID.
pub fn user(localpart: &str) -> OwnedUserId {
    format!("@{localpart}:example.org")
        .try_into()
        .expect("a valid user ID")
}

/// A private room of `version` created by `creator`.
pub async fn private_room(rooms: &Rooms, creator: &UserId, version: &RoomVersionId) -> OwnedRoomId {
    let request = CreateRoom {
        preset: Some(Preset::PrivateChat),
        room_version: Some(version.clone()),
        ..Default::default()
    };
    rooms
        .create_room(creator, request)
        .await
        .expect("the room is created")
        .0
}

/// A `public_chat` room of `version` created by `creator`.
pub async fn public_room(rooms: &Rooms, creator: &UserId, version: RoomVersionId) -> OwnedRoomId {
    let request = CreateRoom {
        preset: Some(Preset::PublicChat),
        room_version: Some(version),
        ..Default::default()
    };
    rooms
        .create_room(creator, request)
        .await
        .expect("the room is created")
        .0
}

/// The room versions every behaviour is checked on.
pub fn versions() -> [RoomVersionId; 3] {
    [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
}
