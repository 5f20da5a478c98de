//! cdc's native row path (issue 19): the body of one binlog rows event, and the table's
//! definition and rule plans, straight to the Elasticsearch actions of its rows, with the
//! documents already as JSON bytes identical to the Python path's (`cdc/rules/actions.py`).
//!
//! Why a hand-written decoder and not `mysql_common`'s binlog module: pymysqlreplication
//! keeps the connection, the event framing and the TABLE_MAP parsing (with cdc's guards
//! around them), so what is left is the rows body alone, whose format is small
//! (null bitmap, then each value by column type). mysql_common's `RowsEventRows` wants its
//! own `TableMapEvent` and yields generic `BinlogValue`s, which would then need a second
//! pass to become the exact values cdc writes (its own DECIMAL, TIME and zero-date
//! handling differs from the library's, which is the reference here). Reading the bytes
//! straight into cdc's values is one pass, allocates little, and compiles in seconds.
//!
//! Nothing here panics on bad input: every read is bounds-checked (`values::Bytes`), and
//! `decode` also catches any panic and reports it as a `DecodeError`.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

mod actions;
mod charset;
mod geometry;
mod convert;
mod json;
mod jsonb;
mod text;
mod values;

use values::{key_date, key_text, read, write_json, Bytes, Fail, Reader, Val, R};

create_exception!(_native, DecodeError, PyException, "The rows event's bytes do not decode with its table definition.");
create_exception!(_native, Decline, PyException, "Only the Python path gives this event's exact actions (or error).");

/// A table definition: how each column is read, in column order.
#[pyclass(frozen, module = "cdc._native")]
struct Table {
    readers: Vec<Reader>,
}

#[pymethods]
impl Table {
    /// `columns`: one (reader, a, b, c, labels) per column; see cdc/rules/rowpath.py `_reader`
    /// (a decimal's c: 1 for values.decimal_as: number). `zone`: the offsets of
    /// values.timestamp_timezone ([(from UTC second, offset)], end) when it is not UTC
    /// (cdc/rules/rowpath.py `zone_offsets`); None: TIMESTAMPs in UTC.
    #[new]
    #[pyo3(signature = (columns, zone=None))]
    fn new(columns: Vec<(String, i64, i64, i64, Option<Vec<String>>)>, zone: Option<(Vec<(i64, i32)>, i64)>) -> PyResult<Self> {
        let zone = match zone {
            Some((transitions, end)) => {
                Some(std::sync::Arc::new(values::Zone::new(transitions, end).map_err(pyo3::exceptions::PyValueError::new_err)?))
            }
            None => None,
        };
        let mut readers = Vec::with_capacity(columns.len());
        for (name, a, b, c, labels) in columns {
            let (ua, ub) = (a.max(0) as usize, b.max(0) as usize);
            readers.push(match name.as_str() {
                "int" => Reader::Int { bytes: ua, unsigned: b != 0 },
                "float" => Reader::Float,
                "double" => Reader::Double,
                "decimal" => Reader::Decimal { precision: a as u32, decimals: b as u32, number: c != 0 },
                "date" => Reader::Date,
                "datetime_old" => Reader::DateTimeOld,
                "datetime2" => Reader::DateTime2 { fsp: a as u32 },
                "timestamp_old" => Reader::TimestampOld { zone: zone.clone() },
                "timestamp2" => Reader::Timestamp2 { fsp: a as u32, zone: zone.clone() },
                "time_old" => Reader::TimeOld,
                "time2" => Reader::Time2 { fsp: a as u32 },
                "year" => Reader::Year,
                "text" => Reader::Text { prefix: ua },
                "json_text" => Reader::JsonText { prefix: ua },
                "json_binary" => Reader::JsonBinary { prefix: ua },
                "binary" => Reader::Binary { prefix: ua, pad_to: ub },
                "enum" => Reader::Enum { size: ua, labels },
                "set" => Reader::Set { size: ua, labels },
                "bit" => Reader::Bit { bits: a as u32, bytes: ub, as_bool: c != 0 },
                "geometry" => Reader::Geometry { prefix: ua, geo_point: b != 0 },
                // "text:mariadb/latin1", "text:utf16": see cdc/mysql/charsets.py native_name.
                other => match other.strip_prefix("text:").and_then(charset::named) {
                    Some(charset) => Reader::CharsetText { prefix: ua, charset },
                    None => return Err(pyo3::exceptions::PyValueError::new_err(format!("unknown reader {other:?}"))),
                },
            });
            let bad_size = match readers.last().unwrap() {
                Reader::Int { bytes, .. } => !(1..=8).contains(bytes),
                Reader::Text { prefix } | Reader::JsonText { prefix } | Reader::Binary { prefix, .. } => !(1..=4).contains(prefix),
                Reader::JsonBinary { prefix } | Reader::Geometry { prefix, .. } => !(1..=4).contains(prefix),
                Reader::CharsetText { prefix, .. } => !(1..=4).contains(prefix),
                Reader::Enum { size, .. } | Reader::Set { size, .. } => !(1..=8).contains(size),
                Reader::Bit { bits, bytes, .. } => !(1..=64).contains(bits) || *bytes != (*bits as usize).div_ceil(8),
                Reader::DateTime2 { fsp } | Reader::Timestamp2 { fsp, .. } | Reader::Time2 { fsp } => *fsp > 6,
                _ => false,
            };
            if bad_size {
                return Err(pyo3::exceptions::PyValueError::new_err(format!("bad sizes for reader {name:?}")));
            }
        }
        Ok(Table { readers })
    }

