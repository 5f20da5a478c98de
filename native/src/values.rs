//! One column value of a rows event: read from the event's bytes, then written as
//! JSON or as part of an id, exactly as `cdc/rules/values.py` does with what
//! pymysqlreplication 1.0.17 (`row_event.py`) hands it.
//!
//! Every read is bounds-checked and returns `Fail::Bad` on short or malformed input;
//! nothing here panics on bad bytes. A value the Python path would treat in a way
//! this code does not reproduce exactly returns `Fail::Decline`, and the caller
//! hands the whole event to the Python path.

use crate::json::{float_repr, write_f64, write_str};
use std::sync::Arc;
use base64::Engine;

#[derive(Debug)]
pub enum Fail {
    /// The bytes are not a valid rows event for this table definition.
    Bad(String),
    /// Valid, but only the Python path is known to give the exact result (or its error).
    Decline(String),
}

pub type R<T> = Result<T, Fail>;

pub fn decline<T>(why: impl Into<String>) -> R<T> {
    Err(Fail::Decline(why.into()))
}

/// A cursor over an event body that never reads past its end.
pub struct Bytes<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, pos: 0 }
    }
    pub fn left(&self) -> usize {
        self.data.len() - self.pos
    }
    pub fn take(&mut self, n: usize) -> R<&'a [u8]> {
        if n > self.left() {
            return Err(Fail::Bad(format!(
                "truncated: {} bytes needed at offset {} of a {}-byte rows body",
                n,
                self.pos,
                self.data.len()
            )));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    pub fn uint_le(&mut self, n: usize) -> R<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    pub fn uint_be(&mut self, n: usize) -> R<u64> {
        let b = self.take(n)?;
        Ok(b.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }
    /// packet.py read_int_be_by_size: signed big-endian for 1..4 bytes.
    pub fn int_be(&mut self, n: usize) -> R<i64> {
        let u = self.uint_be(n)?;
        let bits = 8 * n as u32;
        Ok(if u >> (bits - 1) & 1 == 1 { u as i64 - (1i64 << bits) } else { u as i64 })
    }
}

/// How a column is read from the event and what kind of value it becomes.
#[derive(Debug, Clone)]
pub enum Reader {
    Int { bytes: usize, unsigned: bool },
    Float,
    Double,
    /// `number`: values.decimal_as: number (a float), else the exact text.
    Decimal { precision: u32, decimals: u32, number: bool },
    Date,
    DateTimeOld,
    DateTime2 { fsp: u32 },
    /// `zone`: values.timestamp_timezone when it is not UTC.
    TimestampOld { zone: Option<Arc<Zone>> },
    Timestamp2 { fsp: u32, zone: Option<Arc<Zone>> },
    TimeOld,
    Time2 { fsp: u32 },
    Year,
    Text { prefix: usize },
    /// Text of another charset than UTF-8 (charset.rs).
    CharsetText { prefix: usize, charset: &'static crate::charset::Charset },
    Binary { prefix: usize, pad_to: usize },
    JsonText { prefix: usize },
    /// MySQL's binary JSON (jsonb.rs), read into its document text at once.
    JsonBinary { prefix: usize },
    Enum { size: usize, labels: Option<Vec<String>> },
    Set { size: usize, labels: Option<Vec<String>> },
    Bit { bits: u32, bytes: usize, as_bool: bool },
    /// GEOMETRY (any geometry type; a POINT column too): MySQL's internal value, length-prefixed
    /// (row_event.py read_length_coded_pascal_string). `geo_point`: a POINT column under
    /// `values.points: geo_point`.
    Geometry { prefix: usize, geo_point: bool },
}

/// A decoded value, before it is written.
#[derive(Debug, Clone)]
pub enum Val<'a> {
    Null,
    /// A zero or partly zero date: written as null and counted.
    Zero,
    I(i64),
    U(u64),
    B(bool),
    F(f64),
    S(String),
    Str(&'a str),
    Bin(Vec<u8>),
    /// Already JSON (MySQL's binary JSON document).
    Json(String),
    /// A SET's labels, sorted (values.py: `sorted(value)`), kept as labels for `convert:` lower/upper.
    Labels(Vec<String>),
    /// MariaDB JSON text: parsed only when written, as values.py converts lazily.
    JsonText(&'a str),
    Date { y: i64, m: u32, d: u32 },
    /// `off`: None for a naive DATETIME; a TIMESTAMP's UTC offset in seconds (0 is written "Z").
    DateTime { y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32, us: u32, off: Option<i32> },
    Time(i64),
    /// A geometry value (SRID + WKB) and whether a Point is written as a geo_point: written
    /// when the document is (geometry.rs), as values.py converts only the columns it writes.
    Geom(&'a [u8], bool),
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 {
                29
            } else {
                28
            }
        }
    }
}

/// datetime.date(y, m, d) would accept it (also for snapshot text, text.rs).
pub(crate) fn valid_date(y: i64, m: u32, d: u32) -> bool {
    (1..=9999).contains(&y) && (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
}

/// row_event.py __read_fsp: signed reads, odd fsp divided by 10 (int() truncates).
fn read_fsp(b: &mut Bytes, fsp: u32) -> R<i64> {
    let n = match fsp {
        1 | 2 => 1,
        3 | 4 => 2,
        5 | 6 => 3,
        _ => 0,
    };
    if n == 0 {
        return Ok(0);
    }
    let mut us = b.int_be(n)?;
    if fsp % 2 == 1 {
        us /= 10; // Rust's / truncates toward zero, as int(us / 10) does
    }
    Ok(us * 10i64.pow(6 - fsp))
}

/// Civil date from days since 1970-01-01 (proleptic Gregorian; Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z.rem_euclid(146097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date (the inverse of `civil`; Howard Hinnant's algorithm).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// A time zone's UTC offsets over TIMESTAMP's range, found in Python by asking the zone
/// itself (cdc/rules/rowpath.py `zone_offsets`), so that they are the ones values.py's
/// `astimezone` uses. `from[i]` is the first UTC second of `offset[i]` (seconds east of UTC);
/// the table holds from `from[0]` up to, not including, `end`.
#[derive(Debug)]
pub struct Zone {
    from: Vec<i64>,
    offset: Vec<i32>,
    end: i64,
}

impl Zone {
    pub fn new(transitions: Vec<(i64, i32)>, end: i64) -> Result<Zone, String> {
        if transitions.is_empty() || transitions.windows(2).any(|w| w[0].0 >= w[1].0) || transitions.last().unwrap().0 >= end {
            return Err("a zone's transitions must be sorted, not empty, and start before its end".into());
        }
        if transitions.iter().any(|&(_, o)| o.unsigned_abs() >= 86400) {
            return Err("a UTC offset must be less than a day (as datetime.timezone's)".into());
        }
        Ok(Zone { from: transitions.iter().map(|t| t.0).collect(), offset: transitions.iter().map(|t| t.1).collect(), end })
    }

    /// The offset at UTC second `secs`: the last transition at or before it. A fraction of a
    /// second does not matter: zone transitions fall on whole seconds (TZif stores seconds).
    pub fn offset(&self, secs: i64) -> Option<i32> {
        if secs < self.from[0] || secs >= self.end {
            return None;
        }
        Some(self.offset[self.from.partition_point(|&f| f <= secs) - 1])
    }
}

/// values.py for a TIMESTAMP at UTC second `secs` (library: utcfromtimestamp): the epoch is the
/// zero TIMESTAMP (null); else the instant in `zone` (`astimezone`), or in UTC ("Z").
pub(crate) fn timestamp<'a>(secs: i64, us: u32, zone: Option<&Zone>) -> R<Val<'a>> {
    // values.py: a zero TIMESTAMP arrives as the epoch (utcfromtimestamp(0)) and becomes null.
    if secs == 0 && us == 0 {
        return Ok(Val::Zero);
    }
    let off = match zone {
        None => 0,
        Some(z) => match z.offset(secs) {
            Some(o) => o,
            None => return decline("a TIMESTAMP outside the range of the zone's offset table"),
        },
    };
    let local = secs + off as i64;
    let (y, m, d) = civil(local.div_euclid(86400));
    if !(1..=9999).contains(&y) {
        return decline("TIMESTAMP out of Python's datetime range");
    }
    let t = local.rem_euclid(86400);
    Ok(Val::DateTime { y, m, d, h: (t / 3600) as u32, mi: (t % 3600 / 60) as u32, s: (t % 60) as u32, us, off: Some(off) })
}

fn text(b: &[u8]) -> R<&str> {
    // The library decodes with the column's charset, strictly; invalid UTF-8 raises there.
    std::str::from_utf8(b).or_else(|_| decline("text that is not valid UTF-8"))
}

pub fn read<'a>(reader: &Reader, b: &mut Bytes<'a>) -> R<Val<'a>> {
    Ok(match reader {
        Reader::Int { bytes, unsigned } => {
            let u = b.uint_le(*bytes)?;
            if *unsigned {
                Val::U(u)
            } else {
                let bits = 8 * *bytes as u32;
                if bits == 64 {
                    Val::I(u as i64)
                } else if u >> (bits - 1) & 1 == 1 {
                    Val::I(u as i64 - (1i64 << bits))
                } else {
                    Val::I(u as i64)
                }
            }
        }
        Reader::Float => {
            let f = f32::from_le_bytes(b.take(4)?.try_into().unwrap());
            if f.is_finite() {
                Val::F(float32(f))
            } else {
                Val::Null
            }
        }
        Reader::Double => {
            let f = f64::from_le_bytes(b.take(8)?.try_into().unwrap());
            if f.is_finite() {
                Val::F(f)
            } else {
                Val::Null
            }
        }
        Reader::Decimal { precision, decimals, number } => {
            let (text, negative) = decimal(b, *precision, *decimals)?;
            if !*number {
                Val::S(text)
            } else if negative && !text.starts_with('-') {
                // The library's "-0.00" (a negative zero's bytes): Decimal('-0.00'), whose float is -0.0.
                Val::F(-0.0)
            } else {
                Val::F(decimal_float(&text))
            }
        }
        Reader::Date => {
            let t = b.uint_le(3)?;
            if t == 0 {
                return Ok(Val::Zero);
            }
            let (y, m, d) = ((t >> 9) as i64 & 0x7FFF, (t >> 5) as u32 & 0xF, t as u32 & 0x1F);
            if y == 0 || m == 0 || d == 0 {
                return Ok(Val::Zero);
            }
            if !valid_date(y, m, d) {
                return decline("an invalid DATE (the library raises)");
            }
            Val::Date { y, m, d }
        }
        Reader::DateTimeOld => {
            let v = b.uint_le(8)?;
            if v == 0 {
                return Ok(Val::Zero);
            }
            let (date, time) = (v / 1_000_000, v % 1_000_000);
            let (y, m, d) = ((date / 10000) as i64, (date % 10000 / 100) as u32, (date % 100) as u32);
            if y == 0 || m == 0 || d == 0 {
                return Ok(Val::Zero);
            }
            let (h, mi, s) = ((time / 10000) as u32, (time % 10000 / 100) as u32, (time % 100) as u32);
            if !valid_date(y, m, d) || h > 23 || mi > 59 || s > 59 {
                return decline("an invalid DATETIME (the library raises)");
            }
            Val::DateTime { y, m, d, h, mi, s, us: 0, off: None }
        }
        Reader::DateTime2 { fsp } => {
            let data = b.uint_be(5)?;
            let slice = |start: u32, size: u32| (data >> (40 - (start + size))) & ((1 << size) - 1);
            let ym = slice(1, 17);
            let (y, m) = ((ym / 13) as i64, (ym % 13) as u32);
            let (d, h, mi, s) = (slice(18, 5) as u32, slice(23, 5) as u32, slice(28, 6) as u32, slice(34, 6) as u32);
            let us = read_fsp(b, *fsp)?;
            if !valid_date(y, m, d) || h > 23 || mi > 59 || s > 59 {
                // The library catches datetime()'s ValueError and returns None; source.py
                // turns that into "0000-00-00", which values.py writes as null and counts.
                return Ok(Val::Zero);
            }
            if !(0..=999_999).contains(&us) {
                return decline("a DATETIME fraction out of range");
            }
            Val::DateTime { y, m, d, h, mi, s, us: us.max(0) as u32, off: None }
        }
        Reader::TimestampOld { zone } => timestamp(b.uint_le(4)? as i64, 0, zone.as_deref())?,
        Reader::Timestamp2 { fsp, zone } => {
            let secs = b.int_be(4)?;
            let us = read_fsp(b, *fsp)?;
            if us > 999_999 {
                return decline("a TIMESTAMP fraction out of range");
            }
            timestamp(secs, us.max(0) as u32, zone.as_deref())?
        }
        Reader::TimeOld => {
            let t = b.uint_le(3)? as i64;
            Val::Time(((t / 10000) * 3600 + (t % 10000 / 100) * 60 + t % 100) * 1_000_000)
        }
        Reader::Time2 { fsp } => {
            // row_event.py __read_time2, then source.py _fix_times, step by step.
            let mut data = b.int_be(3)?;
            let slice = |v: i64, start: u32, size: u32| (v >> (24 - (start + size))) & ((1 << size) - 1);
            let sign: i64 = if slice(data, 0, 1) != 0 { 1 } else { -1 };
            if sign == -1 {
                data = !data + 1;
            }
            let (h, mi, s) = (slice(data, 2, 10), slice(data, 12, 6), slice(data, 18, 6));
            let us = read_fsp(b, *fsp)?;
            let mut total = sign * ((h * 3600 + mi * 60 + s) * 1_000_000 + us);
            if *fsp > 0 && total < 0 {
                let (secs, micros) = ((-total) / 1_000_000, (-total) % 1_000_000);
                if micros != 0 {
                    total = -(secs * 1_000_000 + 1_000_000 - micros);
                }
            }
            Val::Time(total)
        }
        Reader::Year => {
            let y = b.uint_le(1)? as i64 + 1900;
            Val::I(if y == 1900 { 0 } else { y })
        }
        Reader::Text { prefix } => {
            let n = b.uint_le(*prefix)? as usize;
            Val::Str(text(b.take(n)?)?)
        }
        Reader::JsonText { prefix } => {
            let n = b.uint_le(*prefix)? as usize;
            Val::JsonText(text(b.take(n)?)?)
        }
        Reader::CharsetText { prefix, charset } => {
            let n = b.uint_le(*prefix)? as usize;
            Val::S(charset.decode(b.take(n)?)?)
        }
        Reader::JsonBinary { prefix } => {
            // Written now, not when the document is: the library parses every JSON value of
            // the row (an excluded column too), so one it cannot parse declines the event.
            let n = b.uint_le(*prefix)? as usize;
            let mut out = String::new();
            crate::jsonb::document(&mut out, b.take(n)?)?;
            Val::Json(out)
        }
        Reader::Binary { prefix, pad_to } => {
            let n = b.uint_le(*prefix)? as usize;
            let mut v = b.take(n)?.to_vec();
            if v.len() < *pad_to {
                v.resize(*pad_to, 0);
            }
            Val::Bin(v)
        }
        Reader::Enum { size, labels } => {
            let i = b.uint_le(*size)? as usize;
            match labels {
                Some(l) if !l.is_empty() => match l.get(i) {
                    Some(s) => Val::S(s.clone()),
                    None => return decline("an ENUM index past its labels (the library raises)"),
                },
                _ => Val::Null,
            }
        }
        Reader::Set { size, labels } => {
            let mask = b.uint_le(*size)?;
            let mut chosen: Vec<String> = match labels {
                Some(l) => l.iter().enumerate().filter(|(i, _)| *i < 64 && mask >> i & 1 == 1).map(|(_, s)| s.clone()).collect(),
                None => vec![],
            };
            chosen.sort();
            Val::Labels(chosen)
        }
        Reader::Geometry { prefix, geo_point } => {
            let n = b.uint_le(*prefix)? as usize;
            Val::Geom(b.take(n)?, *geo_point)
        }
        Reader::Bit { bits, bytes, as_bool } => {
            let raw = b.take(*bytes)?;
            let mut n: u64 = 0;
            for (i, &x) in raw.iter().enumerate() {
                let end = if i == 0 {
                    if *bytes == 1 {
                        *bits
                    } else if bits % 8 == 0 {
                        8
                    } else {
                        bits % 8
                    }
                } else {
                    8
                };
                let masked = if end >= 8 { x as u64 } else { x as u64 & ((1u64 << end) - 1) };
                n = (n << end) | masked;
            }
            if *bits == 1 && *as_bool {
                Val::B(n != 0)
            } else {
                Val::U(n)
            }
        }
    })
}

/// values.py's float(Decimal) of a DECIMAL's text (decimal_as: number). CPython converts a
/// Decimal through its text (`Decimal.__float__`: float(str(self))), correctly rounded, as
/// Rust's `parse` is (to the nearest double, ties to even), so the double is the same.
pub(crate) fn decimal_float(text: &str) -> f64 {
    // The text is digits, an optional "-" and "."; a DECIMAL is below 1e65 (65 digits), so
    // parse neither fails nor overflows.
    text.parse().unwrap_or(f64::NAN)
}

/// row_event.py __read_new_decimal, then values.py's format(Decimal, "f"); and whether the
/// value was stored negative (for a negative zero, which the text writes as "0").
fn decimal(b: &mut Bytes, precision: u32, decimals: u32) -> R<(String, bool)> {
    const COMPRESSED: [usize; 10] = [0, 1, 1, 2, 2, 3, 3, 4, 4, 4];
    if decimals > precision || precision > 65 {
        return Err(Fail::Bad(format!("DECIMAL({precision},{decimals}) is not a valid column")));
    }
    let integral = precision - decimals;
    let (uncomp_int, comp_int) = ((integral / 9) as usize, (integral % 9) as usize);
    let (uncomp_frac, comp_frac) = ((decimals / 9) as usize, (decimals % 9) as usize);
    let size = COMPRESSED[comp_int] + uncomp_int * 4 + uncomp_frac * 4 + COMPRESSED[comp_frac];
    let mut raw = b.take(size)?.to_vec();
    if raw.is_empty() {
        return Err(Fail::Bad("DECIMAL of no bytes".into()));
    }
    let negative = raw[0] & 0x80 == 0;
    raw[0] ^= 0x80;
    if negative {
        for x in raw.iter_mut() {
            *x ^= 0xFF;
        }
    }
    let mut r = Bytes::new(&raw);
    let mut int_digits = String::new();
    if COMPRESSED[comp_int] > 0 {
        int_digits.push_str(&r.uint_be(COMPRESSED[comp_int])?.to_string());
    }
    for _ in 0..uncomp_int {
        int_digits.push_str(&format!("{:09}", r.uint_be(4)?));
    }
    let mut frac = String::new();
    for _ in 0..uncomp_frac {
        frac.push_str(&format!("{:09}", r.uint_be(4)?));
    }
    if COMPRESSED[comp_frac] > 0 {
        frac.push_str(&format!("{:0width$}", r.uint_be(COMPRESSED[comp_frac])?, width = comp_frac));
    }
    if frac.len() != decimals as usize {
        return decline("a DECIMAL fraction wider than its scale");
    }
    let trimmed = int_digits.trim_start_matches('0');
    let int_part = if trimmed.is_empty() { "0" } else { trimmed };
    let zero = int_part == "0" && frac.bytes().all(|c| c == b'0');
    let mut out = String::with_capacity(int_part.len() + frac.len() + 2);
    if negative && !zero {
        out.push('-'); // MySQL never prints -0, nor does values.py
    }
    out.push_str(int_part);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    Ok((out, negative))
}

/// values.py _float32: the shortest %g rendering (1..9 digits) that is the same float32.
pub fn float32(f: f32) -> f64 {
    let wide = f as f64;
    for digits in 1..10 {
        let candidate: f64 = format!("{:.*e}", digits - 1, wide).parse().unwrap_or(f64::NAN);
        if (candidate as f32).to_bits() == f.to_bits() {
            return candidate;
        }
    }
    wide
}

fn push2(out: &mut String, v: u32) {
    out.push((b'0' + (v / 10 % 10) as u8) as char);
    out.push((b'0' + (v % 10) as u8) as char);
}

pub fn write_date(out: &mut String, y: i64, m: u32, d: u32) {
    out.push_str(&format!("{:04}", y));
    out.push('-');
    push2(out, m);
    out.push('-');
    push2(out, d);
}

/// datetime.isoformat() (fraction only when non-zero); a TIMESTAMP's offset as values.py `_iso`
/// writes it: "Z" when it is 0, else isoformat's "+HH:MM", "+HH:MM:SS" when it has seconds
/// (CPython Lib/datetime.py `_format_offset`; zoneinfo keeps offsets to the second).
#[allow(clippy::too_many_arguments)]
pub fn write_datetime(out: &mut String, y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32, us: u32, off: Option<i32>) {
    write_date(out, y, m, d);
    out.push('T');
    push2(out, h);
    out.push(':');
    push2(out, mi);
    out.push(':');
    push2(out, s);
    if us != 0 {
        out.push_str(&format!(".{:06}", us));
    }
    match off {
        None => {}
        Some(0) => out.push('Z'),
        Some(o) => {
            out.push(if o < 0 { '-' } else { '+' });
            let a = o.unsigned_abs();
            push2(out, a / 3600);
            out.push(':');
            push2(out, a % 3600 / 60);
            if a % 60 != 0 {
                out.push(':');
                push2(out, a % 60);
            }
        }
    }
}

/// values.py _time: "[-]HH:MM:SS[.ffffff]" from total microseconds.
pub fn write_time(out: &mut String, total: i64) {
    let a = total.unsigned_abs();
    let (secs, micros) = (a / 1_000_000, a % 1_000_000);
    let (hours, rest) = (secs / 3600, secs % 3600);
    if total < 0 {
        out.push('-');
    }
    out.push_str(&format!("{:02}:{:02}:{:02}", hours, rest / 60, rest % 60));
    if micros != 0 {
        out.push_str(&format!(".{:06}", micros));
    }
}

/// A list of strings as JSON.
pub fn write_list<S: AsRef<str>>(out: &mut String, items: &[S]) {
    out.push('[');
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, s.as_ref());
    }
    out.push(']');
}

