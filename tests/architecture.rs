//! The dependency rules of `src/lib.rs` (and `docs/architecture.md`),
//! checked against the code: every `crate::`, `super::` and `self::` path of
//! every file in `src/` (in `use` items, in expressions and types, and inside
//! macro calls) is an edge from the file's module to the module it names,
//! and every path that names `axum` or `foundationdb` is checked against the
//! parts allowed to name that crate.
//!
//! The rules are data: [`PARTS`] (each part of the crate, its rank in the
//! stack and its kind), [`FORBIDDEN`] (edges the ranks would allow but the
//! design does not) and [`CRATES`] (external crates only some parts may
//! name). A new database is one [`Part::database`] line; a new layer one
//! [`Part::layer`] line. A failure names the file and line, both modules and
//! the rule, so it teaches the rule it enforces.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use proc_macro2::{TokenStream, TokenTree};
use syn::visit::Visit;

/// What a part of the crate may import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A layer: imports parts of its rank or below.
    Layer,
    /// A database (`db::*`): a layer at `db`'s rank that never imports
    /// another database.
    Database,
    /// Beside the stack: imports nothing else from the crate.
    Alone,
}

/// One part of the crate: a module path and its place in the stack. A file
/// belongs to the part with the longest module path that prefixes its own.
#[derive(Clone, Copy, Debug)]
struct Part {
    /// Module path below `crate`, e.g. `"db::rooms"`.
    module: &'static str,
    /// Place in the stack: a part may import parts of a rank at or below
    /// its own (and never the reverse).
    rank: u8,
    kind: Kind,
}

impl Part {
    const fn layer(module: &'static str, rank: u8) -> Part {
        Part {
            module,
            rank,
            kind: Kind::Layer,
        }
    }
    const fn database(module: &'static str) -> Part {
        Part {
            module,
            rank: DB,
            kind: Kind::Database,
        }
    }
    const fn alone(module: &'static str, rank: u8) -> Part {
        Part {
            module,
            rank,
            kind: Kind::Alone,
        }
    }
}

/// `db`'s rank, shared by every database.
const DB: u8 = 30;

/// The crate, bottom-up (the table of `src/lib.rs`).
const PARTS: &[Part] = &[
    Part::layer("keys", 0),
    Part::layer("config", 0),
    Part::layer("random", 0),
    Part::layer("metrics", 0),
    Part::layer("kv", 10),
    Part::layer("events", 20),
    Part::layer("db", DB),
    Part::database("db::accounts"),
    Part::database("db::rooms"),
    Part::database("db::transitory"),
    Part::database("db::game"),
    Part::database("db::media"),
    Part::layer("service", 40),
    Part::layer("backup", 45),
    Part::layer("sync", 50),
    Part::layer("app", 55),
    Part::layer("api", 60),
    Part::alone("bench", 65),
    Part::layer("cli", 70),
];

/// Edges the ranks allow but the design forbids: `(from, to, why)`.
const FORBIDDEN: &[(&str, &str, &str)] = &[(
    "api",
    "kv",
    "api never touches kv: a handler calls a service, which runs the transactions",
)];

/// External crates only some parts may name: `(crate, parts, why)`.
const CRATES: &[(&str, &[&str], &str)] = &[
    (
        "axum",
        &["api", "cli"],
        "HTTP lives in api: db and the layers below it never import axum",
    ),
    (
        "foundationdb",
        &["kv::fdb"],
        "only src/kv/fdb.rs knows the FoundationDB client (the tuple crate foundationdb_tuple is free to use)",
    ),
];

/// The part a module path belongs to (longest prefix), if any.
fn part_of(module: &[String]) -> Option<&'static Part> {
    PARTS
        .iter()
        .filter(|p| {
            let segments: Vec<&str> = p.module.split("::").collect();
            segments.len() <= module.len() && segments.iter().zip(module).all(|(a, b)| *a == b)
        })
        .max_by_key(|p| p.module.len())
}

