//! Text columns of charsets other than UTF-8 (issue 28), decoded as the server converts
//! them, exactly as `cdc/mysql/charsets.py` does on the Python path:
//!
//! * the charsets of `cdc/mysql/charsets.bin` (latin1, gbk, big5, sjis, ...): tables read
//!   from the server by `scripts/charset_tables.py`, whose docstring gives the format; the
//!   file is compiled in, the same bytes the Python path reads;
//! * ucs2, utf16, utf16le and utf32 by rule (big-endian, except utf16le).
//!
//! Bytes the charset does not take (the server does not store them) and UCS-2/UTF-32 code
//! units in the surrogate range (the server converts them to bytes that are not UTF-8) are
//! a `Decline`: the Python path writes them ('?' and U+FFFD).

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::values::{decline, R};

static DATA: &[u8] = include_bytes!("../../cdc/mysql/charsets.bin");
const MAGIC: &[u8] = b"CDCCS1\n";
const ILL: u16 = 0xFFFF;
const NEXT: u16 = 0xD800;

enum Rule {
    Table { nodes: Vec<&'static [u8]>, ascii_same: bool },
    Ucs2,
    Utf16 { big_endian: bool },
    Utf32,
}

/// One charset's decoding; `named` hands out the one instance of each.
pub struct Charset {
    name: String,
    rule: Rule,
}

impl std::fmt::Debug for Charset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Charset({})", self.name)
    }
}

fn sections() -> &'static HashMap<String, Charset> {
    static SECTIONS: OnceLock<HashMap<String, Charset>> = OnceLock::new();
    SECTIONS.get_or_init(|| {
        let mut out = HashMap::new();
        for (name, rule) in [
            ("ucs2", Rule::Ucs2),
            ("utf16", Rule::Utf16 { big_endian: true }),
            ("utf16le", Rule::Utf16 { big_endian: false }),
            ("utf32", Rule::Utf32),
        ] {
            out.insert(name.to_string(), Charset { name: name.to_string(), rule });
        }
        // The file is cdc's own (checked in); one that does not parse leaves only the rules.
        if let Some(tables) = parse(DATA) {
            for (name, nodes) in tables {
                let root = nodes[0];
                let ascii_same = (0..0x80usize).all(|b| entry(root, b) == b as u16);
                out.insert(name.clone(), Charset { name, rule: Rule::Table { nodes, ascii_same } });
            }
        }
        out
    })
}

fn parse(data: &'static [u8]) -> Option<Vec<(String, Vec<&'static [u8]>)>> {
    let mut at = MAGIC.len();
    if !data.starts_with(MAGIC) {
        return None;
    }
    let mut out = Vec::new();
    while at < data.len() {
        let size = *data.get(at)? as usize;
        let name = std::str::from_utf8(data.get(at + 1..at + 1 + size)?).ok()?.to_string();
        at += 1 + size;
        let count = u16::from_le_bytes(data.get(at..at + 2)?.try_into().ok()?) as usize;
        at += 2;
        let mut nodes = Vec::with_capacity(count);
        for _ in 0..count {
            nodes.push(data.get(at..at + 512)?);
            at += 512;
        }
        if !nodes.is_empty() {
            out.push((name, nodes)); // none: "the same as mariadb/<charset>", which Python names instead
        }
    }
    Some(out)
}

fn entry(node: &[u8], b: usize) -> u16 {
    u16::from_le_bytes([node[2 * b], node[2 * b + 1]])
}

/// The decoding `cdc/mysql/charsets.py native_name` names ("mariadb/latin1", "utf16"), if there is one.
pub fn named(name: &str) -> Option<&'static Charset> {
    sections().get(name)
}

impl Charset {
    pub fn decode(&self, b: &[u8]) -> R<String> {
        match &self.rule {
            Rule::Table { nodes, ascii_same } => {
                if *ascii_same && b.is_ascii() {
                    return Ok(std::str::from_utf8(b).unwrap_or_default().to_string());
                }
                table(nodes, b)
            }
            Rule::Ucs2 => {
                if b.len() % 2 != 0 {
                    return decline("ucs2 text of an odd number of bytes");
                }
                let mut out = String::with_capacity(b.len());
                for unit in b.chunks_exact(2) {
                    match char::from_u32(u16::from_be_bytes([unit[0], unit[1]]) as u32) {
                        Some(c) => out.push(c),
                        None => return decline("a ucs2 surrogate (the server converts it to bytes that are not UTF-8)"),
                    }
                }
                Ok(out)
            }
            Rule::Utf16 { big_endian } => {
                if b.len() % 2 != 0 {
                    return decline("utf16 text of an odd number of bytes");
                }
                let units = b.chunks_exact(2).map(|u| {
                    if *big_endian {
                        u16::from_be_bytes([u[0], u[1]])
                    } else {
                        u16::from_le_bytes([u[0], u[1]])
                    }
                });
                char::decode_utf16(units)
                    .collect::<Result<String, _>>()
                    .or_else(|_| decline("utf16 text with an unpaired surrogate"))
            }
            Rule::Utf32 => {
                if b.len() % 4 != 0 {
                    return decline("utf32 text of a number of bytes not a multiple of 4");
                }
                let mut out = String::with_capacity(b.len());
                for unit in b.chunks_exact(4) {
                    match char::from_u32(u32::from_be_bytes([unit[0], unit[1], unit[2], unit[3]])) {
                        Some(c) => out.push(c),
                        None => return decline("a utf32 code point that is a surrogate or past U+10FFFF"),
                    }
                }
                Ok(out)
            }
        }
    }
}

