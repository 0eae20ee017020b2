//! Canonical CBOR (RFC 8949 §4.2 as the `cbor2` library writes it with
//! `canonical=True`), for the one job flagd's `fractional` needs: turning the
//! bucket-by value into bytes to hash.
//!
//! Written by hand rather than with a CBOR crate because the encoding must
//! match the reference byte for byte (integral floats become integers,
//! other floats take the shortest exact width, map keys sort by encoded
//! length then bytes) and because it runs on the evaluation hot path, where
//! it writes into a stack buffer without building an intermediate value.

use serde_json::Value as Json;
use smallvec::SmallVec;

use crate::value::Val;

/// Bytes on the stack for the common case (two short strings).
pub(crate) type Buf = SmallVec<[u8; 128]>;

/// Encodes `value` canonically into `out`.
pub(crate) fn encode(value: &Val<'_>, out: &mut Buf) {
    match value {
        Val::Null => out.push(0xf6),
        Val::Bool(false) => out.push(0xf4),
        Val::Bool(true) => out.push(0xf5),
        Val::Int(i) => int(*i, out),
        Val::Float(f) => float(*f, out),
        Val::Str(s) => text(s, out),
        Val::String(s) => text(s, out),
        Val::Json(j) => json(j, out),
        Val::Owned(j) => json(j, out),
        Val::List(items) => {
            head(4, items.len() as u64, out);
            for item in items.iter() {
                encode(item, out);
            }
        }
    }
}

/// Encodes a JSON value canonically into `out`.
pub(crate) fn json(value: &Json, out: &mut Buf) {
    match value {
        Json::Null => out.push(0xf6),
        Json::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                head(0, u, out);
            } else if let Some(i) = n.as_i64() {
                int(i, out);
            } else {
                float(n.as_f64().unwrap_or(f64::NAN), out);
            }
        }
        Json::String(s) => text(s, out),
        Json::Array(items) => {
            head(4, items.len() as u64, out);
            for item in items {
                json(item, out);
            }
        }
        Json::Object(map) => {
            head(5, map.len() as u64, out);
            let mut entries: Vec<(Buf, &Json)> = map
                .iter()
                .map(|(k, v)| {
                    let mut key = Buf::new();
                    text(k, &mut key);
                    (key, v)
                })
                .collect();
            entries.sort_by(|(a, _), (b, _)| a.len().cmp(&b.len()).then_with(|| a.cmp(b)));
            for (key, v) in entries {
                out.extend_from_slice(&key);
                json(v, out);
            }
        }
    }
}

pub(crate) fn text(s: &str, out: &mut Buf) {
    head(3, s.len() as u64, out);
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn head(major: u8, n: u64, out: &mut Buf) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= u64::from(u8::MAX) {
        out.extend_from_slice(&[m | 24, n as u8]);
    } else if n <= u64::from(u16::MAX) {
        out.push(m | 25);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else if n <= u64::from(u32::MAX) {
        out.push(m | 26);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

fn int(i: i64, out: &mut Buf) {
    if i >= 0 {
        head(0, i as u64, out);
    } else {
        // -1 - n, computed without overflow for i64::MIN.
        head(1, !(i as u64), out);
    }
}

/// Floats with no fractional part inside the 64-bit integer range are
/// written as integers (flagd's normalisation); the rest take the shortest
/// IEEE width that holds them exactly.
fn float(f: f64, out: &mut Buf) {
    const MIN: f64 = -9_223_372_036_854_775_808.0; // -2^63
    const LIMIT: f64 = 18_446_744_073_709_551_616.0; // 2^64
    if f.is_nan() {
        out.extend_from_slice(&[0xf9, 0x7e, 0x00]);
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 {
            &[0xf9, 0x7c, 0x00]
        } else {
            &[0xf9, 0xfc, 0x00]
        });
    } else if f.fract() == 0.0 && (MIN..LIMIT).contains(&f) {
        if f >= 0.0 {
            head(0, f as u64, out);
        } else {
            int(f as i64, out);
        }
    } else {
        let single = f as f32;
        if f64::from(single) != f {
            out.push(0xfb);
            out.extend_from_slice(&f.to_be_bytes());
        } else if let Some(half) = half_bits(single) {
            out.push(0xf9);
            out.extend_from_slice(&half.to_be_bytes());
        } else {
            out.push(0xfa);
            out.extend_from_slice(&single.to_be_bytes());
        }
    }
}

/// The IEEE half-precision bits of `x`, if `x` is exactly representable.
fn half_bits(x: f32) -> Option<u16> {
    let bits = x.to_bits();
    let sign = ((bits >> 16) & 0x8000) as u16;
    let exp = ((bits >> 23) & 0xff) as i32;
    let mant = bits & 0x7f_ffff;
    if exp == 0 {
        // Zero or an f32 subnormal: only zero fits (and zero never gets here).
        return (mant == 0).then_some(sign);
    }
    let e = exp - 127;
    if (-14..=15).contains(&e) {
        return (mant & 0x1fff == 0)
            .then(|| sign | (((e + 15) as u16) << 10) | (mant >> 13) as u16);
    }
    if (-24..-14).contains(&e) {
        let significand = (1u32 << 23) | mant;
        let shift = (-(e + 1)) as u32;
        let m = significand >> shift;
        return (m << shift == significand).then_some(sign | m as u16);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(value: Json, expected_hex: &str) {
        let mut out = Buf::new();
        json(&value, &mut out);
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected_hex, "cbor({value})");
    }

    // Expected bytes from `cbor2.dumps(normalize_numbers(v), canonical=True)`.
    #[test]
    fn canonical_encoding() {
        check(json!(["flag", "user"]), "8264666c61676475736572");
        check(json!(0), "00");
        check(json!(23), "17");
        check(json!(24), "1818");
        check(json!(1000), "1903e8");
        check(json!(-1), "20");
        check(json!(-1000), "3903e7");
        check(json!(1.0), "01");
        check(json!(-2.0), "21");
        check(json!(1.5), "f93e00");
        check(json!(0.1), "fb3fb999999999999a");
        check(json!(100000.5), "fa47c35040");
        check(json!(5.960464477539063e-8), "f90001");
        check(json!(1e300), "fb7e37e43c8800759c");
        check(json!(null), "f6");
        check(json!(true), "f5");
        check(json!({"bb": 1, "a": 2, "c": 3}), "a361610261630362626201");
        check(json!(18446744073709551616.0), "fa5f800000");
        check(json!(9223372036854775808.0), "1b8000000000000000");
        check(json!(-9223372036854775808.0), "3b7fffffffffffffff");
        check(json!(1e20), "fb4415af1d78b58c40");
        check(json!("é"), "62c3a9");
        check(json!(65504.5), "fa477fe080");
        check(json!(3e-5), "fb3eff75104d551d69");
    }
}
