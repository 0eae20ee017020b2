//! Evaluation of compiled rules.
//!
//! Semantics follow the reference evaluator operator by operator, including
//! the corners JsonLogic leaves to its host language (Python here): which
//! arguments are evaluated, what `var` does with numeric keys, how `%`
//! rounds. Where the reference raises, evaluation returns a [`Fault`], and
//! the caller turns it into an `ERROR` resolution with the caller's default.

use std::rc::Rc;

use serde_json::{Map, Value as Json};
use smallvec::SmallVec;

use crate::context::Context;
use crate::fractional::{self, Fractional};
use crate::rule::{IterKind, Lit, Node, Op, VarKey, VarNode};
use crate::sem_ver;
use crate::value::{self, Cmp, Num, Val, to_num, to_text, truthy};

/// What a rule is evaluated against.
pub(crate) struct Env<'a> {
    pub(crate) flag_key: &'a str,
    pub(crate) ctx: &'a Context,
    /// Seconds since the Unix epoch, exposed as `$flagd.timestamp`.
    pub(crate) now: i64,
}

/// Evaluation failed the way the reference evaluator raises an exception.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fault(pub(crate) String);

type Res<'a> = Result<Val<'a>, Fault>;

/// The data `var` reads: the context at the top, an item inside `map` and
/// friends, the accumulator pair inside `reduce`.
#[derive(Clone, Copy)]
pub(crate) enum Scope<'s, 'a> {
    Root,
    Item(&'s Val<'a>),
    /// Accumulator and current item. One reference keeps `Scope` two words
    /// wide, so it travels in registers on every call.
    Reduce(&'s [Val<'a>; 2]),
}

type Args<'a> = SmallVec<[Val<'a>; 4]>;

pub(crate) fn eval<'a>(node: &'a Node, env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    match node {
        Node::Lit(lit) => Ok(match lit {
            Lit::Null => Val::Null,
            Lit::Bool(b) => Val::Bool(*b),
            Lit::Int(i) => Val::Int(*i),
            Lit::Float(f) => Val::Float(*f),
            Lit::Str(s) => Val::Str(s),
        }),
        Node::Const(json) => Ok(Val::from_json(json)),
        Node::Array(nodes) => eval_array(nodes, env, scope),
        Node::Var(var) => eval_var(var, env, scope),
        Node::If(args) => eval_if(args, env, scope),
        Node::And(args) => eval_and_or(args, false, env, scope),
        Node::Or(args) => eval_and_or(args, true, env, scope),
        Node::Iter(kind, args) => eval_iter(*kind, args, env, scope),
        Node::Reduce(args, init) => eval_reduce(args, init, env, scope),
        Node::Op(op, nodes) => eval_op(*op, nodes, env, scope),
        Node::Fractional(f) => eval_fractional(f, env, scope),
    }
}

/// Evaluates the cheapest and commonest nodes (literals, a plain
/// top-level `var`) in place; `None` for anything else. Operators try this
/// on their arguments before recursing: most of a rule's nodes are leaves,
/// and evaluating them here saves a call and the copying of its result.
#[inline(always)]
fn leaf<'a>(node: &'a Node, env: &Env<'a>, scope: Scope<'_, 'a>) -> Option<Val<'a>> {
    match node {
        Node::Lit(Lit::Str(s)) => Some(Val::Str(s)),
        Node::Lit(Lit::Int(i)) => Some(Val::Int(*i)),
        Node::Lit(Lit::Bool(b)) => Some(Val::Bool(*b)),
        Node::Var(var) if var.default.is_none() && matches!(scope, Scope::Root) => match &var.key {
            VarKey::Path(props) if props.len() == 1 => Some(root_attribute(&props[0], env)),
            _ => None,
        },
        _ => None,
    }
}

/// [`leaf`] if it applies, else [`eval`].
#[inline(always)]
fn eval_arg<'a>(node: &'a Node, env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    match leaf(node, env, scope) {
        Some(v) => Ok(v),
        None => eval(node, env, scope),
    }
}

/// A top-level attribute, as `walk` would find it with a one-step path.
#[inline(always)]
fn root_attribute<'a>(name: &str, env: &Env<'a>) -> Val<'a> {
    match name {
        "targetingKey" => env.ctx.targeting_key.as_deref().map_or(Val::Null, Val::Str),
        "$flagd" => flagd_object(env),
        _ => env
            .ctx
            .attributes
            .get(name)
            .map_or(Val::Null, Val::from_json),
    }
}

