//! MySQL's binary JSON (a JSON column in a rows event; MySQL sql-common/json_binary.h) to
//! the JSON text the Python path writes for it: pymysqlreplication 1.0.17's decoder
//! (`json_binary.py` `parse_json`, `util/bytes.py`), then values.py `_json_column`, then
//! orjson.
//!
//! The format: a type byte, then the value. Objects and arrays ("small" with 2-byte, "large"
//! with 4-byte counts and offsets) hold an element count, their size in bytes, a key entry
//! (offset, length) per member for objects, a value entry (type, then an offset from the
//! container's start, or the value itself for literals, int16 and uint16, and in large
//! containers int32 and uint32) per element, then the keys and values. Scalars: literals
//! (null, true, false), little-endian int16/uint16/int32/uint32/int64/uint64 and double,
//! strings (a variable-length size: 7 bits a byte, high bit set while more follow, then
//! utf8mb4), and opaque values (a MySQL field type, a variable-length size, the bytes).
//!
//! What the Python path makes of it, and so this: keys and members in stored order (MySQL
//! sorts keys by length, then bytes); numbers as they are (doubles in orjson's format, a
//! non-finite double as null); DECIMAL opaques as a double when that double's repr is the
//! same number (1.50 -> 1.5), else a string of every digit; DATE, DATETIME, TIMESTAMP and TIME
//! opaques as the string MySQL itself gives for them ("2024-01-02", "2024-01-02 03:04:05.000000",
//! "-01:30:00.250000": cdc/mysql/replication_hooks.py `_json_opaque` replaces the library's reading, which
//! wrote ISO text, dropped a TIME's sign and raised on 24 hours or more); any other opaque
//! (binary strings, BIT, ...) as its bytes
//! decoded as UTF-8 with invalid bytes dropped. A whole column that is such a text opaque
//! is then parsed as JSON text (values.py `_json_column` parses any str), as `json::rewrite`
//! does. Where the library raises (bytes that do not parse) or returns something odd (a container whose value offset is past the data: None),
//! this declines and the Python path gives its result or error. Being stricter than the
//! library where it is lax (offsets checked against the container's size, not the end of
//! the column's bytes) only declines more, never writes anything else.

use crate::json::{rewrite, write_f64, write_str};
use crate::values::{decline, R};
use std::borrow::Cow;
use std::fmt::Write;

const SMALL_OBJECT: u8 = 0x0;
const LARGE_OBJECT: u8 = 0x1;
const SMALL_ARRAY: u8 = 0x2;
const LARGE_ARRAY: u8 = 0x3;
const LITERAL: u8 = 0x4;
const INT16: u8 = 0x5;
const UINT16: u8 = 0x6;
const INT32: u8 = 0x7;
const UINT32: u8 = 0x8;
const INT64: u8 = 0x9;
const UINT64: u8 = 0xA;
const DOUBLE: u8 = 0xB;
const STRING: u8 = 0xC;
const OPAQUE: u8 = 0xF;

/// MySQL refuses documents nested deeper (JSON_DOCUMENT_MAX_DEPTH).
const MAX_DEPTH: usize = 100;

/// A JSON column's value (the bytes after its length) as the Python path writes it.
pub fn document(out: &mut String, data: &[u8]) -> R<()> {
    match data.split_first() {
        // packet.py read_binary_json: an empty value is None.
        None => out.push_str("null"),
        Some((&kind, value)) => write_value(out, kind, value, 0, true)?,
    }
    Ok(())
}

/// `n` little-endian bytes at `at`, or a decline where the library's struct.unpack raises.
fn uint(data: &[u8], at: usize, n: usize) -> R<u64> {
    match data.get(at..at.saturating_add(n)) {
        Some(b) if b.len() == n => Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64)),
        _ => decline("MySQL binary JSON shorter than its header says"),
    }
}

/// util/bytes.py decode_variable_length: (length, bytes it took); the library's (0, 0) for a
/// size that does not end within 5 bytes (it then reads an empty value) is declined.
fn var_len(data: &[u8]) -> R<(usize, usize)> {
    let mut length = 0u64;
    for (pos, &v) in data.iter().take(5).enumerate() {
        length |= ((v & 0x7F) as u64) << (7 * pos);
        if v & 0x80 == 0 {
            return Ok((length as usize, pos + 1));
        }
    }
    decline("a MySQL binary JSON size that does not end")
}

