//! Byte-level tests of key packing, ranges, versionstamped keys and decoding,
//! against a test spec with one subspace per field type.

use foundationdb_tuple::{Uuid, Versionstamp};

use super::*;

const EMPTY: SubspaceSpec = SubspaceSpec {
    name: "empty",
    tag: 0,
    key: &[],
    value: ValueEncoding::U64Le,
    doc: "no fields",
};
const STR: SubspaceSpec = SubspaceSpec {
    name: "str",
    tag: 1,
    key: &[Field {
        name: "s",
        ty: FieldType::Str,
    }],
    value: ValueEncoding::MsgPack("Thing"),
    doc: "",
};
const INT: SubspaceSpec = SubspaceSpec {
    name: "int",
    tag: 2,
    key: &[Field {
        name: "i",
        ty: FieldType::Int,
    }],
    value: ValueEncoding::I64Le,
    doc: "",
};
const BYTES: SubspaceSpec = SubspaceSpec {
    name: "bytes",
    tag: 3,
    key: &[Field {
        name: "b",
        ty: FieldType::Bytes,
    }],
    value: ValueEncoding::Raw,
    doc: "",
};
const BOOL: SubspaceSpec = SubspaceSpec {
    name: "bool",
    tag: 4,
    key: &[Field {
        name: "flag",
        ty: FieldType::Bool,
    }],
    value: ValueEncoding::Empty,
    doc: "",
};
const STAMP: SubspaceSpec = SubspaceSpec {
    name: "stamp",
    tag: 5,
    key: &[
        Field {
            name: "room",
            ty: FieldType::Str,
        },
        Field {
            name: "at",
            ty: FieldType::Versionstamp,
        },
    ],
    value: ValueEncoding::Json,
    doc: "",
};
const UUID: SubspaceSpec = SubspaceSpec {
    name: "uuid",
    tag: 200,
    key: &[Field {
        name: "id",
        ty: FieldType::Uuid,
    }],
    value: ValueEncoding::Utf8,
    doc: "",
};

static TEST: DatabaseSpec = DatabaseSpec {
    name: "test",
    schema_version: 1,
    doc: "A database for tests.",
    directories: &[DirectorySpec {
        path: &["things"],
        doc: "Things.",
        subspaces: &[EMPTY, STR, INT, BYTES, BOOL, STAMP, UUID],
    }],
};

const PREFIX: &[u8] = b"\x15\x07";

fn dirs() -> Directories {
    let path = vec!["myelin".into(), "test".into(), "things".into()];
    Directories::new(
        &TEST,
        vec![Space::new(PREFIX.to_vec(), path, &TEST.directories[0])],
    )
}

fn sub(name: &str) -> &'static SubspaceSpec {
    TEST.directories[0].subspace_by_name(name).unwrap()
}

fn catalog() -> Catalog {
    let mut c = Catalog::new();
    c.add_database(&dirs());
    c
}

const VS: [u8; 10] = [0, 0, 0, 0, 0, 0, 0, 9, 0, 1];
const ID: [u8; 16] = [0x12; 16];

/// `(subspace, packed key, expected bytes after the directory prefix)` for
/// every field type.
fn cases() -> Vec<(&'static SubspaceSpec, Vec<u8>, Vec<u8>)> {
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    vec![
        (sub("empty"), s.key(sub("empty"), &()), b"\x14".to_vec()),
        (
            sub("str"),
            s.key(sub("str"), &("ab",)),
            b"\x15\x01\x02ab\x00".to_vec(),
        ),
        (
            sub("int"),
            s.key(sub("int"), &(-2i64,)),
            b"\x15\x02\x13\xfd".to_vec(),
        ),
        (
            sub("int"),
            s.key(sub("int"), &(300i64,)),
            b"\x15\x02\x16\x01\x2c".to_vec(),
        ),
        (
            sub("bytes"),
            s.key(sub("bytes"), &(b"a\x00b".to_vec(),)),
            b"\x15\x03\x01a\x00\xffb\x00".to_vec(),
        ),
        (
            sub("bool"),
            s.key(sub("bool"), &(true,)),
            b"\x15\x04\x27".to_vec(),
        ),
        (
            sub("bool"),
            s.key(sub("bool"), &(false,)),
            b"\x15\x04\x26".to_vec(),
        ),
        (
            sub("stamp"),
            s.key(sub("stamp"), &("r", Versionstamp::complete(VS, 3))),
            [&b"\x15\x05\x02r\x00\x33"[..], &VS, &[0, 3]].concat(),
        ),
        (
            sub("uuid"),
            s.key(sub("uuid"), &(Uuid::from_bytes(ID),)),
            [&b"\x15\xc8\x30"[..], &ID].concat(),
        ),
    ]
}

