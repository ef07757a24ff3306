//! `myelin keys` end to end: the built binary against temporary embedded
//! stores. Each test runs a handful of short commands; none waits on time.

use std::path::Path;
use std::process::{Command, Output};

use foundationdb_tuple::Element;
use myelin::config::{Config, Overrides};
use myelin::db::{self, SPECS};
use myelin::keys::{DirectorySpec, FieldType, SubspaceSpec, printable};

/// Runs `myelin args...` with no `MYELIN_*` or `RUST_LOG` variables of the
/// caller's environment, plus `env`.
fn myelin(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_myelin"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MYELIN_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd.args(args).envs(env.iter().copied());
    cmd.output().expect("run myelin")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).expect("stdout is UTF-8")
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).expect("stderr is UTF-8")
}

fn ok(out: Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}, stderr:\n{}",
        out.status,
        stderr(&out)
    );
    stdout(&out)
}

/// The databases as `myelin --data dir` opens them.
async fn open_like_cli(dir: &Path) -> db::Databases {
    let overrides = Overrides {
        data_dir: Some(dir.to_path_buf()),
        ..Overrides::default()
    };
    let config = Config::load(None, &overrides).expect("the test config loads");
    db::open(&config.databases)
        .await
        .expect("the databases open")
}

/// Some subspace with at least one key field, with sample fields; falls back
/// to a meta subspace without fields.
fn some_subspace() -> (
    usize,
    &'static DirectorySpec,
    &'static SubspaceSpec,
    Vec<Element<'static>>,
) {
    for (i, spec) in SPECS.iter().enumerate() {
        for dir in spec.directories {
            for sub in dir.subspaces {
                let strings = sub.key.iter().all(|f| f.ty == FieldType::Str);
                if !sub.key.is_empty() && strings {
                    let fields = (0..sub.key.len())
                        .map(|n| Element::String(format!("field{n}").into()))
                        .collect();
                    return (i, dir, sub, fields);
                }
            }
        }
    }
    let dir = &SPECS[0].directories[0];
    (0, dir, &dir.subspaces[0], Vec::new())
}

#[test]
fn layout_without_a_store_lists_every_database_without_prefixes() {
    let out = ok(myelin(&["keys", "layout"], &[]));
    for spec in SPECS {
        assert!(
            out.contains(&format!(
                "{} (schema version {})",
                spec.name, spec.schema_version
            )),
            "{out}"
        );
    }
    assert!(out.contains("schema_version"), "{out}");
    assert!(out.contains("-> u64 little-endian"), "{out}");
    assert!(!out.contains("prefix"), "{out}");
}

#[tokio::test]
async fn layout_with_a_store_shows_the_resolved_prefixes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = ok(myelin(&["keys", "layout", "--data", data], &[]));
    let dbs = open_like_cli(dir.path()).await;
    for handle in dbs.handles() {
        for space in handle.dirs.spaces() {
            let line = format!(
                "path {}  prefix {} (0x{})",
                space.path().join("/"),
                printable(space.prefix()),
                hex::encode(space.prefix())
            );
            assert!(out.contains(&line), "missing {line:?} in\n{out}");
        }
    }
    assert!(
        out.contains(&format!("# accounts: embedded store at {data}/accounts")),
        "{out}"
    );
}

#[tokio::test]
async fn decode_names_the_subspace_and_fields_of_a_real_key() {
    let dir = tempfile::tempdir().unwrap();
    let (db_index, dir_spec, sub, fields) = some_subspace();
    let (key, meta_key) = {
        let dbs = open_like_cli(dir.path()).await;
        let handle = dbs.handles()[db_index].clone();
        let key = handle.space(dir_spec).key(sub, &fields);
        let meta = &handle.spec().directories[0];
        let meta_key = handle.space(meta).key(&meta.subspaces[0], &());
        (key, meta_key)
    };
    let data = dir.path().to_str().unwrap();
    let db_name = SPECS[db_index].name;

    // Escaped form, as FoundationDB tools print keys.
    let out = ok(myelin(
        &["keys", "decode", "--data", data, &printable(&key)],
        &[],
    ));
    assert!(out.contains(&format!("database:  {db_name}")), "{out}");
    assert!(
        out.contains(&format!("subspace:  {} (tag {})", sub.name, sub.tag)),
        "{out}"
    );
    for (field, value) in sub.key.iter().zip(&fields) {
        let Element::String(value) = value else {
            unreachable!()
        };
        assert!(
            out.contains(&format!("{}=\"{value}\"", field.name)),
            "{out}"
        );
    }

    // Hex form, with a value.
    let hex_key = format!("0x{}", hex::encode(&meta_key));
    let out = ok(myelin(
        &[
            "keys",
            "decode",
            "--data",
            data,
            &hex_key,
            "--value",
            "0x0100000000000000",
        ],
        &[],
    ));
    assert!(out.contains("subspace:  schema_version (tag 0)"), "{out}");
    assert!(out.contains("value:     1"), "{out}");

    // A key in no directory is shown raw, not refused.
    let out = ok(myelin(&["keys", "decode", "--data", data, "0x0102"], &[]));
    assert!(out.contains("in no directory"), "{out}");
}

