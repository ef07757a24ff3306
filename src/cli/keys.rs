//! `myelin keys`: the key schemas and the keys of a live store, decoded.
//!
//! - `layout`: every database's directories, subspaces, key tuple shapes and
//!   value encodings, generated from the specs in `src/db/*/keys.rs`. Given a
//!   store (`--data DIR` or `--config FILE`), it opens it (creating the
//!   directories if needed) and shows each directory's path and prefix.
//! - `decode <key> [--value V]`: names the database, directory, subspace and
//!   fields of a raw key typed as hex (`0x1502...`, `1502...`) or in
//!   FoundationDB's escaped form (`\x15\x02...`), resolving prefixes from the
//!   directory tree of the configured stores (read only).
//! - `scan <db> <path...>`: the decoded entries of one directory of a live
//!   store, at most `--limit` of them, optionally only those under a tuple
//!   prefix (`--prefix SUBSPACE [FIELD...]`), read in pages of
//!   1,000 keys, one transaction each (not one snapshot).
//!
//! `decode` and `scan` never create anything: they read the directory layer's
//! tree and refuse embedded stores that do not exist.
//!
//! Who may import this: `cli` only.

use std::fmt::Write;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand};
use foundationdb_tuple::{Element, Uuid, Versionstamp};

use super::{CliError, ConfigArgs, print};
use crate::config::{Backend, Config};
use crate::db::{self, SPECS};
use crate::keys::{
    self, Catalog, DatabaseSpec, DirectorySpec, FieldType, KnownDirectory, parse_bytes, printable,
};
use crate::kv::{self, RangeOption};

/// `myelin keys` subcommands.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every database's directories, subspaces and key shapes (with
    /// resolved prefixes when a store is given).
    Layout(LayoutArgs),
    /// Decode one raw key (and value) of the configured stores.
    Decode(DecodeArgs),
    /// Dump the decoded entries of one directory of a live store.
    Scan(ScanArgs),
}

/// `myelin keys layout`.
#[derive(Debug, Args)]
pub struct LayoutArgs {
    /// The store to resolve prefixes in; without one, prefixes are omitted.
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// `myelin keys decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The configured stores.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The key: `0x` and hex, plain hex, or escaped bytes (`\x15\x02abc`).
    pub key: String,
    /// The key's value, in the same forms, to decode too.
    #[arg(long, value_name = "VALUE")]
    pub value: Option<String>,
    /// Only try this database's directories.
    #[arg(long, value_parser = db_name())]
    pub db: Option<DbName>,
}

/// `myelin keys scan`.
#[derive(Debug, Args)]
pub struct ScanArgs {
    /// The configured stores.
    #[command(flatten)]
    pub config: ConfigArgs,
    /// The database.
    #[arg(value_parser = db_name())]
    pub db: DbName,
    /// The directory, relative to the database (e.g. `meta`).
    #[arg(required = true, num_args = 1..)]
    pub path: Vec<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Only keys of this subspace (name or tag) whose first fields are these.
    #[arg(long, num_args = 1.., value_name = "SUBSPACE [FIELD]...")]
    pub prefix: Vec<String>,
}

/// A logical database, by name: one of [`db::SPECS`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DbName(pub &'static DatabaseSpec);

impl DbName {
    fn spec(self) -> &'static DatabaseSpec {
        self.0
    }
}

/// Parses a database name; the possible values are the names in
/// [`db::SPECS`], as clap lists them in help and errors.
fn db_name() -> impl TypedValueParser<Value = DbName> {
    PossibleValuesParser::new(SPECS.map(|spec| spec.name)).try_map(|name: String| {
        SPECS
            .iter()
            .find(|spec| spec.name == name)
            .map(|&spec| DbName(spec))
            .ok_or_else(|| format!("no database {name}"))
    })
}

/// Runs one `myelin keys` subcommand.
pub async fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Layout(args) => layout(args).await,
        KeysCommand::Decode(args) => decode(args).await,
        KeysCommand::Scan(args) => scan(args).await,
    }
}

