//! Targeting rules compiled once, when a flag set loads, into a tree of typed
//! nodes. Evaluation walks the tree (see `eval`) and never looks at the JSON
//! text again: operator names are resolved, `var` paths split, literal
//! arrays and objects kept as constants, and `fractional` weights summed.
//!
//! Only the arguments an operator can ever evaluate are compiled, because the
//! reference evaluator only complains about an unknown operator when it
//! reaches it; an unknown operator anywhere it can be reached is a load error
//! here, which is the friendlier time to hear about it.

use serde_json::Value as Json;

use crate::fractional::Fractional;

/// A compiled JsonLogic expression.
#[derive(Debug)]
pub(crate) enum Node {
    /// A literal scalar.
    Lit(Lit),
    /// A literal array or object that holds no operation; evaluates to a
    /// borrowed reference, without allocating.
    Const(Json),
    /// An array literal with operations inside.
    Array(Box<[Node]>),
    /// `var` with a literal key: the common case, pre-split.
    Var(Box<VarNode>),
    If(Box<[Node]>),
    And(Box<[Node]>),
    Or(Box<[Node]>),
    /// `filter`, `map`, `all`, `some`, `none`: items and per-item logic.
    Iter(IterKind, Box<[Node]>),
    /// `reduce`: its initial value is taken as written, never evaluated.
    Reduce(Box<[Node]>, Json),
    /// Every other operator: arguments are evaluated, then the operator.
    Op(Op, Box<[Node]>),
    Fractional(Box<Fractional>),
}

#[derive(Debug)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(Box<str>),
}

#[derive(Debug)]
pub(crate) struct VarNode {
    pub(crate) key: VarKey,
    pub(crate) default: Option<Node>,
}

/// A `var` key known at load time.
#[derive(Debug)]
pub(crate) enum VarKey {
    /// `""` or `null`: the whole data object.
    Whole,
    /// A dotted path, split once.
    Path(Box<[Box<str>]>),
    /// A numeric key (an index into a list or string).
    Number(Json),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IterKind {
    Filter,
    Map,
    All,
    Some,
    None,
}

/// Operators whose arguments are all evaluated before they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    StrictEq,
    StrictNe,
    Lt,
    Gt,
    Le,
    Ge,
    Not,
    NotNot,
    Add,
    Mul,
    Sub,
    Div,
    Mod,
    In,
    Min,
    Max,
    Cat,
    Log,
    Var,
    Substr,
    Merge,
    Missing,
    MissingSome,
    StartsWith,
    EndsWith,
    SemVer,
}

impl Op {
    fn from_name(name: &str) -> Option<Op> {
        Some(match name {
            "==" => Op::Eq,
            "!=" => Op::Ne,
            "===" => Op::StrictEq,
            "!==" => Op::StrictNe,
            "<" => Op::Lt,
            ">" => Op::Gt,
            "<=" => Op::Le,
            ">=" => Op::Ge,
            "!" => Op::Not,
            "!!" => Op::NotNot,
            "+" => Op::Add,
            "*" => Op::Mul,
            "-" => Op::Sub,
            "/" => Op::Div,
            "%" => Op::Mod,
            "in" => Op::In,
            "min" => Op::Min,
            "max" => Op::Max,
            "cat" => Op::Cat,
            "log" => Op::Log,
            "var" => Op::Var,
            "substr" => Op::Substr,
            "merge" => Op::Merge,
            "missing" => Op::Missing,
            "missing_some" => Op::MissingSome,
            "starts_with" => Op::StartsWith,
            "ends_with" => Op::EndsWith,
            "sem_ver" => Op::SemVer,
            _ => return None,
        })
    }
}

/// Every operator name a rule may use, for error messages.
pub(crate) const OPERATORS: &str = "if, ?:, and, or, !, !!, ==, !=, ===, !==, <, <=, >, >=, +, -, *, /, %, \
     min, max, cat, substr, in, var, missing, missing_some, merge, map, filter, reduce, all, some, none, log, \
     starts_with, ends_with, sem_ver, fractional";

