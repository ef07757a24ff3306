//! Benchmarks of key encoding and decoding (`src/keys/`), on the rooms
//! database's real schema (`db::rooms::keys::SPEC`) with short directory
//! prefixes like the directory layer allocates.
//!
//! Groups (one element = one key):
//! - `keys/encode`: `Space::key` of an event's PDU key (one string field),
//!   a state key (three strings), `Space::versionstamped_key` of a timeline
//!   entry (room and incomplete versionstamp) and `Space::range` of a room's
//!   forward extremities; these are what every event send packs.
//! - `keys/decode`: `Catalog::decode` of those keys (directory lookup,
//!   subspace by tag, typed fields), as `myelin keys decode` does.
//!
//! Run: `cargo bench --bench keys`. Results: `docs/performance.md`
//! ("Server under load").

use std::hint::black_box;

use criterion::{Criterion, Throughput};
use foundationdb_tuple::Versionstamp;
use myelin::db::rooms::keys;
use myelin::keys::{Catalog, Directories, Space, SubspaceSpec};

const ROOM: &str = "!aBcDeFgHiJkLmNoPqR:example.org";
const EVENT: &str = "$Rqnc-F-dvnEYJTyHq_iKxU2bZ1CI92-kuZq3a5lr5Zg";

/// The rooms database's directories at prefixes `\x15\x10 + i`.
fn directories() -> Directories {
    let spaces = keys::SPEC
        .directories
        .iter()
        .enumerate()
        .map(|(i, dir)| {
            let mut path = vec!["myelin".to_string(), keys::SPEC.name.to_string()];
            path.extend(dir.path.iter().map(|p| p.to_string()));
            Space::new(vec![0x15, 0x10 + i as u8], path, dir)
        })
        .collect();
    Directories::new(&keys::SPEC, spaces)
}

/// The space of the directory holding `sub`.
fn space_of<'a>(dirs: &'a Directories, sub: &SubspaceSpec) -> &'a Space {
    dirs.spaces()
        .iter()
        .find(|s| s.spec().contains(sub))
        .expect("subspace declared")
}

fn encode(c: &mut Criterion) {
    let dirs = directories();
    let events = space_of(&dirs, &keys::PDU);
    let rooms = space_of(&dirs, &keys::STATE);
    let timeline = space_of(&dirs, &keys::STREAM);
    let mut g = c.benchmark_group("keys/encode");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pdu", |b| {
        b.iter(|| events.key(&keys::PDU, &(black_box(EVENT),)))
    });
    g.bench_function("state", |b| {
        b.iter(|| {
            rooms.key(
                &keys::STATE,
                &(black_box(ROOM), "m.room.member", "@alice:example.org"),
            )
        })
    });
    g.bench_function("stream_versionstamped", |b| {
        b.iter(|| {
            timeline.versionstamped_key(
                &keys::STREAM,
                &(black_box(ROOM), &Versionstamp::incomplete(0)),
            )
        })
    });
    g.bench_function("extremity_range", |b| {
        b.iter(|| rooms.range(&keys::EXTREMITY, &(black_box(ROOM),)))
    });
    g.finish();
}

fn decode(c: &mut Criterion) {
    let dirs = directories();
    let mut catalog = Catalog::new();
    catalog.add_database(&dirs);
    let pdu = space_of(&dirs, &keys::PDU).key(&keys::PDU, &(EVENT,));
    let state = space_of(&dirs, &keys::STATE)
        .key(&keys::STATE, &(ROOM, "m.room.member", "@alice:example.org"));
    let stream = space_of(&dirs, &keys::STREAM)
        .key(&keys::STREAM, &(ROOM, &Versionstamp::complete([7; 10], 0)));
    let mut g = c.benchmark_group("keys/decode");
    g.throughput(Throughput::Elements(1));
    for (name, key, value) in [
        ("pdu", &pdu, None),
        ("state", &state, Some(EVENT.as_bytes())),
        ("stream", &stream, Some(EVENT.as_bytes())),
    ] {
        let decoded = catalog.decode(key, value);
        assert_eq!(
            decoded.subspace.map(|(n, _)| n),
            Some(name),
            "{name} decodes to its subspace: {decoded:?}"
        );
        g.bench_function(name, |b| {
            b.iter(|| catalog.decode(black_box(key), black_box(value)))
        });
    }
    g.finish();
}

/// Runs every group (what `criterion_main!` expands to, written out so the
/// crate has no undocumented public function).
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    encode(&mut criterion);
    decode(&mut criterion);
    criterion.final_summary();
}
