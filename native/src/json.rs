//! JSON output byte-identical to orjson 3.x, which writes the Python path's documents
//! (`Action.doc_json`), and MariaDB JSON text re-encoded as values.py does it
//! (`_parse_json_text`: orjson.loads, or the exact json.loads when the text holds a
//! run of 20 digits or orjson refuses it, then `_json`).

use crate::values::{decline, R};

/// orjson's string escapes: `"`, `\`, \b \t \n \f \r, other controls as \u00xx; the rest raw UTF-8.
pub fn write_str(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &c) in bytes.iter().enumerate() {
        let esc: &str = match c {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{:04x}", c));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// orjson's float format: the shortest round-trip digits (as repr), written in plain
/// notation for decimal exponents -5..15 (".0" when integral), else `d.ddde+X` / `de-X`.
pub fn write_f64(out: &mut String, f: f64) {
    if !f.is_finite() {
        out.push_str("null");
        return;
    }
    write_shortest(out, f, -5, 1);
}

/// Python's `repr(float)` (what `str()` gives, so actions.py `_id_part` of a FLOAT or DOUBLE):
/// the same shortest digits, plain for decimal exponents -4..15, else `d.ddde+XX` with at
/// least two exponent digits (CPython Python/pystrtod.c format_float_short, mode 'r':
/// exponent when decpt <= -4 or decpt > 16, i.e. our exponent < -4 or > 15; "%+.02d").
/// `None` for NaN and infinities, which `repr` writes as "nan"/"inf" (never a MySQL value).
pub fn float_repr(f: f64) -> Option<String> {
    if !f.is_finite() {
        return None;
    }
    let mut out = String::new();
    write_shortest(&mut out, f, -4, 2);
    Some(out)
}

/// The shortest round-trip digits of finite `f`, plain for decimal exponents `plain_from`..15,
/// else scientific with at least `exp_digits` exponent digits.
fn write_shortest(out: &mut String, f: f64, plain_from: i32, exp_digits: usize) {
    let mut sci = format!("{:e}", f); // shortest round-trip digits, e.g. "-1.25e-7", "1e16"
    // On a tie between two shortest candidates (562949953421312.25 -> ...2 or ...3) Python's
    // repr, and orjson, take the correctly rounded one (half to even); so do the same.
    let digits_len = sci.split('e').next().unwrap_or("").bytes().filter(|c| c.is_ascii_digit()).count();
    if digits_len > 1 {
        let rounded = format!("{:.*e}", digits_len - 1, f);
        if rounded != sci && rounded.parse::<f64>().is_ok_and(|r| r == f) {
            sci = rounded;
        }
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let n = digits.len() as i32;
    if negative {
        out.push('-');
    }
    if (plain_from..16).contains(&exp) {
        if exp >= 0 {
            if n <= exp + 1 {
                out.push_str(&digits);
                for _ in 0..(exp + 1 - n) {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..(exp + 1) as usize]);
                out.push('.');
                out.push_str(&digits[(exp + 1) as usize..]);
            }
        } else {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        }
    } else {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exp > 0 { '+' } else { '-' });
        out.push_str(&format!("{:0width$}", exp.unsigned_abs(), width = exp_digits));
    }
}

const I64_MIN: i128 = -(1i128 << 63);
const U64_MAX: i128 = (1i128 << 64) - 1;
const MAX_DEPTH: usize = 128;

/// How the Python path parsed the text: orjson (integers past 64 bits become floats) or
/// json.loads (exact integers, numbers past double range keep their text).
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Orjson,
    Exact,
}

struct Refused;

