//! A rule's `convert:` conversions of one document field, exactly as values.py
//! `apply_conversion` does them, in order, on the value values.py has already converted
//! (so a DATE is the text "2024-01-02" to them, a SET a sorted list of labels, ...).
//!
//! Where the Python path raises `ConversionError` (split of a number, bool of "maybe", a
//! date that is not one), or where this code cannot be sure of Python's result (non-ASCII
//! text outside the case table, the value of a JSON column), it declines: the Python path
//! then redoes the event and gives the value, or the error that stops cdc with the table,
//! position and row (actions.py `ActionBuilder.actions`), as it would have anyway.
//! cdc/rules/rowpath.py refuses at compile time what this never does (formats with other
//! directives, a conversion after `json`).

use std::sync::OnceLock;

use base64::Engine;

use crate::json::{rewrite, write_str};
use crate::values::{decline, strftime, valid_date, write_date, write_datetime, write_json, write_list, write_time, Val, R};

#[derive(Debug, Clone)]
pub enum Conv {
    Split(String),
    Json,
    Lower,
    Upper,
    Bool,
    DateTime(String),
}

impl Conv {
    pub fn new(name: &str, arg: Option<String>) -> Result<Conv, String> {
        Ok(match (name, arg) {
            // values.py: value.split(arg or ",")
            ("split", arg) => Conv::Split(arg.filter(|a| !a.is_empty()).unwrap_or_else(|| ",".into())),
            ("json", None) => Conv::Json,
            ("lower", None) => Conv::Lower,
            ("upper", None) => Conv::Upper,
            ("bool", None) => Conv::Bool,
            ("datetime", Some(f)) if !f.is_empty() => Conv::DateTime(f),
            (name, arg) => return Err(format!("unknown conversion {name:?} with argument {arg:?}")),
        })
    }
}

/// Python's str.lower()/str.upper() of the Basic Multilingual Plane beyond ASCII, from the
/// running Python itself (rowpath.py `_case_table` hands over every code point it changes):
/// Rust's own tables follow a newer Unicode than Python 3.11's 14.0, so they are not used.
pub struct CaseTable {
    lower: Vec<Option<Box<str>>>,
    upper: Vec<Option<Box<str>>>,
}

static CASE: OnceLock<CaseTable> = OnceLock::new();

const CASE_LIMIT: u32 = 0x10000;

pub fn set_case_table(lower: Vec<(u32, String)>, upper: Vec<(u32, String)>) {
    let build = |pairs: Vec<(u32, String)>| {
        let mut t: Vec<Option<Box<str>>> = vec![None; CASE_LIMIT as usize];
        for (c, s) in pairs {
            if c < CASE_LIMIT {
                t[c as usize] = Some(s.into_boxed_str());
            }
        }
        t
    };
    let _ = CASE.set(CaseTable { lower: build(lower), upper: build(upper) });
}

fn case(s: &str, upper: bool) -> R<String> {
    if s.is_ascii() {
        return Ok(if upper { s.to_ascii_uppercase() } else { s.to_ascii_lowercase() });
    }
    let Some(table) = CASE.get() else {
        return decline("non-ASCII text to lower/upper without Python's case table");
    };
    let table = if upper { &table.upper } else { &table.lower };
    let mut out = String::with_capacity(s.len() + 4);
    for c in s.chars() {
        if c.is_ascii() {
            out.push(if upper { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() });
            continue;
        }
        let n = c as u32;
        if n >= CASE_LIMIT {
            return decline("text beyond the Basic Multilingual Plane to lower/upper");
        }
        // Python lowers U+03A3 to final sigma or not by its neighbours (unicodeobject.c
        // handle_capital_sigma, Unicode's Final_Sigma): left to it.
        if !upper && n == 0x3A3 {
            return decline("a capital sigma to lower (Final_Sigma depends on its neighbours)");
        }
        match &table[n as usize] {
            Some(m) => out.push_str(m),
            None => out.push(c),
        }
    }
    Ok(out)
}

/// A value on its way through the conversions.
enum Cv<'v, 'a> {
    /// Not converted yet: values.py's value of the column.
    Orig(&'v Val<'a>),
    Text(String),
    List(Vec<String>),
    Bool(bool),
    /// JSON written by `json` (a conversion after it is refused at compile time).
    Json(String),
}

