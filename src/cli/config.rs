//! `myelin config example | check FILE`: the configuration's reference,
//! generated from its types, and a checker of configuration files.
//!
//! `example` prints a complete, commented TOML file: every key of
//! [`Config`] and of the raw tables read by the layers that own them
//! (`[server]`: `service::ServerConfig`, `[sync]`: `sync::SyncConfig`), each
//! with its doc comment (from the types' JSON schemas, `schemars`) and its
//! default value (the types' `Default`, serialized). Keys without a default
//! (`Option`s) are shown commented out. `myelin.example.toml` at the
//! repository root is its output; `tests/config_example.rs` fails when the
//! two drift, and `myelin config example > myelin.example.toml` regenerates
//! it.
//!
//! `check FILE` reports every key of the file that no type reads, with its
//! dotted path (all of them, not only the first), then loads the file the
//! way `serve` does (with the `MYELIN_*` environment) and reports a bad
//! value with its path.
//!
//! A new raw table is one line of `raw_tables`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Subcommand;
use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::{CliError, ConfigArgs};
use crate::app::AppConfig;
use crate::config::Config;

/// `myelin config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Print a complete, commented configuration file with every default.
    Example,
    /// Check a configuration file: unknown keys and bad values, with their
    /// paths.
    Check {
        /// The TOML file to check.
        file: PathBuf,
    },
}

/// Runs a `config` subcommand.
pub async fn run(cmd: ConfigCommand) -> Result<(), CliError> {
    match cmd {
        ConfigCommand::Example => super::print(&example()),
        ConfigCommand::Check { file } => check(file),
    }
}

/// One table of the configuration: its schema and its default value.
struct Table {
    schema: Value,
    defaults: Value,
}

impl Table {
    fn of<T: JsonSchema + serde::Serialize + Default>() -> Table {
        Table {
            schema: schemars::schema_for!(T).to_value(),
            defaults: serde_json::to_value(T::default()).unwrap_or(Value::Null),
        }
    }
}

/// The raw tables of [`Config`] (kept as `Dict`s there), each read by the
/// layer that owns its type.
fn raw_tables() -> BTreeMap<&'static str, Table> {
    BTreeMap::from([
        ("server", Table::of::<crate::service::ServerConfig>()),
        ("sync", Table::of::<crate::sync::SyncConfig>()),
        ("media", Table::of::<crate::service::media::MediaConfig>()),
    ])
}

/// The text of `myelin.example.toml`.
pub fn example() -> String {
    let mut out = String::from(
        "# Myelin's configuration: every key, with its default value.\n\
         # Generated from the configuration types by `myelin config example`;\n\
         # regenerate with `myelin config example > myelin.example.toml`.\n\
         # Keys commented out have no default. See docs/configuration.md.\n",
    );
    let config = Table::of::<Config>();
    let raw = raw_tables();
    write_table(
        &mut out,
        &[],
        &config.schema,
        &config.schema,
        &config.defaults,
        &raw,
    );
    out
}