/// The value as JSON. Returns whether it was a zero date (values.py counts those).
pub fn write_json(out: &mut String, v: &Val) -> R<bool> {
    match v {
        Val::Null => out.push_str("null"),
        Val::Zero => {
            out.push_str("null");
            return Ok(true);
        }
        Val::I(i) => out.push_str(&i.to_string()),
        Val::U(u) => out.push_str(&u.to_string()),
        Val::B(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::F(f) => write_f64(out, *f),
        Val::S(s) => write_str(out, s),
        Val::Str(s) => write_str(out, s),
        Val::Bin(b) => {
            out.push('"');
            out.push_str(&base64::engine::general_purpose::STANDARD.encode(b));
            out.push('"');
        }
        Val::Json(j) => out.push_str(j),
        Val::Labels(l) => write_list(out, l),
        Val::JsonText(t) => crate::json::rewrite(out, t)?,
        Val::Date { y, m, d } => {
            out.push('"');
            write_date(out, *y, *m, *d);
            out.push('"');
        }
        Val::DateTime { y, m, d, h, mi, s, us, off } => {
            out.push('"');
            write_datetime(out, *y, *m, *d, *h, *mi, *s, *us, *off);
            out.push('"');
        }
        Val::Time(t) => {
            out.push('"');
            write_time(out, *t);
            out.push('"');
        }
        Val::Geom(data, geo_point) => crate::geometry::write(out, data, *geo_point)?,
    }
    Ok(false)
}

/// actions.py _id_part of the converted value: str() (floats as repr), binary columns in hex.
/// Values the Python path refuses (NULL, lists: a SET, JSON, geometry) are declined, so
/// it names them.
pub fn key_text(v: &Val) -> R<String> {
    let mut out = String::new();
    match v {
        Val::Null | Val::Zero => return decline("a NULL id, index or routing value (the Python path names it)"),
        Val::I(i) => out.push_str(&i.to_string()),
        Val::U(u) => out.push_str(&u.to_string()),
        Val::B(b) => out.push_str(if *b { "true" } else { "false" }),
        Val::S(s) => out.push_str(s),
        Val::Str(s) => out.push_str(s),
        Val::Bin(b) => {
            for x in b {
                out.push_str(&format!("{:02x}", x));
            }
        }
        Val::Date { y, m, d } => write_date(&mut out, *y, *m, *d),
        Val::DateTime { y, m, d, h, mi, s, us, off } => write_datetime(&mut out, *y, *m, *d, *h, *mi, *s, *us, *off),
        Val::Time(t) => write_time(&mut out, *t),
        // FLOAT arrives already rounded as values.py _float32 rounds it (`read`), DOUBLE as stored.
        Val::F(f) => match float_repr(*f) {
            Some(text) => out.push_str(&text),
            None => return decline("a NaN or infinite float in an id, index or routing"),
        },
        Val::Json(_) | Val::Labels(_) | Val::JsonText(_) | Val::Geom(..) => {
            return decline("a list, JSON or geometry value in an id, index or routing (the Python path refuses it)")
        }
    }
    Ok(out)
}

/// strftime of the converted date for `{col:%Y.%m}`: only %Y %m %d %H %M %S %% (the plan
/// refuses other formats), years from 1000 (glibc does not pad %Y below that).
pub fn key_date(v: &Val, fmt: &str) -> R<String> {
    let (y, m, d, h, mi, s) = match v {
        Val::Date { y, m, d } => (*y, *m, *d, 0, 0, 0),
        Val::DateTime { y, m, d, h, mi, s, .. } => (*y, *m, *d, *h, *mi, *s),
        _ => return decline("a date format of a value that is not a date"),
    };
    if y < 1000 {
        return decline("a year below 1000 in a date format");
    }
    strftime(y, m, d, h, mi, s, fmt, false)
}

/// Python's `date(time).strftime(fmt)` for formats of literal text and %Y %m %d %H %M %S %%
/// (any other directive declines). %Y is the year as glibc's strftime writes it: no padding
/// (year 5 -> "5") unless `pad_year`, which cdc/rules/rowpath.py sets from what this Python's
/// strftime gives for year 5 (4 digits, "0005", on platforms and Pythons that pad).
#[allow(clippy::too_many_arguments)]
pub fn strftime(y: i64, m: u32, d: u32, h: u32, mi: u32, s: u32, fmt: &str, pad_year: bool) -> R<String> {
    let mut out = String::with_capacity(fmt.len() + 8);
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') if pad_year => out.push_str(&format!("{:04}", y)),
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => push2(&mut out, m),
            Some('d') => push2(&mut out, d),
            Some('H') => push2(&mut out, h),
            Some('M') => push2(&mut out, mi),
            Some('S') => push2(&mut out, s),
            Some('%') => out.push('%'),
            _ => return decline("an unsupported date format"),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(reader: Reader, bytes: &[u8]) -> String {
        let mut b = Bytes::new(bytes);
        let v = read(&reader, &mut b).unwrap();
        assert_eq!(b.left(), 0, "all bytes read");
        let mut out = String::new();
        write_json(&mut out, &v).unwrap();
        out
    }

    #[test]
    fn decimal_as_the_library_and_values_py() {
        // DECIMAL(10,2) 1234.50 and -0.01, as MariaDB writes them (binary: 4 + 1 bytes).
        let d = || Reader::Decimal { precision: 10, decimals: 2, number: false };
        assert_eq!(one(d(), &[0x80, 0x00, 0x04, 0xd2, 0x32]), "\"1234.50\"");
        assert_eq!(one(d(), &[0x7f, 0xff, 0xff, 0xff, 0xfe]), "\"-0.01\"");
        assert_eq!(one(d(), &[0x80, 0x00, 0x00, 0x00, 0x00]), "\"0.00\"");
    }

    #[test]
    fn negative_time_fraction_is_corrected() {
        // TIME(2) -01:30:00.25 as MySQL's my_time_packed_to_binary stores it: the integer part
        // floor(-01:30:00.25) = -(01:30:01) plus 0x800000, then the fraction -25 as a signed byte.
        // The library reads -01:30:00.75; source.py _fix_times corrects it; so must this.
        let int_part: i64 = 0x800000 - ((1 << 12) | (30 << 6)) - 1;
        let bytes = [(int_part >> 16) as u8, (int_part >> 8) as u8, int_part as u8, (-25i8) as u8];
        assert_eq!(one(Reader::Time2 { fsp: 2 }, &bytes), "\"-01:30:00.250000\"");
    }

    #[test]
    fn zero_dates_are_null_and_counted() {
        let mut b = Bytes::new(&[0, 0, 0]);
        let v = read(&Reader::Date, &mut b).unwrap();
        let mut out = String::new();
        assert!(write_json(&mut out, &v).unwrap());
        assert_eq!(out, "null");
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        for reader in [Reader::Int { bytes: 8, unsigned: false }, Reader::Decimal { precision: 65, decimals: 30, number: true },
                       Reader::Text { prefix: 2 }, Reader::DateTime2 { fsp: 6 }, Reader::Bit { bits: 64, bytes: 8, as_bool: false }] {
            for n in 0..3 {
                let data = vec![0xffu8; n];
                let mut b = Bytes::new(&data);
                assert!(matches!(read(&reader, &mut b), Err(Fail::Bad(_)) | Err(Fail::Decline(_))));
            }
        }
    }

    #[test]
    fn timestamps_in_a_zone_carry_its_offset() {
        // Africa/Monrovia: -0:44:30 until 1972-01-07 00:44:30 UTC (63593070), then UTC.
        let zone = Zone::new(vec![(0, -2670), (63593070, 0)], 1 << 31).unwrap();
        let json = |secs: i64, us: u32| {
            let mut out = String::new();
            write_json(&mut out, &timestamp(secs, us, Some(&zone)).unwrap()).unwrap();
            out
        };
        assert_eq!(json(1, 0), "\"1969-12-31T23:15:31-00:44:30\"");
        assert_eq!(json(63593069, 5), "\"1972-01-06T23:59:59.000005-00:44:30\"");
        assert_eq!(json(63593070, 0), "\"1972-01-07T00:44:30Z\"");
        assert_eq!(json(0, 0), "null"); // the zero TIMESTAMP, in any zone
        assert!(matches!(timestamp(-1, 0, Some(&zone)), Err(Fail::Decline(_))));
        assert!(matches!(timestamp(1 << 31, 0, Some(&zone)), Err(Fail::Decline(_))));
        let kolkata = Zone::new(vec![(0, 19800)], 1 << 31).unwrap();
        let mut out = String::new();
        write_json(&mut out, &timestamp(1704164645, 0, Some(&kolkata)).unwrap()).unwrap();
        assert_eq!(out, "\"2024-01-02T08:34:05+05:30\"");
        assert!(Zone::new(vec![(5, 0), (5, 3600)], 10).is_err());
        assert!(Zone::new(vec![], 10).is_err());
        assert!(Zone::new(vec![(0, 86400)], 10).is_err());
    }

    #[test]
    fn days_from_civil_inverts_civil() {
        for days in (-800_000..3_000_000).step_by(997) {
            let (y, m, d) = civil(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn decimal_as_number() {
        let d = || Reader::Decimal { precision: 10, decimals: 2, number: true };
        assert_eq!(one(d(), &[0x80, 0x00, 0x04, 0xd2, 0x32]), "1234.5");
        assert_eq!(one(d(), &[0x7f, 0xff, 0xff, 0xff, 0xfe]), "-0.01");
        assert_eq!(one(d(), &[0x80, 0x00, 0x00, 0x00, 0x00]), "0.0");
        assert_eq!(one(d(), &[0x7f, 0xff, 0xff, 0xff, 0xff]), "-0.0"); // the library's Decimal('-0.00')
    }

    #[test]
    fn float32_shortest() {
        assert_eq!(float32(0.1f32), 0.1);
        assert_eq!(float32(16777216f32), 16777216.0);
        assert_eq!(float32(3.4028235e38f32), 3.4028235e38);
    }
}