    fn __len__(&self) -> usize {
        self.readers.len()
    }
}

#[derive(Clone)]
enum Part {
    Lit(String),
    Col(usize),
    Date(usize, String),
}

/// One rule applied to one table definition (cdc/rules/rowpath.py compiles it).
#[pyclass(frozen, module = "cdc._native")]
struct Plan {
    doc: Vec<(usize, String)>,
    /// Each doc field's `convert:` conversions (convert.rs), in order; empty for most.
    convs: Vec<Vec<convert::Conv>>,
    /// Python's strftime pads %Y to 4 digits (convert.rs, values.rs `strftime`).
    pad_year: bool,
    consts: String,
    soft: Option<String>,
    id_cols: Vec<usize>,
    id_sep: char,
    id_tpl: Option<Vec<Part>>,
    index: Vec<Part>,
    /// The index name when `index` has no column in it, already checked as `place` checks it.
    fixed_index: Option<String>,
    routing: Option<Vec<Part>>,
    versioned: bool,
    on_delete: u8,
    forbidden: String,
}

/// One doc field's `convert:` conversions as rowpath.py hands them over: (name, argument).
type ConvSpec = Vec<(String, Option<String>)>;

fn parts(raw: Vec<(u8, String, usize)>) -> Vec<Part> {
    raw.into_iter()
        .map(|(k, s, i)| match k {
            0 => Part::Lit(s),
            1 => Part::Col(i),
            _ => Part::Date(i, s),
        })
        .collect()
}