/// Why `from` may not import `to`, if it may not.
fn broken_rule(from: &Part, to: &Part) -> Option<String> {
    if from.module == to.module {
        return None;
    }
    if from.kind == Kind::Alone {
        return Some(format!(
            "{} imports nothing else from the crate (it speaks only HTTP, so it measures any homeserver the same way)",
            from.module
        ));
    }
    if from.kind == Kind::Database && to.kind == Kind::Database {
        return Some(
            "databases never import each other: each may live on its own cluster; what spans them lives in service (or sync)".to_owned(),
        );
    }
    if let Some((_, _, why)) = FORBIDDEN
        .iter()
        .find(|(f, t, _)| *f == from.module && *t == to.module)
    {
        return Some((*why).to_owned());
    }
    if to.rank > from.rank {
        return Some(format!(
            "imports flow down the stack (keys, config <- kv <- events <- db <- service <- sync <- app <- api <- bench <- cli): {} sits above {}",
            to.module, from.module
        ));
    }
    None
}

/// One path found in a file.
struct Found {
    line: usize,
    /// Absolute module path (for crate paths) or the path as written (for
    /// external crates), as segments.
    segments: Vec<String>,
}

/// Collects the paths of one file.
struct Collector {
    /// The module the visitor is in (the file's, plus inline `mod`s).
    module: Vec<String>,
    /// Names brought in by `use crate::...` / `use super::...`, to their
    /// absolute paths, so `use crate::db; db::rooms::X` is seen as
    /// `db::rooms`.
    aliases: BTreeMap<String, Vec<String>>,
    crate_paths: Vec<Found>,
    external_paths: Vec<Found>,
}

impl Collector {
    fn new(module: Vec<String>) -> Self {
        Collector {
            module,
            aliases: BTreeMap::new(),
            crate_paths: Vec::new(),
            external_paths: Vec::new(),
        }
    }

    /// Resolves `crate`/`super`/`self`/an alias at the head of `segments`
    /// to an absolute module path; `None` for paths that start elsewhere.
    fn resolve(&self, segments: &[String]) -> Option<Vec<String>> {
        let first = segments.first()?;
        match first.as_str() {
            "crate" => Some(segments[1..].to_vec()),
            "self" => {
                let mut out = self.module.clone();
                out.extend_from_slice(&segments[1..]);
                Some(out)
            }
            "super" => {
                let mut out = self.module.clone();
                let mut rest = segments;
                while rest.first().map(String::as_str) == Some("super") {
                    out.pop();
                    rest = &rest[1..];
                }
                out.extend_from_slice(rest);
                Some(out)
            }
            _ => {
                let mut out = self.aliases.get(first)?.clone();
                out.extend_from_slice(&segments[1..]);
                Some(out)
            }
        }
    }

    fn record(&mut self, segments: Vec<String>, line: usize) {
        if let Some(first) = segments.first()
            && CRATES.iter().any(|(name, _, _)| name == first)
        {
            self.external_paths.push(Found {
                line,
                segments: segments.clone(),
            });
        }
        if let Some(resolved) = self.resolve(&segments) {
            self.crate_paths.push(Found {
                line,
                segments: resolved,
            });
        }
    }

    /// Flattens a use tree into full paths: `(path, name it binds)`.
    fn use_paths(
        tree: &syn::UseTree,
        prefix: &mut Vec<String>,
        out: &mut Vec<(Vec<String>, String)>,
    ) {
        match tree {
            syn::UseTree::Path(p) => {
                prefix.push(p.ident.to_string());
                Self::use_paths(&p.tree, prefix, out);
                prefix.pop();
            }
            syn::UseTree::Name(n) => {
                let name = n.ident.to_string();
                let mut path = prefix.clone();
                if name != "self" {
                    path.push(name.clone());
                }
                let bound = path.last().cloned().unwrap_or(name);
                out.push((path, bound));
            }
            syn::UseTree::Rename(r) => {
                let mut path = prefix.clone();
                if r.ident != "self" {
                    path.push(r.ident.to_string());
                }
                out.push((path, r.rename.to_string()));
            }
            syn::UseTree::Glob(_) => out.push((prefix.clone(), "*".to_owned())),
            syn::UseTree::Group(g) => {
                for item in &g.items {
                    Self::use_paths(item, prefix, out);
                }
            }
        }
    }