/// Evaluates an operator's arguments, then the operator. Kept out of
/// `eval` so that `eval`'s own stack frame stays small: it recurses for
/// every node.
#[inline(never)]
fn eval_op<'a>(op: Op, nodes: &'a [Node], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    if nodes.len() <= 3 {
        // Most operators take one to three arguments: evaluate them into a
        // fixed array on the stack, the hot path for comparisons.
        let mut args = [Val::Null, Val::Null, Val::Null];
        for (slot, node) in args.iter_mut().zip(nodes.iter()) {
            match leaf(node, env, scope) {
                Some(v) => *slot = v,
                None => *slot = eval(node, env, scope)?,
            }
        }
        return apply(op, &args[..nodes.len()], env, scope);
    }
    let mut args = Args::with_capacity(nodes.len());
    for node in nodes.iter() {
        args.push(eval_arg(node, env, scope)?);
    }
    apply(op, &args, env, scope)
}

/// `and` (stops at the first falsy value) and `or` (at the first truthy
/// one); both return the value they stopped at.
#[inline(never)]
fn eval_and_or<'a>(args: &'a [Node], or: bool, env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let mut current = Val::Null;
    for arg in args {
        current = eval_arg(arg, env, scope)?;
        if truthy(&current) == or {
            break;
        }
    }
    Ok(current)
}

#[inline(never)]
fn eval_array<'a>(nodes: &'a [Node], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let items = nodes
        .iter()
        .map(|n| eval(n, env, scope))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Val::List(items.into()))
}

#[inline(never)]
fn eval_if<'a>(args: &'a [Node], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let mut index = 0;
    while index + 1 < args.len() {
        if truthy(&eval_arg(&args[index], env, scope)?) {
            return eval_arg(&args[index + 1], env, scope);
        }
        index += 2;
    }
    match args.get(index) {
        Some(last) => eval_arg(last, env, scope),
        None => Ok(Val::Null),
    }
}

#[inline(never)]
fn eval_iter<'a>(kind: IterKind, args: &'a [Node], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let empty = || Val::List(Rc::from(Vec::new()));
    let (items_node, logic) = match (args.first(), args.get(1)) {
        (Some(items), logic) if logic.is_some() || kind == IterKind::Map => (items, logic),
        _ => {
            return Ok(match kind {
                IterKind::Filter | IterKind::Map => empty(),
                IterKind::All | IterKind::Some => Val::Bool(false),
                IterKind::None => Val::Bool(true),
            });
        }
    };
    let list = eval(items_node, env, scope)?;
    let Some(items) = list.items() else {
        return Ok(match kind {
            IterKind::Filter | IterKind::Map => empty(),
            IterKind::All | IterKind::Some => Val::Bool(false),
            IterKind::None => Val::Bool(true),
        });
    };
    let run = |item: &Val<'a>| -> Res<'a> {
        match logic {
            Some(logic) => eval(logic, env, Scope::Item(item)),
            None => Ok(Val::Null),
        }
    };
    match kind {
        IterKind::Filter => {
            let mut kept = Vec::new();
            for item in items.iter() {
                if truthy(&run(&item)?) {
                    kept.push(item);
                }
            }
            Ok(Val::List(kept.into()))
        }
        IterKind::Map => {
            let mapped = items
                .iter()
                .map(|item| run(&item))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Val::List(mapped.into()))
        }
        IterKind::All => {
            if items.len() == 0 {
                return Ok(Val::Bool(false));
            }
            for item in items.iter() {
                if !truthy(&run(&item)?) {
                    return Ok(Val::Bool(false));
                }
            }
            Ok(Val::Bool(true))
        }
        IterKind::Some | IterKind::None => {
            for item in items.iter() {
                if truthy(&run(&item)?) {
                    return Ok(Val::Bool(kind == IterKind::Some));
                }
            }
            Ok(Val::Bool(kind == IterKind::None))
        }
    }
}

#[inline(never)]
fn eval_reduce<'a>(
    args: &'a [Node],
    init: &'a Json,
    env: &Env<'a>,
    scope: Scope<'_, 'a>,
) -> Res<'a> {
    let Some(items_node) = args.first() else {
        return Ok(Val::Null);
    };
    let list = eval(items_node, env, scope)?;
    let init = Val::from_json(init);
    let Some(items) = list.items() else {
        return Ok(init);
    };
    let mut pair = [init, Val::Null];
    for item in items.iter() {
        pair[1] = item;
        pair[0] = match args.get(1) {
            Some(logic) => eval(logic, env, Scope::Reduce(&pair))?,
            None => Val::Null,
        };
    }
    let [acc, _] = pair;
    Ok(acc)
}

