//! The key layout as text, generated from the database specs: the plain-text
//! listing of `myelin keys layout` and the Markdown of `docs/key-layout.md`
//! (`tests/key_layout.rs` fails if that file drifts from [`markdown`]).
//!
//! Who may import this: the CLI and tests. Pure text work, no I/O.

use std::fmt::Write;

use super::bytes::printable;
use super::space::Directories;
use super::spec::DatabaseSpec;

/// The plain-text layout of `specs`. For each database in `resolved` (matched
/// by name), each directory also shows its full path and prefix in the store.
pub fn text(specs: &[&DatabaseSpec], resolved: &[&Directories]) -> String {
    let mut out = String::new();
    for spec in specs {
        let dirs = resolved.iter().find(|d| d.spec().name == spec.name);
        let _ = writeln!(
            out,
            "{} (schema version {})",
            spec.name, spec.schema_version
        );
        for dir in spec.directories {
            let _ = write!(out, "  directory {}", dir.path.join("/"));
            if let Some(space) = dirs.map(|d| d.space(dir)) {
                let _ = write!(
                    out,
                    "  path {}  prefix {} (0x{})",
                    space.path().join("/"),
                    printable(space.prefix()),
                    hex::encode(space.prefix())
                );
            }
            out.push('\n');
            for sub in dir.subspaces {
                let _ = writeln!(
                    out,
                    "    {:<20} {:<40} -> {}",
                    sub.name,
                    sub.shape(),
                    sub.value
                );
            }
        }
    }
    out
}

/// `docs/key-layout.md`: every database, directory and subspace of `specs`.
pub fn markdown(specs: &[&DatabaseSpec]) -> String {
    let mut out = String::new();
    out.push_str(
        "# Key layout\n\
         \n\
         <!-- Generated from the `SPEC` of each `src/db/*/keys.rs` by \
         `myelin::keys::layout::markdown`. Do not edit by hand: regenerate with \
         `MYELIN_UPDATE_KEY_LAYOUT=1 cargo test --test key_layout`. -->\n\
         \n\
         Each logical database lives under the directory `<root>/<database>` of its \
         store, where `root` is configured per database (default `myelin`). Every \
         directory below holds keys `prefix ++ pack((tag, fields...))`: `prefix` is \
         the short prefix the FoundationDB directory layer allocated for the \
         directory, `tag` a small integer naming the subspace, and `fields` the \
         key's tuple elements (FoundationDB tuple encoding). `myelin keys layout \
         --data DIR` prints the prefixes of a live store; `myelin keys decode` and \
         `myelin keys scan` decode keys with these tables.\n",
    );
    for spec in specs {
        let _ = write!(
            out,
            "\n## `{}` (schema version {})\n\n{}\n",
            spec.name, spec.schema_version, spec.doc
        );
        for dir in spec.directories {
            let _ = write!(
                out,
                "\n### Directory `{}/{}`\n\n{}\n\n\
                 | Tag | Subspace | Key tuple | Value | Meaning |\n\
                 |----:|----------|-----------|-------|---------|\n",
                spec.name,
                dir.path.join("/"),
                dir.doc
            );
            for sub in dir.subspaces {
                let _ = writeln!(
                    out,
                    "| {} | `{}` | `{}` | {} | {} |",
                    sub.tag,
                    sub.name,
                    sub.shape(),
                    sub.value,
                    sub.doc.replace('|', "\\|").replace('\n', " ")
                );
            }
        }
    }
    out
}