/// A parsed JSON value. Numbers keep their text; objects keep the first position of a
/// key and its last value, as a Python dict built by either parser does.
enum Node<'a> {
    Lit(&'static str),
    Num(&'a str),
    Str(String),
    Arr(Vec<Node<'a>>),
    Obj(Vec<(String, Node<'a>)>),
}

struct Parser<'a> {
    t: &'a str,
    b: &'a [u8],
    i: usize,
    /// A number orjson.loads refuses (infinite as a double), anywhere in the text,
    /// even in a value a later duplicate key replaces: values.py then parses exactly.
    orjson_refuses: bool,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }
    fn value(&mut self, depth: usize) -> Result<Node<'a>, Refused> {
        if depth > MAX_DEPTH {
            return Err(Refused);
        }
        self.ws();
        let c = *self.b.get(self.i).ok_or(Refused)?;
        match c {
            b'{' => {
                self.i += 1;
                let mut items: Vec<(String, Node<'a>)> = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Node::Obj(items));
                }
                loop {
                    self.ws();
                    if self.b.get(self.i) != Some(&b'"') {
                        return Err(Refused);
                    }
                    let k = self.string()?;
                    self.ws();
                    if self.b.get(self.i) != Some(&b':') {
                        return Err(Refused);
                    }
                    self.i += 1;
                    let v = self.value(depth + 1)?;
                    match items.iter_mut().find(|(key, _)| *key == k) {
                        Some(slot) => slot.1 = v,
                        None => items.push((k, v)),
                    }
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Node::Obj(items));
                        }
                        _ => return Err(Refused),
                    }
                }
            }
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.b.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Node::Arr(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    match self.b.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Node::Arr(items));
                        }
                        _ => return Err(Refused),
                    }
                }
            }
            b'"' => Ok(Node::Str(self.string()?)),
            b't' => self.lit("true"),
            b'f' => self.lit("false"),
            b'n' => self.lit("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => Err(Refused),
        }
    }
    fn lit(&mut self, word: &'static str) -> Result<Node<'a>, Refused> {
        if self.t[self.i..].starts_with(word) {
            self.i += word.len();
            Ok(Node::Lit(word))
        } else {
            Err(Refused)
        }
    }
    fn digits(&mut self) -> usize {
        let s = self.i;
        while self.i < self.b.len() && self.b[self.i].is_ascii_digit() {
            self.i += 1;
        }
        self.i - s
    }
    fn number(&mut self) -> Result<Node<'a>, Refused> {
        let start = self.i;
        if self.b[self.i] == b'-' {
            self.i += 1;
        }
        let first = self.i;
        let n = self.digits();
        if n == 0 || (n > 1 && self.b[first] == b'0') {
            return Err(Refused);
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if self.digits() == 0 {
                return Err(Refused);
            }
        }
        if matches!(self.b.get(self.i), Some(b'e') | Some(b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+') | Some(b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                return Err(Refused);
            }
        }
        let text = &self.t[start..self.i];
        let integral = !text.bytes().any(|c| c == b'.' || c == b'e' || c == b'E');
        let in_range = integral && text.len() <= 38 && text.parse::<i128>().is_ok_and(|i| (I64_MIN..=U64_MAX).contains(&i));
        if !in_range && !text.parse::<f64>().is_ok_and(|f| f.is_finite()) {
            self.orjson_refuses = true;
        }
        Ok(Node::Num(text))
    }
    fn hex4(&mut self) -> Result<u32, Refused> {
        let h = self.t.get(self.i..self.i + 4).ok_or(Refused)?;
        if !h.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Refused);
        }
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| Refused)
    }
    fn string(&mut self) -> Result<String, Refused> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while self.i < self.b.len() && !matches!(self.b[self.i], b'"' | b'\\' | 0..=0x1f) {
                self.i += 1;
            }
            out.push_str(&self.t[start..self.i]);
            match self.b.get(self.i) {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let e = *self.b.get(self.i).ok_or(Refused)?;
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let u = self.hex4()?;
                            let c = if (0xD800..0xDC00).contains(&u) {
                                // A surrogate pair; a lone surrogate is left to Python.
                                if self.t.get(self.i..self.i + 2) != Some("\\u") {
                                    return Err(Refused);
                                }
                                self.i += 2;
                                let low = self.hex4()?;
                                if !(0xDC00..0xE000).contains(&low) {
                                    return Err(Refused);
                                }
                                0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00)
                            } else {
                                u
                            };
                            out.push(char::from_u32(c).ok_or(Refused)?);
                        }
                        _ => return Err(Refused),
                    }
                }
                _ => return Err(Refused), // end of text, or a raw control character
            }
        }
    }
}