#[test]
fn spec_is_valid() {
    TEST.check().unwrap();
}

#[test]
fn every_field_type_packs_to_the_tuple_bytes() {
    for (sub, key, want) in cases() {
        assert_eq!(&key[..2], PREFIX, "{}", sub.name);
        assert_eq!(printable(&key[2..]), printable(&want), "{}", sub.name);
    }
}

#[test]
fn subspace_prefix_is_a_prefix_of_its_keys_and_ranges_contain_them() {
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    for (sub, key, _) in cases() {
        assert!(key.starts_with(&s.subspace_prefix(sub)), "{}", sub.name);
        assert!(key.starts_with(s.prefix()), "{}", sub.name);
        let (all_begin, all_end) = s.all();
        assert!(all_begin <= key && key < all_end, "{}", sub.name);
        if !sub.key.is_empty() {
            let (begin, end) = s.range(sub, &());
            assert!(begin <= key && key < end, "{}", sub.name);
        }
        for other in TEST.directories[0]
            .subspaces
            .iter()
            .filter(|o| o.tag != sub.tag)
        {
            assert!(
                !key.starts_with(&s.subspace_prefix(other)),
                "{} in {}",
                sub.name,
                other.name
            );
        }
    }
}

#[test]
fn range_with_prefix_fields_selects_matching_keys_only() {
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    let (begin, end) = s.range(sub("stamp"), &("r",));
    let inside = s.key(sub("stamp"), &("r", Versionstamp::complete(VS, 0)));
    let outside = s.key(sub("stamp"), &("ra", Versionstamp::complete(VS, 0)));
    assert!(begin <= inside && inside < end);
    assert!(!(begin <= outside && outside < end));
}

#[test]
fn every_subspace_round_trips_through_the_decoder() {
    let c = catalog();
    for (sub, key, _) in cases() {
        let d = c.decode(&key, None);
        assert_eq!(d.database, Some("test"));
        assert_eq!(
            d.directory.as_deref(),
            Some(&["myelin".to_string(), "test".into(), "things".into()][..])
        );
        assert_eq!(d.subspace, Some((sub.name, sub.tag)), "{}", sub.name);
        let names: Vec<&str> = d.fields.iter().map(|(n, _)| n.as_str()).collect();
        let want: Vec<&str> = sub.key.iter().map(|f| f.name).collect();
        assert_eq!(names, want);
    }
}