/// A string or opaque body: its size, then that many bytes.
fn sized(data: &[u8]) -> R<&[u8]> {
    let (length, n) = var_len(data)?;
    match data.get(n..n.saturating_add(length)) {
        Some(b) if b.len() == length => Ok(b),
        _ => decline("a MySQL binary JSON string or opaque value past its data"),
    }
}

/// values.py _text: UTF-8, else Latin-1 (every byte one character).
fn text(b: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(b) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(b.iter().map(|&x| x as char).collect()),
    }
}

/// bytes.decode(errors="ignore"): the valid UTF-8 sequences, every invalid byte dropped.
fn utf8_dropping_invalid(mut b: &[u8]) -> Cow<'_, str> {
    if let Ok(s) = std::str::from_utf8(b) {
        return Cow::Borrowed(s);
    }
    let mut s = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(rest) => {
                s.push_str(rest);
                return Cow::Owned(s);
            }
            Err(e) => {
                let (good, bad) = b.split_at(e.valid_up_to());
                s.push_str(std::str::from_utf8(good).unwrap_or_default());
                match e.error_len() {
                    Some(n) => b = &bad[n..],
                    None => return Cow::Owned(s), // a sequence cut off at the end
                }
            }
        }
    }
}

/// json_binary.py parse_json of `kind` over `data` (the value's bytes, and what follows).
/// `top`: the column's whole value (a text opaque is then parsed as JSON text).
fn write_value(out: &mut String, kind: u8, data: &[u8], depth: usize, top: bool) -> R<()> {
    match kind {
        SMALL_OBJECT | LARGE_OBJECT | SMALL_ARRAY | LARGE_ARRAY => {
            let small = kind == SMALL_OBJECT || kind == SMALL_ARRAY;
            container(out, data, small, kind <= LARGE_OBJECT, depth + 1)
        }
        LITERAL => {
            out.push_str(match data.first() {
                Some(0) => "null",
                Some(1) => "true",
                Some(2) => "false",
                _ => return decline("a MySQL binary JSON literal that is none"),
            });
            Ok(())
        }
        INT16 => number(out, uint(data, 0, 2)? as u16 as i16),
        UINT16 => number(out, uint(data, 0, 2)?),
        INT32 => number(out, uint(data, 0, 4)? as u32 as i32),
        UINT32 => number(out, uint(data, 0, 4)?),
        INT64 => number(out, uint(data, 0, 8)? as i64),
        UINT64 => number(out, uint(data, 0, 8)?),
        DOUBLE => {
            write_f64(out, f64::from_bits(uint(data, 0, 8)?)); // NaN and infinities as null, like values.py
            Ok(())
        }
        STRING => {
            write_str(out, &text(sized(data)?));
            Ok(())
        }
        OPAQUE => opaque(out, data, top),
        _ => decline(format!("MySQL binary JSON type {kind} (the library raises)")),
    }
}

fn number(out: &mut String, n: impl std::fmt::Display) -> R<()> {
    write!(out, "{n}").or_else(|_| decline("a number that does not format"))
}

