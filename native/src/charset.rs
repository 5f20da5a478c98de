//! Text columns of charsets other than UTF-8 (issue 28), decoded as the server converts
//! them, exactly as `cdc/mysql/charsets.py` does on the Python path:
//!
//! * the charsets of `cdc/mysql/charsets.bin` (latin1, gbk, big5, sjis, ...): tables read
//!   from the server by `scripts/charset_tables.py`, whose docstring gives the format; the
//!   file is compiled in, the same bytes the Python path reads;
//! * gb18030 (MySQL's): its one- and two-byte characters with a table, its four-byte ones
//!   ([81-FE][30-39][81-FE][30-39]) by GB18030-2005's ranges as MySQL maps them
//!   (strings/ctype-gb18030.cc): the BMP ones with the runs of the section
//!   "mysql/gb18030+runs", read from the server; U+10000..U+10FFFF in order from 0x90308130
//!   (checked against the server by the script); any other four-byte sequence is '?', as the
//!   server converts it (it stores them);
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
/// The suffix of a section of gb18030's four-byte runs (cdc/mysql/charsets.py RUNS).
const RUNS: &str = "+runs";
/// The four-byte index of 0x90308130 (U+10000); U+10FFFF is 0xFFFFF later, at 0xE3329A35.
const GB18030_SUPPLEMENTARY: u32 = 189000;

enum Rule {
    Table { nodes: Vec<&'static [u8]>, ascii_same: bool },
    /// The table of one- and two-byte characters and the four-byte runs (first index, code point or ILL for '?').
    Gb18030 { nodes: Vec<&'static [u8]>, runs: Vec<(u32, u32)> },
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
            let runs: HashMap<&str, Vec<(u32, u32)>> = tables
                .iter()
                .filter_map(|(name, nodes)| Some((name.strip_suffix(RUNS)?, runs_of(nodes))))
                .collect();
            for (name, nodes) in &tables {
                if name.ends_with(RUNS) {
                    continue;
                }
                let nodes = nodes.clone();
                let rule = match runs.get(name.as_str()) {
                    Some(runs) => Rule::Gb18030 { nodes, runs: runs.clone() },
                    None => {
                        let ascii_same = (0..0x80usize).all(|b| entry(nodes[0], b) == b as u16);
                        Rule::Table { nodes, ascii_same }
                    }
                };
                out.insert(name.clone(), Charset { name: name.clone(), rule });
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

/// A "+runs" section's pairs, up to the padding (index 0xFFFF).
fn runs_of(nodes: &[&[u8]]) -> Vec<(u32, u32)> {
    let flat: Vec<u16> = nodes.iter().flat_map(|node| (0..256).map(move |b| entry(node, b))).collect();
    flat.chunks_exact(2).filter(|p| p[0] != ILL).map(|p| (p[0] as u32, p[1] as u32)).collect()
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
            Rule::Gb18030 { nodes, runs } => {
                if b.is_ascii() {
                    return Ok(std::str::from_utf8(b).unwrap_or_default().to_string());
                }
                gb18030(nodes, runs, b)
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
        out.push(table_char(nodes, b, &mut i)?);
    }
    Ok(out)
}

/// The character of the table at `b[*i..]`, moving `*i` past it.
fn table_char(nodes: &[&[u8]], b: &[u8], i: &mut usize) -> R<char> {
    let mut v = entry(nodes[0], b[*i] as usize);
    *i += 1;
    while (NEXT..0xE000).contains(&v) {
        let Some(&next) = b.get(*i) else {
            return decline("text ending inside a character of its charset");
        };
        let Some(node) = nodes.get((v - NEXT) as usize) else {
            return decline("a charset table that points past its nodes");
        };
        v = entry(node, next as usize);
        *i += 1;
    }
    match char::from_u32(v as u32) {
        Some(c) if v != ILL => Ok(c),
        _ => decline("text with bytes its charset does not take"),
    }
}

/// gb18030: a first byte 0x81-0xFE and a second 0x30-0x39 start a four-byte character
/// (MySQL's ctype-gb18030.cc); any other character is the table's.
fn gb18030(nodes: &[&[u8]], runs: &[(u32, u32)], b: &[u8]) -> R<String> {
    let mut out = String::with_capacity(b.len() + b.len() / 2);
    let mut i = 0;
    while i < b.len() {
        if (0x81..=0xFE).contains(&b[i]) && matches!(b.get(i + 1), Some(0x30..=0x39)) {
            match b.get(i + 2..i + 4) {
                Some(&[b3 @ 0x81..=0xFE, b4 @ 0x30..=0x39]) => {
                    let index = (b[i] as u32 - 0x81) * 12600 + (b[i + 1] as u32 - 0x30) * 1260 + (b3 as u32 - 0x81) * 10 + (b4 as u32 - 0x30);
                    out.push(gb18030_four(runs, index));
                    i += 4;
                }
                _ => return decline("a gb18030 four-byte character cut short or ill-formed"),
            }
        } else {
            out.push(table_char(nodes, b, &mut i)?);
        }
    }
    Ok(out)
}

/// A four-byte gb18030 character by its index: supplementary by rule, the BMP by the runs,
/// '?' for the rest (the last run, from 0x8431A530, goes on past the supplementary range).
fn gb18030_four(runs: &[(u32, u32)], index: u32) -> char {
    if (GB18030_SUPPLEMENTARY..=GB18030_SUPPLEMENTARY + 0xFFFFF).contains(&index) {
        return char::from_u32(0x10000 + index - GB18030_SUPPLEMENTARY).unwrap_or('?');
    }
    let k = runs.partition_point(|&(first, _)| first <= index);
    match k.checked_sub(1).map(|k| runs[k]) {
        Some((first, point)) if point != ILL as u32 => char::from_u32(point + index - first).unwrap_or('?'),
        _ => '?',
    }
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
    fn gb18030_one_two_and_four_bytes() {
        // Each as MySQL 9.7 converts it (SELECT HEX(CONVERT(CAST(X'..' AS CHAR CHARACTER SET gb18030) USING utf8mb4))).
        assert_eq!(text("mysql/gb18030", b"a\x81\x40\xa1\xa1\xa8\xbc"), "a\u{4e02}\u{3000}\u{1e3f}");
        assert_eq!(text("mysql/gb18030", b"\x81\x30\x81\x30\x81\x35\xf4\x37\x84\x31\x87\x30\x84\x31\xa4\x39"), "\u{80}\u{e7c7}\u{fe70}\u{ffff}");
        assert_eq!(text("mysql/gb18030", b"\x90\x30\x81\x30\xe3\x32\x9a\x35x"), "\u{10000}\u{10ffff}x");
        // Four-byte sequences the server stores and converts to one '?' each.
        assert_eq!(text("mysql/gb18030", b"\x84\x31\xa5\x30\x8f\x39\xfe\x39\xe3\x32\x9a\x36\xfe\x39\xfe\x39"), "????");
        for ill in [&b"\x81\x30"[..], b"\x81\x30\x81", b"\x81\x30\x81\x20", b"\x81\x30\x20\x30", b"\x80", b"\xff", b"\xa1\x7f", b"a\x81"] {
            assert!(declined("mysql/gb18030", ill), "{ill:?}");
        }
        assert!(named("mysql/gb18030+runs").is_none(), "runs are no charset");
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
            if name.ends_with(RUNS) {
                let runs = runs_of(&nodes);
                assert!(runs.windows(2).all(|w| w[0].0 < w[1].0), "{name}: runs out of order");
                continue;
            }
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