    /// Finds `a :: b :: c` paths in a macro's tokens.
    fn macro_paths(&mut self, tokens: TokenStream) {
        let tokens: Vec<TokenTree> = tokens.into_iter().collect();
        let mut i = 0;
        while i < tokens.len() {
            match &tokens[i] {
                TokenTree::Group(g) => {
                    self.macro_paths(g.stream());
                    i += 1;
                }
                TokenTree::Ident(ident) => {
                    let line = ident.span().start().line;
                    let mut segments = vec![ident.to_string()];
                    let mut j = i + 1;
                    while let (
                        Some(TokenTree::Punct(a)),
                        Some(TokenTree::Punct(b)),
                        Some(TokenTree::Ident(next)),
                    ) = (tokens.get(j), tokens.get(j + 1), tokens.get(j + 2))
                    {
                        if a.as_char() != ':' || b.as_char() != ':' {
                            break;
                        }
                        segments.push(next.to_string());
                        j += 3;
                    }
                    if segments.len() > 1 {
                        self.record(segments, line);
                    }
                    i = j;
                }
                _ => i += 1,
            }
        }
    }
}

impl<'ast> Visit<'ast> for Collector {
    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        self.module.push(item.ident.to_string());
        let aliases = self.aliases.clone();
        syn::visit::visit_item_mod(self, item);
        self.aliases = aliases;
        self.module.pop();
    }

    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        let line = item.use_token.span.start().line;
        let mut paths = Vec::new();
        Collector::use_paths(&item.tree, &mut Vec::new(), &mut paths);
        for (path, bound) in paths {
            if let Some(resolved) = self.resolve(&path)
                && bound != "*"
            {
                self.aliases.insert(bound, resolved);
            }
            self.record(path, line);
        }
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let line = path
            .segments
            .first()
            .map_or(0, |s| s.ident.span().start().line);
        let segments = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.record(segments, line);
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        self.macro_paths(mac.tokens.clone());
        syn::visit::visit_macro(self, mac);
    }
}

/// The module path of a file below `src/` (`db/rooms/mod.rs` -> `db::rooms`).
fn module_of(relative: &Path) -> Vec<String> {
    let mut segments: Vec<String> = relative
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(segments.last().map(String::as_str), Some("mod" | "lib")) {
        segments.pop();
    }
    segments
}

/// Every rule `source` (the text of `src/<relative>`) breaks, as messages.
fn violations(relative: &Path, source: &str) -> Vec<String> {
    let file = syn::parse_file(source)
        .unwrap_or_else(|e| panic!("src/{}: does not parse: {e}", relative.display()));
    let module = module_of(relative);
    let mut collector = Collector::new(module.clone());
    collector.visit_file(&file);
    let here = format!("src/{}", relative.display());
    let mut out = Vec::new();
    let Some(from) = part_of(&module) else {
        if !module.is_empty() {
            out.push(format!(
                "{here}: module {} is in no part of the table in tests/architecture.rs (PARTS); add a line for it",
                module.join("::")
            ));
        }
        return out;
    };
    for found in &collector.crate_paths {
        let Some(to) = part_of(&found.segments) else {
            continue;
        };
        if let Some(rule) = broken_rule(from, to) {
            out.push(format!(
                "{here}:{}: {} imports {} (part {}): {rule}",
                found.line,
                from.module,
                found.segments.join("::"),
                to.module
            ));
        }
    }
    for found in &collector.external_paths {
        let (name, allowed, why) = CRATES
            .iter()
            .find(|(name, _, _)| *name == found.segments[0])
            .expect("recorded only for listed crates");
        let inside = allowed.iter().any(|a| {
            let a: Vec<&str> = a.split("::").collect();
            a.len() <= module.len() && a.iter().zip(&module).all(|(x, y)| *x == y)
        });
        if !inside {
            out.push(format!(
                "{here}:{}: {} names the crate {name} ({}): {why}",
                found.line,
                module.join("::"),
                found.segments.join("::")
            ));
        }
    }
    out
}

