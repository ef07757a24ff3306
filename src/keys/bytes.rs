//! Raw keys as text: FoundationDB's printable escaping and parsing of keys
//! typed on the command line.
//!
//! The printable form is the one FoundationDB's tools print (`fdbcli`,
//! `printable()` in the C++ sources): bytes 0x20..=0x7e other than `\` as
//! themselves, `\` as `\\`, every other byte as `\xNN` with lowercase hex.
//!
//! Who may import this: anything. Pure byte work.

/// Why a key typed as text could not be parsed.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParseBytesError {
    /// Input starting with `0x` has a character that is not a hex digit, or an
    /// odd number of digits.
    #[error("invalid hex after 0x: {0}")]
    Hex(#[source] hex::FromHexError),
    /// A `\x` escape is not followed by two hex digits.
    #[error("incomplete \\x escape at byte {at}: expected two hex digits")]
    BadHexEscape {
        /// Byte offset of the backslash in the input.
        at: usize,
    },
    /// A backslash is followed by something other than `x` or `\`.
    #[error("unknown escape at byte {at}: only \\xNN and \\\\ are allowed")]
    UnknownEscape {
        /// Byte offset of the backslash in the input.
        at: usize,
    },
    /// The input is empty.
    #[error("empty key")]
    Empty,
}

/// `bytes` in FoundationDB's printable form, e.g. `\x15\x01abc`.
pub fn printable(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out
}

/// Parses a key typed as text: `0x` followed by hex, plain hex (an even
/// number of hex digits and nothing else), or FoundationDB's printable form
/// (`\xfe\x01abc`, `\\` for a backslash). Surrounding quotes and a Python-style
/// `b'...'` wrapper are removed first.
pub fn parse_bytes(input: &str) -> Result<Vec<u8>, ParseBytesError> {
    let s = strip_quotes(input.trim());
    if s.is_empty() {
        return Err(ParseBytesError::Empty);
    }
    if let Some(digits) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return hex::decode(digits).map_err(ParseBytesError::Hex);
    }
    if s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex::decode(s).map_err(ParseBytesError::Hex);
    }
    unescape(s)
}

fn strip_quotes(s: &str) -> &str {
    let s = s
        .strip_prefix('b')
        .filter(|r| r.starts_with(['\'', '"']))
        .unwrap_or(s);
    for q in ['\'', '"'] {
        if s.len() >= 2
            && let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q))
        {
            return inner;
        }
    }
    s
}

fn unescape(s: &str) -> Result<Vec<u8>, ParseBytesError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'\\') => {
                out.push(b'\\');
                i += 2;
            }
            Some(b'x') => {
                let digits = bytes
                    .get(i + 2..i + 4)
                    .and_then(|d| std::str::from_utf8(d).ok())
                    .and_then(|d| u8::from_str_radix(d, 16).ok())
                    .ok_or(ParseBytesError::BadHexEscape { at: i })?;
                out.push(digits);
                i += 4;
            }
            _ => return Err(ParseBytesError::UnknownEscape { at: i }),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_like_fdb() {
        assert_eq!(printable(b"\x15\x01ab\\c\xff "), "\\x15\\x01ab\\\\c\\xff ");
    }

    #[test]
    fn parse_accepts_hex_escaped_and_quoted_forms() {
        let want = b"\xfe\x01abc".to_vec();
        assert_eq!(parse_bytes("0xfe01616263"), Ok(want.clone()));
        assert_eq!(parse_bytes("FE01616263"), Ok(want.clone()));
        assert_eq!(parse_bytes("\\xfe\\x01abc"), Ok(want.clone()));
        assert_eq!(parse_bytes("b'\\xfe\\x01abc'"), Ok(want.clone()));
        assert_eq!(parse_bytes("\"\\xfe\\x01abc\""), Ok(want));
        assert_eq!(parse_bytes("a\\\\b"), Ok(b"a\\b".to_vec()));
    }

    #[test]
    fn parse_round_trips_printable() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(parse_bytes(&printable(&all)), Ok(all));
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert_eq!(
            parse_bytes("\\x1"),
            Err(ParseBytesError::BadHexEscape { at: 0 })
        );
        assert_eq!(
            parse_bytes("ab\\q"),
            Err(ParseBytesError::UnknownEscape { at: 2 })
        );
        assert!(matches!(parse_bytes("0xabc"), Err(ParseBytesError::Hex(_))));
        assert_eq!(parse_bytes("  "), Err(ParseBytesError::Empty));
    }
}