/// Writes the keys of one table (scalars first, then sub-tables), `path`
/// being its dotted path; `root` holds the `$defs` its schema refers to.
fn write_table(
    out: &mut String,
    path: &[&str],
    root: &Value,
    schema: &Value,
    defaults: &Value,
    raw: &BTreeMap<&str, Table>,
) {
    let properties = properties(root, schema);
    let empty = Map::new();
    let defaults = defaults.as_object().unwrap_or(&empty);
    let mut tables = Vec::new();
    for (key, property) in &properties {
        let default = defaults.get(key.as_str()).unwrap_or(&Value::Null);
        let is_table = default.is_object() || raw.contains_key(key.as_str());
        if is_table {
            tables.push((key, property, default));
            continue;
        }
        out.push('\n');
        write_comment(out, property);
        match toml_value(default) {
            Some(text) => out.push_str(&format!("{key} = {text}\n")),
            None => out.push_str(&format!("# {key} =\n")),
        }
    }
    for (key, property, default) in tables {
        let mut sub_path = path.to_vec();
        sub_path.push(key);
        out.push('\n');
        write_comment(out, property);
        if path.is_empty()
            && let Some(table) = raw.get(key.as_str())
        {
            out.push_str(&format!("[{}]\n", sub_path.join(".")));
            let none = BTreeMap::new();
            write_table(
                out,
                &sub_path,
                &table.schema,
                &table.schema,
                &table.defaults,
                &none,
            );
            continue;
        }
        if let Some(values) = map_values(root, property) {
            // A map of tables (`[databases.<name>]`): one commented template.
            let template_path = format!("{}.<name>", sub_path.join("."));
            out.push_str(&format!("# [{template_path}]\n"));
            let mut template = String::new();
            let none = BTreeMap::new();
            let defaults = default_of(root, &values);
            write_table(&mut template, &sub_path, root, &values, &defaults, &none);
            for line in template.lines() {
                match line {
                    "" => out.push_str("#\n"),
                    l if l.starts_with('#') => out.push_str(&format!("{l}\n")),
                    l => out.push_str(&format!("# {l}\n")),
                }
            }
            continue;
        }
        out.push_str(&format!("[{}]\n", sub_path.join(".")));
        let schema = resolve(root, property);
        write_table(out, &sub_path, root, &schema, default, raw);
    }
}

/// The default of the schema a map's values have: the map's own defaults
/// are empty, so its value type's `default` annotations are used.
fn default_of(root: &Value, schema: &Value) -> Value {
    let mut defaults = Map::new();
    for (key, property) in properties(root, schema) {
        if let Some(default) = resolve(root, &property)
            .get("default")
            .or(property.get("default"))
        {
            defaults.insert(key, default.clone());
        }
    }
    Value::Object(defaults)
}

/// The doc comment of a property, as `#` lines.
fn write_comment(out: &mut String, property: &Value) {
    if let Some(description) = property.get("description").and_then(Value::as_str) {
        for line in description.lines() {
            if line.is_empty() {
                out.push_str("#\n");
            } else {
                out.push_str(&format!("# {line}\n"));
            }
        }
    }
}

/// A JSON default as a TOML value; `None` for null (no default).
fn toml_value(value: &Value) -> Option<String> {
    if value.is_null() {
        return None;
    }
    let toml = toml::Value::try_from(value).ok()?;
    Some(toml.to_string())
}

/// The properties of an object schema (following `$ref`s), in the order
/// the schema lists them.
fn properties(root: &Value, schema: &Value) -> Vec<(String, Value)> {
    resolve(root, schema)
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The schema of a map's values (`additionalProperties`), if `schema` is a
/// map of objects.
fn map_values(root: &Value, schema: &Value) -> Option<Value> {
    let values = resolve(root, schema).get("additionalProperties")?.clone();
    let values = resolve(root, &values);
    values.get("properties").is_some().then_some(values)
}

/// `schema` with a `$ref` (directly, or as the one non-null alternative of
/// an `anyOf`/`oneOf`/`allOf`) replaced by the definition it names.
fn resolve(root: &Value, schema: &Value) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        if let Some(def) = root.get("$defs").and_then(|d| d.get(name)) {
            return resolve(root, def);
        }
    }
    for combinator in ["allOf", "anyOf", "oneOf"] {
        if let Some(alternatives) = schema.get(combinator).and_then(Value::as_array) {
            let mut objects = alternatives
                .iter()
                .filter(|a| a.get("type").and_then(Value::as_str) != Some("null"));
            if let (Some(one), None) = (objects.next(), objects.next()) {
                return resolve(root, one);
            }
        }
    }
    schema.clone()
}

/// `myelin config check FILE`.
fn check(file: PathBuf) -> Result<(), CliError> {
    let text = std::fs::read_to_string(&file)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    let document: toml::Table = toml::from_str(&text)
        .map_err(|e| CliError::BadInput(format!("{}: {e}", file.display())))?;
    let unknown = unknown_keys(&toml_to_json(&toml::Value::Table(document)));
    if !unknown.is_empty() {
        return Err(CliError::BadInput(format!(
            "{}: unknown keys: {}",
            file.display(),
            unknown.join(", ")
        )));
    }
    let args = ConfigArgs {
        config: Some(file.clone()),
        data: None,
    };
    let config = args.load()?;
    AppConfig::from_config(&config)?;
    super::print(&format!("{}: ok\n", file.display()))
}