async fn layout(args: LayoutArgs) -> Result<(), CliError> {
    if !args.config.is_given() {
        return print(&keys::layout::text(&SPECS, &[]));
    }
    let config = args.config.load()?;
    let dbs = db::open(&config.databases).await?;
    let mut out = String::new();
    for spec in SPECS {
        let _ = writeln!(
            out,
            "# {}: {}",
            spec.name,
            describe_store(&config.databases.get(spec.name))
        );
    }
    let dirs: Vec<&keys::Directories> = dbs.handles().iter().map(|h| &*h.dirs).collect();
    out.push_str(&keys::layout::text(&SPECS, &dirs));
    print(&out)
}

async fn decode(args: DecodeArgs) -> Result<(), CliError> {
    let key = parse_bytes(&args.key)
        .map_err(|e| CliError::BadInput(format!("key {:?}: {e}", args.key)))?;
    let value = match &args.value {
        Some(v) => {
            Some(parse_bytes(v).map_err(|e| CliError::BadInput(format!("value {v:?}: {e}")))?)
        }
        None => None,
    };
    let config = load_existing(&args.config)?;
    let mut out = String::new();
    let mut matched = 0;
    for store in db::connect(&config.databases)? {
        if args.db.is_some_and(|d| d.spec() != store.spec) {
            continue;
        }
        let catalog = db::read_catalog(store.spec, &store.db, &store.root).await?;
        let decoded = catalog.decode(&key, value.as_deref());
        if decoded.directory.is_some() {
            matched += 1;
            let _ = write!(out, "{decoded}");
        }
    }
    if matched == 0 {
        let _ = writeln!(
            out,
            "# the key lies in no directory of the configured databases"
        );
        let _ = write!(out, "{}", Catalog::new().decode(&key, value.as_deref()));
    }
    print(&out)
}

/// Keys `myelin keys scan` reads per transaction.
const SCAN_PAGE_KEYS: usize = 1_000;

async fn scan(args: ScanArgs) -> Result<(), CliError> {
    let config = load_existing(&args.config)?;
    let spec = args.db.spec();
    let store = db::connect(&config.databases)?
        .into_iter()
        .find(|store| store.spec == spec)
        .expect("connect opens every database of SPECS");
    let root = store.root;
    let store = store.db;
    let catalog = db::read_catalog(spec, &store, &root).await?;
    let relative: Vec<&str> = args.path.iter().map(String::as_str).collect();
    let dir = find_directory(&catalog, spec, &root, &relative)?;
    let mut begin = dir.prefix.clone();
    if !args.prefix.is_empty() {
        begin.extend(tuple_prefix(dir.spec, &args.prefix)?);
    }
    // Page by page, one transaction each, so a large --limit never makes
    // one transaction that grows with the data (FoundationDB's 5 s rule).
    let mut next = Some(RangeOption::prefix(&begin).limit(args.limit));
    let mut entries = Vec::new();
    while let Some(range) = next {
        let (page, rest) =
            store
                .read_page(&range, SCAN_PAGE_KEYS)
                .await
                .map_err(|source: kv::Error| db::DbError::Kv {
                    database: spec.name,
                    source,
                })?;
        entries.extend(page);
        next = rest;
    }
    let mut out = format!(
        "# {} {} prefix {}\n",
        spec.name,
        dir.path.join("/"),
        printable(&dir.prefix)
    );
    for kv in &entries {
        let d = catalog.decode(&kv.key, Some(&kv.value));
        let subspace = d.subspace.map_or("?", |(name, _)| name);
        let _ = writeln!(
            out,
            "{subspace} {} = {}",
            d.fields_line(),
            d.value.unwrap_or_default()
        );
    }
    let _ = writeln!(out, "# {} entries", entries.len());
    if entries.len() == args.limit {
        let _ = writeln!(out, "# stopped at --limit {}", args.limit);
    }
    print(&out)
}

/// Loads the configuration and checks that every embedded store exists, so
/// inspection never creates an empty store by mistake.
fn load_existing(args: &ConfigArgs) -> Result<Config, CliError> {
    let config = args.load()?;
    for name in SPECS.map(|spec| spec.name) {
        let db = config.databases.get(name);
        if db.backend == Backend::Embedded
            && let Some(path) = &db.path
            && !path.exists()
        {
            return Err(CliError::BadInput(format!(
                "no {name} store at {} (give --data DIR or --config FILE)",
                path.display()
            )));
        }
    }
    Ok(config)
}