#[inline(never)]
fn eval_var<'a>(var: &'a VarNode, env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let default = match &var.default {
        Some(node) => eval(node, env, scope)?,
        None => Val::Null,
    };
    let found = match &var.key {
        VarKey::Whole => Some(whole(env, scope)),
        VarKey::Path(props) => walk(props.iter().map(|p| &**p), env, scope),
        VarKey::Number(n) => numeric_key(&Val::from_json(n), scope)?,
    };
    Ok(found.filter(|v| !v.is_null()).unwrap_or(default))
}

/// Where a `var` walk currently stands.
enum Cursor<'a> {
    Root,
    Flagd,
    Reduce(Val<'a>, Val<'a>),
    At(Val<'a>),
}

/// Walks a dotted path from the scope's data. `None` means "use the
/// default"; a present `null` also does, at the end.
fn walk<'p, 'a>(
    props: impl Iterator<Item = &'p str>,
    env: &Env<'a>,
    scope: Scope<'_, 'a>,
) -> Option<Val<'a>> {
    let mut cursor = match scope {
        Scope::Root => Cursor::Root,
        Scope::Item(v) => Cursor::At(v.clone()),
        Scope::Reduce([acc, cur]) => Cursor::Reduce(acc.clone(), cur.clone()),
    };
    for prop in props {
        cursor = match cursor {
            Cursor::Root => match prop {
                "targetingKey" => {
                    Cursor::At(env.ctx.targeting_key.as_deref().map_or(Val::Null, Val::Str))
                }
                "$flagd" => Cursor::Flagd,
                _ => Cursor::At(
                    env.ctx
                        .attributes
                        .get(prop)
                        .map_or(Val::Null, Val::from_json),
                ),
            },
            Cursor::Flagd => Cursor::At(match prop {
                "flagKey" => Val::Str(env.flag_key),
                "timestamp" => Val::Int(env.now),
                _ => Val::Null,
            }),
            Cursor::Reduce(acc, cur) => Cursor::At(match prop {
                "accumulator" => acc,
                "current" => cur,
                _ => Val::Null,
            }),
            Cursor::At(v) => match step(&v, prop) {
                Step::Next(next) => Cursor::At(next),
                Step::Done(done) => return Some(done),
                Step::Default => return None,
            },
        };
    }
    Some(match cursor {
        Cursor::Root => whole(env, Scope::Root),
        Cursor::Flagd => flagd_object(env),
        Cursor::Reduce(acc, cur) => reduce_object(&acc, &cur),
        Cursor::At(v) => v,
    })
}

enum Step<'a> {
    Next(Val<'a>),
    /// `length` ends the walk at once, whatever follows.
    Done(Val<'a>),
    Default,
}

fn step<'a>(v: &Val<'a>, prop: &str) -> Step<'a> {
    if let Some(s) = v.as_str() {
        if prop == "length" {
            return Step::Done(Val::Int(s.chars().count() as i64));
        }
        return match canonical_index(prop).and_then(|i| char_at(v, i)) {
            Some(c) => Step::Next(c),
            None => Step::Default,
        };
    }
    if let Some(items) = v.items() {
        if prop == "length" {
            return Step::Done(Val::Int(items.len() as i64));
        }
        return match canonical_index(prop).and_then(|i| items.get(i)) {
            Some(item) => Step::Next(item),
            None => Step::Default,
        };
    }
    match v {
        Val::Json(Json::Object(map)) => Step::Next(map.get(prop).map_or(Val::Null, Val::from_json)),
        Val::Owned(json) => match json.as_ref() {
            Json::Object(map) => Step::Next(
                map.get(prop)
                    .map_or(Val::Null, |j| Val::from_owned(j.clone())),
            ),
            _ => Step::Default,
        },
        _ => Step::Default,
    }
}

/// A list index written the one way Python's `str(int(prop))` writes it.
fn canonical_index(prop: &str) -> Option<usize> {
    let canonical = prop == "0"
        || (prop.starts_with(|c: char| ('1'..='9').contains(&c))
            && prop.bytes().all(|b| b.is_ascii_digit()));
    if canonical { prop.parse().ok() } else { None }
}

