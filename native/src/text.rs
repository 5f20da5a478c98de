//! Snapshot rows (issue 13): MySQL text-protocol row packets, as a SELECT returns them,
//! straight to the same actions and document JSON as the binlog path's `Plan` writes.
//!
//! A text-protocol row is one length-encoded string per column (0xFB for NULL; MySQL
//! protocol, "Text Resultset Row"). The Python path (the reference) gets the same values
//! through PyMySQL's converters (`pymysql/converters.py`) and `cdc/rules/values.py`; each
//! `TextCol` below turns the text into the `Val` that path ends at, so `values.rs`
//! writes it unchanged. Whatever this code does not reproduce exactly (an invalid date
//! PyMySQL keeps as text, text that is not UTF-8, a zero date, whose row the Python path
//! counts and logs) is a `Decline`: the Python path then does the whole chunk.
//!
//! Nothing here panics on bad input: every read is bounds-checked, and the entry point
//! also catches any panic and reports it as a `DecodeError`.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use std::sync::Arc;

use crate::values::{days_from_civil, decimal_float, decline, float32, timestamp, valid_date, Bytes, Fail, Val, Zone, R};
use crate::{DecodeError, Decline, Out, Plan};

/// How one column of the SELECT's result is read (cdc/copy/native.py `text_columns` chooses).
#[derive(Debug, Clone)]
enum TextCol {
    Int,
    /// FLOAT, selected as `col + 0e0` (a DOUBLE holding the stored float32 exactly).
    Float,
    Double,
    /// `number`: values.decimal_as: number.
    Decimal { number: bool },
    Date,
    DateTime,
    /// `zone`: values.timestamp_timezone when it is not UTC (the server sends UTC: the
    /// snapshot's session has time_zone '+00:00', cdc/mysql/server.py).
    Timestamp { zone: Option<Arc<Zone>> },
    Time,
    Year,
    Str,
    Bin { pad_to: usize },
    Set,
    Bit { as_bool: bool },
    JsonText,
    /// GEOMETRY/POINT: the same internal value as in the binlog (PyMySQL hands the bytes over: a
    /// binary-charset field of type GEOMETRY, which no converter takes); geometry.rs writes it.
    Geometry { geo_point: bool },
}

/// A SELECT's columns, in result order.
#[pyclass(frozen, module = "cdc._native")]
pub struct TextTable {
    cols: Vec<TextCol>,
}

#[pymethods]
impl TextTable {
    /// `columns`: one (reader, arg) per result column: reader one of int, float, double,
    /// decimal (arg: 1 for a float), date, datetime, timestamp, time, year, text, binary (arg:
    /// pad to), set, bit (arg: 1 for a bool), json_text, geometry (arg: 1 for a POINT column's
    /// geo_point). `zone`: the TIMESTAMP zone's offsets ([(from UTC second, offset)], end), None
    /// for UTC (cdc/rules/rowpath.py `zone_offsets`).
    #[new]
    #[pyo3(signature = (columns, zone=None))]
    fn new(columns: Vec<(String, i64)>, zone: Option<(Vec<(i64, i32)>, i64)>) -> PyResult<Self> {
        let zone = match zone {
            Some((transitions, end)) => Some(Arc::new(Zone::new(transitions, end).map_err(pyo3::exceptions::PyValueError::new_err)?)),
            None => None,
        };
        let mut cols = Vec::with_capacity(columns.len());
        for (name, arg) in columns {
            cols.push(match name.as_str() {
                "int" => TextCol::Int,
                "float" => TextCol::Float,
                "double" => TextCol::Double,
                "decimal" => TextCol::Decimal { number: arg != 0 },
                "date" => TextCol::Date,
                "datetime" => TextCol::DateTime,
                "timestamp" => TextCol::Timestamp { zone: zone.clone() },
                "time" => TextCol::Time,
                "year" => TextCol::Year,
                "text" => TextCol::Str,
                "binary" => TextCol::Bin { pad_to: arg.max(0) as usize },
                "set" => TextCol::Set,
                "bit" => TextCol::Bit { as_bool: arg != 0 },
                "json_text" => TextCol::JsonText,
                "geometry" => TextCol::Geometry { geo_point: arg != 0 },
                other => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown text reader {other:?}"))),
            });
        }
        Ok(TextTable { cols })
    }

    fn __len__(&self) -> usize {
        self.cols.len()
    }
}

