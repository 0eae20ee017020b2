//! A small rule language for the command line, compiled to flagd targeting.
//!
//! ```text
//! country == jp and userAgent contains "Mac OS" => 5% on
//! email ends-with "@example.com" => on
//! version semver >= 2.0.0 or tier in [gold, platinum] => 25% new, 75% old
//! 10% on
//! ```
//!
//! A rule is an optional condition, `=>`, and what to serve: a variant, or a
//! percentage split (`5% on` gives the rest to the default variant). Several
//! rules are tried in order; the first whose condition holds wins. Splits
//! use flagd's `fractional`, so the same user always lands in the same
//! bucket.

use serde_json::{Value as Json, json};

/// A parsed rule: `when` (a JsonLogic condition, or `None` for everyone) and
/// what to serve.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub when: Option<Json>,
    pub serve: Serve,
}

/// What a rule serves.
#[derive(Debug, Clone, PartialEq)]
pub enum Serve {
    Variant(String),
    /// Variants and percentages (summing to at most 100; the rest goes to
    /// the default variant).
    Split(Vec<(String, f64)>),
}

/// A rule that does not parse, with the column (1-based) where it went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule `{rule}`, column {column}: {message}")]
pub struct RuleError {
    pub rule: String,
    pub column: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64, String),
    Sym(&'static str),
}