fn char_at<'a>(v: &Val<'a>, index: usize) -> Option<Val<'a>> {
    match v {
        Val::Str(s) => {
            let (start, c) = s.char_indices().nth(index)?;
            Some(Val::Str(&s[start..start + c.len_utf8()]))
        }
        Val::String(s) => s
            .chars()
            .nth(index)
            .map(|c| Val::String(c.to_string().into())),
        _ => None,
    }
}

/// `var` with a numeric key: an index into a list or string, nothing else.
fn numeric_key<'a>(key: &Val<'a>, scope: Scope<'_, 'a>) -> Result<Option<Val<'a>>, Fault> {
    let data = match scope {
        Scope::Item(v) => v.clone(),
        // The top-level data and reduce's pair are objects: numbers never
        // name one of their members.
        Scope::Root | Scope::Reduce(_) => return Ok(None),
    };
    let index = match key {
        Val::Bool(b) => i64::from(*b),
        Val::Int(i) => *i,
        Val::Float(f) if f.is_nan() => return Ok(None),
        Val::Float(f) if f.is_infinite() => {
            return Err(Fault(format!(
                "`var` cannot use {} as a list index",
                crate::pynum::format_repr(*f)
            )));
        }
        Val::Float(f) => {
            if f.fract() != 0.0 {
                return Ok(None);
            }
            *f as i64
        }
        _ => return Ok(None),
    };
    let Ok(index) = usize::try_from(index) else {
        return Ok(None);
    };
    if data.as_str().is_some() {
        return Ok(char_at(&data, index));
    }
    Ok(data.items().and_then(|items| items.get(index)))
}

/// The whole data object of a scope, as `{"var": ""}` returns it.
fn whole<'a>(env: &Env<'a>, scope: Scope<'_, 'a>) -> Val<'a> {
    match scope {
        Scope::Item(v) => v.clone(),
        Scope::Reduce([acc, cur]) => reduce_object(acc, cur),
        Scope::Root => {
            let mut map: Map<String, Json> = env.ctx.attributes.clone();
            map.insert("$flagd".into(), flagd_object(env).to_json());
            map.insert(
                "targetingKey".into(),
                env.ctx
                    .targeting_key
                    .clone()
                    .map_or(Json::Null, Json::String),
            );
            Val::Owned(Rc::new(Json::Object(map)))
        }
    }
}

fn flagd_object<'a>(env: &Env<'a>) -> Val<'a> {
    let mut map = Map::new();
    map.insert("flagKey".into(), Json::String(env.flag_key.to_owned()));
    map.insert("timestamp".into(), Json::from(env.now));
    Val::Owned(Rc::new(Json::Object(map)))
}

fn reduce_object<'a>(acc: &Val<'a>, cur: &Val<'a>) -> Val<'a> {
    let mut map = Map::new();
    map.insert("accumulator".into(), acc.to_json());
    map.insert("current".into(), cur.to_json());
    Val::Owned(Rc::new(Json::Object(map)))
}

/// `var` with a computed key.
fn var_dynamic<'a>(
    key: &Val<'a>,
    env: &Env<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Option<Val<'a>>, Fault> {
    if key.is_null() || key.as_str() == Some("") {
        return Ok(Some(whole(env, scope)));
    }
    if key.is_numeric() {
        return numeric_key(key, scope);
    }
    let text = to_text(key);
    Ok(walk(text.split('.'), env, scope))
}

fn arg<'v, 'a>(args: &'v [Val<'a>], i: usize) -> &'v Val<'a> {
    const NULL: Val<'static> = Val::Null;
    args.get(i).unwrap_or(&NULL)
}

