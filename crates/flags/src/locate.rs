//! Finding where a JSON pointer points in JSON text, so that a problem in a
//! flag file can be reported as `file:line:column` and not only as a path.
//!
//! A small scanner over text already known to be valid JSON: it tracks the
//! path of the value it is in and stops at the first value whose path is the
//! pointer. serde_json keeps no positions, and a full span-keeping parser
//! would be more than this one job needs.

/// The 1-based line and column where the value at `pointer` starts, if the
/// text has one there.
pub(crate) fn locate(text: &str, pointer: &str) -> Option<(usize, usize)> {
    let target: Vec<String> = pointer
        .split('/')
        .skip(1)
        .filter(|s| !s.is_empty() || pointer != "/")
        .map(|s| s.replace("~1", "/").replace("~0", "~"))
        .collect();
    let mut scanner = Scanner {
        chars: text.char_indices().peekable(),
        line: 1,
        column: 1,
    };
    let mut path = Vec::new();
    scanner.value(&mut path, &target)
}

struct Scanner<'t> {
    chars: std::iter::Peekable<std::str::CharIndices<'t>>,
    line: usize,
    column: usize,
}

impl Scanner<'_> {
    fn bump(&mut self) -> Option<char> {
        let (_, c) = self.chars.next()?;
        if c == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(c)
    }

    fn skip_ws(&mut self) {
        while self.chars.peek().is_some_and(|(_, c)| c.is_whitespace()) {
            self.bump();
        }
    }

    fn string(&mut self) -> Option<String> {
        self.bump(); // opening quote
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Some(out),
                '\\' => {
                    let escaped = self.bump()?;
                    match escaped {
                        'n' => out.push('\n'),
                        't' => out.push('\t'),
                        'r' => out.push('\r'),
                        'b' => out.push('\u{8}'),
                        'f' => out.push('\u{c}'),
                        'u' => {
                            let hex: String = (0..4).filter_map(|_| self.bump()).collect();
                            out.push(
                                u32::from_str_radix(&hex, 16)
                                    .ok()
                                    .and_then(char::from_u32)
                                    .unwrap_or('\u{fffd}'),
                            );
                        }
                        other => out.push(other),
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// Scans one value; returns the target's position if it is found in it.
    fn value(&mut self, path: &mut Vec<String>, target: &[String]) -> Option<(usize, usize)> {
        self.skip_ws();
        if path.as_slice() == target {
            return Some((self.line, self.column));
        }
        let inside = target.starts_with(path);
        match self.chars.peek().map(|(_, c)| *c)? {
            '{' => {
                self.bump();
                loop {
                    self.skip_ws();
                    match self.chars.peek().map(|(_, c)| *c)? {
                        '}' => {
                            self.bump();
                            return None;
                        }
                        ',' => {
                            self.bump();
                        }
                        '"' => {
                            let key = self.string()?;
                            self.skip_ws();
                            self.bump(); // colon
                            path.push(key);
                            let found = if inside {
                                self.value(path, target)
                            } else {
                                self.value(path, &[])
                            };
                            path.pop();
                            if found.is_some() {
                                return found;
                            }
                        }
                        _ => return None,
                    }
                }
            }
            '[' => {
                self.bump();
                let mut index = 0;
                loop {
                    self.skip_ws();
                    match self.chars.peek().map(|(_, c)| *c)? {
                        ']' => {
                            self.bump();
                            return None;
                        }
                        ',' => {
                            self.bump();
                            index += 1;
                        }
                        _ => {
                            path.push(index.to_string());
                            let found = if inside {
                                self.value(path, target)
                            } else {
                                self.value(path, &[])
                            };
                            path.pop();
                            if found.is_some() {
                                return found;
                            }
                        }
                    }
                }
            }
            '"' => {
                self.string();
                None
            }
            _ => {
                while self
                    .chars
                    .peek()
                    .is_some_and(|(_, c)| !matches!(c, ',' | '}' | ']') && !c.is_whitespace())
                {
                    self.bump();
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "{\n  \"flags\": {\n    \"a/b\": {\"state\": \"ON\",\n      \"targeting\": {\"if\": [true, {\"nope\": 1}]}},\n    \"c\": 1\n  }\n}";

    fn check(pointer: &str, expected: Option<(usize, usize)>) {
        assert_eq!(locate(DOC, pointer), expected, "{pointer}");
    }

    #[test]
    fn finds_values() {
        check("", Some((1, 1)));
        check("/flags", Some((2, 12)));
        check("/flags/a~1b/state", Some((3, 22)));
        check("/flags/a~1b/targeting/if/1/nope", Some((4, 43)));
        check("/flags/c", Some((5, 10)));
        check("/flags/missing", None);
        check("/flags/a~1b/targeting/if/7", None);
    }
}