/// A length-encoded string (MySQL protocol "Length-Encoded String"); None for NULL (0xFB).
fn lenenc<'a>(b: &mut Bytes<'a>) -> R<Option<&'a [u8]>> {
    let first = b.uint_le(1)?;
    let n = match first {
        0..=0xFA => first,
        0xFB => return Ok(None),
        0xFC => b.uint_le(2)?,
        0xFD => b.uint_le(3)?,
        0xFE => b.uint_le(8)?,
        _ => return Err(Fail::Bad("0xFF where a column value starts (an error packet?)".into())),
    };
    if n > b.left() as u64 {
        return Err(Fail::Bad(format!("truncated: a {n}-byte value with {} bytes left in the row", b.left())));
    }
    Ok(Some(b.take(n as usize)?))
}

fn ascii(raw: &[u8]) -> R<&str> {
    if !raw.is_ascii() {
        return Err(Fail::Bad("a non-ASCII number, date or time".into()));
    }
    Ok(std::str::from_utf8(raw).unwrap_or(""))
}

/// Fixed-width unsigned decimal digits (a date or time field).
fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0u32, |acc, &c| acc.saturating_mul(10).saturating_add((c - b'0') as u32)))
}

/// pymysql converters._convert_second_fraction: up to 6 digits, right-padded with zeros.
fn fraction(s: &[u8]) -> Option<u32> {
    if s.is_empty() || s.len() > 6 {
        return None;
    }
    let v = digits(s)?;
    Some(v * 10u32.pow(6 - s.len() as u32))
}

/// "YYYY-MM-DD": Some((y, m, d)) as printed, None when not of that shape.
fn date_parts(s: &[u8]) -> Option<(i64, u32, u32)> {
    if s.len() != 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    Some((digits(&s[0..4])? as i64, digits(&s[5..7])?, digits(&s[8..10])?))
}

fn date<'a>(raw: &[u8]) -> R<Val<'a>> {
    let Some((y, m, d)) = date_parts(raw) else {
        return Err(Fail::Bad("a DATE that is not YYYY-MM-DD".into()));
    };
    // PyMySQL keeps a date datetime.date() refuses as text; values.py writes one with a
    // zero part as null (and counts it), any other as the text itself.
    if y == 0 || m == 0 || d == 0 {
        return Ok(Val::Zero);
    }
    if !valid_date(y, m, d) {
        return decline("an invalid DATE (PyMySQL keeps it as text)");
    }
    Ok(Val::Date { y, m, d })
}

/// A DATETIME, or a TIMESTAMP (`Some(zone)`: its text is UTC, written in `zone` or UTC).
fn datetime<'a>(raw: &[u8], timestamp_in: Option<Option<&Zone>>) -> R<Val<'a>> {
    if raw.len() < 19 || raw[10] != b' ' || raw[13] != b':' || raw[16] != b':' {
        return Err(Fail::Bad("a DATETIME that is not YYYY-MM-DD HH:MM:SS[.ffffff]".into()));
    }
    let Some((y, m, d)) = date_parts(&raw[..10]) else {
        return Err(Fail::Bad("a DATETIME that is not YYYY-MM-DD HH:MM:SS[.ffffff]".into()));
    };
    let (Some(h), Some(mi), Some(s)) = (digits(&raw[11..13]), digits(&raw[14..16]), digits(&raw[17..19])) else {
        return Err(Fail::Bad("a DATETIME whose time is not HH:MM:SS".into()));
    };
    let us = match &raw[19..] {
        [] => 0,
        [b'.', rest @ ..] => fraction(rest).ok_or_else(|| Fail::Bad("a DATETIME fraction of more than 6 digits".into()))?,
        _ => return Err(Fail::Bad("a DATETIME with trailing text".into())),
    };
    if y == 0 || m == 0 || d == 0 {
        return Ok(Val::Zero);
    }
    if !valid_date(y, m, d) || h > 23 || mi > 59 || s > 59 {
        return decline("an invalid DATETIME (PyMySQL keeps it as text)");
    }
    if let Some(zone) = timestamp_in {
        // values.py: a naive TIMESTAMP at the epoch is the binlog's zero TIMESTAMP (`timestamp` says null).
        let secs = days_from_civil(y, m, d) * 86400 + (h * 3600 + mi * 60 + s) as i64;
        return timestamp(secs, us, zone);
    }
    Ok(Val::DateTime { y, m, d, h, mi, s, us, off: None })
}