#[inline(never)]
fn apply<'a>(op: Op, args: &[Val<'a>], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let a = arg(args, 0);
    let b = arg(args, 1);
    Ok(match op {
        Op::Eq => Val::Bool(value::loose_eq(a, b)),
        Op::Ne => Val::Bool(!value::loose_eq(a, b)),
        Op::StrictEq => Val::Bool(value::py_eq(a, b)),
        Op::StrictNe => Val::Bool(!value::py_eq(a, b)),
        Op::Lt => Val::Bool(between(Cmp::Lt, args)),
        Op::Gt => Val::Bool(between(Cmp::Gt, args)),
        Op::Le => Val::Bool(between(Cmp::Le, args)),
        Op::Ge => Val::Bool(between(Cmp::Ge, args)),
        Op::Not => Val::Bool(!truthy(a)),
        Op::NotNot => Val::Bool(truthy(a)),
        Op::Add => args
            .iter()
            .fold(Num::Int(0), |acc, v| add(acc, to_num(v)))
            .into_val(),
        Op::Mul => args
            .iter()
            .fold(Num::Int(1), |acc, v| mul(acc, to_num(v)))
            .into_val(),
        Op::Sub => {
            if b.is_null() {
                neg(to_num(a)).into_val()
            } else {
                add(to_num(a), neg(to_num(b))).into_val()
            }
        }
        Op::Div => div(to_num(a), to_num(b))?.into_val(),
        Op::Mod => rem(to_num(a), to_num(b))?.into_val(),
        Op::In => Val::Bool(contains(b, a)),
        Op::Min => extreme(args, std::cmp::Ordering::Less),
        Op::Max => extreme(args, std::cmp::Ordering::Greater),
        Op::Cat => {
            let mut out = String::new();
            for v in args {
                out.push_str(&to_text(v));
            }
            Val::String(out.into())
        }
        Op::Log => a.clone(),
        Op::Var => {
            if args.len() > 2 {
                return Err(Fault(format!(
                    "`var` takes a key and an optional default, not {} arguments",
                    args.len()
                )));
            }
            var_dynamic(a, env, scope)?
                .filter(|v| !v.is_null())
                .unwrap_or_else(|| b.clone())
        }
        Op::Substr => substr(a, b, args.get(2))?,
        Op::Merge => {
            let mut out = Vec::new();
            for v in args {
                match v.items() {
                    Some(items) => out.extend(items.iter()),
                    None => out.push(v.clone()),
                }
            }
            Val::List(out.into())
        }
        Op::Missing => {
            let keys: Vec<Val<'a>> = match args.first().and_then(Val::items) {
                Some(items) => items.iter().collect(),
                None => args.to_vec(),
            };
            Val::List(missing(&keys, env, scope)?.into())
        }
        Op::MissingSome => {
            let Some(items) = b.items() else {
                return Ok(Val::List(Rc::from(Vec::new())));
            };
            let keys: Vec<Val<'a>> = items.iter().collect();
            let absent = missing(&keys, env, scope)?;
            let present = keys.len() as i64 - absent.len() as i64;
            let enough = matches!(
                value::cmp_num(Num::Int(present), to_num(a)),
                Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal)
            );
            Val::List(if enough { Vec::new() } else { absent }.into())
        }
        Op::StartsWith | Op::EndsWith => match (args.len(), a.as_str(), b.as_str()) {
            (2, Some(s), Some(affix)) => Val::Bool(if op == Op::StartsWith {
                s.starts_with(affix)
            } else {
                s.ends_with(affix)
            }),
            _ => Val::Null,
        },
        Op::SemVer => sem_ver::sem_ver(args).map_or(Val::Null, Val::Bool),
    })
}

/// `<` and friends, with the optional third argument meaning "between".
fn between(op: Cmp, args: &[Val<'_>]) -> bool {
    let (a, b, c) = (arg(args, 0), arg(args, 1), arg(args, 2));
    if c.is_null() {
        value::compare(op, a, b)
    } else {
        value::compare(op, a, b) && value::compare(op, b, c)
    }
}

fn add(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_add(y)
            .map_or(Num::Float(x as f64 + y as f64), Num::Int),
        _ => Num::Float(a.as_f64() + b.as_f64()),
    }
}

fn mul(a: Num, b: Num) -> Num {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => x
            .checked_mul(y)
            .map_or(Num::Float(x as f64 * y as f64), Num::Int),
        _ => Num::Float(a.as_f64() * b.as_f64()),
    }
}

fn neg(a: Num) -> Num {
    match a {
        Num::Int(x) => x.checked_neg().map_or(Num::Float(-(x as f64)), Num::Int),
        Num::Float(f) => Num::Float(-f),
    }
}

fn is_zero(n: Num) -> bool {
    match n {
        Num::Int(x) => x == 0,
        Num::Float(f) => f == 0.0,
    }
}

fn div(a: Num, b: Num) -> Result<Num, Fault> {
    if is_zero(b) {
        return Err(Fault("division by zero in `/`".into()));
    }
    Ok(Num::Float(a.as_f64() / b.as_f64()))
}

