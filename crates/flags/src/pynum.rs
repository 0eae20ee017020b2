//! Number formatting and parsing exactly as the reference evaluator does it.
//!
//! The reference evaluator (`openfeature-flagd-core`) runs JsonLogic in
//! Python, so a number that becomes text goes through Python's rules: `cat`
//! formats floats with `'%.15g'`, a number returned as a variant name goes
//! through `str()` (the shortest round-trip form), and a string used as a
//! number goes through `float()`. Agreement with the reference means copying
//! those rules, so they live here, apart from the evaluator.

/// Formats like Python's `'%.15g' % x` (used by JsonLogic's `cat` and string
/// comparisons).
pub(crate) fn format_g15(x: f64) -> String {
    if let Some(special) = special(x) {
        return special.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // `{:.14e}` rounds correctly to 15 significant digits and tells us the
    // exponent after rounding, which is what `%g` bases its choice on.
    let sci = format!("{x:.14e}");
    let (mantissa, exp) = split_exp(&sci);
    if (-4..15).contains(&exp) {
        let decimals = (14 - exp).max(0) as usize;
        trim_zeros(format!("{x:.decimals$}"))
    } else {
        format!("{}e{}", trim_zeros(mantissa.to_owned()), exp_suffix(exp))
    }
}

/// Formats like Python's `repr(x)` / `str(x)` for a float: the shortest text
/// that reads back as the same float, in fixed notation between 1e-4 and 1e16.
pub(crate) fn format_repr(x: f64) -> String {
    if let Some(special) = special(x) {
        return special.to_owned();
    }
    if x == 0.0 {
        return if x.is_sign_negative() {
            "-0.0".into()
        } else {
            "0.0".into()
        };
    }
    let sci = format!("{x:e}");
    let (mantissa, exp) = split_exp(&sci);
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if negative { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat(point.unsigned_abs() as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            let (int, frac) = digits.split_at(point as usize);
            format!("{int}.{frac}")
        };
        format!("{sign}{body}")
    } else {
        let (first, rest) = digits.split_at(1);
        let mantissa = if rest.is_empty() {
            first.to_owned()
        } else {
            format!("{first}.{rest}")
        };
        format!("{sign}{mantissa}e{}", exp_suffix(exp))
    }
}

/// Parses like Python's `float(text)`, with JsonLogic's twist that the bare
/// spellings of infinity are rejected (they are not numbers in JavaScript).
/// `None` means "not a number" (the caller turns it into NaN).
pub(crate) fn parse_float(text: &str) -> Option<f64> {
    let trimmed = text.trim();
    let lower = trimmed.to_ascii_lowercase();
    if matches!(lower.as_str(), "inf" | "-inf" | "+inf") {
        return None;
    }
    let unsigned = lower.trim_start_matches(['+', '-']);
    if matches!(unsigned, "infinity" | "nan") {
        return lower.parse().ok();
    }
    if !trimmed
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-' | b'_'))
    {
        return None;
    }
    if trimmed.contains('_') {
        // Python accepts single underscores between digits ("1_000").
        let bytes = trimmed.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'_' {
                let before = i.checked_sub(1).and_then(|j| bytes.get(j));
                let after = bytes.get(i + 1);
                if !before.is_some_and(u8::is_ascii_digit) || !after.is_some_and(u8::is_ascii_digit)
                {
                    return None;
                }
            }
        }
        return trimmed.replace('_', "").parse().ok();
    }
    trimmed.parse().ok()
}

fn special(x: f64) -> Option<&'static str> {
    if x.is_nan() {
        Some("nan")
    } else if x == f64::INFINITY {
        Some("inf")
    } else if x == f64::NEG_INFINITY {
        Some("-inf")
    } else {
        None
    }
}

fn split_exp(sci: &str) -> (&str, i32) {
    match sci.split_once('e') {
        Some((mantissa, exp)) => (mantissa, exp.parse().unwrap_or(0)),
        None => (sci, 0),
    }
}

fn exp_suffix(exp: i32) -> String {
    let sign = if exp < 0 { '-' } else { '+' };
    format!("{sign}{:02}", exp.unsigned_abs())
}

fn trim_zeros(mut text: String) -> String {
    if text.contains('.') {
        while text.ends_with('0') {
            text.pop();
        }
        if text.ends_with('.') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_g15(x: f64, expected: &str) {
        assert_eq!(format_g15(x), expected, "'%.15g' % {x:?}");
    }

    fn check_repr(x: f64, expected: &str) {
        assert_eq!(format_repr(x), expected, "repr({x:?})");
    }

    fn check_parse(text: &str, expected: Option<f64>) {
        let got = parse_float(text);
        match (got, expected) {
            (Some(g), Some(e)) if e.is_nan() => assert!(g.is_nan(), "float({text:?})"),
            _ => assert_eq!(got, expected, "float({text:?})"),
        }
    }

    #[test]
    fn g15() {
        check_g15(1.0, "1");
        check_g15(1.5, "1.5");
        check_g15(0.1 + 0.2, "0.3");
        check_g15(-2.25, "-2.25");
        check_g15(1e15, "1e+15");
        check_g15(123456789012345.0, "123456789012345");
        check_g15(0.0001, "0.0001");
        check_g15(0.00001, "1e-05");
        check_g15(1.5e-7, "1.5e-07");
        check_g15(1e100, "1e+100");
        check_g15(0.0, "0");
        check_g15(-0.0, "-0");
        check_g15(f64::NAN, "nan");
        check_g15(f64::NEG_INFINITY, "-inf");
        check_g15(2.0 / 3.0, "0.666666666666667");
    }

    #[test]
    fn repr() {
        check_repr(1.0, "1.0");
        check_repr(1.5, "1.5");
        check_repr(0.1 + 0.2, "0.30000000000000004");
        check_repr(1e16, "1e+16");
        check_repr(1234567890123456.0, "1234567890123456.0");
        check_repr(0.0001, "0.0001");
        check_repr(0.00001, "1e-05");
        check_repr(-1.5e-7, "-1.5e-07");
        check_repr(1.25e22, "1.25e+22");
        check_repr(0.0, "0.0");
        check_repr(-0.0, "-0.0");
        check_repr(f64::INFINITY, "inf");
        check_repr(100.0, "100.0");
    }

    #[test]
    fn parse() {
        check_parse("1", Some(1.0));
        check_parse(" 2.5 ", Some(2.5));
        check_parse("1_000", Some(1000.0));
        check_parse("1__0", None);
        check_parse("_1", None);
        check_parse("1e3", Some(1000.0));
        check_parse(".5", Some(0.5));
        check_parse("5.", Some(5.0));
        check_parse("inf", None);
        check_parse("-INF", None);
        check_parse("infinity", Some(f64::INFINITY));
        check_parse("-Infinity", Some(f64::NEG_INFINITY));
        check_parse("nan", Some(f64::NAN));
        check_parse("abc", None);
        check_parse("", None);
        check_parse("0x10", None);
    }
}
