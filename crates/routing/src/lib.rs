//! Pure routing decisions: which pool (stable or canary) serves a request.
//!
//! Nothing here does I/O or reads a clock. The proxy hands in a view of the
//! request, the sticky key it extracted and a random bucket, and gets back a
//! [`Decision`] that says which pool and why.

mod bucket;
mod rule;
mod table;

pub use bucket::{BUCKETS, Permille, WeightError, bucket};
pub use rule::{MatchRule, Matcher, RuleError, RuleSpec, Source, cookie_value};
pub use table::{
    Cause, Decision, RequestView, RouteError, RouteSpec, RouteTable, StickyKey, Target,
};