/// Python's `%`: the result takes the sign of the divisor.
fn rem(a: Num, b: Num) -> Result<Num, Fault> {
    if is_zero(b) {
        return Err(Fault("division by zero in `%`".into()));
    }
    Ok(match (a, b) {
        (Num::Int(x), Num::Int(y)) => {
            let r = x.checked_rem(y).unwrap_or(0);
            Num::Int(if r != 0 && ((r < 0) != (y < 0)) {
                r + y
            } else {
                r
            })
        }
        _ => {
            let (x, y) = (a.as_f64(), b.as_f64());
            let m = x % y;
            Num::Float(if m != 0.0 {
                if (y < 0.0) != (m < 0.0) { m + y } else { m }
            } else {
                0.0_f64.copysign(y)
            })
        }
    })
}

/// `min` / `max`: the first value that no later value beats, kept as it was
/// (a boolean stays a boolean).
fn extreme<'a>(args: &[Val<'a>], wanted: std::cmp::Ordering) -> Val<'a> {
    let mut values = args.iter().map(value::to_numeric);
    let Some(mut best) = values.next() else {
        return Val::Float(f64::NAN);
    };
    for v in values {
        if value::cmp_num(to_num(&v), to_num(&best)) == Some(wanted) {
            best = v;
        }
    }
    best
}

/// `in`: membership in a list, or substring of a string.
fn contains(haystack: &Val<'_>, needle: &Val<'_>) -> bool {
    if let Some(items) = haystack.items() {
        return items
            .iter()
            .any(|item| value::same_object(&item, needle) || value::py_eq(&item, needle));
    }
    match haystack.as_str() {
        Some(s) => s.contains(to_text(needle).as_ref()),
        None => false,
    }
}

fn missing<'a>(
    keys: &[Val<'a>],
    env: &Env<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Vec<Val<'a>>, Fault> {
    let mut out = Vec::new();
    for key in keys {
        let found = var_dynamic(key, env, scope)?;
        let absent = match &found {
            None => true,
            Some(v) => v.is_null() || v.as_str() == Some(""),
        };
        if absent {
            out.push(key.clone());
        }
    }
    Ok(out)
}

/// Python's `int(x)` of a float: truncation, and an error for infinities.
fn py_int(n: Num, what: &str) -> Result<i64, Fault> {
    match n {
        Num::Int(i) => Ok(i),
        Num::Float(f) if f.is_infinite() => {
            Err(Fault(format!("`substr` {what} cannot be infinite")))
        }
        Num::Float(f) => Ok(f as i64),
    }
}

fn substr<'a>(string: &Val<'a>, index: &Val<'a>, length: Option<&Val<'a>>) -> Res<'a> {
    let text = to_text(string);
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len() as i64;
    let index = to_num(index);
    let start = if index.is_nan() {
        0
    } else if index.as_f64() < 0.0 {
        let back = neg(index);
        if back.as_f64() >= len as f64 {
            0
        } else {
            len - py_int(back, "start")?
        }
    } else {
        py_int(index, "start")?.min(len)
    };
    let end = match length {
        None | Some(Val::Null) => len,
        Some(length) => {
            let length = to_num(length);
            if length.is_nan() {
                start
            } else {
                let n = py_int(length, "length")?;
                if n < 0 {
                    (len + n).max(start)
                } else {
                    start.saturating_add(n)
                }
            }
        }
    };
    let (start, end) = (start.clamp(0, len) as usize, end.clamp(0, len) as usize);
    if end <= start {
        return Ok(Val::Str(""));
    }
    Ok(Val::String(
        chars[start..end].iter().collect::<String>().into(),
    ))
}