fn describe_store(db: &crate::config::DatabaseConfig) -> String {
    match db.backend {
        Backend::Embedded => format!(
            "embedded store at {}",
            db.path.as_deref().unwrap_or("?".as_ref()).display()
        ),
        Backend::Fdb => format!(
            "FoundationDB cluster {}",
            db.cluster_file.as_deref().unwrap_or("?".as_ref()).display()
        ),
    }
}

/// The directory at `relative` (under `root ++ [name]`) as it exists in the
/// store.
fn find_directory<'a>(
    catalog: &'a Catalog,
    spec: &DatabaseSpec,
    root: &[String],
    relative: &[&str],
) -> Result<&'a KnownDirectory, CliError> {
    let mut path = root.to_vec();
    path.push(spec.name.to_string());
    path.extend(relative.iter().map(|p| p.to_string()));
    catalog
        .directories()
        .iter()
        .find(|d| d.path == path)
        .ok_or_else(|| {
            let declared: Vec<String> = spec.directories.iter().map(|d| d.path.join("/")).collect();
            CliError::BadInput(format!(
                "directory {} does not exist in the {} store (declared directories: {})",
                path.join("/"),
                spec.name,
                declared.join(", ")
            ))
        })
}

/// Packs `--prefix SUBSPACE [FIELD]...`: the subspace by name or tag, then
/// fields parsed by the spec's field types (for an undeclared directory:
/// integers if they parse, else strings).
fn tuple_prefix(dir: Option<&DirectorySpec>, args: &[String]) -> Result<Vec<u8>, CliError> {
    let bad = |msg: String| CliError::BadInput(format!("--prefix: {msg}"));
    let (first, fields) = args.split_first().expect("caller checks non-empty");
    let sub = dir.and_then(|d| d.subspace_by_name(first));
    let tag = match (sub, first.parse::<i64>()) {
        (Some(sub), _) => sub.tag,
        (None, Ok(tag)) => tag,
        (None, Err(_)) => {
            let names: Vec<&str> =
                dir.map_or(Vec::new(), |d| d.subspaces.iter().map(|s| s.name).collect());
            return Err(bad(format!(
                "unknown subspace {first:?} (known: {})",
                names.join(", ")
            )));
        }
    };
    let sub = sub.or_else(|| dir.and_then(|d| d.subspace_by_tag(tag)));
    if let Some(sub) = sub
        && fields.len() > sub.key.len()
    {
        return Err(bad(format!(
            "{} has {} key fields, {} given",
            sub.name,
            sub.key.len(),
            fields.len()
        )));
    }
    let mut elements = vec![Element::Int(tag)];
    for (i, text) in fields.iter().enumerate() {
        let element = match sub.map(|s| &s.key[i]) {
            Some(field) => parse_field(field.ty, text)
                .map_err(|why| bad(format!("field {} ({}): {why}", field.name, field.ty.name())))?,
            None => text
                .parse::<i64>()
                .map_or_else(|_| Element::String(text.clone().into()), Element::Int),
        };
        elements.push(element);
    }
    Ok(foundationdb_tuple::pack(&elements))
}

/// One key field typed on the command line.
fn parse_field(ty: FieldType, text: &str) -> Result<Element<'static>, String> {
    Ok(match ty {
        FieldType::Str => Element::String(text.to_string().into()),
        FieldType::Int => Element::Int(text.parse().map_err(|e| format!("{e}"))?),
        FieldType::Bool => Element::Bool(text.parse().map_err(|e| format!("{e}"))?),
        FieldType::Bytes => Element::Bytes(parse_bytes(text).map_err(|e| e.to_string())?.into()),
        FieldType::Uuid => Element::Uuid(Uuid::parse_str(text).map_err(|e| e.to_string())?),
        FieldType::Versionstamp => {
            let hex = text.strip_prefix("vs:").unwrap_or(text);
            let bytes: [u8; 12] = hex::decode(hex)
                .map_err(|e| e.to_string())?
                .try_into()
                .map_err(|_| "expected 12 bytes (24 hex digits)".to_string())?;
            Element::Versionstamp(Versionstamp::from(bytes))
        }
    })
}