/// The value as the Python str values.py makes of it, if it is a str there.
fn orig_text(v: &Val) -> Option<String> {
    let mut out = String::new();
    match v {
        Val::S(s) => return Some(s.clone()),
        Val::Str(s) => return Some((*s).to_string()),
        Val::Bin(b) => return Some(base64::engine::general_purpose::STANDARD.encode(b)),
        Val::Date { y, m, d } => write_date(&mut out, *y, *m, *d),
        Val::DateTime { y, m, d, h, mi, s, us, off } => write_datetime(&mut out, *y, *m, *d, *h, *mi, *s, *us, *off),
        Val::Time(t) => write_time(&mut out, *t),
        _ => return None,
    }
    Some(out)
}

fn text_of(cv: &Cv, what: &str) -> R<String> {
    match cv {
        Cv::Text(t) => Ok(t.clone()),
        Cv::Orig(v) => orig_text(v).map_or_else(|| decline(format!("{what} of a value that is not text")), Ok),
        _ => decline(format!("{what} of a value that is not text")),
    }
}

/// The ASCII characters Python's str.strip() removes (str.isspace: also \x1c-\x1f, which
/// Rust's trim() keeps).
fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c' | '\x1c'..='\x1f'))
}

/// datetime.date.fromisoformat / datetime.datetime.fromisoformat (values.py parse_date) of the
/// texts cdc itself writes for dates: "YYYY-MM-DD" and "YYYY-MM-DDTHH:MM:SS[.ffffff][Z]";
/// any other text declines (Python's ISO parser accepts more, or raises).
fn parse_iso(t: &str) -> Option<(i64, u32, u32, u32, u32, u32)> {
    let b = t.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = b.get(r)?;
        if part.iter().all(|c| c.is_ascii_digit()) {
            Some(part.iter().fold(0u32, |a, c| a * 10 + (c - b'0') as u32))
        } else {
            None
        }
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)? as i64, num(5..7)?, num(8..10)?);
    if !valid_date(y, m, d) {
        return None;
    }
    if b.len() == 10 {
        return Some((y, m, d, 0, 0, 0));
    }
    let mut rest = &b[10..];
    if rest.last() == Some(&b'Z') {
        rest = &rest[..rest.len() - 1];
    }
    if !(rest.len() == 9 || rest.len() == 16) || rest[0] != b'T' || rest[3] != b':' || rest[6] != b':' {
        return None;
    }
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if rest.len() == 16 && (rest[9] != b'.' || num(20..26).is_none()) {
        return None;
    }
    if h > 23 || mi > 59 || s > 59 {
        return None;
    }
    Some((y, m, d, h, mi, s))
}

fn step<'v, 'a>(cv: Cv<'v, 'a>, conv: &Conv, pad_year: bool) -> R<Cv<'v, 'a>> {
    Ok(match conv {
        Conv::Split(sep) => {
            let t = text_of(&cv, "split")?;
            Cv::List(if t.is_empty() { vec![] } else { t.split(sep.as_str()).map(String::from).collect() })
        }
        Conv::Lower | Conv::Upper => {
            let upper = matches!(conv, Conv::Upper);
            match &cv {
                Cv::List(items) => Cv::List(items.iter().map(|s| case(s, upper)).collect::<R<_>>()?),
                Cv::Orig(Val::Labels(items)) => Cv::List(items.iter().map(|s| case(s, upper)).collect::<R<_>>()?),
                _ => Cv::Text(case(&text_of(&cv, "lower/upper")?, upper)?),
            }
        }
        Conv::Bool => match &cv {
            Cv::Bool(b) | Cv::Orig(Val::B(b)) => Cv::Bool(*b),
            Cv::Orig(Val::I(i)) => Cv::Bool(*i != 0), // MySQL's truth: any non-zero is true
            Cv::Orig(Val::U(u)) => Cv::Bool(*u != 0),
            _ => {
                let t = text_of(&cv, "bool")?;
                if !t.is_ascii() {
                    return decline("non-ASCII text to bool");
                }
                match py_strip(&t).to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "y" | "on" => Cv::Bool(true),
                    "0" | "false" | "no" | "n" | "off" | "" => Cv::Bool(false),
                    _ => return decline("bool of text that is no truth value (the Python path raises)"),
                }
            }
        },
        Conv::DateTime(fmt) => {
            let (y, m, d, h, mi, s) = match &cv {
                Cv::Orig(Val::Date { y, m, d }) => (*y, *m, *d, 0, 0, 0),
                Cv::Orig(Val::DateTime { y, m, d, h, mi, s, .. }) => (*y, *m, *d, *h, *mi, *s),
                _ => match parse_iso(&text_of(&cv, "datetime")?) {
                    Some(parts) => parts,
                    None => return decline("datetime of text that is not a date cdc writes"),
                },
            };
            Cv::Text(strftime(y, m, d, h, mi, s, fmt, pad_year)?)
        }
        Conv::Json => match cv {
            Cv::Text(t) => {
                let mut out = String::new();
                rewrite(&mut out, &t)?;
                Cv::Json(out)
            }
            Cv::Orig(v @ (Val::Json(_) | Val::JsonText(_))) => {
                // A JSON column's value, already parsed; a JSON string scalar is a str, which
                // `json` parses again (or fails on): left to Python.
                let mut out = String::new();
                write_json(&mut out, v)?;
                if out.starts_with('"') {
                    return decline("json of a JSON column holding a string");
                }
                Cv::Json(out)
            }
            Cv::Orig(v) => match orig_text(v) {
                Some(t) => {
                    let mut out = String::new();
                    rewrite(&mut out, &t)?;
                    Cv::Json(out)
                }
                None => Cv::Orig(v), // not a str: values.py leaves it as it is
            },
            Cv::Json(j) if j.starts_with('"') => return decline("json of a JSON string"),
            other => other,
        },
    })
}