fn container(out: &mut String, data: &[u8], small: bool, object: bool, depth: usize) -> R<()> {
    if depth > MAX_DEPTH {
        return decline("MySQL binary JSON nested deeper than MySQL allows");
    }
    let offset = if small { 2 } else { 4 };
    let count = uint(data, 0, offset)? as usize;
    let size = uint(data, offset, offset)? as usize;
    let Some(c) = data.get(..size) else {
        return decline("a MySQL binary JSON container past its data");
    };
    let (key_entry, value_entry) = (offset + 2, 1 + offset);
    let per_element = value_entry + if object { key_entry } else { 0 };
    if (2 * offset) as u64 + count as u64 * per_element as u64 > size as u64 {
        return decline("a MySQL binary JSON header larger than its container");
    }
    let values_at = 2 * offset + if object { key_entry * count } else { 0 };
    out.push(if object { '{' } else { '[' });
    let mut last_key: &[u8] = &[];
    for i in 0..count {
        if i > 0 {
            out.push(',');
        }
        if object {
            let entry = 2 * offset + key_entry * i;
            let at = uint(c, entry, offset)? as usize;
            let length = uint(c, entry + offset, 2)? as usize;
            let Some(key) = c.get(at..at + length) else {
                return decline("a MySQL binary JSON key past its container");
            };
            // MySQL writes keys sorted by length, then bytes; so no key comes twice, which the
            // library's dict would merge.
            if i > 0 && (last_key.len(), last_key) >= (key.len(), key) {
                return decline("MySQL binary JSON keys out of order");
            }
            last_key = key;
            let Ok(key) = std::str::from_utf8(key) else {
                return decline("a MySQL binary JSON key that is not UTF-8");
            };
            write_str(out, key);
            out.push(':');
        }
        let entry = values_at + value_entry * i;
        let kind = c[entry];
        let inline = matches!(kind, LITERAL | INT16 | UINT16) || !small && matches!(kind, INT32 | UINT32);
        if inline {
            write_value(out, kind, &c[entry + 1..entry + value_entry], depth, false)?;
        } else {
            let at = uint(c, entry + 1, offset)? as usize;
            if at >= size {
                return decline("a MySQL binary JSON value past its container (the library gives None)");
            }
            write_value(out, kind, &c[at..], depth, false)?;
        }
    }
    out.push(if object { '}' } else { ']' });
    Ok(())
}

/// json_binary.py parse_opaque, then values.py _json.
fn opaque(out: &mut String, data: &[u8], top: bool) -> R<()> {
    let Some((&field_type, rest)) = data.split_first() else {
        return decline("an empty MySQL binary JSON opaque value");
    };
    let body = sized(rest)?;
    let as_text: Cow<str> = match field_type {
        0 | 246 => return decimal(out, body),                  // DECIMAL, NEWDECIMAL
        11 | 19 => return time(out, body),                               // TIME, TIME2
        7 | 10 | 12 | 14 | 17 | 18 => return datetime(out, body, field_type), // TIMESTAMP, DATE, DATETIME, ...
        _ => utf8_dropping_invalid(body),
    };
    if top {
        rewrite(out, &as_text) // values.py parses a str column value as JSON text
    } else {
        write_str(out, &as_text);
        Ok(())
    }
}

/// The packed value: a little-endian int64 (my_time.cc TIME_to_longlong_*_packed).
fn packed(body: &[u8]) -> R<i64> {
    Ok(uint(body, 0, 8)? as i64)
}

/// MySQL's text of a packed TIME (my_time.cc TIME_from_longlong_time_packed, my_time_to_str with 6
/// fractional digits): the sign kept, hours past 23 as they are ("-01:30:00.250000",
/// "838:59:59.000000"), as cdc/mysql/replication_hooks.py json_time_text.
fn time(out: &mut String, body: &[u8]) -> R<()> {
    let packed = packed(body)?;
    let v = packed.unsigned_abs();
    let whole = v >> 24;
    let (h, mi, s, us) = ((whole >> 12) % 1024, (whole >> 6) % 64, whole % 64, v % (1 << 24));
    let sign = if packed < 0 { "-" } else { "" };
    let _ = write!(out, "\"{sign}{h:02}:{mi:02}:{s:02}.{us:06}\"");
    Ok(())
}

/// MySQL's text of a packed DATE or DATETIME (TIME_from_longlong_datetime_packed, my_date_to_str,
/// my_datetime_to_str with 6 fractional digits): "2024-01-02", "2024-01-02 03:04:05.000000", zero
/// parts printed as they are, as cdc/mysql/replication_hooks.py json_datetime_text.
fn datetime(out: &mut String, body: &[u8], field_type: u8) -> R<()> {
    let v = packed(body)?.unsigned_abs();
    let whole = v >> 24;
    let ymd = whole >> 17;
    let (ym, hms) = (ymd >> 5, whole % (1 << 17));
    let (y, m, d) = (ym / 13, ym % 13, ymd % 32);
    if field_type == 10 || field_type == 14 {
        let _ = write!(out, "\"{y:04}-{m:02}-{d:02}\"");
    } else {
        let (h, mi, s, us) = (hms >> 12, (hms >> 6) % 64, hms % 64, v % (1 << 24));
        let _ = write!(out, "\"{y:04}-{m:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}\"");
    }
    Ok(())
}

