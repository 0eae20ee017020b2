//! The values a rule computes with, and JsonLogic's coercions between them.
//!
//! Values borrow from the compiled rule and from the evaluation context
//! wherever they can, so evaluating a rule that only reads attributes and
//! compares them allocates nothing. Lists that a rule builds (`map`, `merge`,
//! literal arrays holding operations) are reference counted, which also gives
//! them the identity that the reference evaluator's `==` checks for lists.
//!
//! The coercions follow the reference evaluator, which runs JsonLogic in
//! Python: booleans count as numbers, a string becomes a number through
//! `float()`, a float becomes text through `'%.15g'`.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::rc::Rc;

use serde_json::Value as Json;

use crate::pynum;

/// A value during evaluation.
///
/// The wide tag keeps every payload 8-byte aligned, so moving a value is a
/// few whole-word copies; with a one-byte tag the `Bool` payload sits at
/// offset 1 and copies split into unaligned pieces that stall the CPU's
/// store forwarding (measured: about a third of a rule's evaluation time).
#[derive(Clone, Debug)]
#[repr(u64)]
pub(crate) enum Val<'a> {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(&'a str),
    String(Rc<str>),
    /// An array or object borrowed from the context or from a literal.
    /// Never a scalar: scalars are always lifted into the variants above.
    Json(&'a Json),
    /// An array or object built during evaluation.
    Owned(Rc<Json>),
    /// A list built during evaluation.
    List(Rc<[Val<'a>]>),
}

/// The Python type a value has in the reference evaluator; `==` treats two
/// values of the same type differently from two of different types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Null,
    Bool,
    Int,
    Float,
    Str,
    List,
    Dict,
}

impl<'a> Val<'a> {
    /// Lifts a borrowed JSON value: scalars by value, containers by reference.
    pub(crate) fn from_json(json: &'a Json) -> Val<'a> {
        match json {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(*b),
            Json::Number(n) => number(n),
            Json::String(s) => Val::Str(s),
            Json::Array(_) | Json::Object(_) => Val::Json(json),
        }
    }

    /// Lifts an owned JSON value (rare paths: whole-context reads).
    pub(crate) fn from_owned(json: Json) -> Val<'a> {
        match json {
            Json::Null => Val::Null,
            Json::Bool(b) => Val::Bool(b),
            Json::Number(n) => number(&n),
            Json::String(s) => Val::String(s.into()),
            other => Val::Owned(Rc::new(other)),
        }
    }

    pub(crate) fn kind(&self) -> Kind {
        match self {
            Val::Null => Kind::Null,
            Val::Bool(_) => Kind::Bool,
            Val::Int(_) => Kind::Int,
            Val::Float(_) => Kind::Float,
            Val::Str(_) | Val::String(_) => Kind::Str,
            Val::List(_) => Kind::List,
            Val::Json(j) => json_kind(j),
            Val::Owned(j) => json_kind(j),
        }
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            Val::String(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    pub(crate) fn is_numeric(&self) -> bool {
        matches!(self, Val::Bool(_) | Val::Int(_) | Val::Float(_))
    }

    /// Items of a list value, or `None` for anything that is not a list.
    pub(crate) fn items(&self) -> Option<Items<'_, 'a>> {
        match self {
            Val::List(items) => Some(Items::Vals(items)),
            Val::Json(Json::Array(items)) => Some(Items::Json(items)),
            Val::Owned(json) => match json.as_ref() {
                Json::Array(items) => Some(Items::OwnedJson(items)),
                _ => None,
            },
            _ => None,
        }
    }

    /// Converts back to JSON (for results that leave the evaluator).
    pub(crate) fn to_json(&self) -> Json {
        match self {
            Val::Null => Json::Null,
            Val::Bool(b) => Json::Bool(*b),
            Val::Int(i) => Json::from(*i),
            Val::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Val::Str(s) => Json::String((*s).to_owned()),
            Val::String(s) => Json::String(s.to_string()),
            Val::Json(j) => (*j).clone(),
            Val::Owned(j) => j.as_ref().clone(),
            Val::List(items) => Json::Array(items.iter().map(Val::to_json).collect()),
        }
    }
}

/// Borrowed view over the items of a list, whatever its representation.
pub(crate) enum Items<'v, 'a> {
    Vals(&'v [Val<'a>]),
    Json(&'a [Json]),
    OwnedJson(&'v [Json]),
}

impl<'v, 'a> Items<'v, 'a> {
    pub(crate) fn len(&self) -> usize {
        match self {
            Items::Vals(v) => v.len(),
            Items::Json(v) => v.len(),
            Items::OwnedJson(v) => v.len(),
        }
    }

    /// The item at `index`, lifted into a value. Items of owned JSON are
    /// copied out, which only happens on rare paths.
    pub(crate) fn get(&self, index: usize) -> Option<Val<'a>> {
        match self {
            Items::Vals(v) => v.get(index).cloned(),
            Items::Json(v) => v.get(index).map(Val::from_json),
            Items::OwnedJson(v) => v.get(index).map(|j| Val::from_owned(j.clone())),
        }
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = Val<'a>> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }
}

fn json_kind(json: &Json) -> Kind {
    match json {
        Json::Null => Kind::Null,
        Json::Bool(_) => Kind::Bool,
        Json::Number(n) if n.is_f64() => Kind::Float,
        Json::Number(_) => Kind::Int,
        Json::String(_) => Kind::Str,
        Json::Array(_) => Kind::List,
        Json::Object(_) => Kind::Dict,
    }
}

/// JSON numbers keep Python's distinction: `1` is an int, `1.0` a float.
pub(crate) fn number<'a>(n: &serde_json::Number) -> Val<'a> {
    if let Some(i) = n.as_i64() {
        Val::Int(i)
    } else {
        // Integers beyond i64 are rare in flag files; they lose precision.
        Val::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// A number as JsonLogic arithmetic sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    pub(crate) fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    pub(crate) fn is_nan(self) -> bool {
        matches!(self, Num::Float(f) if f.is_nan())
    }

    pub(crate) fn into_val<'a>(self) -> Val<'a> {
        match self {
            Num::Int(i) => Val::Int(i),
            Num::Float(f) => Val::Float(f),
        }
    }
}

/// `to_number`: how a value reads as a number. Booleans are 0 and 1.
pub(crate) fn to_num(v: &Val<'_>) -> Num {
    match v {
        Val::Null => Num::Int(0),
        Val::Bool(b) => Num::Int(i64::from(*b)),
        Val::Int(i) => Num::Int(*i),
        Val::Float(f) => Num::Float(*f),
        Val::Str(s) => Num::Float(pynum::parse_float(s).unwrap_or(f64::NAN)),
        Val::String(s) => Num::Float(pynum::parse_float(s).unwrap_or(f64::NAN)),
        other => match other.items() {
            Some(items) if items.len() == 0 => Num::Int(0),
            Some(items) if items.len() == 1 => {
                items.get(0).map_or(Num::Float(f64::NAN), |v| to_num(&v))
            }
            _ => Num::Float(f64::NAN),
        },
    }
}

/// `to_number` that keeps the value itself when it is already numeric, as
/// `min` and `max` return the original value (a boolean stays a boolean).
pub(crate) fn to_numeric<'a>(v: &Val<'a>) -> Val<'a> {
    if v.is_numeric() {
        v.clone()
    } else {
        to_num(v).into_val()
    }
}

/// `to_string`: how a value reads as text.
pub(crate) fn to_text<'v>(v: &'v Val<'_>) -> Cow<'v, str> {
    match v {
        Val::Str(s) => Cow::Borrowed(s),
        Val::String(s) => Cow::Borrowed(s),
        Val::Null => Cow::Borrowed("null"),
        // Python checks `isinstance(value, int)` before `value is True`, and
        // bool is an int subclass, so booleans print capitalised.
        Val::Bool(true) => Cow::Borrowed("True"),
        Val::Bool(false) => Cow::Borrowed("False"),
        Val::Int(i) => Cow::Owned(i.to_string()),
        Val::Float(f) => Cow::Owned(pynum::format_g15(*f)),
        other => match other.items() {
            Some(items) => {
                let parts: Vec<String> = items
                    .iter()
                    .map(|item| to_text(&item).into_owned())
                    .collect();
                Cow::Owned(parts.join(","))
            }
            None => Cow::Borrowed("[object Object]"),
        },
    }
}

/// JsonLogic truthiness (`!!`): empty strings, empty lists, zero, NaN and
/// null are false; every object is true, even an empty one.
pub(crate) fn truthy(v: &Val<'_>) -> bool {
    match v {
        Val::Null => false,
        Val::Bool(b) => *b,
        Val::Int(i) => *i != 0,
        Val::Float(f) => *f != 0.0 && !f.is_nan(),
        Val::Str(s) => !s.is_empty(),
        Val::String(s) => !s.is_empty(),
        other => match other.items() {
            Some(items) => items.len() != 0,
            None => true,
        },
    }
}

/// Compares two numbers exactly, as Python does between ints and floats.
pub(crate) fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Float(x), Num::Float(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Float(y)) => cmp_int_float(x, y),
        (Num::Float(x), Num::Int(y)) => cmp_int_float(y, x).map(Ordering::reverse),
    }
}