/// Every `.rs` file below `dir`, relative to `root`.
fn rust_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path.strip_prefix(root).expect("below src").to_path_buf());
        }
    }
}

#[test]
fn every_import_follows_the_dependency_rules() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    files.sort();
    // main.rs is the binary's crate root: its `crate::` is not the library's.
    files.retain(|f| f != Path::new("main.rs"));
    assert!(
        files.len() > 100,
        "found only {} files in src/",
        files.len()
    );
    let mut broken = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(root.join(file)).expect("read file");
        broken.extend(violations(file, &source));
    }
    assert!(
        broken.is_empty(),
        "{} imports break the dependency rules (src/lib.rs, docs/architecture.md):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn every_part_in_the_table_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for part in PARTS {
        let path = part.module.replace("::", "/");
        assert!(
            root.join(format!("{path}.rs")).exists() || root.join(&path).is_dir(),
            "PARTS lists {}, which is not in src/",
            part.module
        );
    }
}

// The checker itself, on snippets: each rule fails when broken.

fn check(file: &str, source: &str) -> Vec<String> {
    violations(Path::new(file), source)
}

#[test]
fn a_database_importing_another_fails_and_names_the_rule() {
    let v = check(
        "db/rooms/send.rs",
        "use crate::db::accounts::AccountsDb;\nuse super::super::transitory::Position;",
    );
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[0].starts_with("src/db/rooms/send.rs:1: db::rooms imports db::accounts::AccountsDb (part db::accounts): databases never import each other"), "{}", v[0]);
    assert!(v[1].contains("db::transitory::Position"), "{}", v[1]);
    assert!(
        check(
            "db/rooms/send.rs",
            "use crate::db::{Position, notify};\nuse super::keys;"
        )
        .is_empty()
    );
}

#[test]
fn an_import_up_the_stack_fails_through_aliases_and_macros() {
    let v = check(
        "kv/retry.rs",
        "fn f() { let _ = crate::service::Error::Gone; }",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        v[0].contains("kv imports service::Error::Gone (part service): imports flow down"),
        "{}",
        v[0]
    );
    let v = check(
        "db/notify.rs",
        "use crate::sync;\nfn f() { sync::token::X; }",
    );
    assert_eq!(v.len(), 2, "{v:?}");
    assert!(v[1].contains("sync::token::X"), "{}", v[1]);
    let v = check(
        "events/pdu.rs",
        "fn f() { tracing::info!(\"{}\", crate::api::X); }",
    );
    assert_eq!(v.len(), 1, "{v:?}");
    assert!(
        check(
            "service/rooms/mod.rs",
            "use crate::{db::rooms::RoomsDb, kv, events};"
        )
        .is_empty()
    );
}

#[test]
fn api_touching_kv_bench_importing_and_crates_out_of_place_fail() {
    let v = check("api/rooms.rs", "use crate::kv::Database;");
    assert!(
        v.len() == 1 && v[0].contains("api never touches kv"),
        "{v:?}"
    );
    let v = check("bench/mod.rs", "use crate::keys::Space;");
    assert!(
        v.len() == 1 && v[0].contains("bench imports nothing else"),
        "{v:?}"
    );
    let v = check("db/accounts/mod.rs", "use axum::Router;");
    assert!(
        v.len() == 1 && v[0].contains("names the crate axum"),
        "{v:?}"
    );
    let v = check("kv/error.rs", "enum E { Fdb(foundationdb::FdbError) }");
    assert!(v.len() == 1 && v[0].contains("only src/kv/fdb.rs"), "{v:?}");
    assert!(check("kv/fdb.rs", "use foundationdb::FdbError;").is_empty());
    assert!(check("db/rooms/keys.rs", "use foundationdb_tuple::Subspace;").is_empty());
    let v = check("widgets/mod.rs", "");
    assert!(
        v.len() == 1 && v[0].contains("in no part of the table"),
        "{v:?}"
    );
}