/// pymysql converters.convert_timedelta, then values.py _time (via total microseconds).
fn time<'a>(raw: &[u8]) -> R<Val<'a>> {
    let bad = || Fail::Bad("a TIME that is not [-]HH:MM:SS[.ffffff]".into());
    let (negative, rest) = match raw {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, raw),
    };
    let mut parts = rest.splitn(3, |&c| c == b':');
    let (h, mi, sec) = (parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?, parts.next().ok_or_else(bad)?);
    let (sec, frac) = match sec.iter().position(|&c| c == b'.') {
        Some(p) => (&sec[..p], Some(&sec[p + 1..])),
        None => (sec, None),
    };
    if !(1..=3).contains(&h.len()) || !(1..=2).contains(&mi.len()) || !(1..=2).contains(&sec.len()) {
        return Err(bad());
    }
    let (h, mi, s) = (digits(h).ok_or_else(bad)? as i64, digits(mi).ok_or_else(bad)? as i64, digits(sec).ok_or_else(bad)? as i64);
    let us = match frac {
        Some(f) => fraction(f).ok_or_else(bad)? as i64,
        None => 0,
    };
    let total = (h * 3600 + mi * 60 + s) * 1_000_000 + us;
    Ok(Val::Time(if negative { -total } else { total }))
}

/// values.py _float32 of a double read from text: the shortest %g (1..9 digits) that is the same float32.
fn float32_of(v: f64) -> f64 {
    let f = v as f32;
    if f.is_infinite() {
        return v; // struct.pack("<f") overflows: values.py keeps the value
    }
    if f as f64 == v {
        return float32(f);
    }
    for digits in 1..10 {
        let candidate: f64 = format!("{:.*e}", digits - 1, v).parse().unwrap_or(f64::NAN);
        if (candidate as f32).to_bits() == f.to_bits() {
            return candidate;
        }
    }
    v
}

/// format(Decimal(text), "f") for MySQL's DECIMAL text: no leading zeros, no "-0"; or
/// float(Decimal(text)) (`number`).
fn decimal<'a>(raw: &[u8], number: bool) -> R<Val<'a>> {
    let s = ascii(raw)?;
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int_part, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int_part.is_empty() || !int_part.bytes().all(|c| c.is_ascii_digit())
        || frac.is_some_and(|f| f.is_empty() || !f.bytes().all(|c| c.is_ascii_digit()))
    {
        return decline("DECIMAL text of another shape");
    }
    if number {
        return Ok(Val::F(decimal_float(s))); // "-0.00" too: Decimal('-0.00') is -0.0 as a float
    }
    let trimmed = int_part.trim_start_matches('0');
    let int_part = if trimmed.is_empty() { "0" } else { trimmed };
    let zero = int_part == "0" && frac.is_none_or(|f| f.bytes().all(|c| c == b'0'));
    let mut out = String::with_capacity(s.len() + 1);
    if negative && !zero {
        out.push('-');
    }
    out.push_str(int_part);
    if let Some(f) = frac {
        out.push('.');
        out.push_str(f);
    }
    Ok(Val::S(out))
}