fn cmp_int_float(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    let approx = (i as f64).partial_cmp(&f)?;
    if approx != Ordering::Equal || i.unsigned_abs() <= (1 << 53) {
        return Some(approx);
    }
    // Both are large and equal as floats; f is integral here, compare exactly.
    Some(i128::from(i).cmp(&(f as i128)))
}

/// Python's `a == b` between two values: deep, numeric across int, float and
/// bool, and never equal across other types.
pub(crate) fn py_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    if a.is_numeric() && b.is_numeric() {
        return cmp_num(to_num(a), to_num(b)) == Some(Ordering::Equal);
    }
    match (a.kind(), b.kind()) {
        (Kind::Null, Kind::Null) => true,
        (Kind::Str, Kind::Str) => a.as_str() == b.as_str(),
        (Kind::List, Kind::List) => match (a.items(), b.items()) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().zip(y.iter()).all(|(p, q)| py_eq(&p, &q))
            }
            _ => false,
        },
        (Kind::Dict, Kind::Dict) => json_eq(&a.to_json(), &b.to_json()),
        _ => false,
    }
}

/// Deep equality of JSON with Python's numeric rules (`1 == 1.0`).
fn json_eq(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => py_eq(&Val::from_json(a), &Val::from_json(b)),
    }
}

/// Whether two container values are the same object (Python's `is`), which
/// is what JsonLogic's loose `==` asks of two lists or two dicts.
pub(crate) fn same_object(a: &Val<'_>, b: &Val<'_>) -> bool {
    match (a, b) {
        (Val::Json(x), Val::Json(y)) => std::ptr::eq(*x, *y),
        (Val::Owned(x), Val::Owned(y)) => Rc::ptr_eq(x, y),
        (Val::List(x), Val::List(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

/// JsonLogic's loose `==`.
pub(crate) fn loose_eq(a: &Val<'_>, b: &Val<'_>) -> bool {
    let (ka, kb) = (a.kind(), b.kind());
    if ka == kb {
        return match ka {
            Kind::List | Kind::Dict => same_object(a, b),
            _ => py_eq(a, b),
        };
    }
    if a.is_numeric() {
        return cmp_num(to_num(a), to_num(b)) == Some(Ordering::Equal);
    }
    if b.is_numeric() {
        return cmp_num(to_num(a), to_num(b)) == Some(Ordering::Equal);
    }
    if ka == Kind::Null || kb == Kind::Null {
        return false;
    }
    match (ka, kb) {
        (Kind::Str, Kind::List | Kind::Dict) => a.as_str() == Some(to_text(b).as_ref()),
        (Kind::List | Kind::Dict, Kind::Str) => {
            to_text(a).as_ref() == b.as_str().unwrap_or_default()
        }
        _ => false,
    }
}

/// The comparison operators `<`, `<=`, `>`, `>=`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn holds(self, ord: Option<Ordering>) -> bool {
        match (self, ord) {
            (_, None) => false,
            (Cmp::Lt, Some(o)) => o == Ordering::Less,
            (Cmp::Le, Some(o)) => o != Ordering::Greater,
            (Cmp::Gt, Some(o)) => o == Ordering::Greater,
            (Cmp::Ge, Some(o)) => o != Ordering::Less,
        }
    }
}

/// One JsonLogic comparison: numbers if either side is numeric, text if
/// either side is text, numbers otherwise.
pub(crate) fn compare(op: Cmp, a: &Val<'_>, b: &Val<'_>) -> bool {
    if a.is_numeric() || b.is_numeric() {
        return op.holds(cmp_num(to_num(a), to_num(b)));
    }
    if let Some(sa) = a.as_str() {
        return op.holds(Some(sa.cmp(to_text(b).as_ref())));
    }
    if let Some(sb) = b.as_str() {
        return op.holds(Some(to_text(a).as_ref().cmp(sb)));
    }
    op.holds(cmp_num(to_num(a), to_num(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(json: &Json) -> Val<'_> {
        Val::from_json(json)
    }

    fn check_loose(a: Json, b: Json, expected: bool) {
        assert_eq!(loose_eq(&v(&a), &v(&b)), expected, "{a} == {b}");
    }

    fn check_text(a: Json, expected: &str) {
        assert_eq!(to_text(&v(&a)), expected, "to_string({a})");
    }

    fn check_cmp(op: Cmp, a: Json, b: Json, expected: bool) {
        assert_eq!(compare(op, &v(&a), &v(&b)), expected, "{a} {op:?} {b}");
    }

    use serde_json::json;

    #[test]
    fn loose_equality() {
        check_loose(json!(1), json!(1.0), true);
        check_loose(json!(1), json!("1"), true);
        check_loose(json!(true), json!(1), true);
        check_loose(json!(true), json!("1"), true);
        check_loose(json!("abc"), json!(true), false);
        check_loose(json!(null), json!(0), true);
        check_loose(json!(null), json!(""), false);
        check_loose(json!(null), json!(null), true);
        check_loose(json!("a,b"), json!(["a", "b"]), true);
        check_loose(json!([1]), json!([1]), false);
        check_loose(json!([]), json!(0), true);
        check_loose(json!({}), json!("[object Object]"), true);
        check_loose(json!(f64::NAN), json!("x"), false);
    }

    #[test]
    fn text() {
        check_text(json!(true), "True");
        check_text(json!(null), "null");
        check_text(json!(1.0), "1");
        check_text(json!(0.1), "0.1");
        check_text(json!([1, [2, null], "x"]), "1,2,null,x");
        check_text(json!({"a": 1}), "[object Object]");
    }

    #[test]
    fn comparisons() {
        check_cmp(Cmp::Lt, json!(1), json!(2), true);
        check_cmp(Cmp::Lt, json!("10"), json!(9), false);
        check_cmp(Cmp::Lt, json!("10"), json!("9"), true);
        check_cmp(Cmp::Lt, json!(true), json!(2), true);
        check_cmp(Cmp::Lt, json!("a"), json!(null), true);
        check_cmp(Cmp::Ge, json!(null), json!(null), true);
        check_cmp(Cmp::Gt, json!([3]), json!([2]), true);
        check_cmp(Cmp::Le, json!("abc"), json!(1), false);
        check_cmp(
            Cmp::Lt,
            json!(9007199254740993_i64),
            json!(9007199254740992.0),
            false,
        );
        check_cmp(
            Cmp::Gt,
            json!(9007199254740993_i64),
            json!(9007199254740992.0),
            true,
        );
    }

    #[test]
    fn truthiness() {
        for (j, expected) in [
            (json!(null), false),
            (json!(0), false),
            (json!(0.0), false),
            (json!(""), false),
            (json!("0"), true),
            (json!([]), false),
            (json!([0]), true),
            (json!({}), true),
        ] {
            assert_eq!(truthy(&v(&j)), expected, "truthy({j})");
        }
    }
}
