//! GEOMETRY and POINT values as the Python path writes them: `cdc/rules/values.py`
//! `_geometry` / `_wkb` turn MySQL's internal geometry value into a GeoJSON dict
//! (`{"type", "coordinates"}`, a collection `{"type", "geometries"}`), or a POINT
//! column's point into `{"lat", "lon"}` (`values.points: geo_point`), which orjson
//! then writes. This writes those bytes straight from the value.
//!
//! The value (what the binlog and a SELECT give for a geometry column; MySQL manual,
//! "Internal Geometry Storage Format") is a 4-byte little-endian SRID, then WKB
//! (OGC Simple Features, "Well-known Binary Representation for Geometry"): per
//! geometry a byte-order byte (1 little-endian, 0 big-endian), a uint32 type code
//! 1..7, then the coordinates as doubles, counts as uint32; Multi* and collections
//! hold whole WKB geometries, each with its own byte order. values.py reads exactly
//! that and nothing else (no Z/M codes, no EWKB flags), and does not check what a
//! Multi* holds (a MultiPoint of LineStrings gives the line strings' coordinates).
//!
//! Whatever values.py raises for (a bad byte order, an unknown type code, a short
//! value, trailing bytes, a collection inside a Multi*: a ConversionError, so a
//! RowError naming the row) is a `Decline`: the Python
//! path then gives the same error for the event. So is nesting deeper than
//! `MAX_DEPTH`, which the recursion here must not run into (Python's limit is far
//! deeper; it decides those).

use crate::json::write_f64;
use crate::values::{decline, R};

/// Collections inside collections beyond this: the Python path decides.
const MAX_DEPTH: usize = 64;

const TYPES: [&str; 7] = ["Point", "LineString", "Polygon", "MultiPoint", "MultiLineString", "MultiPolygon",
                          "GeometryCollection"];

struct Wkb<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Wkb<'_> {
    fn take<const N: usize>(&mut self) -> R<[u8; N]> {
        match self.buf.get(self.pos..self.pos + N) {
            Some(b) => {
                self.pos += N;
                Ok(b.try_into().unwrap())
            }
            None => decline("a geometry value shorter than its WKB says (values.py raises)"),
        }
    }
    fn u32(&mut self, little: bool) -> R<u32> {
        let b = self.take::<4>()?;
        Ok(if little { u32::from_le_bytes(b) } else { u32::from_be_bytes(b) })
    }
    fn f64(&mut self, little: bool) -> R<f64> {
        let b = self.take::<8>()?;
        Ok(if little { f64::from_le_bytes(b) } else { f64::from_be_bytes(b) })
    }
    /// `[x,y]`: values.py's list(read("dd")); orjson writes NaN and infinities as null.
    fn point(&mut self, out: &mut String, little: bool) -> R<()> {
        let (x, y) = (self.f64(little)?, self.f64(little)?);
        out.push('[');
        write_f64(out, x);
        out.push(',');
        write_f64(out, y);
        out.push(']');
        Ok(())
    }
    /// values.py points(): a count, then that many points.
    fn points(&mut self, out: &mut String, little: bool) -> R<()> {
        let n = self.u32(little)?;
        out.push('[');
        for i in 0..n {
            if i > 0 {
                out.push(',');
            }
            self.point(out, little)?; // a count past the value's end runs out of bytes here
        }
        out.push(']');
        Ok(())
    }

    /// One WKB geometry (values.py `_wkb`). `whole`: as its dict; else only its "coordinates"
    /// (a Multi*'s part), which a GeometryCollection does not have.
    fn geometry(&mut self, out: &mut String, whole: bool, depth: usize) -> R<()> {
        if depth > MAX_DEPTH {
            return decline("geometry collections nested too deep");
        }
        let little = match self.take::<1>()?[0] {
            1 => true,
            0 => false,
            _ => return decline("a bad WKB byte order (values.py raises)"),
        };
        let code = self.u32(little)?;
        if !(1..=7).contains(&code) {
            return decline("an unknown WKB geometry type (values.py raises)");
        }
        if code == 7 && !whole {
            return decline("a GeometryCollection inside a Multi* geometry (values.py raises)");
        }
        if whole {
            out.push_str("{\"type\":\"");
            out.push_str(TYPES[code as usize - 1]);
            out.push_str(if code == 7 { "\",\"geometries\":" } else { "\",\"coordinates\":" });
        }
        match code {
            1 => self.point(out, little)?,
            2 => self.points(out, little)?,
            3 => {
                let rings = self.u32(little)?;
                out.push('[');
                for i in 0..rings {
                    if i > 0 {
                        out.push(',');
                    }
                    self.points(out, little)?;
                }
                out.push(']');
            }
            _ => {
                // Multi* and GeometryCollection: whole geometries. values.py parses every part before
                // it takes their coordinates, so an error in any part is the error (all Declines here).
                let parts = self.u32(little)?;
                out.push('[');
                for i in 0..parts {
                    if i > 0 {
                        out.push(',');
                    }
                    self.geometry(out, code == 7, depth + 1)?;
                }
                out.push(']');
            }
        }
        if whole {
            out.push('}');
        }
        Ok(())
    }
}