#[pymethods]
impl Plan {
    #[new]
    #[pyo3(signature = (doc, consts, soft, id_cols, id_sep, id_tpl, index, routing, versioned, on_delete, forbidden, convs=None, pad_year=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        doc: Vec<(usize, String)>,
        consts: String,
        soft: Option<String>,
        id_cols: Vec<usize>,
        id_sep: char,
        id_tpl: Option<Vec<(u8, String, usize)>>,
        index: Vec<(u8, String, usize)>,
        routing: Option<Vec<(u8, String, usize)>>,
        versioned: bool,
        on_delete: u8,
        forbidden: String,
        convs: Option<Vec<ConvSpec>>,
        pad_year: bool,
    ) -> PyResult<Self> {
        let mut conv_lists = Vec::with_capacity(doc.len());
        for field in convs.unwrap_or_default() {
            let list = field.into_iter().map(|(name, arg)| convert::Conv::new(&name, arg)).collect::<Result<Vec<_>, _>>();
            conv_lists.push(list.map_err(pyo3::exceptions::PyValueError::new_err)?);
        }
        if conv_lists.is_empty() {
            conv_lists.resize(doc.len(), Vec::new());
        }
        if conv_lists.len() != doc.len() {
            return Err(pyo3::exceptions::PyValueError::new_err("one list of conversions per document field"));
        }
        let mut plan = Plan {
            doc,
            convs: conv_lists,
            pad_year,
            consts,
            soft,
            id_cols,
            id_sep,
            id_tpl: id_tpl.map(parts),
            index: parts(index),
            fixed_index: None,
            routing: routing.map(parts),
            versioned,
            on_delete,
            forbidden,
        };
        // Rendered, lowercased and checked once rather than per row: the same for every row. A name
        // that fails the check stays per row, which declines each row as before.
        if plan.index.iter().all(|p| matches!(p, Part::Lit(_))) {
            plan.fixed_index = render(&plan.index, &[]).and_then(|name| plan.checked_index(name)).ok();
        }
        Ok(plan)
    }
}

pub(crate) const INDEX: u8 = 0;
pub(crate) const DELETE: u8 = 1;
pub(crate) const UPDATE: u8 = 2;

pub(crate) struct Out {
    plan: usize,
    row: usize,
    kind: u8,
    index: String,
    id: String,
    routing: Option<String>,
    older: bool,
    doc: Option<Vec<u8>>,
}

#[derive(PartialEq)]
struct Place {
    index: String,
    id: String,
    routing: Option<String>,
}

fn render(tpl: &[Part], row: &[Val]) -> R<String> {
    let mut out = String::new();
    for p in tpl {
        match p {
            Part::Lit(s) => out.push_str(s),
            Part::Col(i) => out.push_str(&key_text(col(row, *i)?)?),
            Part::Date(i, f) => out.push_str(&key_date(col(row, *i)?, f)?),
        }
    }
    Ok(out)
}

fn col<'r, 'a>(row: &'r [Val<'a>], i: usize) -> R<&'r Val<'a>> {
    row.get(i).ok_or_else(|| Fail::Decline("a plan column past the table's columns".into()))
}

impl Plan {
    /// actions.py _place.
    fn place(&self, row: &[Val]) -> R<Place> {
        let id = match &self.id_tpl {
            Some(t) => render(t, row)?,
            None => {
                let mut partsv = Vec::with_capacity(self.id_cols.len());
                for &i in &self.id_cols {
                    partsv.push(key_text(col(row, i)?)?);
                }
                if partsv.len() == 1 {
                    partsv.pop().unwrap()
                } else {
                    let sep = self.id_sep.to_string();
                    let escaped_sep = format!("\\{}", self.id_sep);
                    partsv.iter().map(|p| p.replace('\\', "\\\\").replace(&sep, &escaped_sep)).collect::<Vec<_>>().join(&sep)
                }
            }
        };
        if id.is_empty() || id.len() > 512 {
            return Err(Fail::Decline("an empty or too long id (the Python path names it)".into()));
        }
        let index = match &self.fixed_index {
            Some(name) => name.clone(),
            None => self.checked_index(render(&self.index, row)?)?,
        };
        let routing = match &self.routing {
            Some(t) => Some(render(t, row)?),
            None => None,
        };
        Ok(Place { index, id, routing })
    }

    /// A rendered index name lowercased, or a `Decline` where the Python path must name what is wrong.
    fn checked_index(&self, index: String) -> R<String> {
        if !index.is_ascii() {
            return Err(Fail::Decline("a non-ASCII index name (Python lowercases it)".into()));
        }
        let index = index.to_ascii_lowercase();
        if index.is_empty()
            || index.starts_with(['-', '_', '+'])
            || index.chars().any(|c| self.forbidden.contains(c))
            || index == "."
            || index == ".."
        {
            return Err(Fail::Decline("an invalid index name (the Python path names it)".into()));
        }
        Ok(index)
    }

