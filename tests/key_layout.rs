//! The key schemas of the three databases: each is valid, every subspace
//! packs and decodes back to itself, and `docs/key-layout.md` matches the
//! layout generated from them.
//!
//! If the docs drift, regenerate them with
//! `MYELIN_UPDATE_KEY_LAYOUT=1 cargo test --test key_layout`.

use std::path::Path;

use foundationdb_tuple::{Element, Uuid, Versionstamp};
use myelin::db::SPECS;
use myelin::keys::{self, Catalog, Directories, FieldType, Space};

/// A sample value of each field type.
fn sample(ty: FieldType, i: usize) -> Element<'static> {
    match ty {
        FieldType::Str => Element::String(format!("s{i}").into()),
        FieldType::Int => Element::Int(i as i64 - 1),
        FieldType::Bytes => Element::Bytes(vec![0, i as u8, 0xff].into()),
        FieldType::Bool => Element::Bool(i.is_multiple_of(2)),
        FieldType::Versionstamp => Element::Versionstamp(Versionstamp::complete([7; 10], i as u16)),
        FieldType::Uuid => Element::Uuid(Uuid::from_bytes([i as u8; 16])),
    }
}

/// Every database resolved at made-up, distinct prefixes.
fn resolved() -> Vec<Directories> {
    let mut n = 0u8;
    SPECS
        .iter()
        .map(|spec| {
            let spaces = spec
                .directories
                .iter()
                .map(|dir| {
                    n += 1;
                    let mut path = vec!["myelin".to_string(), spec.name.to_string()];
                    path.extend(dir.path.iter().map(|p| p.to_string()));
                    Space::new(vec![0x15, n], path, dir)
                })
                .collect();
            Directories::new(spec, spaces)
        })
        .collect()
}

#[test]
fn every_spec_is_valid() {
    let names: Vec<&str> = SPECS.iter().map(|s| s.name).collect();
    assert_eq!(names, ["accounts", "rooms", "transitory", "game", "media"]);
    for spec in SPECS {
        if let Err(errors) = spec.check() {
            panic!("{}: {errors:#?}", spec.name);
        }
    }
}

#[test]
fn every_subspace_round_trips_and_its_prefix_prefixes_its_keys() {
    let all = resolved();
    let mut catalog = Catalog::new();
    for dirs in &all {
        catalog.add_database(dirs);
    }
    for dirs in &all {
        for space in dirs.spaces() {
            for sub in space.spec().subspaces {
                let fields: Vec<Element<'static>> = sub
                    .key
                    .iter()
                    .enumerate()
                    .map(|(i, f)| sample(f.ty, i))
                    .collect();
                // Packing checks the fields against the spec (debug builds).
                let key = space.key(sub, &fields);
                assert!(key.starts_with(&space.subspace_prefix(sub)), "{}", sub.name);
                let decoded = catalog.decode(&key, None);
                assert_eq!(decoded.database, Some(dirs.spec().name));
                assert_eq!(decoded.directory.as_deref(), Some(space.path()));
                assert_eq!(decoded.subspace, Some((sub.name, sub.tag)));
                let names: Vec<&str> = decoded.fields.iter().map(|(n, _)| n.as_str()).collect();
                let want: Vec<&str> = sub.key.iter().map(|f| f.name).collect();
                assert_eq!(names, want, "{}", sub.name);
            }
        }
    }
}

#[test]
fn docs_key_layout_matches_the_specs() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/key-layout.md");
    let generated = keys::layout::markdown(&SPECS);
    if std::env::var_os("MYELIN_UPDATE_KEY_LAYOUT").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "docs/key-layout.md is out of date with the SPECs in src/db/*/keys.rs; \
         regenerate it with `MYELIN_UPDATE_KEY_LAYOUT=1 cargo test --test key_layout`"
    );
}