fn value<'a>(col: &TextCol, raw: &'a [u8]) -> R<Val<'a>> {
    Ok(match col {
        TextCol::Int | TextCol::Year => {
            let s = ascii(raw)?;
            if let Ok(i) = s.parse::<i64>() {
                Val::I(i)
            } else if let Ok(u) = s.parse::<u64>() {
                Val::U(u)
            } else {
                return Err(Fail::Bad(format!("{s:?} is not an integer")));
            }
        }
        TextCol::Float | TextCol::Double => {
            let s = ascii(raw)?;
            if !s.bytes().all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E')) {
                return Err(Fail::Bad(format!("{s:?} is not a number")));
            }
            let v: f64 = s.parse().map_err(|_| Fail::Bad(format!("{s:?} is not a number")))?;
            if !v.is_finite() {
                Val::Null
            } else if matches!(col, TextCol::Float) {
                Val::F(float32_of(v))
            } else {
                Val::F(v)
            }
        }
        TextCol::Decimal { number } => decimal(raw, *number)?,
        TextCol::Date => date(raw)?,
        TextCol::DateTime => datetime(raw, None)?,
        TextCol::Timestamp { zone } => datetime(raw, Some(zone.as_deref()))?,
        TextCol::Time => time(raw)?,
        TextCol::Str => Val::Str(std::str::from_utf8(raw).or_else(|_| decline("text that is not valid UTF-8"))?),
        TextCol::JsonText => Val::JsonText(std::str::from_utf8(raw).or_else(|_| decline("JSON that is not valid UTF-8"))?),
        TextCol::Geometry { geo_point } => Val::Geom(raw, *geo_point),
        TextCol::Bin { pad_to } => {
            let mut v = raw.to_vec();
            if v.len() < *pad_to {
                v.resize(*pad_to, 0);
            }
            Val::Bin(v)
        }
        TextCol::Set => {
            let s = std::str::from_utf8(raw).or_else(|_| decline("a SET that is not valid UTF-8"))?;
            let mut labels: Vec<String> = if s.is_empty() { vec![] } else { s.split(',').map(String::from).collect() };
            labels.sort_unstable();
            Val::Labels(labels)
        }
        TextCol::Bit { as_bool } => {
            if raw.len() > 8 {
                return Err(Fail::Bad("a BIT value of more than 8 bytes".into()));
            }
            let n = raw.iter().fold(0u64, |acc, &x| (acc << 8) | x as u64);
            if *as_bool {
                Val::B(n != 0)
            } else {
                Val::U(n)
            }
        }
    })
}

fn row<'a>(table: &TextTable, packet: &'a [u8]) -> R<Vec<Val<'a>>> {
    let mut b = Bytes::new(packet);
    let mut vals = Vec::with_capacity(table.cols.len());
    for col in &table.cols {
        vals.push(match lenenc(&mut b)? {
            None => Val::Null,
            Some(raw) => value(col, raw)?,
        });
    }
    if b.left() != 0 {
        return Err(Fail::Bad(format!("{} bytes left after the row's {} columns", b.left(), table.cols.len())));
    }
    Ok(vals)
}

/// Every row's actions; Err((row number, failure)).
fn chunk(table: &TextTable, plans: &[&Plan], packets: &[&[u8]]) -> Result<Vec<Out>, (usize, Fail)> {
    let mut out = Vec::with_capacity(packets.len() * plans.len());
    for (n, packet) in packets.iter().enumerate() {
        let vals = row(table, packet).map_err(|f| (n, f))?;
        for (p, plan) in plans.iter().enumerate() {
            // An insert, as the stream would have seen the row (snapshot.py row_change).
            if plan.row(&mut out, p, n, 0, None, Some(&vals)).map_err(|f| (n, f))? {
                return Err((n, Fail::Decline("a zero date (the Python path counts and logs it)".into())));
            }
        }
    }
    Ok(out)
}

/// The actions of a chunk of snapshot rows, each row a text-protocol row packet (bytes).
///
/// Returns one (plan, kind 0 index / 2 update, index, id, routing, doc JSON bytes) per
/// action, in row order. Raises `DecodeError` (message starts with "row N:") for bytes
/// that do not decode, `Decline` when the Python path must do this chunk. The GIL is
/// released while the rows are converted.
#[pyfunction]
#[pyo3(signature = (table, plans, rows, into=None))]
pub fn snapshot_rows<'py>(
    py: Python<'py>,
    table: &TextTable,
    plans: Vec<PyRef<'py, Plan>>,
    rows: &Bound<'py, PyList>,
    into: Option<crate::Made<'py>>,
) -> PyResult<Bound<'py, PyList>> {
    let plan_refs: Vec<&Plan> = plans.iter().map(|p| &**p).collect();
    let owned: Vec<Bound<'py, PyBytes>> =
        rows.iter().map(|r| r.downcast_into::<PyBytes>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let packets: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
    let result = py.allow_threads(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| chunk(table, &plan_refs, &packets)))
    });
    let actions = match result {
        Ok(Ok(a)) => a,
        Ok(Err((n, Fail::Bad(why)))) => return Err(DecodeError::new_err(format!("row {n}: {why}"))),
        Ok(Err((n, Fail::Decline(why)))) => return Err(Decline::new_err(format!("row {n}: {why}"))),
        Err(_) => return Err(DecodeError::new_err("the decoder failed on these rows (internal error)")),
    };
    if let Some((maker, schema, table_name, position, version)) = into {
        return crate::actions::make(py, &maker, actions, &schema, &table_name, &position, version);
    }
    let list = PyList::empty(py);
    for a in actions {
        let doc = crate::doc_object(py, a.doc.as_deref());
        let t = PyTuple::new(
            py,
            [
                a.plan.into_pyobject(py)?.into_any().unbind(),
                a.kind.into_pyobject(py)?.into_any().unbind(),
                a.index.into_pyobject(py)?.into_any().unbind(),
                a.id.into_pyobject(py)?.into_any().unbind(),
                a.routing.into_pyobject(py)?.into_any().unbind(),
                doc,
            ],
        )?;
        list.append(t)?;
    }
    Ok(list)
}