    /// actions.py _document (+ the soft-delete field); returns the JSON and whether a zero date was written.
    fn document(&self, row: &[Val], deleted: Option<bool>) -> R<(Vec<u8>, bool)> {
        let mut out = String::with_capacity(256);
        let mut zero = false;
        out.push('{');
        let mut first = true;
        for ((i, key), convs) in self.doc.iter().zip(&self.convs) {
            if !first {
                out.push(',');
            }
            first = false;
            out.push_str(key);
            out.push(':');
            zero |= if convs.is_empty() {
                write_json(&mut out, col(row, *i)?)?
            } else {
                convert::write_converted(&mut out, col(row, *i)?, convs, self.pad_year)?
            };
        }
        if !self.consts.is_empty() {
            if first {
                out.push_str(&self.consts[1..]); // consts start with ','
            } else {
                out.push_str(&self.consts);
            }
            first = false;
        }
        if let (Some(key), Some(d)) = (&self.soft, deleted) {
            if !first {
                out.push(',');
            }
            out.push_str(key);
            out.push(':');
            out.push_str(if d { "true" } else { "false" });
        }
        out.push('}');
        Ok((out.into_bytes(), zero))
    }

    fn write(&self, out: &mut Vec<Out>, plan: usize, row_no: usize, row: &[Val], place: Place, deleted: bool, older: bool) -> R<bool> {
        let (doc, zero) = self.document(row, if self.soft.is_some() { Some(deleted) } else { None })?;
        out.push(Out {
            plan,
            row: row_no,
            kind: if self.versioned { INDEX } else { UPDATE },
            index: place.index,
            id: place.id,
            routing: place.routing,
            older,
            doc: Some(doc),
        });
        Ok(zero)
    }

    fn remove(&self, out: &mut Vec<Out>, plan: usize, row_no: usize, row: &[Val], place: Place, older: bool) -> R<bool> {
        match self.on_delete {
            1 => Ok(false),
            2 => {
                if self.versioned {
                    return self.write(out, plan, row_no, row, place, true, older);
                }
                let key = self.soft.as_ref().ok_or_else(|| Fail::Decline("soft delete without its field".into()))?;
                out.push(Out {
                    plan,
                    row: row_no,
                    kind: UPDATE,
                    index: place.index,
                    id: place.id,
                    routing: place.routing,
                    older: false,
                    doc: Some(format!("{{{}:true}}", key).into_bytes()),
                });
                Ok(false)
            }
            _ => {
                out.push(Out {
                    plan,
                    row: row_no,
                    kind: DELETE,
                    index: place.index,
                    id: place.id,
                    routing: place.routing,
                    older,
                    doc: None,
                });
                Ok(false)
            }
        }
    }

    /// actions.py actions_for, for one row: op 0 insert, 1 update, 2 delete.
    fn row(&self, out: &mut Vec<Out>, plan: usize, row_no: usize, op: u8, before: Option<&[Val]>, after: Option<&[Val]>) -> R<bool> {
        if op == 2 {
            let before = before.unwrap();
            let old = self.place(before)?;
            return self.remove(out, plan, row_no, before, old, false);
        }
        let after = after.unwrap();
        let new = self.place(after)?;
        let mut zero = false;
        if op == 1 {
            let before = before.unwrap();
            let old = self.place(before)?;
            if old != new {
                let same_doc = old.index == new.index && old.id == new.id;
                if same_doc && !self.versioned {
                    return Err(Fail::Decline("a routing change in mode: update (the Python path stops)".into()));
                }
                zero |= self.remove(out, plan, row_no, before, old, same_doc)?;
            }
        }
        zero |= self.write(out, plan, row_no, after, new, false, false)?;
        Ok(zero)
    }
}

fn image<'a>(table: &Table, b: &mut Bytes<'a>) -> R<Vec<Val<'a>>> {
    let n = table.readers.len();
    let nulls = b.take(n.div_ceil(8))?;
    let mut row = Vec::with_capacity(n);
    for (i, reader) in table.readers.iter().enumerate() {
        if nulls[i / 8] >> (i % 8) & 1 == 1 {
            row.push(Val::Null);
        } else {
            row.push(read(reader, b)?);
        }
    }
    Ok(row)
}