/// What is wrong with a rule, and where (a JSON pointer into the document).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CompileError {
    pub(crate) path: String,
    pub(crate) message: String,
    /// Refused by backout though the reference evaluator would evaluate
    /// it (see [`Problem::stricter_than_flagd`](crate::Problem)).
    pub(crate) stricter_than_flagd: bool,
}

/// Compiles a JsonLogic expression found at `path`.
pub(crate) fn compile(json: &Json, path: &str) -> Result<Node, CompileError> {
    match json {
        Json::Null => Ok(Node::Lit(Lit::Null)),
        Json::Bool(b) => Ok(Node::Lit(Lit::Bool(*b))),
        Json::Number(n) => Ok(Node::Lit(match n.as_i64() {
            Some(i) => Lit::Int(i),
            None => Lit::Float(n.as_f64().unwrap_or(f64::NAN)),
        })),
        Json::String(s) => Ok(Node::Lit(Lit::Str(s.as_str().into()))),
        Json::Array(items) => {
            if items.iter().all(is_constant) {
                return Ok(Node::Const(json.clone()));
            }
            let nodes = items
                .iter()
                .enumerate()
                .map(|(i, item)| compile(item, &format!("{path}/{i}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Node::Array(nodes.into()))
        }
        Json::Object(map) if map.len() == 1 => {
            let Some((name, raw)) = map.iter().next() else {
                return Ok(Node::Const(json.clone()));
            };
            compile_op(name, raw, &format!("{path}/{}", escape_pointer(name)))
        }
        Json::Object(_) => Ok(Node::Const(json.clone())),
    }
}

/// The literal weights of a `fractional` must be whole numbers of zero or
/// more. The reference evaluator quietly counts a negative weight as zero
/// and gives nothing at all for the whole split when one weight is a
/// fraction or not a number, so a typo would send everyone to the default;
/// backout refuses the flag instead. Weights are relative (backout itself
/// writes `["on", 50], ["off", 9950]` for 0.5 %), so large ones are fine.
/// A weight computed by an operation is checked when it is evaluated.
fn check_weights(args: &[Json], arg_path: &dyn Fn(usize) -> String) -> Result<(), CompileError> {
    // The first argument is the bucketing value unless it is a fraction.
    let skip = usize::from(!matches!(args.first(), Some(Json::Array(_))));
    for (i, fraction) in args.iter().enumerate().skip(skip) {
        let Json::Array(items) = fraction else {
            continue;
        };
        let Some(weight) = items.get(1) else { continue };
        let bad = match weight {
            Json::Number(n) => n.as_u64().is_none(),
            Json::Object(_) => false,
            _ => true,
        };
        if bad {
            let variant = items
                .first()
                .map_or_else(String::new, |v| format!(" of {v}"));
            return Err(CompileError {
                path: format!("{}/1", arg_path(i)),
                message: format!(
                    "the weight{variant} is {weight}; a fractional weight is a whole number of 0 or more, relative to the others (e.g. [\"on\", 5], [\"off\", 95])"
                ),
                stricter_than_flagd: true,
            });
        }
    }
    Ok(())
}

/// Whether evaluating `json` can only ever give back `json` itself.
fn is_constant(json: &Json) -> bool {
    match json {
        Json::Array(items) => items.iter().all(is_constant),
        Json::Object(map) => map.len() != 1,
        _ => true,
    }
}

fn compile_op(name: &str, raw: &Json, path: &str) -> Result<Node, CompileError> {
    let single;
    let (args, args_path): (&[Json], String) = match raw {
        Json::Array(items) => (items, path.to_owned()),
        other => {
            single = [other.clone()];
            (&single, String::new())
        }
    };
    // When the operand is not an array it stands for the one argument, and
    // its location is the operator's own location.
    let arg_path = |i: usize| {
        if args_path.is_empty() {
            path.to_owned()
        } else {
            format!("{args_path}/{i}")
        }
    };
    let compile_first = |n: usize| -> Result<Box<[Node]>, CompileError> {
        args.iter()
            .take(n)
            .enumerate()
            .map(|(i, a)| compile(a, &arg_path(i)))
            .collect::<Result<Vec<_>, _>>()
            .map(Into::into)
    };
    let compile_all = || compile_first(usize::MAX);

    Ok(match name {
        "if" | "?:" => Node::If(compile_all()?),
        "and" => Node::And(compile_all()?),
        "or" => Node::Or(compile_all()?),
        "filter" => Node::Iter(IterKind::Filter, compile_first(2)?),
        "map" => Node::Iter(IterKind::Map, compile_first(2)?),
        "all" => Node::Iter(IterKind::All, compile_first(2)?),
        "some" => Node::Iter(IterKind::Some, compile_first(2)?),
        "none" => Node::Iter(IterKind::None, compile_first(2)?),
        "reduce" => Node::Reduce(
            compile_first(2)?,
            args.get(2).cloned().unwrap_or(Json::Null),
        ),
        "var" if args.len() <= 2 && literal_key(args.first()).is_some() => {
            let key = literal_key(args.first()).unwrap_or(VarKey::Whole);
            let default = match args.get(1) {
                Some(d) => Some(compile(d, &arg_path(1))?),
                None => None,
            };
            Node::Var(Box::new(VarNode { key, default }))
        }
        "fractional" => {
            check_weights(args, &arg_path)?;
            Node::Fractional(Box::new(Fractional::compile(compile_all()?)))
        }
        "$ref" => {
            return Err(CompileError {
                path: path.to_owned(),
                message: format!(
                    "`$ref` to {raw} does not name an evaluator under `$evaluators`; define it there or fix the name"
                ),
                stricter_than_flagd: false,
            });
        }
        other => match Op::from_name(other) {
            Some(op) => Node::Op(op, compile_all()?),
            None => {
                return Err(CompileError {
                    path: path.to_owned(),
                    message: format!("unknown operator `{other}`; the operators are: {OPERATORS}"),
                    stricter_than_flagd: false,
                });
            }
        },
    })
}

/// A `var` key written as a literal, if it is one.
fn literal_key(arg: Option<&Json>) -> Option<VarKey> {
    match arg {
        None | Some(Json::Null) => Some(VarKey::Whole),
        Some(Json::String(s)) if s.is_empty() => Some(VarKey::Whole),
        Some(Json::String(s)) => Some(VarKey::Path(s.split('.').map(Into::into).collect())),
        Some(n @ (Json::Number(_) | Json::Bool(_))) => Some(VarKey::Number(n.clone())),
        _ => None,
    }
}

/// Escapes a key for use in a JSON pointer (RFC 6901).
pub(crate) fn escape_pointer(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_error(rule: Json, path: &str, needle: &str) {
        let err = compile(&rule, "/t").expect_err("rule should not compile");
        assert_eq!(err.path, path, "{rule}");
        assert!(
            err.message.contains(needle),
            "{} does not mention {needle}",
            err.message
        );
    }

    fn check_const(rule: Json, constant: bool) {
        let node = compile(&rule, "/t").expect("compiles");
        assert_eq!(matches!(node, Node::Const(_)), constant, "{rule}");
    }

    #[test]
    fn unknown_operators_are_located() {
        check_error(json!({"nope": [1]}), "/t/nope", "unknown operator `nope`");
        check_error(
            json!({"if": [true, {"bogus": 1}, "b"]}),
            "/t/if/1/bogus",
            "`bogus`",
        );
        check_error(json!({"and": {"x": []}}), "/t/and/x", "`x`");
        check_error(json!({"$ref": "missing"}), "/t/$ref", "$evaluators");
        check_error(json!([1, {"a/b": 1}]), "/t/1/a~1b", "`a/b`");
    }

    #[test]
    fn unreachable_arguments_are_not_compiled() {
        assert!(compile(&json!({"filter": [[1], true, {"bogus": 1}]}), "/t").is_ok());
        assert!(compile(&json!({"reduce": [[1], true, {"bogus": 1}]}), "/t").is_ok());
    }

    #[test]
    fn constants() {
        check_const(json!([1, "a", [true]]), true);
        check_const(json!({"a": 1, "b": {"c": 1}}), true);
        check_const(json!({}), true);
        check_const(json!([{"var": "x"}]), false);
    }
}