#[inline(never)]
fn eval_fractional<'a>(f: &'a Fractional, env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let Some(fixed) = &f.fixed else {
        let vals = f
            .args
            .iter()
            .map(|n| eval(n, env, scope))
            .collect::<Result<Vec<_>, _>>()?;
        return fractional_dynamic(&vals, env, scope);
    };
    if fixed.shorthand {
        let Some((first, second)) = shorthand_key(env, scope)? else {
            return Ok(Val::Null);
        };
        let Some(split) = &fixed.split else {
            return Ok(Val::Null);
        };
        let bucket = fractional::bucket_pair(&first, &second, split.total);
        return Ok(
            fractional::pick(split.fractions.iter().map(|(v, w)| (v, *w)), bucket)
                .map_or(Val::Null, Val::from_json),
        );
    }
    let Some(first) = f.args.first() else {
        return Ok(Val::Null);
    };
    let bucket_by = eval(first, env, scope)?;
    if bucket_by.items().is_some() {
        // The bucket-by expression produced a list: the reference then reads
        // every argument as a fraction, shorthand style.
        let mut vals = vec![bucket_by];
        for node in &f.args[1..] {
            vals.push(eval(node, env, scope)?);
        }
        return fractional_dynamic(&vals, env, scope);
    }
    if bucket_by.is_null() {
        return Ok(Val::Null);
    }
    let Some(split) = &fixed.split else {
        return Ok(Val::Null);
    };
    let bucket = fractional::bucket(&bucket_by, split.total);
    Ok(
        fractional::pick(split.fractions.iter().map(|(v, w)| (v, *w)), bucket)
            .map_or(Val::Null, Val::from_json),
    )
}

fn fractional_dynamic<'a>(vals: &[Val<'a>], env: &Env<'a>, scope: Scope<'_, 'a>) -> Res<'a> {
    let Some(first) = vals.first() else {
        return Ok(Val::Null);
    };
    let (bucket_by, fractions) = if first.items().is_some() {
        match shorthand_key(env, scope)? {
            Some((a, b)) => (Val::List(Rc::from(vec![a, b])), vals),
            None => return Ok(Val::Null),
        }
    } else {
        (first.clone(), &vals[1..])
    };
    if bucket_by.is_null() {
        return Ok(Val::Null);
    }
    let Some(split) = fractional::parse_split(fractions) else {
        return Ok(Val::Null);
    };
    let total = split.iter().map(|(_, w)| w).sum();
    let bucket = fractional::bucket(&bucket_by, total);
    Ok(fractional::pick(split, bucket).unwrap_or(Val::Null))
}

/// The shorthand bucket-by pair `[flagKey, targetingKey]`, read from the
/// scope's data as the reference does. `None` when there is no usable
/// targeting key.
fn shorthand_key<'a>(
    env: &Env<'a>,
    scope: Scope<'_, 'a>,
) -> Result<Option<(Val<'a>, Val<'a>)>, Fault> {
    match scope {
        Scope::Root => Ok(match env.ctx.targeting_key.as_deref() {
            Some(key) if !key.is_empty() => Some((Val::Str(env.flag_key), Val::Str(key))),
            _ => None,
        }),
        Scope::Reduce(_) => Ok(None),
        Scope::Item(item) => {
            let fault = || {
                Fault("`fractional` without a bucket-by value needs an object to read `targetingKey` from".into())
            };
            let get = |name: &str| -> Result<Option<Val<'a>>, Fault> {
                match item {
                    Val::Json(Json::Object(map)) => Ok(map.get(name).map(Val::from_json)),
                    Val::Owned(json) => match json.as_ref() {
                        Json::Object(map) => Ok(map.get(name).map(|j| Val::from_owned(j.clone()))),
                        _ => Err(fault()),
                    },
                    _ => Err(fault()),
                }
            };
            let key = match get("targetingKey")? {
                Some(k) if k.as_str().is_some_and(|s| !s.is_empty()) => k,
                _ => return Ok(None),
            };
            let flag_key = match get("$flagd")? {
                None => Val::Str(""),
                Some(flagd) => match step(&flagd, "flagKey") {
                    _ if !matches!(flagd.kind(), value::Kind::Dict) => return Err(fault()),
                    Step::Next(v) | Step::Done(v) => v,
                    Step::Default => Val::Null,
                },
            };
            // A dict's `.get("flagKey", "")` gives "" only when the key is absent.
            let flag_key = match (&flag_key, get_flagd_has_key(item)) {
                (Val::Null, false) => Val::Str(""),
                _ => flag_key,
            };
            Ok(Some((flag_key, key)))
        }
    }
}

/// Whether the item's `$flagd` object has a `flagKey` member at all.
fn get_flagd_has_key(item: &Val<'_>) -> bool {
    let flagd = match item {
        Val::Json(Json::Object(map)) => map.get("$flagd"),
        Val::Owned(json) => json.as_object().and_then(|m| m.get("$flagd")),
        _ => None,
    };
    flagd
        .and_then(Json::as_object)
        .is_some_and(|m| m.contains_key("flagKey"))
}

#[cfg(test)]
mod tests;
