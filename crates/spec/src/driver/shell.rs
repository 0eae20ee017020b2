//! Commands written as one string, and how release values reach them.
//!
//! A release's `--artifact`, `--set KEY=VALUE` and `--version` come from
//! whoever holds an operator token, so they must reach the process as data,
//! never as shell syntax. A command string is therefore read in one of two
//! ways when the spec is loaded:
//!
//! - **Words.** A string with no shell syntax beyond quoting
//!   (`./app --port {port} --name "{config.name}"`) is split into words the
//!   way `sh` would split it, and run without a shell. A placeholder fills
//!   in part of one word, so no value can add, remove or split arguments.
//! - **Shell script.** A string that needs a shell (`;`, `&&`, pipes,
//!   redirections, `$VAR`, globs, a builtin such as `exec`) is run by
//!   `sh -c`, but no value is pasted into the script. Each placeholder
//!   becomes a quoted reference to a positional parameter (`"${1}"`), and
//!   the values follow the script as arguments:
//!   `sh -c 'echo "${1}" > out' sh 'x; id'`. The shell expands a parameter
//!   once and never parses its value, so quotes, `;`, `$(...)` or newlines
//!   in it are just characters.
//!
//! The scanner below only has to know, at each placeholder, whether it sits
//! outside quotes, inside `"..."` or inside `'...'`, to write the reference
//! so that it expands as one field. A mistake there could at worst leave a
//! reference unexpanded or split a value into fields; it cannot turn a
//! value into code, because the value is not in the script.

use std::collections::BTreeMap;

use super::template::{Part, RenderError, Template, TemplateScope, TemplateVars, Var};

/// A command string, read once.
pub(super) enum Parsed {
    /// No shell needed: one template per word.
    Words(Vec<Template>),
    /// `sh -c` with the values as positional parameters.
    Shell(ShellScript),
}

/// A command string run by `sh -c`, with its placeholders replaced by
/// references to positional parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShellScript {
    /// The string as written.
    template: Template,
    /// What `sh -c` runs: the string with `"${N}"` where the placeholders
    /// were.
    script: String,
    /// The value of `${N}` is `params[N - 1]`.
    params: Vec<Var>,
}

impl ShellScript {
    /// The string as written in the spec.
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// The script `sh -c` runs, without any value in it.
    pub fn script(&self) -> &str {
        &self.script
    }

    /// The placeholder behind each positional parameter: `${N}` is
    /// `params()[N - 1]`.
    pub fn params(&self) -> &[Var] {
        &self.params
    }

    /// `["sh", "-c", SCRIPT, "sh", VALUE…]`: the script never changes with
    /// the values, which come after it as separate arguments.
    pub fn render(&self, vars: &TemplateVars<'_>) -> Result<Vec<String>, RenderError> {
        let mut argv = Vec::with_capacity(4 + self.params.len());
        argv.extend(["sh", "-c", &self.script, "sh"].map(String::from));
        for var in &self.params {
            argv.push(var.value(vars)?.into_owned());
        }
        Ok(argv)
    }
}

/// Reads a command string: split into words when no shell is needed,
/// otherwise a shell script with its values passed as parameters.
pub(super) fn parse(text: &str, scope: TemplateScope) -> Result<Parsed, String> {
    let whole = Template::parse(text, scope)?;
    let scan = scan(whole.parts())?;
    if !scan.needs_shell
        && let Some(words) = shlex::split(text)
        && let Some(first) = words.first()
        && !needs_shell_to_start(first)
    {
        let words = words
            .iter()
            .map(|w| Template::parse(w, scope))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(Parsed::Words(words));
    }
    let mut script = String::with_capacity(text.len() + 8 * scan.quotes.len());
    let mut params: Vec<Var> = Vec::new();
    let mut index: BTreeMap<&Var, usize> = BTreeMap::new();
    let mut quotes = scan.quotes.iter();
    for part in whole.parts() {
        match part {
            Part::Text(t) => script.push_str(t),
            Part::Var(var) => {
                let n = *index.entry(var).or_insert_with(|| {
                    params.push(var.clone());
                    params.len()
                });
                // `scan` found one quote context per placeholder.
                let quote = quotes.next().copied().unwrap_or(Quote::None);
                script.push_str(&reference(n, quote));
            }
        }
    }
    Ok(Parsed::Shell(ShellScript {
        template: whole,
        script,
        params,
    }))
}