fn lex(src: &str) -> Result<Vec<(Tok, usize)>, (usize, String)> {
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
        } else if c == '"' || c == '\'' {
            let mut s = String::new();
            i += 1;
            loop {
                match chars.get(i) {
                    None => return Err((col, format!("unterminated string; close it with {c}"))),
                    Some(&q) if q == c => break,
                    Some('\\') if chars.get(i + 1).is_some() => {
                        s.push(chars[i + 1]);
                        i += 2;
                        continue;
                    }
                    Some(&ch) => s.push(ch),
                }
                i += 1;
            }
            i += 1;
            out.push((Tok::Str(s), col));
        } else if let Some(sym) = [
            "=>", "==", "!=", "<=", ">=", "<", ">", "%", ",", "(", ")", "[", "]",
        ]
        .into_iter()
        .find(|s| chars[i..].starts_with(&s.chars().collect::<Vec<_>>()))
        {
            i += sym.len();
            out.push((Tok::Sym(sym), col));
        } else if c.is_ascii_digit()
            || (c == '-' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            let start = i;
            i += 1;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '-' | '+'))
            {
                i += 1;
            }
            let text: String = chars[start..i].iter().collect();
            match text.parse::<f64>() {
                Ok(n) => out.push((Tok::Num(n, text), col)),
                // Versions like 1.2.3 read as words.
                Err(_) => out.push((Tok::Word(text), col)),
            }
        } else if c.is_alphanumeric() || matches!(c, '_' | '$' | '.' | '@' | '-') {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric()
                    || matches!(chars[i], '_' | '$' | '.' | '@' | '-' | '/' | ':'))
            {
                i += 1;
            }
            out.push((Tok::Word(chars[start..i].iter().collect()), col));
        } else {
            return Err((col, format!("unexpected `{c}`")));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn col(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(_, c)| *c)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn err<T>(&self, message: impl Into<String>) -> Result<T, (usize, String)> {
        Err((self.col(), message.into()))
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w == word)
    }

    fn or(&mut self) -> Result<Json, (usize, String)> {
        let mut terms = vec![self.and()?];
        while self.is_word("or") {
            self.pos += 1;
            terms.push(self.and()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            json!({"or": terms})
        })
    }

    fn and(&mut self) -> Result<Json, (usize, String)> {
        let mut terms = vec![self.not()?];
        while self.is_word("and") {
            self.pos += 1;
            terms.push(self.not()?);
        }
        Ok(if terms.len() == 1 {
            terms.remove(0)
        } else {
            json!({"and": terms})
        })
    }

    fn not(&mut self) -> Result<Json, (usize, String)> {
        if self.is_word("not") {
            self.pos += 1;
            return Ok(json!({"!": [self.not()?]}));
        }
        if self.peek() == Some(&Tok::Sym("(")) {
            self.pos += 1;
            let inner = self.or()?;
            if self.next() != Some(Tok::Sym(")")) {
                self.pos -= 1;
                return self.err("expected `)`");
            }
            return Ok(inner);
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Json, (usize, String)> {
        let attr = match self.next() {
            Some(Tok::Word(w)) => w,
            _ => {
                self.pos -= 1;
                return self.err("expected an attribute name, like `country` or `user.plan`");
            }
        };
        let var = json!({"var": attr});
        let op = match self.next() {
            Some(Tok::Sym(s @ ("==" | "!=" | "<" | "<=" | ">" | ">="))) => s.to_owned(),
            Some(Tok::Word(w))
                if matches!(
                    w.as_str(),
                    "contains" | "starts-with" | "ends-with" | "in" | "semver"
                ) =>
            {
                w
            }
            _ => {
                self.pos -= 1;
                return self.err(format!(
                    "expected an operator after `{attr}`: == != < <= > >= contains starts-with ends-with in semver"
                ));
            }
        };
        Ok(match op.as_str() {
            "contains" => json!({"in": [self.value()?, var]}),
            "starts-with" => json!({"starts_with": [var, self.value()?]}),
            "ends-with" => json!({"ends_with": [var, self.value()?]}),
            "in" => json!({"in": [var, self.list()?]}),
            "semver" => {
                let cmp =
                    match self.next() {
                        Some(Tok::Sym(s @ ("==" | "!=" | "<" | "<=" | ">" | ">="))) => {
                            if s == "==" { "=" } else { s }
                        }
                        Some(Tok::Word(w)) if w == "^" || w == "~" => {
                            if w == "^" {
                                "^"
                            } else {
                                "~"
                            }
                        }
                        _ => {
                            self.pos -= 1;
                            return self.err(
                                "expected a comparison after `semver`, like `semver >= 1.2.0`",
                            );
                        }
                    };
                let version = match self.value()? {
                    Json::String(s) => s,
                    other => other.to_string(),
                };
                json!({"sem_ver": [var, cmp, version]})
            }
            _ => json!({op: [var, self.value()?]}),
        })
    }

    fn value(&mut self) -> Result<Json, (usize, String)> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(Json::String(s)),
            Some(Tok::Num(n, text)) => {
                Ok(text.parse::<i64>().map_or_else(|_| json!(n), Json::from))
            }
            Some(Tok::Word(w)) if w == "true" => Ok(Json::Bool(true)),
            Some(Tok::Word(w)) if w == "false" => Ok(Json::Bool(false)),
            Some(Tok::Word(w)) if w == "null" => Ok(Json::Null),
            Some(Tok::Word(w)) if !matches!(w.as_str(), "and" | "or" | "not") => {
                Ok(Json::String(w))
            }
            Some(Tok::Sym("[")) => {
                self.pos -= 1;
                self.list()
            }
            _ => {
                self.pos -= 1;
                self.err("expected a value: a word, a \"quoted string\", a number, true or false")
            }
        }
    }

    fn list(&mut self) -> Result<Json, (usize, String)> {
        if self.next() != Some(Tok::Sym("[")) {
            self.pos -= 1;
            return self.err("expected a list like [gold, platinum]");
        }
        let mut items = Vec::new();
        if self.peek() == Some(&Tok::Sym("]")) {
            self.pos += 1;
            return Ok(Json::Array(items));
        }
        loop {
            items.push(self.value()?);
            match self.next() {
                Some(Tok::Sym(",")) => continue,
                Some(Tok::Sym("]")) => return Ok(Json::Array(items)),
                _ => {
                    self.pos -= 1;
                    return self.err("expected `,` or `]` in the list");
                }
            }
        }
    }

    fn serve(&mut self) -> Result<Serve, (usize, String)> {
        let mut parts = Vec::new();
        loop {
            match (self.next(), self.peek().cloned()) {
                (Some(Tok::Num(pct, _)), Some(Tok::Sym("%"))) => {
                    self.pos += 1;
                    let variant = match self.next() {
                        Some(Tok::Word(w)) | Some(Tok::Str(w)) => w,
                        _ => {
                            self.pos -= 1;
                            return self.err(format!(
                                "expected the variant that gets {pct}%, like `{pct}% on`"
                            ));
                        }
                    };
                    if !(0.0..=100.0).contains(&pct) {
                        return self.err(format!("{pct}% is not a percentage between 0 and 100"));
                    }
                    parts.push((variant, pct));
                }
                (Some(Tok::Word(w)) | Some(Tok::Str(w)), _) if parts.is_empty() => {
                    if self.peek().is_some() {
                        return self.err(format!("unexpected text after variant `{w}`"));
                    }
                    return Ok(Serve::Variant(w));
                }
                _ => {
                    self.pos -= 1;
                    return self
                        .err("expected what to serve: a variant name, or a split like `5% on`");
                }
            }
            match self.next() {
                None => break,
                Some(Tok::Sym(",")) => continue,
                Some(_) => {
                    self.pos -= 1;
                    return self.err("expected `,` between parts of the split");
                }
            }
        }
        let total: f64 = parts.iter().map(|(_, p)| p).sum();
        if total > 100.0 + 1e-9 {
            return self.err(format!("the split adds up to {total}%, more than 100%"));
        }
        Ok(Serve::Split(parts))
    }
}