/// values.py `_geometry` (SRID, then one WKB geometry, nothing after it) as orjson writes the dict;
/// `geo_point`: a POINT column under `values.points: geo_point`, whose Point is `{"lat":y,"lon":x}`.
pub fn write(out: &mut String, data: &[u8], geo_point: bool) -> R<()> {
    if data.len() < 5 {
        return decline("a geometry value shorter than 5 bytes (values.py raises)");
    }
    let mut w = Wkb { buf: data, pos: 4 };
    if geo_point && data[4] <= 1 {
        let little = data[4] == 1;
        w.pos = 5;
        if w.u32(little)? == 1 {
            let (x, y) = (w.f64(little)?, w.f64(little)?);
            if w.pos != data.len() {
                return decline("bytes after the WKB geometry (values.py raises)");
            }
            out.push_str("{\"lat\":");
            write_f64(out, y);
            out.push_str(",\"lon\":");
            write_f64(out, x);
            out.push('}');
            return Ok(());
        }
        w.pos = 4; // not a Point: GeoJSON as for any geometry
    }
    w.geometry(out, true, 0)?;
    if w.pos != data.len() {
        return decline("bytes after the WKB geometry (values.py raises)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn geo(data: &[u8], geo_point: bool) -> R<String> {
        let mut out = String::new();
        write(&mut out, data, geo_point).map(|_| out)
    }

    fn le_point(x: f64, y: f64) -> Vec<u8> {
        let mut v = vec![1, 1, 0, 0, 0];
        v.extend_from_slice(&x.to_le_bytes());
        v.extend_from_slice(&y.to_le_bytes());
        v
    }

    #[test]
    fn points_as_geojson_and_geo_point() {
        let mut v = vec![0xe6, 0x10, 0, 0]; // SRID 4326, dropped
        v.extend(le_point(1.5, -2.0));
        assert_eq!(geo(&v, false).unwrap(), r#"{"type":"Point","coordinates":[1.5,-2.0]}"#);
        assert_eq!(geo(&v, true).unwrap(), r#"{"lat":-2.0,"lon":1.5}"#);
        let mut be = vec![0, 0, 0, 0, 0, 0, 0, 0, 1];
        be.extend_from_slice(&f64::NAN.to_be_bytes());
        be.extend_from_slice(&1e16f64.to_be_bytes());
        assert_eq!(geo(&be, false).unwrap(), r#"{"type":"Point","coordinates":[null,1e+16]}"#);
    }

    #[test]
    fn collections() {
        let mut v = vec![0, 0, 0, 0, 1, 7, 0, 0, 0, 2, 0, 0, 0];
        v.extend(le_point(0.0, 1.0));
        v.extend([1, 7, 0, 0, 0, 0, 0, 0, 0]); // an empty collection inside
        assert_eq!(geo(&v, true).unwrap(),
                   r#"{"type":"GeometryCollection","geometries":[{"type":"Point","coordinates":[0.0,1.0]},{"type":"GeometryCollection","geometries":[]}]}"#);
        let mut multi = vec![0, 0, 0, 0, 1, 4, 0, 0, 0, 1, 0, 0, 0];
        multi.extend([1, 7, 0, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(geo(&multi, false), Err(crate::values::Fail::Decline(_))));
    }

    #[test]
    fn malformed_values_decline() {
        let mut v = vec![0, 0, 0, 0];
        v.extend(le_point(1.0, 2.0));
        for bad in [&v[..4], &v[..20], &[&v[..], &[0][..]].concat()[..], &[0, 0, 0, 0, 2, 1, 0, 0, 0][..],
                    &[0, 0, 0, 0, 1, 8, 0, 0, 0][..], &[0, 0, 0, 0, 1, 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]] {
            for geo_point in [false, true] {
                assert!(matches!(geo(bad, geo_point), Err(crate::values::Fail::Decline(_))), "{bad:?}");
            }
        }
        let mut deep = vec![0, 0, 0, 0];
        for _ in 0..100 {
            deep.extend([1, 7, 0, 0, 0, 1, 0, 0, 0]);
        }
        assert!(matches!(geo(&deep, false), Err(crate::values::Fail::Decline(_))));
    }
}