/// The text that expands to parameter `n` as exactly one field where the
/// placeholder stood: outside quotes it is quoted, inside double quotes it
/// already is one field, and inside single quotes (where nothing expands)
/// the quote is closed around it and opened again.
fn reference(n: usize, quote: Quote) -> String {
    match quote {
        Quote::None => format!("\"${{{n}}}\""),
        Quote::Double => format!("${{{n}}}"),
        Quote::Single => format!("'\"${{{n}}}\"'"),
    }
}

/// Words that only a shell can run: reserved words and builtins with no
/// program of the same name, and variable assignments (`RUST_LOG=info ./app`).
fn needs_shell_to_start(word: &str) -> bool {
    const SHELL_ONLY: &[&str] = &[
        "!", "{", "}", ".", "alias", "bg", "break", "case", "cd", "command", "continue", "do",
        "done", "elif", "else", "esac", "eval", "exec", "exit", "export", "fc", "fg", "fi", "for",
        "getopts", "hash", "if", "in", "jobs", "local", "read", "readonly", "return", "set",
        "shift", "source", "then", "times", "trap", "type", "ulimit", "umask", "unalias", "unset",
        "until", "wait", "while",
    ];
    SHELL_ONLY.contains(&word) || word.contains('=')
}

/// Where a placeholder stands in shell syntax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Quote {
    None,
    Double,
    Single,
}

/// What the scanner found: whether the string needs a shell, and the quote
/// context of each placeholder in order.
struct Scan {
    needs_shell: bool,
    quotes: Vec<Quote>,
}

/// The shell constructs the scanner keeps track of, innermost last.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    /// Outside quotes, at the top level or inside `$(...)` (with its open
    /// parentheses counted) or backquotes.
    Plain {
        parens: u32,
    },
    Backquote,
    Single,
    Double,
    /// `${...}`: a parameter expansion, whose word has rules of its own.
    Param,
    /// `$((...))`: arithmetic, where some shells evaluate values as
    /// expressions.
    Arith {
        parens: u32,
    },
}

/// One character of the string, or a placeholder.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Item {
    Char(char),
    Var,
}

const SPECIAL: &str = ";&|<>()*?[~\n$`";