#[test]
fn a_split_value_chunk_decodes_as_its_head_and_index() {
    let c = catalog();
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    let head = s.key(sub("str"), &("ab",));
    let chunk = crate::keys::split::continuation_key(&head, 3);
    let got = c.decode(&chunk, Some(b"tail"));
    assert_eq!(got.subspace, Some((sub("str").name, sub("str").tag)));
    assert_eq!(got.fields_line(), r#"s="ab" split_chunk=3"#);
    assert_eq!(got.value.as_deref(), Some("tail"));
}

#[test]
fn decoder_renders_fields_and_values() {
    let c = catalog();
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    let key = s.key(sub("stamp"), &("r", Versionstamp::complete(VS, 3)));
    let got = c.decode(&key, Some(br#"{"a": [1, 2]}"#));
    assert_eq!(
        got.fields_line(),
        r#"room="r" at=vs:000000000000000900010003"#
    );
    assert_eq!(got.value.as_deref(), Some(r#"{"a":[1,2]}"#));

    #[derive(serde::Serialize)]
    struct Thing {
        name: &'static str,
        n: u32,
    }
    let value = rmp_serde::to_vec_named(&Thing { name: "x", n: 7 }).unwrap();
    let got = c.decode(&s.key(sub("str"), &("ab",)), Some(&value));
    assert_eq!(got.value.as_deref(), Some(r#"{"n":7,"name":"x"}"#));

    let got = c.decode(&s.key(sub("empty"), &()), Some(&5u64.to_le_bytes()));
    assert_eq!(got.value.as_deref(), Some("5"));
    let got = c.decode(&s.key(sub("empty"), &()), Some(b"\x01"));
    assert_eq!(got.value.as_deref(), Some("<expected 8 bytes> \\x01"));
    let got = c.decode(&s.key(sub("int"), &(-2i64,)), Some(&(-9i64).to_le_bytes()));
    assert_eq!(got.fields_line(), "i=-2");
    assert_eq!(got.value.as_deref(), Some("-9"));
}

#[test]
fn unknown_keys_decode_as_raw_elements_without_panicking() {
    let c = catalog();
    // Unknown tag in a known directory.
    let got = c.decode(b"\x15\x07\x15\x63\x02x\x00", Some(b"v"));
    assert_eq!(got.database, Some("test"));
    assert_eq!(got.subspace, None);
    assert_eq!(got.fields_line(), r#"#0=99 #1="x""#);
    assert_eq!(got.value.as_deref(), Some("v"));
    // Known tag, wrong field type: not claimed by the subspace.
    let got = c.decode(b"\x15\x07\x15\x01\x15\x01", None);
    assert_eq!(got.subspace, None);
    assert_eq!(got.fields_line(), "#0=1 #1=1");
    // Outside every directory, and not a tuple.
    let got = c.decode(b"\xfe\x99", None);
    assert_eq!(got.database, None);
    assert_eq!(got.directory, None);
    assert!(
        got.fields_line().starts_with("raw=\\xfe\\x99"),
        "{}",
        got.fields_line()
    );
    // Every short byte string decodes.
    for a in 0..=255u8 {
        for b in [0u8, 0x14, 0xff] {
            c.decode(&[0x15, 0x07, a, b], Some(&[a]));
        }
    }
}

#[test]
fn versionstamped_key_appends_the_offset_of_the_stamp() {
    let d = dirs();
    let s = d.space(&TEST.directories[0]);
    let key = s.versionstamped_key(sub("stamp"), &("r", incomplete_versionstamp(7)));
    let (body, offset) = key.split_at(key.len() - 4);
    let offset = u32::from_le_bytes(offset.try_into().unwrap()) as usize;
    // prefix(2) + tag(2) + "r" string (3) + versionstamp code (1)
    assert_eq!(offset, 8);
    assert_eq!(&body[offset..offset + 10], &[0xff; 10]);
    assert_eq!(&body[offset + 10..], &[0, 7]);
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "field s is Int")]
fn key_with_wrong_field_type_panics_in_debug() {
    let d = dirs();
    d.space(&TEST.directories[0]).key(sub("str"), &(1i64,));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "2 key fields given, 1 expected")]
fn key_with_wrong_arity_panics_in_debug() {
    let d = dirs();
    d.space(&TEST.directories[0]).key(sub("str"), &("a", "b"));
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "not declared in directory")]
fn key_of_another_directory_panics_in_debug() {
    const OTHER: SubspaceSpec = SubspaceSpec {
        name: "other",
        tag: 9,
        ..EMPTY
    };
    dirs().space(&TEST.directories[0]).key(&OTHER, &());
}

#[test]
fn layouts_list_every_subspace() {
    let text = layout::text(&[&TEST], &[&dirs()]);
    assert!(text.contains("prefix \\x15\\x07 (0x1507)"), "{text}");
    assert!(text.contains("(5, room: str, at: versionstamp)"), "{text}");
    let md = layout::markdown(&[&TEST]);
    assert!(
        md.contains("| 200 | `uuid` | `(200, id: uuid)` | utf-8 text |"),
        "{md}"
    );
}

#[test]
fn position_values_show_the_position_and_refuse_other_lengths() {
    let value = [&VS[..], &[0, 3]].concat();
    assert_eq!(
        decode::decode_value(ValueEncoding::Position, &value),
        "vs:000000000000000900010003"
    );
    // A bare versionstamp lacks the order: invalid, shown escaped.
    assert!(decode::decode_value(ValueEncoding::Position, &VS).starts_with("<expected 12 bytes>"),);
}

#[test]
fn position_then_msgpack_values_show_the_position_and_the_record() {
    let enc = ValueEncoding::PositionThenMsgPack("Thing");
    let mut value = [&VS[..], &[0, 3]].concat();
    value.extend(rmp_serde::to_vec_named(&serde_json::json!({"room": "!r"})).unwrap());
    assert_eq!(
        decode::decode_value(enc, &value),
        r#"vs:000000000000000900010003 {"room":"!r"}"#
    );
    // Shorter than a position: invalid, shown escaped.
    assert_eq!(
        decode::decode_value(enc, b"\x01\x02"),
        "<expected a 12-byte position first> \\x01\\x02"
    );
    // A position followed by bytes that are not msgpack.
    let bad = [&VS[..], &[0, 3], b"\xc1"].concat();
    assert!(
        decode::decode_value(enc, &bad).starts_with("<msgpack after the position:"),
        "{}",
        decode::decode_value(enc, &bad)
    );
}