/// Parses one rule.
pub fn parse_rule(src: &str) -> Result<Rule, RuleError> {
    let fail = |(column, message): (usize, String)| RuleError {
        rule: src.to_owned(),
        column,
        message,
    };
    let toks = lex(src).map_err(fail)?;
    let arrow = toks.iter().position(|(t, _)| *t == Tok::Sym("=>"));
    let end = src.chars().count() + 1;
    let (when, serve_toks) = match arrow {
        Some(at) => {
            let mut p = Parser {
                toks: toks[..at].to_vec(),
                pos: 0,
                end: toks[at].1,
            };
            if p.toks.is_empty() {
                return Err(fail((1, "expected a condition before `=>`".into())));
            }
            let cond = p.or().map_err(fail)?;
            if p.pos < p.toks.len() {
                return Err(fail((p.col(), "expected `and`, `or` or `=>`".into())));
            }
            (Some(cond), toks[at + 1..].to_vec())
        }
        None => (None, toks),
    };
    let mut p = Parser {
        toks: serve_toks,
        pos: 0,
        end,
    };
    let serve = p.serve().map_err(fail)?;
    Ok(Rule { when, serve })
}

/// Compiles rules, tried in order, into flagd targeting. `default` is the
/// flag's default variant, which receives the rest of a partial split.
pub fn compile(rules: &[Rule], default: Option<&str>) -> Result<Json, String> {
    let mut branches = Vec::new();
    let mut otherwise = Json::Null;
    for (i, rule) in rules.iter().enumerate() {
        let serve = serve_json(&rule.serve, default)?;
        match &rule.when {
            Some(cond) => {
                branches.push(cond.clone());
                branches.push(serve);
            }
            None if i + 1 == rules.len() => otherwise = serve,
            None => {
                return Err(format!(
                    "rule {} has no condition, so the rules after it never apply; put it last",
                    i + 1
                ));
            }
        }
    }
    if branches.is_empty() {
        return Ok(match otherwise {
            Json::String(s) => json!({"if": [true, s]}),
            other => other,
        });
    }
    branches.push(otherwise);
    Ok(json!({"if": branches}))
}