struct Decoded {
    rows: usize,
    actions: Vec<Out>,
    zero_rows: Vec<usize>,
}

fn decode_all(table: &Table, plans: &[&Plan], op: u8, body: &[u8]) -> R<Decoded> {
    let mut b = Bytes::new(body);
    let mut d = Decoded { rows: 0, actions: Vec::new(), zero_rows: Vec::new() };
    while b.left() > 0 {
        let first = image(table, &mut b)?;
        let (before, after) = match op {
            0 => (None, Some(first)),
            2 => (Some(first), None),
            _ => {
                let second = image(table, &mut b)?;
                (Some(first), Some(second))
            }
        };
        let mut zero = false;
        for (p, plan) in plans.iter().enumerate() {
            zero |= plan.row(&mut d.actions, p, d.rows, op, before.as_deref(), after.as_deref())?;
        }
        if zero {
            d.zero_rows.push(d.rows);
        }
        d.rows += 1;
    }
    Ok(d)
}

/// Rows-event bodies from this size on are decoded with the GIL released.
const RELEASE_GIL_FROM: usize = 32 * 1024;

/// Decode one rows event body (the rows, after the columns-present bitmaps).
///
/// `op`: 0 WRITE, 1 UPDATE, 2 DELETE. Returns (rows, actions, rows with zero dates), each
/// action as (plan, row, kind 0 index / 1 delete / 2 update, index, id, routing, one
/// version older, doc JSON bytes or None). Raises `DecodeError` for bytes that do not
/// decode, `Decline` when the Python path must do this event.
/// An action's document for Python: its JSON bytes, or None (a delete); shared with text.rs.
fn doc_object(py: Python<'_>, doc: Option<&[u8]>) -> PyObject {
    match doc {
        Some(d) => PyBytes::new(py, d).into_any().unbind(),
        None => py.None(),
    }
}

/// The event's actions as `NativeAction` objects (actions.rs): the maker, the event's schema,
/// table and position, and its document version.
type Made<'py> = (PyRef<'py, actions::Maker>, Bound<'py, PyAny>, Bound<'py, PyAny>, Bound<'py, PyAny>, i64);

#[pyfunction]
#[pyo3(signature = (table, plans, op, body, into=None))]
fn decode<'py>(
    py: Python<'py>,
    table: &Table,
    plans: Vec<PyRef<'py, Plan>>,
    op: u8,
    body: &[u8],
    into: Option<Made<'py>>,
) -> PyResult<(usize, Bound<'py, PyList>, Vec<usize>)> {
    let plan_refs: Vec<&Plan> = plans.iter().map(|p| &**p).collect();
    if op > 2 {
        return Err(pyo3::exceptions::PyValueError::new_err("op must be 0, 1 or 2"));
    }
    let run = || std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| decode_all(table, &plan_refs, op, body)));
    // Why not always release the GIL: most rows events hold one row and decode in a few
    // microseconds, while a thread that gives the GIL up waits to get it back until the
    // holder blocks or its switch interval (5 ms, sys.getswitchinterval) ends. With the
    // pipeline's writers busy, that wait per event, not the decoding, paced the reader
    // thread (issue 19: py-spy of a catch-up). Big events still decode beside Python.
    let result = if body.len() >= RELEASE_GIL_FROM { py.allow_threads(run) } else { run() };
    let decoded = match result {
        Ok(Ok(d)) => d,
        Ok(Err(Fail::Bad(why))) => return Err(DecodeError::new_err(why)),
        Ok(Err(Fail::Decline(why))) => return Err(Decline::new_err(why)),
        Err(_) => return Err(DecodeError::new_err("the decoder failed on these bytes (internal error)")),
    };
    if let Some((maker, schema, table_name, position, version)) = into {
        let list = actions::make(py, &maker, decoded.actions, &schema, &table_name, &position, version)?;
        return Ok((decoded.rows, list, decoded.zero_rows));
    }
    let list = PyList::empty(py);
    for a in decoded.actions {
        let doc = doc_object(py, a.doc.as_deref());
        let t = PyTuple::new(
            py,
            [
                a.plan.into_pyobject(py)?.into_any().unbind(),
                a.row.into_pyobject(py)?.into_any().unbind(),
                a.kind.into_pyobject(py)?.into_any().unbind(),
                a.index.into_pyobject(py)?.into_any().unbind(),
                a.id.into_pyobject(py)?.into_any().unbind(),
                a.routing.into_pyobject(py)?.into_any().unbind(),
                a.older.into_pyobject(py)?.to_owned().into_any().unbind(),
                doc,
            ],
        )?;
        list.append(t)?;
    }
    Ok((decoded.rows, list, decoded.zero_rows))
}