/// A chunk of snapshot rows straight to its `_bulk` bodies: [(body bytes, actions, weight)], one per
/// bulk request.
///
/// The same actions as `snapshot_rows` with `into` (which makes them as objects when they
/// are asked for: a failed item, a dead letter), encoded as `cdc.es.bulk.encode_bulk`
/// would, without a Python object per action; the GIL is released throughout. A chunk
/// whose actions exceed `max_actions` or `max_bytes` of weight (`batch.max_actions`,
/// `batch.max_bytes`) comes in several parts, split as `cdc.stream.delivery.chunks`
/// splits actions. Raises as `snapshot_rows` does.
#[pyfunction]
#[pyo3(signature = (table, plans, rows, maker, version, max_actions=usize::MAX, max_bytes=usize::MAX))]
#[allow(clippy::too_many_arguments)]
pub fn snapshot_body<'py>(
    py: Python<'py>,
    table: &TextTable,
    plans: Vec<PyRef<'py, Plan>>,
    rows: &Bound<'py, PyList>,
    maker: PyRef<'py, crate::actions::Maker>,
    version: i64,
    max_actions: usize,
    max_bytes: usize,
) -> PyResult<Bound<'py, PyList>> {
    let plan_refs: Vec<&Plan> = plans.iter().map(|p| &**p).collect();
    let owned: Vec<Bound<'py, PyBytes>> =
        rows.iter().map(|r| r.downcast_into::<PyBytes>().map_err(PyErr::from)).collect::<PyResult<_>>()?;
    let packets: Vec<&[u8]> = owned.iter().map(|b| b.as_bytes()).collect();
    let encoder = maker.plans();
    let (max_actions, max_bytes) = (max_actions.max(1), max_bytes.max(1));
    let result = py.allow_threads(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            chunk(table, &plan_refs, &packets)
                .map(|outs| crate::actions::encode_bodies(&encoder, &outs, version, max_actions, max_bytes))
        }))
    });
    match result {
        Ok(Ok(parts)) => {
            let list = PyList::empty(py);
            for (body, count, weight) in parts {
                list.append((PyBytes::new(py, &body), count, weight))?;
            }
            Ok(list)
        }
        Ok(Err((n, Fail::Bad(why)))) => Err(DecodeError::new_err(format!("row {n}: {why}"))),
        Ok(Err((n, Fail::Decline(why)))) => Err(Decline::new_err(format!("row {n}: {why}"))),
        Err(_) => Err(DecodeError::new_err("the decoder failed on these rows (internal error)")),
    }
}

/// Where `frame_rows` stops: the offset of the first packet it did not take.
fn frame(buf: &[u8], mut seq: u8, mut row: impl FnMut(&[u8])) -> (usize, u8) {
    let mut at = 0;
    while buf.len() - at >= 4 {
        let length = buf[at] as usize | (buf[at + 1] as usize) << 8 | (buf[at + 2] as usize) << 16;
        if buf[at + 3] != seq || length == 0 || length == 0xFF_FFFF || buf.len() - at - 4 < length {
            break; // out of sequence, not a row, a row in several packets, or not all here yet
        }
        let payload = &buf[at + 4..at + 4 + length];
        if payload[0] == 0xFF || payload[0] == 0xFE && length < 9 {
            break; // an error or the end of the rows
        }
        row(payload);
        seq = seq.wrapping_add(1);
        at += 4 + length;
    }
    (at, seq)
}