/// util/bytes.py decode_decimal, then values.py _json: a double when Decimal(repr(double))
/// is the same number, else format(value, "f").
fn decimal(out: &mut String, body: &[u8]) -> R<()> {
    const BYTES: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4]; // for 0..9 digits
    let (precision, scale) = match body {
        [p, s, ..] if *p >= 1 && *p <= 65 && s <= p => (*p as usize, *s as usize),
        _ => return decline("a DECIMAL in JSON with a precision or scale MySQL does not write"),
    };
    let raw = &body[2..];
    let (int_groups, int_rest) = ((precision - scale) / 9, (precision - scale) % 9);
    let (frac_groups, frac_rest) = (scale / 9, scale % 9);
    if raw.len() < BYTES[int_rest] + 4 * (int_groups + frac_groups) + BYTES[frac_rest] {
        return decline("a DECIMAL in JSON shorter than its precision");
    }
    // The sign is the first bit, set for positive numbers; negative ones have every bit flipped.
    let negative = raw[0] & 0x80 == 0;
    let mut at = 0;
    let mut group = |digits: usize| -> R<u64> {
        let n = if digits == 9 { 4 } else { BYTES[digits] };
        let mut v = 0u64;
        for i in at..at + n {
            let byte = if i == 0 { raw[0] ^ 0x80 } else { raw[i] };
            v = v << 8 | (if negative { !byte } else { byte }) as u64;
        }
        at += n;
        if v >= 10u64.pow(digits as u32) {
            return decline("a DECIMAL in JSON with a digit group out of range");
        }
        Ok(v)
    };
    let mut int_digits = group(int_rest)?.to_string(); // the library's str(value), "0" when there is none
    for _ in 0..int_groups {
        write!(int_digits, "{:09}", group(9)?).unwrap_or(());
    }
    let mut frac_digits = String::new();
    for _ in 0..frac_groups {
        write!(frac_digits, "{:09}", group(9)?).unwrap_or(());
    }
    if frac_rest > 0 {
        write!(frac_digits, "{:0width$}", group(frac_rest)?, width = frac_rest).unwrap_or(());
    }
    let sign = if negative { "-" } else { "" };
    let exact = format!("{sign}{int_digits}.{frac_digits}0");
    let double: f64 = exact.parse().or_else(|_| decline("a DECIMAL in JSON that is no number"))?;
    let mut shortest = String::new();
    write_f64(&mut shortest, double);
    if same_number(&exact, &shortest) {
        out.push_str(&shortest);
        return Ok(());
    }
    let int_part = int_digits.trim_start_matches('0');
    out.push('"');
    out.push_str(sign);
    out.push_str(if int_part.is_empty() { "0" } else { int_part });
    if scale > 0 {
        out.push('.');
        out.push_str(&frac_digits);
    }
    out.push('"');
    Ok(())
}

/// A decimal text ("-12.50", "1.5e+22", "1e-7") as (negative, significant digits, exponent of
/// the first one); zero, of either sign, as (false, "", 0).
fn normalized(text: &str) -> (bool, String, i64) {
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i64>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits: String = whole.chars().chain(frac.chars()).collect();
    let leading = digits.len() - digits.trim_start_matches('0').len();
    let significant = digits.trim_start_matches('0').trim_end_matches('0');
    if significant.is_empty() {
        return (false, String::new(), 0);
    }
    (negative, significant.to_string(), exp + whole.len() as i64 - 1 - leading as i64)
}

/// Decimal(a) == Decimal(b).
fn same_number(a: &str, b: &str) -> bool {
    normalized(a) == normalized(b)
}