fn scan(parts: &[Part]) -> Result<Scan, String> {
    let mut items = Vec::new();
    for part in parts {
        match part {
            Part::Text(t) => items.extend(t.chars().map(Item::Char)),
            Part::Var(_) => items.push(Item::Var),
        }
    }
    let char_at = |i: usize| match items.get(i) {
        Some(Item::Char(c)) => Some(*c),
        _ => None,
    };
    let mut stack = vec![Ctx::Plain { parens: 0 }];
    let mut out = Scan {
        needs_shell: false,
        quotes: Vec::new(),
    };
    let mut heredoc = false;
    let mut comment = false;
    let mut word_start = true;
    let mut i = 0;
    while i < items.len() {
        let ctx = stack.last().copied().unwrap_or(Ctx::Plain { parens: 0 });
        let Item::Char(c) = items[i] else {
            let quote = match ctx {
                _ if comment => Quote::None,
                _ if heredoc => {
                    return Err(
                        "a placeholder after a here-document (`<<`) cannot be passed safely; \
                         give the value to the command through `env:` instead"
                            .into(),
                    );
                }
                Ctx::Plain { .. } | Ctx::Backquote => Quote::None,
                Ctx::Double => Quote::Double,
                Ctx::Single => Quote::Single,
                Ctx::Param => {
                    return Err("a placeholder inside `${...}` cannot be passed safely; \
                         move it out of the expansion or use `env:`"
                        .into());
                }
                Ctx::Arith { .. } => {
                    return Err("a placeholder inside `$((...))` could be evaluated as \
                         arithmetic; give the value through `env:` and check it in the script"
                        .into());
                }
            };
            out.quotes.push(quote);
            word_start = false;
            i += 1;
            continue;
        };
        let next = char_at(i + 1);
        if comment {
            comment = c != '\n';
            word_start = true;
            i += 1;
            continue;
        }
        if c == '\\' {
            if items.get(i + 1) == Some(&Item::Var) {
                return Err(
                    "a placeholder right after `\\` would be escaped; take the backslash out"
                        .into(),
                );
            }
            i += 2;
            word_start = false;
            continue;
        }
        match ctx {
            Ctx::Single => {
                if c == '\'' {
                    stack.pop();
                }
            }
            Ctx::Double => match c {
                '"' => {
                    stack.pop();
                }
                '$' | '`' => {
                    out.needs_shell = true;
                    i += open_expansion(&mut stack, c, next, char_at(i + 2));
                }
                _ => {}
            },
            Ctx::Param => match c {
                '}' => {
                    stack.pop();
                }
                '\'' => stack.push(Ctx::Single),
                '"' => stack.push(Ctx::Double),
                '$' | '`' => i += open_expansion(&mut stack, c, next, char_at(i + 2)),
                _ => {}
            },
            Ctx::Arith { parens } => match c {
                '(' => set_parens(&mut stack, parens + 1),
                ')' if parens == 0 && next == Some(')') => {
                    stack.pop();
                    i += 1;
                }
                ')' => set_parens(&mut stack, parens.saturating_sub(1)),
                '$' | '`' => i += open_expansion(&mut stack, c, next, char_at(i + 2)),
                _ => {}
            },
            Ctx::Plain { .. } | Ctx::Backquote => {
                if SPECIAL.contains(c) || (c == '#' && word_start) {
                    out.needs_shell = true;
                }
                match c {
                    '\'' => stack.push(Ctx::Single),
                    '"' => stack.push(Ctx::Double),
                    '#' if word_start => comment = true,
                    '`' if ctx == Ctx::Backquote => {
                        stack.pop();
                    }
                    '$' | '`' => i += open_expansion(&mut stack, c, next, char_at(i + 2)),
                    '<' if next == Some('<') => heredoc = true,
                    '(' => {
                        if let Ctx::Plain { parens } = ctx
                            && stack.len() > 1
                        {
                            set_parens(&mut stack, parens + 1);
                        }
                    }
                    ')' => match ctx {
                        Ctx::Plain { parens: 0 } if stack.len() > 1 => {
                            stack.pop();
                        }
                        Ctx::Plain { parens } if stack.len() > 1 => {
                            set_parens(&mut stack, parens - 1);
                        }
                        _ => {}
                    },
                    _ => {}
                }
            }
        }
        word_start = c.is_whitespace() || ";&|()".contains(c);
        i += 1;
    }
    match stack.last() {
        Some(Ctx::Single) => Err("the command has a `'` that is never closed".into()),
        Some(Ctx::Double) => Err("the command has a `\"` that is never closed".into()),
        _ => Ok(out),
    }
}

/// Opens what `$` or a backquote starts, and says how many characters
/// after the current one that took.
fn open_expansion(stack: &mut Vec<Ctx>, c: char, next: Option<char>, after: Option<char>) -> usize {
    match (c, next, after) {
        ('`', _, _) => {
            stack.push(Ctx::Backquote);
            0
        }
        ('$', Some('('), Some('(')) => {
            stack.push(Ctx::Arith { parens: 0 });
            2
        }
        ('$', Some('('), _) => {
            stack.push(Ctx::Plain { parens: 0 });
            1
        }
        ('$', Some('{'), _) => {
            stack.push(Ctx::Param);
            1
        }
        _ => 0,
    }
}