/// The whole row packets at the start of `buf` (bytes read ahead of a result's rows), appended
/// to `rows` as their payloads: (bytes taken, the next sequence number).
///
/// Stops before the first packet that is anything but a whole, in-sequence row packet of
/// one packet: not all in `buf` yet, out of sequence, an error, the end of the rows (0xFE
/// under 9 bytes, as PyMySQL's `MysqlPacket.is_eof_packet`), or a row of 16 MB or more in
/// several packets. cdc/mysql/pymysql_hooks.py `PacketResult` reads that one as PyMySQL would and
/// gives the rest here again; so this only saves the per-packet Python work of the rows
/// in between (issue 13), and decides nothing.
#[pyfunction]
pub fn frame_rows(buf: &[u8], seq: u8, rows: &Bound<'_, PyList>) -> PyResult<(usize, u8)> {
    let py = rows.py();
    let mut failed = None;
    let (at, seq) = frame(buf, seq, |payload| {
        if failed.is_none() {
            if let Err(e) = rows.append(PyBytes::new(py, payload)) {
                failed = Some(e);
            }
        }
    });
    match failed {
        Some(e) => Err(e),
        None => Ok((at, seq)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(col: TextCol, raw: &[u8]) -> String {
        let v = value(&col, raw).unwrap();
        let mut out = String::new();
        crate::values::write_json(&mut out, &v).unwrap();
        out
    }

    #[test]
    fn values_as_the_python_path_writes_them() {
        assert_eq!(json(TextCol::Decimal { number: false }, b"-0.00"), "\"0.00\"");
        assert_eq!(json(TextCol::Decimal { number: false }, b"-12.50"), "\"-12.50\"");
        assert_eq!(json(TextCol::DateTime, b"2024-01-02 03:04:05.120000"), "\"2024-01-02T03:04:05.120000\"");
        assert_eq!(json(TextCol::DateTime, b"2024-01-02 03:04:05.000000"), "\"2024-01-02T03:04:05\"");
        assert_eq!(json(TextCol::Timestamp { zone: None }, b"2024-01-02 03:04:05"), "\"2024-01-02T03:04:05Z\"");
        assert_eq!(json(TextCol::Time, b"-01:30:00.250000"), "\"-01:30:00.250000\"");
        assert_eq!(json(TextCol::Time, b"838:59:59"), "\"838:59:59\"");
        assert_eq!(json(TextCol::Set, b"b,a"), "[\"a\",\"b\"]");
        assert_eq!(json(TextCol::Set, b""), "[]");
        assert_eq!(json(TextCol::Bit { as_bool: true }, b"\x01"), "true");
        assert_eq!(json(TextCol::Float, b"0.10000000149011612"), "0.1");
        assert_eq!(json(TextCol::Int, b"18446744073709551615"), "18446744073709551615");
    }

    #[test]
    fn framing_stops_before_anything_but_a_whole_row() {
        let rows = |buf: &[u8], seq: u8| {
            let mut got = Vec::new();
            let (at, next) = frame(buf, seq, |p| got.push(p.to_vec()));
            (got, at, next)
        };
        let two = b"\x02\x00\x00\x05\x011\x02\x00\x00\x06\x012";
        assert_eq!(rows(two, 5), (vec![b"\x011".to_vec(), b"\x012".to_vec()], 12, 7));
        assert_eq!(rows(&two[..11], 5), (vec![b"\x011".to_vec()], 6, 6)); // the second not all here
        assert_eq!(rows(two, 4).1, 0); // out of sequence
        assert_eq!(rows(b"\x05\x00\x00\x01\xfe\x00\x00\x02\x00", 1).1, 0); // the end of the rows
        assert_eq!(rows(b"\x03\x00\x00\x01\xff\x01\x02", 1).1, 0); // an error
        assert_eq!(rows(b"\x00\x00\x00\x01", 1).1, 0); // an empty packet
        assert_eq!(rows(b"\xff\xff\xff\x01\x01", 1).1, 0); // a row in several packets
        assert_eq!(rows(b"\x09\x00\x00\xff\xfe12345678\x01\x00\x00\x00\x01", 255).0.len(), 2); // 0xFE of 9 bytes is a row
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let t = TextTable { cols: vec![TextCol::Int, TextCol::Str, TextCol::DateTime] };
        for packet in [&b""[..], b"\x05ab", b"\xfe\xff\xff\xff\xff\xff\xff\xff\xff", b"\x011\x00\x01x", b"\x01x\x00\xfb",
                       b"\x011\x00\x05bad!!", b"\xff"] {
            assert!(matches!(row(&t, packet), Err(Fail::Bad(_)) | Err(Fail::Decline(_))), "{packet:?}");
        }
        assert!(row(&t, b"\x0212\x00\xfb").is_ok());
    }
}