/// The document text of one MySQL binary JSON value, as the Python path writes it; for tests.
#[pyo3::pyfunction]
pub fn json_binary(data: &[u8]) -> pyo3::PyResult<String> {
    let mut s = String::new();
    match document(&mut s, data) {
        Ok(()) => Ok(s),
        Err(crate::values::Fail::Decline(why)) | Err(crate::values::Fail::Bad(why)) => Err(crate::Decline::new_err(why)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(data: &[u8]) -> String {
        let mut s = String::new();
        document(&mut s, data).unwrap();
        s
    }

    fn declines(data: &[u8]) -> bool {
        let mut s = String::new();
        matches!(document(&mut s, data), Err(crate::values::Fail::Decline(_)))
    }

    #[test]
    fn scalars() {
        assert_eq!(doc(&[]), "null");
        assert_eq!(doc(&[LITERAL, 0]), "null");
        assert_eq!(doc(&[LITERAL, 1]), "true");
        assert_eq!(doc(&[LITERAL, 2]), "false");
        assert!(declines(&[LITERAL, 3]));
        assert_eq!(doc(&[INT16, 0xff, 0xff]), "-1");
        assert_eq!(doc(&[UINT16, 0xff, 0xff]), "65535");
        assert_eq!(doc(&[INT32, 0, 0, 0, 0x80]), "-2147483648");
        assert_eq!(doc(&[UINT32, 0xff, 0xff, 0xff, 0xff]), "4294967295");
        assert_eq!(doc(&[INT64, 0, 0, 0, 0, 0, 0, 0, 0x80]), "-9223372036854775808");
        assert_eq!(doc(&[UINT64, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), "18446744073709551615");
        let double = |f: f64| [&[DOUBLE][..], &f.to_le_bytes()].concat();
        assert_eq!(doc(&double(0.1)), "0.1");
        assert_eq!(doc(&double(-0.0)), "-0.0");
        assert_eq!(doc(&double(1e300)), "1e+300");
        assert_eq!(doc(&double(f64::NAN)), "null");
        assert!(declines(&[INT64, 1, 2, 3])); // short
        assert!(declines(&[0x0D, 0]));        // no such type
    }

    #[test]
    fn strings() {
        assert_eq!(doc(&[STRING, 3, b'a', b'"', b'\n']), r#""a\"\n""#);
        assert_eq!(doc(&[STRING, 2, 0xc3, 0xa9]), "\"é\"");
        assert_eq!(doc(&[STRING, 1, 0xe9]), "\"é\""); // not UTF-8: Latin-1, as values.py _text
        // A 200-byte string: its size takes two bytes (0xC8 0x01).
        let mut long = vec![STRING, 0xC8, 0x01];
        long.extend([b'x'; 200]);
        assert_eq!(doc(&long), format!("\"{}\"", "x".repeat(200)));
        assert!(declines(&[STRING, 5, b'a']));                  // shorter than its size
        assert!(declines(&[STRING, 0x80, 0x80, 0x80, 0x80, 0x80])); // a size that never ends
    }

    #[test]
    fn small_object_and_array() {
        // {"a": 1, "bb": [true, "x"]}: count 2, size, key entries (offset, length),
        // value entries (type, inline value or offset), keys, then the array.
        let array: Vec<u8> = vec![2, 0, 12, 0, LITERAL, 1, 0, STRING, 10, 0, 1, b'x'];
        let mut obj: Vec<u8> = vec![2, 0, 0, 0, 18, 0, 1, 0, 19, 0, 2, 0, INT16, 1, 0, SMALL_ARRAY, 21, 0];
        obj.extend(b"abb");
        obj.extend(&array);
        let size = obj.len() as u16;
        obj[2..4].copy_from_slice(&size.to_le_bytes());
        let data = [&[SMALL_OBJECT][..], &obj].concat();
        assert_eq!(doc(&data), r#"{"a":1,"bb":[true,"x"]}"#);
        // Keys out of MySQL's order (or twice) are left to the library.
        let mut swapped = data.clone();
        swapped[5..9].copy_from_slice(&[19, 0, 2, 0]);
        swapped[9..13].copy_from_slice(&[18, 0, 1, 0]);
        assert!(declines(&swapped));
        // A value offset past the container: the library gives None for it all; declined.
        let mut past = data.clone();
        past[17] = 200;
        assert!(declines(&past));
    }

    #[test]
    fn large_array_inlines_32_bit_integers() {
        // [-2, 70000] in the large format: 4-byte count and size, 5-byte value entries.
        let mut arr = vec![2, 0, 0, 0, 0, 0, 0, 0, INT32, 0xfe, 0xff, 0xff, 0xff, UINT32, 0x70, 0x11, 0x01, 0x00];
        let size = arr.len() as u32;
        arr[4..8].copy_from_slice(&size.to_le_bytes());
        assert_eq!(doc(&[&[LARGE_ARRAY][..], &arr].concat()), "[-2,70000]");
    }

    fn opaque(field_type: u8, body: &[u8]) -> Vec<u8> {
        // Nested in a one-element small array, where opaque text stays a string.
        let mut v = vec![SMALL_ARRAY, 1, 0, 0, 0, OPAQUE, 7, 0, field_type, body.len() as u8];
        v.extend(body);
        let size = (v.len() - 1) as u16;
        v[3..5].copy_from_slice(&size.to_le_bytes());
        v
    }

    #[test]
    fn decimals() {
        // DECIMAL(5,2) 1.50 (MySQL's binary decimal: 3 integer digits in 2 bytes, 2 fraction
        // digits in 1; sign bit set for positive): a double, as Decimal(repr(1.5)) == 1.50.
        assert_eq!(doc(&opaque(246, &[5, 2, 0x80, 0x01, 50])), "[1.5]");
        // -1.50: every bit flipped.
        assert_eq!(doc(&opaque(246, &[5, 2, 0x7f, 0xfe, !50])), "[-1.5]");
        // DECIMAL(20,0) 12345678901234567891: no double is that number, so a string.
        let mut v = vec![20, 0, 0x80 | 12, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00];
        v[3..7].copy_from_slice(&345678901u32.to_be_bytes());
        v[7..11].copy_from_slice(&234567891u32.to_be_bytes());
        assert_eq!(doc(&opaque(246, &v)), "[\"12345678901234567891\"]");
        // A digit group of 10 digits: the library writes something else again; declined.
        assert!(declines(&opaque(246, &[5, 2, 0x80, 0x01, 200])));
    }

    #[test]
    fn dates_and_times() {
        // DATETIME 2024-01-02 03:04:05.5 packed: ((ymd << 17 | hms) << 24) + microseconds.
        let ymd = ((2024 * 13 + 1) << 5) | 2;
        let packed: i64 = (((ymd << 17) | (3 << 12) | (4 << 6) | 5) << 24) + 500_000;
        // As MySQL writes them (SELECT of the same values on MySQL 9.7.4).
        assert_eq!(doc(&opaque(12, &packed.to_le_bytes())), "[\"2024-01-02 03:04:05.500000\"]");
        assert_eq!(doc(&opaque(18, &packed.to_le_bytes())), "[\"2024-01-02 03:04:05.500000\"]");
        assert_eq!(doc(&opaque(10, &((ymd << 41) as i64).to_le_bytes())), "[\"2024-01-02\"]");
        assert_eq!(doc(&opaque(12, &0i64.to_le_bytes())), "[\"0000-00-00 00:00:00.000000\"]");
        // TIME -01:30:00.25 keeps its sign; 30:00:00 and 838:59:59 their hours.
        let time: i64 = -((((1 << 12) | (30 << 6)) << 24) + 250_000);
        assert_eq!(doc(&opaque(11, &time.to_le_bytes())), "[\"-01:30:00.250000\"]");
        assert_eq!(doc(&opaque(19, &((30i64 << 12) << 24).to_le_bytes())), "[\"30:00:00.000000\"]");
        let max: i64 = ((838 << 12) | (59 << 6) | 59) << 24;
        assert_eq!(doc(&opaque(11, &max.to_le_bytes())), "[\"838:59:59.000000\"]");
        // A whole column that is one is a string, not JSON text to parse.
        assert_eq!(doc(&[OPAQUE, 10, 8].iter().copied().chain(((ymd << 41) as i64).to_le_bytes()).collect::<Vec<u8>>()),
                   "\"2024-01-02\"");
    }

    #[test]
    fn other_opaque_values_are_their_utf8() {
        assert_eq!(doc(&opaque(15, &[b'A', 0xff, b'B'])), "[\"AB\"]");
        // A whole column that is one: parsed as JSON text, as values.py parses a str.
        assert_eq!(doc(&[OPAQUE, 15, 3, b'[', b'1', b']']), "[1]");
        assert!(declines(&[OPAQUE, 15, 1, b'x']));
    }
}