/// orjson's float text, for tests.
#[pyfunction]
fn format_float(f: f64) -> String {
    let mut s = String::new();
    json::write_f64(&mut s, f);
    s
}

/// Python's repr() of a float (actions.py `_id_part`), for tests; raises Decline for NaN/inf.
#[pyfunction]
fn float_repr(f: f64) -> PyResult<String> {
    json::float_repr(f).ok_or_else(|| Decline::new_err("NaN or infinity"))
}

/// A geometry value (SRID + WKB) as values.py + orjson write it, for tests; raises Decline where
/// the Python path raises (or might).
#[pyfunction]
#[pyo3(name = "geometry", signature = (data, geo_point=false))]
fn geometry_json(data: &[u8], geo_point: bool) -> PyResult<String> {
    let mut s = String::new();
    match geometry::write(&mut s, data, geo_point) {
        Ok(()) => Ok(s),
        Err(Fail::Decline(why)) | Err(Fail::Bad(why)) => Err(Decline::new_err(why)),
    }
}

/// values.py _float32 of a float32's bits, for tests.
#[pyfunction]
fn float32(f: f32) -> f64 {
    values::float32(f)
}

/// MariaDB JSON text as the Python path writes it, for tests; raises Decline where it defers.
#[pyfunction]
fn json_text(text: &str) -> PyResult<String> {
    let mut s = String::new();
    match json::rewrite(&mut s, text) {
        Ok(()) => Ok(s),
        Err(Fail::Decline(why)) | Err(Fail::Bad(why)) => Err(Decline::new_err(why)),
    }
}

/// Python's str.lower()/str.upper() of each BMP code point they change (rowpath.py
/// `_case_table`); set once per process, for `convert:` lower/upper of non-ASCII text.
#[pyfunction]
fn case_table(lower: Vec<(u32, String)>, upper: Vec<(u32, String)>) {
    convert::set_case_table(lower, upper);
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Table>()?;
    m.add_class::<Plan>()?;
    m.add_class::<actions::Maker>()?;
    m.add_function(wrap_pyfunction!(actions::untrack_objects, m)?)?;
    m.add_function(wrap_pyfunction!(decode, m)?)?;
    m.add_function(wrap_pyfunction!(format_float, m)?)?;
    m.add_function(wrap_pyfunction!(float32, m)?)?;
    m.add_function(wrap_pyfunction!(float_repr, m)?)?;
    m.add_function(wrap_pyfunction!(geometry_json, m)?)?;
    m.add_function(wrap_pyfunction!(json_text, m)?)?;
    m.add_function(wrap_pyfunction!(case_table, m)?)?;
    m.add_function(wrap_pyfunction!(jsonb::json_binary, m)?)?;
    m.add_class::<text::TextTable>()?;
    m.add_function(wrap_pyfunction!(text::snapshot_rows, m)?)?;
    m.add_function(wrap_pyfunction!(text::snapshot_body, m)?)?;
    m.add_function(wrap_pyfunction!(text::frame_rows, m)?)?;
    m.add("DecodeError", m.py().get_type::<DecodeError>())?;
    m.add("Decline", m.py().get_type::<Decline>())?;
    Ok(())
}