/// The field's value after its conversions, as JSON; returns whether it was a zero date
/// (counted by the value conversion before any `convert:`, as values.py does).
pub fn write_converted(out: &mut String, v: &Val, convs: &[Conv], pad_year: bool) -> R<bool> {
    if matches!(v, Val::Null | Val::Zero) {
        return write_json(out, v); // None stays None
    }
    let mut cv = Cv::Orig(v);
    for conv in convs {
        cv = step(cv, conv, pad_year)?;
    }
    match cv {
        Cv::Orig(v) => return write_json(out, v),
        Cv::Text(t) => write_str(out, &t),
        Cv::List(items) => write_list(out, &items),
        Cv::Bool(b) => out.push_str(if b { "true" } else { "false" }),
        Cv::Json(j) => out.push_str(&j),
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(v: &Val, convs: &[Conv]) -> R<String> {
        let mut out = String::new();
        write_converted(&mut out, v, convs, false)?;
        Ok(out)
    }

    #[test]
    fn iso_texts() {
        assert_eq!(parse_iso("2024-02-29"), Some((2024, 2, 29, 0, 0, 0)));
        assert_eq!(parse_iso("2023-02-29"), None);
        assert_eq!(parse_iso("2024-01-02T03:04:05"), Some((2024, 1, 2, 3, 4, 5)));
        assert_eq!(parse_iso("2024-01-02T03:04:05.123456Z"), Some((2024, 1, 2, 3, 4, 5)));
        assert_eq!(parse_iso("2024-01-02T03:04:05.12345"), None);
        assert_eq!(parse_iso("2024-01-02 03:04:05"), None);
        assert_eq!(parse_iso("2024-01-02T24:00:00"), None);
        assert_eq!(parse_iso("0000-01-02"), None);
    }

    #[test]
    fn chains() {
        let v = Val::Str("A,b,,C");
        assert_eq!(conv(&v, &[Conv::Split(",".into()), Conv::Lower]).unwrap(), r#"["a","b","","c"]"#);
        assert_eq!(conv(&Val::Str(""), &[Conv::Split(",".into())]).unwrap(), "[]");
        assert_eq!(conv(&Val::Str(" YES\x1c"), &[Conv::Bool]).unwrap(), "true");
        assert!(conv(&Val::Str("maybe"), &[Conv::Bool]).is_err());
        assert!(conv(&Val::I(3), &[Conv::Split(",".into())]).is_err());
        assert_eq!(conv(&Val::I(-3), &[Conv::Bool]).unwrap(), "true");
        assert_eq!(conv(&Val::Str("[1, 2]"), &[Conv::Json]).unwrap(), "[1,2]");
        assert_eq!(conv(&Val::Date { y: 5, m: 1, d: 2 }, &[Conv::DateTime("%Y/%m/%d %%".into())]).unwrap(), r#""5/01/02 %""#);
        assert_eq!(conv(&Val::Null, &[Conv::Bool]).unwrap(), "null");
        // Non-ASCII text without the case table (set from Python) declines; its ASCII is cased.
        assert!(conv(&Val::Str("ä"), &[Conv::Upper]).is_err());
        set_case_table(vec![], vec![(0xe4, "\u{c4}".into())]);
        assert_eq!(conv(&Val::Str("aä"), &[Conv::Upper]).unwrap(), "\"A\u{c4}\"");
    }
}