fn table(nodes: &[&[u8]], b: &[u8]) -> R<String> {
    let mut out = String::with_capacity(b.len() + b.len() / 2);
    let mut i = 0;
    while i < b.len() {
        let mut v = entry(nodes[0], b[i] as usize);
        i += 1;
        while (NEXT..0xE000).contains(&v) {
            let Some(&next) = b.get(i) else {
                return decline("text ending inside a character of its charset");
            };
            let Some(node) = nodes.get((v - NEXT) as usize) else {
                return decline("a charset table that points past its nodes");
            };
            v = entry(node, next as usize);
            i += 1;
        }
        match char::from_u32(v as u32) {
            Some(c) if v != ILL => out.push(c),
            _ => return decline("text with bytes its charset does not take"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::Fail;

    fn text(name: &str, b: &[u8]) -> String {
        named(name).unwrap().decode(b).unwrap()
    }

    fn declined(name: &str, b: &[u8]) -> bool {
        matches!(named(name).unwrap().decode(b), Err(Fail::Decline(_)))
    }

    #[test]
    fn latin1_is_the_servers_cp1252() {
        // MySQL's latin1: cp1252, with the five bytes cp1252 leaves undefined as U+0081 ...
        assert_eq!(text("mariadb/latin1", b"caf\xe9 \x80 \x81\x8d\x8f\x90\x9d \x9f"), "caf\u{e9} \u{20ac} \u{81}\u{8d}\u{8f}\u{90}\u{9d} \u{178}");
        assert_eq!(text("mariadb/ascii", b"a\x80"), "a?");
    }

    #[test]
    fn multibyte_tables() {
        assert_eq!(text("mariadb/gbk", b"a\x81\x40\xd6\xd0"), "a\u{4e02}\u{4e2d}");
        assert_eq!(text("mariadb/sjis", b"\x82\xa0\xb1"), "\u{3042}\u{ff71}");
        assert_eq!(text("mariadb/ujis", b"\x8f\xb0\xa1"), "\u{4e02}");
        assert!(declined("mariadb/gbk", b"\x81"), "a lead byte at the end");
        assert!(declined("mariadb/gbk", b"\x81\xff"), "a trail byte gbk does not take");
        assert!(declined("mariadb/gbk", b"\x80"));
    }

    #[test]
    fn unicode_rules() {
        assert_eq!(text("utf16", b"\x00A\xd8\x3d\xde\x00"), "A\u{1f600}");
        assert_eq!(text("utf16le", b"A\x00\x3d\xd8\x00\xde"), "A\u{1f600}");
        assert_eq!(text("ucs2", b"\x00A\x4e\x2d"), "A\u{4e2d}");
        assert_eq!(text("utf32", b"\x00\x01\xf6\x00"), "\u{1f600}");
        assert!(declined("ucs2", b"\xd8\x3d\xde\x00"), "ucs2 never pairs surrogates");
        assert!(declined("utf16", b"\xd8\x3d"));
        assert!(declined("utf32", b"\x00\x00\xd8\x00"));
        assert!(declined("utf32", b"\x00\x11\x00\x00"));
        assert!(declined("utf16", b"\x00"));
    }

    #[test]
    fn every_section_parses() {
        let tables = parse(DATA).expect("charsets.bin parses");
        assert!(tables.iter().any(|(name, _)| name == "mariadb/latin1"));
        for (name, nodes) in tables {
            for node in &nodes {
                for b in 0..256 {
                    let v = entry(node, b);
                    if (NEXT..0xE000).contains(&v) {
                        assert!(((v - NEXT) as usize) < nodes.len() && v != NEXT, "{name}: pointer out of range");
                    }
                }
            }
        }
    }
}
