//! The checked-in `myelin.example.toml` is what `myelin config example`
//! prints (regenerate: `myelin config example > myelin.example.toml`), and
//! `myelin config check` accepts it and reports unknown keys and bad values
//! with their paths.

use std::process::{Command, Output};

fn myelin(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args(args)
        .env_remove("MYELIN_CONFIG")
        .output()
        .expect("run myelin")
}

#[test]
fn the_checked_in_example_is_the_generated_one() {
    let out = myelin(&["config", "example"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let generated = String::from_utf8(out.stdout).expect("utf-8");
    let checked_in =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/myelin.example.toml"))
            .expect("myelin.example.toml");
    assert!(
        generated == checked_in,
        "myelin.example.toml drifted from the configuration types: \
         run `cargo run -- config example > myelin.example.toml`"
    );
}

#[test]
fn check_accepts_the_example_and_names_bad_keys_and_values() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/myelin.example.toml");
    let out = myelin(&["config", "check", example]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let bad_keys = dir.path().join("keys.toml");
    std::fs::write(
        &bad_keys,
        "server_nam = \"a.org\"\n[server]\nregistraton_enabled = false\n[metrics]\nbindd = \"127.0.0.1:9108\"\n",
    )
    .expect("write");
    let out = myelin(&["config", "check", bad_keys.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for path in ["server_nam", "server.registraton_enabled", "metrics.bindd"] {
        assert!(stderr.contains(path), "{path} in {stderr}");
    }

    let bad_value = dir.path().join("value.toml");
    std::fs::write(&bad_value, "[shutdown]\ndeadline_secs = \"soon\"\n").expect("write");
    let out = myelin(&["config", "check", bad_value.to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("shutdown.deadline_secs"), "{stderr}");
}