pub fn rewrite(out: &mut String, text: &str) -> R<()> {
    // values.py _LONG_DIGITS is r"\d{20}" on a str: any Unicode decimal digit counts.
    // ASCII runs are checked here; a text with other numeric characters is left to Python.
    let mut run = 0;
    let mut long_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 20 {
                long_digits = true;
            }
        } else {
            if !c.is_ascii() && c.is_numeric() {
                return decline("JSON text with non-ASCII digits");
            }
            run = 0;
        }
    }
    let mut p = Parser { t: text, b: text.as_bytes(), i: 0, orjson_refuses: false };
    let node = match p.value(0) {
        Ok(n) => n,
        Err(Refused) => return decline("JSON text this parser refuses (Python decides: error or value)"),
    };
    p.ws();
    if p.i != p.b.len() {
        return decline("JSON text with trailing data");
    }
    let mut buf = String::with_capacity(text.len());
    if !long_digits && !p.orjson_refuses {
        if emit(&mut buf, &node, Mode::Orjson).is_ok() {
            out.push_str(&buf);
            return Ok(());
        }
        buf.clear();
    }
    if emit(&mut buf, &node, Mode::Exact).is_err() {
        return decline("JSON text the Python path cannot write");
    }
    out.push_str(&buf);
    Ok(())
}

fn emit(out: &mut String, v: &Node, mode: Mode) -> Result<(), Refused> {
    match v {
        Node::Lit(l) => out.push_str(l),
        Node::Str(s) => write_str(out, s),
        Node::Arr(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                emit(out, item, mode)?;
            }
            out.push(']');
        }
        Node::Obj(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_str(out, k);
                out.push(':');
                emit(out, item, mode)?;
            }
            out.push('}');
        }
        Node::Num(t) => {
            let integral = !t.bytes().any(|c| c == b'.' || c == b'e' || c == b'E');
            if integral {
                let exact: Option<i128> = if t.len() <= 38 { t.parse().ok() } else { None };
                match exact {
                    Some(i) if (I64_MIN..=U64_MAX).contains(&i) => out.push_str(&i.to_string()),
                    _ => match mode {
                        // orjson reads integers past 64 bits as doubles.
                        Mode::Orjson => {
                            let f: f64 = t.parse().map_err(|_| Refused)?;
                            if !f.is_finite() {
                                return Err(Refused);
                            }
                            write_f64(out, f)
                        }
                        // json.loads gives an int; values.py _int writes it as a string.
                        Mode::Exact => write_str(out, t),
                    },
                }
            } else {
                let f: f64 = t.parse().map_err(|_| Refused)?;
                if f.is_finite() {
                    write_f64(out, f)
                } else if mode == Mode::Exact {
                    write_str(out, t) // values.py _json_float keeps the text of 1e400
                } else {
                    return Err(Refused); // orjson refuses infinity: the exact parser decides
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod float_repr_tests {
    use super::float_repr;

    #[test]
    fn python_repr_of_floats() {
        // Each pair checked against CPython 3.11's repr().
        for (f, text) in [(0.0, "0.0"), (-0.0, "-0.0"), (1.5, "1.5"), (1e16, "1e+16"), (1e15, "1000000000000000.0"),
                          (9999999999999998.0, "9999999999999998.0"), (1.5e-5, "1.5e-05"), (1e-4, "0.0001"),
                          (0.00012, "0.00012"), (5e-324, "5e-324"), (1.7976931348623157e308, "1.7976931348623157e+308"),
                          (0.1, "0.1"), (0.30000000000000004, "0.30000000000000004"), (-2.5e-7, "-2.5e-07"),
                          (123456789012345680.0, "1.2345678901234568e+17"), (1e100, "1e+100"), (-1e-100, "-1e-100"),
                          (562949953421312.25, "562949953421312.2"), (16777216.0, "16777216.0"), (3.4028235e38, "3.4028235e+38")] {
            assert_eq!(float_repr(f).as_deref(), Some(text), "{f:e}");
        }
        assert_eq!(float_repr(f64::NAN), None);
        assert_eq!(float_repr(f64::INFINITY), None);
        assert_eq!(float_repr(f64::NEG_INFINITY), None);
    }
}