fn set_parens(stack: &mut [Ctx], n: u32) {
    if let Some(Ctx::Plain { parens } | Ctx::Arith { parens }) = stack.last_mut() {
        *parens = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The words, or `sh -c` with the script, for `text`.
    fn check(text: &str, expected: Result<&[&str], &str>) {
        let got = parse(text, TemplateScope::Replica).map(|p| match p {
            Parsed::Words(w) => w.iter().map(|t| t.as_str().to_string()).collect::<Vec<_>>(),
            Parsed::Shell(s) => vec!["sh".into(), "-c".into(), s.script.clone()],
        });
        match (got, expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{text}"),
            (Err(e), Err(fragment)) => assert!(e.contains(fragment), "{text}: {e}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn plain_commands_become_words() {
        check("./app", Ok(&["./app"]));
        check(
            "./app --port {port} --v {version}",
            Ok(&["./app", "--port", "{port}", "--v", "{version}"]),
        );
        check(
            "'/opt/my app/bin' --name \"{config.name}\" 'a b'",
            Ok(&["/opt/my app/bin", "--name", "{config.name}", "a b"]),
        );
        check("./app --db={config.db}", Ok(&["./app", "--db={config.db}"]));
        check("./app a\\ b", Ok(&["./app", "a b"]));
        check("./app {{x}}", Ok(&["./app", "{{x}}"]));
        check("  ./app   x  ", Ok(&["./app", "x"]));
    }

    #[test]
    fn shell_syntax_keeps_the_shell_and_passes_values_as_parameters() {
        check(
            "echo {artifact} > out; exec ./app --port {port}",
            Ok(&[
                "sh",
                "-c",
                "echo \"${1}\" > out; exec ./app --port \"${2}\"",
            ]),
        );
        check(
            "exec ./app {port}",
            Ok(&["sh", "-c", "exec ./app \"${1}\""]),
        );
        check(
            "RUST_LOG=info ./app {port}",
            Ok(&["sh", "-c", "RUST_LOG=info ./app \"${1}\""]),
        );
        check(
            "echo \"v={version} home=$HOME\"",
            Ok(&["sh", "-c", "echo \"v=${1} home=$HOME\""]),
        );
        check(
            "echo 'v={version}' | cat",
            Ok(&["sh", "-c", "echo 'v='\"${1}\"'' | cat"]),
        );
        // The same placeholder twice is one parameter.
        check(
            "a {artifact} && b {artifact} {version}",
            Ok(&["sh", "-c", "a \"${1}\" && b \"${1}\" \"${2}\""]),
        );
        check(
            "x=$(echo \"{artifact}\" | tr a b) && ./app \"$x\"",
            Ok(&["sh", "-c", "x=$(echo \"${1}\" | tr a b) && ./app \"$x\""]),
        );
        check(
            "echo \"$(printf '%s' '{artifact}')\" >f",
            Ok(&["sh", "-c", "echo \"$(printf '%s' ''\"${1}\"'')\" >f"]),
        );
        check(
            "awk '{print $1}' f | ./app {port}",
            Ok(&["sh", "-c", "awk '{print $1}' f | ./app \"${1}\""]),
        );
        check(
            "./app # it's {artifact}",
            Ok(&["sh", "-c", "./app # it's \"${1}\""]),
        );
        check("./app *.conf", Ok(&["sh", "-c", "./app *.conf"]));
    }

    #[test]
    fn placeholders_where_no_quoting_helps_are_refused() {
        check("echo ${X:-{artifact}}", Err("inside `${...}`"));
        check("echo $(( {config.n} + 1 ))", Err("inside `$((...))`"));
        check("cat <<EOF > f\n{artifact}\nEOF", Err("here-document"));
        check("./app \\{artifact}", Err("right after `\\`"));
        check("./app 'unclosed {port}", Err("never closed"));
        check("./app \"unclosed", Err("never closed"));
    }
}
