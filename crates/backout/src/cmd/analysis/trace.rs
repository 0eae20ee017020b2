//! Reading a replay trace: JSON lines, rejected with line numbers.

use backout_judge::Window;
use miette::miette;
use std::io::Read;
use std::path::Path;

/// At most this many bad lines are listed; the rest are counted.
const MAX_LISTED: usize = 10;

/// Reads every tick of a trace, or every problem with it (up to
/// [`MAX_LISTED`]), each with its `file:line:col`.
pub fn read(path: &Path) -> miette::Result<Vec<Window>> {
    let (name, text) = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| miette!("cannot read the trace from standard input: {e}"))?;
        ("<stdin>".to_owned(), text)
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| {
            miette!(
                "cannot read trace {}: {e}; pass a JSON-lines file or - for standard input",
                path.display()
            )
        })?;
        (path.display().to_string(), text)
    };
    parse(&name, &text).map_err(|problems| miette!("{}", problems.join("\n")))
}

/// Parses trace text; `name` prefixes error locations.
pub fn parse(name: &str, text: &str) -> Result<Vec<Window>, Vec<String>> {
    let mut windows = Vec::new();
    let mut problems = Vec::new();
    let mut bad = 0usize;
    let mut last_t: Option<f64> = None;
    for (i, line) in text.lines().enumerate() {
        let number = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        let problem = match serde_json::from_str::<Window>(line) {
            Err(e) => Some(format!(
                "{name}:{number}:{}: malformed trace line: {}; expected {{\"t\": <seconds>, \"baseline\": {{\"requests\": N, \"errors\": N, \"latency_ms\": [...]}}, \"canary\": {{...}}}}",
                e.column(),
                // serde_json appends "at line 1 column N", which the prefix says better.
                e.to_string()
                    .rsplit_once(" at line ")
                    .map_or(e.to_string(), |(m, _)| m.to_owned())
            )),
            Ok(w) => check(&w, last_t)
                .map(|m| format!("{name}:{number}: {m}"))
                .or_else(|| {
                    last_t = Some(w.t);
                    windows.push(w);
                    None
                }),
        };
        if let Some(p) = problem {
            bad += 1;
            if problems.len() < MAX_LISTED {
                problems.push(p);
            }
        }
    }
    if bad > problems.len() {
        problems.push(format!("... and {} more bad lines", bad - problems.len()));
    }
    if problems.is_empty() {
        Ok(windows)
    } else {
        Err(problems)
    }
}

/// What serde cannot check: meaning.
fn check(w: &Window, last_t: Option<f64>) -> Option<String> {
    if !w.t.is_finite() || w.t < 0.0 {
        return Some(format!(
            "t must be seconds ≥ 0 since the canary started (got {})",
            w.t
        ));
    }
    if let Some(last) = last_t
        && w.t <= last
    {
        return Some(format!(
            "t = {} does not come after the previous line's t = {last}; one line per tick, in time order",
            w.t
        ));
    }
    for (group, g) in [("baseline", &w.baseline), ("canary", &w.canary)] {
        if g.errors > g.requests {
            return Some(format!(
                "{group}.errors ({}) is more than {group}.requests ({}); counts are for this tick only",
                g.errors, g.requests
            ));
        }
        if let Some(v) = g.latency_ms.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Some(format!(
                "{group}.latency_ms holds {v}; latencies are milliseconds ≥ 0"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<usize, &[&str]>) {
        match (parse("trace", text), expected) {
            (Ok(w), Ok(n)) => assert_eq!(w.len(), n, "{text}"),
            (Err(p), Err(want)) => {
                assert_eq!(p.len(), want.len(), "{text}: {p:?}");
                for (got, want) in p.iter().zip(want) {
                    assert!(
                        got.starts_with(want),
                        "{text}: `{got}` does not start with `{want}`"
                    );
                }
            }
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    const OK1: &str = r#"{"t": 1, "baseline": {"requests": 10, "errors": 1}, "canary": {"requests": 2, "errors": 0}}"#;
    const OK2: &str = r#"{"t": 2, "baseline": {"requests": 10, "errors": 1, "latency_ms": [3.5]}, "canary": {"requests": 2, "errors": 0}}"#;

    #[test]
    fn rejects_bad_lines_with_their_numbers() {
        check("", Ok(0));
        check(OK1, Ok(1));
        check(&format!("{OK1}\n\n{OK2}\n"), Ok(2));
        check(
            &format!("{OK1}\nnot json\n"),
            Err(&["trace:2:2: malformed trace line: expected ident;"]),
        );
        check(
            &format!("{OK2}\n{OK1}"),
            Err(&["trace:2: t = 1 does not come after"]),
        );
        check(
            r#"{"t": 1, "baseline": {"requests": 1, "errors": 3}, "canary": {"requests": 2, "errors": 0}}"#,
            Err(&["trace:1: baseline.errors (3) is more than baseline.requests (1)"]),
        );
        check(
            r#"{"t": 1, "baseline": {"requests": 1, "errors": 0}, "canary": {"requests": 2, "errors": 0, "latency_ms": [-1]}}"#,
            Err(&["trace:1: canary.latency_ms holds -1"]),
        );
        check(
            r#"{"t": 1, "baseline": {"requests": 1, "errors": 0}}"#,
            Err(&["trace:1:50: malformed trace line: missing field `canary`"]),
        );
        check(
            r#"{"t": 1, "baseline": {"requests": 1, "errors": 0, "latency": []}, "canary": {"requests": 2, "errors": 0}}"#,
            Err(&["trace:1:59: malformed trace line: unknown field `latency`"]),
        );
        check(
            r#"{"t": 1, "baseline": {"requests": -1, "errors": 0}, "canary": {"requests": 2, "errors": 0}}"#,
            Err(&["trace:1:36: malformed trace line: invalid value"]),
        );
        let many = "x\n".repeat(12);
        let mut want = vec!["trace:"; 10];
        want.push("... and 2 more bad lines");
        check(&many, Err(&want));
    }
}