fn serve_json(serve: &Serve, default: Option<&str>) -> Result<Json, String> {
    match serve {
        Serve::Variant(v) => Ok(Json::String(v.clone())),
        Serve::Split(parts) => {
            // Weights are integers: hundredths of a percent when needed.
            let scale = if parts.iter().all(|(_, p)| p.fract() == 0.0) {
                1.0
            } else {
                100.0
            };
            let mut fractions: Vec<Json> = parts
                .iter()
                .map(|(v, p)| json!([v, (p * scale).round() as i64]))
                .collect();
            let total: f64 = parts.iter().map(|(_, p)| p).sum();
            let rest = ((100.0 - total) * scale).round() as i64;
            if rest > 0 {
                let Some(default) = default else {
                    return Err(format!(
                        "the split covers {total}%; say who gets the other {}% (e.g. `, {}% off`) or set a default variant",
                        100.0 - total,
                        100.0 - total
                    ));
                };
                fractions.push(json!([default, rest]));
            }
            Ok(json!({"fractional": fractions}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(rules: &[&str], default: Option<&str>, expected: Json) {
        let parsed: Vec<Rule> = rules
            .iter()
            .map(|r| parse_rule(r).expect("parses"))
            .collect();
        assert_eq!(compile(&parsed, default), Ok(expected), "{rules:?}");
    }

    fn check_error(rule: &str, column: usize, needle: &str) {
        let err = parse_rule(rule).expect_err("should not parse");
        assert_eq!(err.column, column, "{err}");
        assert!(
            err.message.contains(needle),
            "`{}` should mention `{needle}`",
            err.message
        );
    }

    #[test]
    fn rules() {
        check(
            &["country == jp and userAgent contains \"Mac OS\" => 5% on"],
            Some("off"),
            json!({"if": [{"and": [{"==": [{"var": "country"}, "jp"]}, {"in": ["Mac OS", {"var": "userAgent"}]}]},
                          {"fractional": [["on", 5], ["off", 95]]}, null]}),
        );
        check(
            &["10% on"],
            Some("off"),
            json!({"fractional": [["on", 10], ["off", 90]]}),
        );
        check(
            &["0.5% on"],
            Some("off"),
            json!({"fractional": [["on", 50], ["off", 9950]]}),
        );
        check(&["on"], None, json!({"if": [true, "on"]}));
        check(
            &[
                "tier in [gold, \"platinum plus\"] => on",
                "age >= 18 => 50% a, 50% b",
                "off",
            ],
            None,
            json!({"if": [{"in": [{"var": "tier"}, ["gold", "platinum plus"]]}, "on",
                          {">=": [{"var": "age"}, 18]}, {"fractional": [["a", 50], ["b", 50]]}, "off"]}),
        );
        check(
            &["version semver >= 2.0.0 or not (beta == true) => new"],
            None,
            json!({"if": [{"or": [{"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}, {"!": [{"==": [{"var": "beta"}, true]}]}]}, "new", null]}),
        );
        check(
            &["email ends-with @example.com => staff"],
            None,
            json!({"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "staff", null]}),
        );
    }

    #[test]
    fn errors_point_at_the_column() {
        check_error(
            "country jp => on",
            9,
            "expected an operator after `country`",
        );
        check_error("country == => on", 12, "expected a value");
        check_error("country == jp => 5%", 20, "variant that gets 5%");
        check_error("country == \"jp => on", 12, "unterminated");
        check_error("=> on", 1, "condition before");
        check_error("60% a, 50% b", 13, "more than 100%");
        check_error("a == 1 b => on", 8, "`and`, `or` or `=>`");
    }

    #[test]
    fn compile_errors() {
        let rules = [parse_rule("5% on").expect("parses")];
        assert!(
            compile(&rules, None)
                .expect_err("needs a default")
                .contains("other 95%")
        );
        let rules = [
            parse_rule("on").expect("parses"),
            parse_rule("x == 1 => off").expect("parses"),
        ];
        assert!(
            compile(&rules, None)
                .expect_err("unreachable")
                .contains("put it last")
        );
    }
}
