//! `myelin admin ...` and `myelin backup ...` as an operator runs them: the
//! binary on a stopped server's store.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn myelin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args(args)
        .env_remove("MYELIN_CONFIG")
        .env_remove("MYELIN_PASSWORD")
        .output()
        .expect("run myelin")
}

/// Runs a command that must succeed and returns its standard output.
fn ok(args: &[&str]) -> String {
    let out = myelin(args);
    assert!(
        out.status.success(),
        "myelin {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&ok(args)).expect("JSON output")
}

fn data(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

#[test]
fn admin_commands_on_a_stopped_store() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let d = data(tmp.path());
    ok(&[
        "user",
        "create",
        "alice",
        "--password",
        "pw-alice-1",
        "--data",
        d,
    ]);
    ok(&[
        "user",
        "create",
        "bob",
        "--password",
        "pw-bob-1",
        "--data",
        d,
    ]);

    let page = json(&["admin", "users", "list", "--data", d]);
    assert_eq!(page["total"], 2);
    assert_eq!(page["users"][0]["name"], "@alice:localhost");

    json(&[
        "admin",
        "users",
        "deactivate",
        "@bob:localhost",
        "--data",
        d,
    ]);
    assert_eq!(json(&["admin", "users", "list", "--data", d])["total"], 1);
    assert_eq!(
        json(&["admin", "users", "list", "--deactivated", "--data", d])["total"],
        2
    );
    json(&[
        "admin",
        "users",
        "reset-password",
        "@alice:localhost",
        "--password",
        "pw-alice-2",
        "--data",
        d,
    ]);

    let made = json(&[
        "admin",
        "registration-tokens",
        "create",
        "--token",
        "t1",
        "--uses-allowed",
        "2",
        "--data",
        d,
    ]);
    assert_eq!(made["uses_allowed"], 2);
    let listed = json(&["admin", "registration-tokens", "list", "--data", d]);
    assert_eq!(listed["registration_tokens"][0]["token"], "t1");

    assert_eq!(
        json(&["admin", "rooms", "list", "--data", d])["total_rooms"],
        0
    );

    let out = myelin(&[
        "admin",
        "rooms",
        "delete",
        "!nope:localhost",
        "--block",
        "--purge",
        "--data",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2), "an unknown room is bad input");

    // Bad input exits 2 with a message.
    let out = myelin(&[
        "admin",
        "users",
        "deactivate",
        "@nobody:localhost",
        "--data",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = myelin(&[
        "admin",
        "registration-tokens",
        "create",
        "--token",
        "t1",
        "--data",
        d,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}

#[test]
fn backup_commands_round_trip() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let (src, out, dst) = (
        tmp.path().join("src"),
        tmp.path().join("backup"),
        tmp.path().join("dst"),
    );
    ok(&[
        "user",
        "create",
        "alice",
        "--password",
        "pw-alice-1",
        "--data",
        data(&src),
    ]);
    let created = ok(&["backup", "create", data(&out), "--data", data(&src)]);
    assert!(created.starts_with("backed up "), "{created}");
    assert!(ok(&["backup", "verify", data(&out)]).starts_with("verified "));
    assert!(ok(&["backup", "restore", data(&out), "--data", data(&dst)]).starts_with("restored "));
    let page = json(&["admin", "users", "list", "--data", data(&dst)]);
    assert_eq!(page["users"][0]["name"], "@alice:localhost");
    // A second restore into the now full store is refused.
    let again = myelin(&["backup", "restore", data(&out), "--data", data(&dst)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));
}