#[tokio::test]
async fn scan_lists_the_entries_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let dbs = open_like_cli(dir.path()).await;
        // Ten keys of an undeclared tag in rooms/meta, to exercise --limit and --prefix.
        let space = dbs.rooms.dirs.spaces()[0].clone();
        dbs.rooms
            .db
            .run(|tx, _| {
                let space = space.clone();
                async move {
                    for i in 0..10i64 {
                        let mut key = space.prefix().to_vec();
                        key.extend(foundationdb_tuple::pack(&(99i64, i)));
                        tx.set(&key, b"x");
                    }
                    Ok::<_, myelin::kv::Error>(())
                }
            })
            .await
            .unwrap();
    }
    let data = dir.path().to_str().unwrap();
    let out = ok(myelin(
        &["keys", "scan", "--data", data, "rooms", "meta"],
        &[],
    ));
    let version = format!(
        "schema_version () = {}",
        myelin::db::rooms::keys::SCHEMA_VERSION
    );
    assert!(out.contains(&version), "{out}");
    assert!(out.contains("? #0=99 #1=9 = x"), "{out}");
    assert!(out.contains("# 11 entries"), "{out}");

    let out = ok(myelin(
        &[
            "keys", "scan", "--data", data, "rooms", "meta", "--limit", "3",
        ],
        &[],
    ));
    assert_eq!(
        out.lines().filter(|l| !l.starts_with('#')).count(),
        3,
        "{out}"
    );
    assert!(out.contains("# stopped at --limit 3"), "{out}");

    let args = [
        "keys", "scan", "--data", data, "rooms", "meta", "--prefix", "99", "4",
    ];
    let out = ok(myelin(&args, &[]));
    assert!(out.contains("? #0=99 #1=4 = x"), "{out}");
    assert!(out.contains("# 1 entries"), "{out}");

    // The data directory can come from the environment too.
    let out = ok(myelin(
        &["keys", "scan", "transitory", "meta"],
        &[("MYELIN_DATA_DIR", data)],
    ));
    let version = format!(
        "schema_version () = {}",
        myelin::db::transitory::keys::SCHEMA_VERSION
    );
    assert!(out.contains(&version), "{out}");
}

/// `(arguments, environment, expected part of the error message)`.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn bad_input_is_a_clear_error_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    drop(open_like_cli(dir.path()).await);
    let data = dir.path().to_str().unwrap();
    let cases: &[Case] = &[
        (
            &["keys", "decode", "--data", data, "\\x1"],
            &[],
            "incomplete \\x escape",
        ),
        (
            &["keys", "decode", "--data", data, "0xzz"],
            &[],
            "invalid hex",
        ),
        (
            &["keys", "scan", "--data", data, "rooms", "nope"],
            &[],
            "directory myelin/rooms/nope does not exist",
        ),
        (
            &[
                "keys", "scan", "--data", data, "rooms", "meta", "--prefix", "bogus",
            ],
            &[],
            "unknown subspace \"bogus\"",
        ),
        (
            &[
                "keys",
                "scan",
                "--data",
                "/nonexistent/myelin",
                "rooms",
                "meta",
            ],
            &[],
            "no accounts store",
        ),
        (
            &["keys", "scan", "--data", data, "nosuchdb", "meta"],
            &[],
            "invalid value 'nosuchdb'",
        ),
        (
            &["keys", "layout", "--config", "/nonexistent/myelin.toml"],
            &[],
            "does not exist",
        ),
        (
            &["keys", "layout", "--data", data],
            &[("MYELIN_DATABASES__ROOMS__BACKEND", "fdb")],
            "databases.rooms.cluster_file: required",
        ),
    ];
    for (args, env, want) in cases {
        let out = myelin(args, env);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: expected {want:?} in:\n{err}");
    }
}
