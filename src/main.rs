//! The `myelin` binary: parses the command line, initialises logging
//! (`RUST_LOG`-style filter, default `info,ruma_common=warn,ruma_state_res=warn`,
//! to standard error, as text or with `[log] format = "json"` one JSON object
//! per line) and runs the command on a multi-threaded tokio runtime. Everything else
//! lives in [`myelin::cli`]. The global allocator is jemalloc.

use std::process::ExitCode;

use clap::Parser;
use myelin::config::LogFormat;
use tracing_subscriber::EnvFilter;

/// jemalloc, not glibc's malloc: under send load glibc's allocator took 27%
/// of the server's CPU (`_int_malloc`, `_int_free`, `malloc_consolidate`),
/// and jemalloc keeps the idle long-poll RSS target that mimalloc missed
/// (docs/decisions/0006-global-allocator.md).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    // ruma's authorization logs two INFO lines per event checked, and its
    // push-rule evaluation opens an INFO span per JSON field of every event
    // it flattens (13% of the server's CPU while delivering messages,
    // docs/perf-log/2026-11-22.md and 2026-12-02.md): neither by default.
    let cli = myelin::cli::Cli::parse();
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,ruma_common=warn,ruma_state_res=warn"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format() {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(myelin::cli::run(cli))
}