/// The dotted path of every key of `document` that no configuration type
/// reads.
pub fn unknown_keys(document: &Value) -> Vec<String> {
    let config = Table::of::<Config>();
    let raw = raw_tables();
    let mut unknown = Vec::new();
    walk_unknown(
        &mut unknown,
        "",
        &config.schema,
        &config.schema,
        document,
        &raw,
    );
    unknown
}

fn walk_unknown(
    unknown: &mut Vec<String>,
    path: &str,
    root: &Value,
    schema: &Value,
    document: &Value,
    raw: &BTreeMap<&str, Table>,
) {
    let Some(document) = document.as_object() else {
        return;
    };
    let known: BTreeMap<String, Value> = properties(root, schema).into_iter().collect();
    let map_values = map_values(root, schema);
    for (key, value) in document {
        let key_path = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        if let Some(values) = &map_values {
            walk_unknown(unknown, &key_path, root, values, value, &BTreeMap::new());
            continue;
        }
        let Some(property) = known.get(key) else {
            unknown.push(key_path);
            continue;
        };
        if path.is_empty()
            && let Some(table) = raw.get(key.as_str())
        {
            walk_unknown(
                unknown,
                &key_path,
                &table.schema,
                &table.schema,
                value,
                &BTreeMap::new(),
            );
        } else if value.is_object() {
            let property = resolve(root, property);
            walk_unknown(unknown, &key_path, root, &property, value, &BTreeMap::new());
        }
    }
}

/// A TOML value as JSON (datetimes as strings).
fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::from(s.as_str()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::from(*b),
        toml::Value::Datetime(d) => Value::from(d.to_string()),
        toml::Value::Array(a) => Value::Array(a.iter().map(toml_to_json).collect()),
        toml::Value::Table(t) => Value::Object(
            t.iter()
                .map(|(k, v)| (k.clone(), toml_to_json(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_reported_with_their_paths() {
        let document = serde_json::json!({
            "server_name": "a.org",
            "bnd": "x",
            "server": {"registration_enabled": true, "registraton_token": "t",
                       "login_per_ip": {"per_second": 1.0, "burts": 2}},
            "databases": {"rooms": {"backend": "fdb", "clusterfile": "f"}},
            "metrics": {"bind": "127.0.0.1:9108", "port": 1},
        });
        let mut unknown = unknown_keys(&document);
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "bnd",
                "databases.rooms.clusterfile",
                "metrics.port",
                "server.login_per_ip.burts",
                "server.registraton_token",
            ]
        );
        assert!(unknown_keys(&serde_json::json!({"server_name": "a.org"})).is_empty());
    }

    #[test]
    fn the_example_loads_as_the_defaults() {
        let text = example();
        let config = Config::from_figment(
            figment::Figment::from(figment::providers::Serialized::defaults(Config::default()))
                .merge(<figment::providers::Toml as figment::providers::Format>::string(&text)),
        )
        .unwrap();
        let defaults = Config {
            server: config.server.clone(),
            sync: config.sync.clone(),
            media: config.media.clone(),
            ..Config::default()
        };
        assert_eq!(config, defaults);
        let app = AppConfig::from_config(&config).unwrap();
        assert_eq!(app.server, crate::service::ServerConfig::default());
        assert_eq!(app.sync, crate::sync::SyncConfig::default());
        // The only filled-in default: blobs live under the data directory.
        assert_eq!(
            app.media,
            crate::service::media::MediaConfig {
                path: Some(config.data_dir.join("blobs")),
                ..Default::default()
            }
        );
        assert!(text.contains("[metrics]"), "{text}");
        assert!(text.contains("# [databases.<name>]"), "{text}");
        let document: toml::Table = toml::from_str(&text).unwrap();
        assert!(unknown_keys(&toml_to_json(&toml::Value::Table(document))).is_empty());
    }
}
