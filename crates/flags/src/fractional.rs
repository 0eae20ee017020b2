//! flagd's `fractional` operator: deterministic percentage splits.
//!
//! The bucket-by value (by default `[flagKey, targetingKey]`) is encoded as
//! canonical CBOR, hashed with MurmurHash3 x86-32 (seed 0, unsigned), and
//! the bucket is `(hash × totalWeight) >> 32`, walked through the integer
//! weights in order. That is flagd's current specification, and the oracle
//! for it is the reference evaluator; the odd corners (a non-integer weight
//! makes the whole split yield nothing, negative weights count as zero, an
//! empty targeting key disables the shorthand) follow it.
//!
//! When every weight is a literal, as it nearly always is, the weights are
//! checked and summed once at load.

use serde_json::Value as Json;

use crate::cbor;
use crate::rule::Node;
use crate::value::Val;

/// The largest total weight flagd accepts (`i32::MAX`).
pub(crate) const MAX_TOTAL_WEIGHT: u64 = 2_147_483_647;

/// A compiled `fractional` call.
#[derive(Debug)]
pub(crate) struct Fractional {
    pub(crate) args: Box<[Node]>,
    /// Present when every fraction is a literal: the first argument is the
    /// bucket-by expression (`None` for the shorthand form) and the weights
    /// are known.
    pub(crate) fixed: Option<Fixed>,
}

#[derive(Debug)]
pub(crate) struct Fixed {
    pub(crate) shorthand: bool,
    /// `None` when the literal fractions are malformed: the split then
    /// always yields nothing, as in the reference.
    pub(crate) split: Option<Split>,
}

/// Parsed fractions: variant (any JSON value) and clamped weight.
#[derive(Debug)]
pub(crate) struct Split {
    pub(crate) fractions: Box<[(Json, u64)]>,
    pub(crate) total: u64,
}

impl Fractional {
    pub(crate) fn compile(args: Box<[Node]>) -> Fractional {
        let fixed = match args.first() {
            Some(Node::Const(Json::Array(_))) => literal_split(&args).map(|split| Fixed {
                shorthand: true,
                split,
            }),
            Some(_) => literal_split(&args[1..]).map(|split| Fixed {
                shorthand: false,
                split,
            }),
            None => None,
        };
        Fractional { args, fixed }
    }
}

/// Parses the fractions if they are all literals (`Some`), and says whether
/// they make a usable split (`Some(Some(..))`).
fn literal_split(nodes: &[Node]) -> Option<Option<Split>> {
    let mut jsons = Vec::with_capacity(nodes.len());
    for node in nodes {
        match node {
            Node::Const(json) => jsons.push(json.clone()),
            _ => return None,
        }
    }
    let vals: Vec<Val<'_>> = jsons.iter().map(Val::from_json).collect();
    Some(parse_split(&vals).map(|parsed| Split {
        fractions: parsed.iter().map(|(v, w)| (v.to_json(), *w)).collect(),
        total: parsed.iter().map(|(_, w)| w).sum(),
    }))
}

/// Parses evaluated fraction arguments: each is `[variant]` or
/// `[variant, weight]` with an integer weight. `None` if any is malformed or
/// the total is out of range.
pub(crate) fn parse_split<'a>(args: &[Val<'a>]) -> Option<Vec<(Val<'a>, u64)>> {
    let mut out = Vec::with_capacity(args.len());
    let mut total: u128 = 0;
    for arg in args {
        let items = arg.items()?;
        if items.len() == 0 || items.len() > 2 {
            return None;
        }
        let variant = items.get(0)?;
        let weight = match items.get(1) {
            None => 1,
            Some(Val::Int(w)) => w.max(0) as u64,
            Some(_) => return None,
        };
        total += u128::from(weight);
        out.push((variant, weight));
    }
    if total == 0 || total > u128::from(MAX_TOTAL_WEIGHT) {
        return None;
    }
    Some(out)
}

/// The bucket of `bucket_by` among `total` weight units.
pub(crate) fn bucket(bucket_by: &Val<'_>, total: u64) -> u64 {
    let mut buf = cbor::Buf::new();
    cbor::encode(bucket_by, &mut buf);
    bucket_of_bytes(&buf, total)
}

/// The bucket of the shorthand `[flagKey, targetingKey]`, without building
/// the pair.
pub(crate) fn bucket_pair(first: &Val<'_>, second: &Val<'_>, total: u64) -> u64 {
    let mut buf = cbor::Buf::new();
    cbor::head(4, 2, &mut buf);
    cbor::encode(first, &mut buf);
    cbor::encode(second, &mut buf);
    bucket_of_bytes(&buf, total)
}

fn bucket_of_bytes(bytes: &[u8], total: u64) -> u64 {
    let hash = u64::from(mur3::murmurhash3_x86_32(bytes, 0));
    (hash * total) >> 32
}

/// The fraction whose range holds `bucket`.
pub(crate) fn pick<T>(fractions: impl IntoIterator<Item = (T, u64)>, bucket: u64) -> Option<T> {
    let mut end = 0;
    for (variant, weight) in fractions {
        end += weight;
        if bucket < end {
            return Some(variant);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check_bucket(bucket_by: Json, total: u64, expected: u64) {
        assert_eq!(
            bucket(&Val::from_json(&bucket_by), total),
            expected,
            "bucket({bucket_by}, {total})"
        );
    }

    // Expected values from the reference evaluator's arithmetic:
    // (mmh3.hash(cbor2.dumps(v, canonical=True), signed=False) * total) >> 32.
    #[test]
    fn buckets_match_the_reference() {
        check_bucket(json!(["headerColor", "user-1"]), 100, 68);
        check_bucket(json!(["headerColor", "user-2"]), 100, 3);
        check_bucket(json!("jon@company.com"), 100, 10);
        check_bucket(json!(42), 3, 0);
        check_bucket(json!(1.5), 1000, 80);
    }

    fn check_split(args: Json, expected: Option<Vec<(Json, u64)>>) {
        let items: Vec<Json> = args.as_array().cloned().unwrap_or_default();
        let vals: Vec<Val<'_>> = items.iter().map(Val::from_json).collect();
        let got = parse_split(&vals)
            .map(|v| v.iter().map(|(a, w)| (a.to_json(), *w)).collect::<Vec<_>>());
        assert_eq!(got, expected, "{args}");
    }

    #[test]
    fn splits() {
        check_split(
            json!([["a", 50], ["b", 50]]),
            Some(vec![(json!("a"), 50), (json!("b"), 50)]),
        );
        check_split(
            json!([["a"], ["b"]]),
            Some(vec![(json!("a"), 1), (json!("b"), 1)]),
        );
        check_split(
            json!([["a", -5], ["b", 1]]),
            Some(vec![(json!("a"), 0), (json!("b"), 1)]),
        );
        check_split(json!([["a", 50.0]]), None);
        check_split(json!([["a", true]]), None);
        check_split(json!([["a", 1, 2]]), None);
        check_split(json!([[]]), None);
        check_split(json!(["a"]), None);
        check_split(json!([["a", 0]]), None);
        check_split(json!([["a", 2147483647], ["b", 1]]), None);
        check_split(
            json!([["a", 2147483647]]),
            Some(vec![(json!("a"), 2147483647)]),
        );
    }
}
