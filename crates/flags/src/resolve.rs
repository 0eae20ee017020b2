//! Resolving a flag for a context: the result every edge (OFREP, the
//! OpenFeature provider, the CLI) reports.
//!
//! A resolution never loses the caller's default: when the flag cannot give
//! a value (disabled, no default variant, an error) the value is `None`, and
//! the typed accessors hand back the default the caller passed in.

use serde_json::{Map, Value as Json};

use crate::context::Context;
use crate::eval::{self, Env, Scope};
use crate::flag::{Entry, Flag, FlagSet, State};
use crate::pynum;
use crate::value::Val;

/// Why a resolution has the value it has (OpenFeature's reasons).
///
/// There is no `SPLIT`: the reference evaluator reports a `fractional` result
/// as `TARGETING_MATCH`, and agreeing with it matters more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// No targeting: the default variant, always.
    Static,
    /// Targeting picked a variant.
    TargetingMatch,
    /// The flag is disabled: the caller's default.
    Disabled,
    /// Targeting picked nothing: the default variant (or the caller's).
    Default,
    /// Something went wrong: the caller's default, and an error code.
    Error,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Static => "STATIC",
            Reason::TargetingMatch => "TARGETING_MATCH",
            Reason::Disabled => "DISABLED",
            Reason::Default => "DEFAULT",
            Reason::Error => "ERROR",
        }
    }
}

/// OpenFeature's error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    FlagNotFound,
    ParseError,
    TypeMismatch,
    TargetingKeyMissing,
    InvalidContext,
    General,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FlagNotFound => "FLAG_NOT_FOUND",
            ErrorCode::ParseError => "PARSE_ERROR",
            ErrorCode::TypeMismatch => "TYPE_MISMATCH",
            ErrorCode::TargetingKeyMissing => "TARGETING_KEY_MISSING",
            ErrorCode::InvalidContext => "INVALID_CONTEXT",
            ErrorCode::General => "GENERAL",
        }
    }
}

/// An evaluation error: the code for programs, the message for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    pub code: ErrorCode,
    pub message: String,
}

/// The types a caller can ask a flag for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlagType {
    Bool,
    String,
    Int,
    Float,
    Object,
}

impl FlagType {
    fn accepts(self, value: &Json) -> bool {
        match self {
            FlagType::Bool => value.is_boolean(),
            FlagType::String => value.is_string(),
            FlagType::Int => value.is_i64() || value.is_u64(),
            FlagType::Float => value.is_number(),
            FlagType::Object => value.is_object() || value.is_array(),
        }
    }

    fn name(self) -> &'static str {
        match self {
            FlagType::Bool => "boolean",
            FlagType::String => "string",
            FlagType::Int => "integer",
            FlagType::Float => "float",
            FlagType::Object => "object",
        }
    }
}

/// The outcome of evaluating one flag, borrowing from the flag set.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution<'f> {
    /// The flag's value, or `None` for "use the caller's default".
    pub value: Option<&'f Json>,
    pub variant: Option<&'f str>,
    pub reason: Reason,
    pub error: Option<EvalError>,
    pub metadata: &'f Map<String, Json>,
}

static NO_METADATA: std::sync::LazyLock<Map<String, Json>> = std::sync::LazyLock::new(Map::new);

impl<'f> Resolution<'f> {
    fn error(code: ErrorCode, message: String, metadata: &'f Map<String, Json>) -> Resolution<'f> {
        Resolution {
            value: None,
            variant: None,
            reason: Reason::Error,
            error: Some(EvalError { code, message }),
            metadata,
        }
    }

    /// Checks the value against the type the caller asked for, as the
    /// reference does: a value of another type becomes a `TYPE_MISMATCH`
    /// error (and so the caller's default). A result that already defers to
    /// the caller's default passes unchecked.
    pub fn typed(self, ty: FlagType) -> Resolution<'f> {
        match self.value {
            Some(value) if !ty.accepts(value) => Resolution::error(
                ErrorCode::TypeMismatch,
                format!(
                    "the flag's value {value} is not a {}; ask for the flag's own type or fix its variants",
                    ty.name()
                ),
                self.metadata,
            ),
            _ => self,
        }
    }

    pub fn bool_or(&self, default: bool) -> bool {
        self.value.and_then(Json::as_bool).unwrap_or(default)
    }

    pub fn str_or<'d>(&self, default: &'d str) -> &'d str
    where
        'f: 'd,
    {
        self.value.and_then(Json::as_str).unwrap_or(default)
    }

    pub fn i64_or(&self, default: i64) -> i64 {
        self.value.and_then(Json::as_i64).unwrap_or(default)
    }

    pub fn f64_or(&self, default: f64) -> f64 {
        self.value.and_then(Json::as_f64).unwrap_or(default)
    }
}

impl FlagSet {
    /// Evaluates `key` for `ctx`. `now` is seconds since the Unix epoch
    /// (rules can read it as `$flagd.timestamp`).
    pub fn evaluate<'f>(&'f self, key: &str, ctx: &Context, now: i64) -> Resolution<'f> {
        match self.entries.get(key) {
            None => Resolution::error(
                ErrorCode::FlagNotFound,
                format!("flag `{key}` is not in the flag set"),
                &NO_METADATA,
            ),
            Some(Entry::Broken { message, metadata }) => Resolution::error(
                ErrorCode::ParseError,
                format!("flag `{key}` failed to load: {message}"),
                metadata,
            ),
            Some(Entry::Ready(flag)) => resolve(flag, ctx, now),
        }
    }
}

fn resolve<'f>(flag: &'f Flag, ctx: &Context, now: i64) -> Resolution<'f> {
    let metadata = &flag.metadata;
    if flag.state == State::Disabled {
        return Resolution {
            value: None,
            variant: None,
            reason: Reason::Disabled,
            error: None,
            metadata,
        };
    }
    let Some(rule) = &flag.targeting else {
        return default_variant(flag, Reason::Static);
    };
    let env = Env {
        flag_key: &flag.key,
        ctx,
        now,
    };
    let chosen = match eval::eval(rule, &env, Scope::Root) {
        Ok(v) => v,
        Err(fault) => {
            return Resolution::error(
                ErrorCode::General,
                format!("targeting of flag `{}` failed: {}", flag.key, fault.0),
                metadata,
            );
        }
    };
    let name = match &chosen {
        Val::Null => return default_variant(flag, Reason::Default),
        Val::Str(s) => std::borrow::Cow::Borrowed(*s),
        Val::String(s) => std::borrow::Cow::Owned(s.to_string()),
        Val::Bool(b) => std::borrow::Cow::Borrowed(if *b { "true" } else { "false" }),
        Val::Int(i) => std::borrow::Cow::Owned(i.to_string()),
        Val::Float(f) => std::borrow::Cow::Owned(pynum::format_repr(*f)),
        other => {
            return Resolution::error(
                ErrorCode::General,
                format!(
                    "targeting of flag `{}` returned {}, not a variant name",
                    flag.key,
                    other.to_json()
                ),
                metadata,
            );
        }
    };
    match flag.variant(&name) {
        Some((variant, value)) if !name.is_empty() && !value.is_null() => Resolution {
            value: Some(value),
            variant: Some(variant),
            reason: Reason::TargetingMatch,
            error: None,
            metadata,
        },
        _ => Resolution::error(
            ErrorCode::General,
            format!(
                "targeting of flag `{}` chose variant `{name}`, which is not one of its variants ({})",
                flag.key,
                variant_names(flag)
            ),
            metadata,
        ),
    }
}

fn default_variant(flag: &Flag, reason: Reason) -> Resolution<'_> {
    let metadata = &flag.metadata;
    let Some(name) = &flag.default_variant else {
        return Resolution {
            value: None,
            variant: None,
            reason: Reason::Default,
            error: None,
            metadata,
        };
    };
    match flag.variant(name) {
        Some((variant, value)) => Resolution {
            value: Some(value),
            variant: Some(variant),
            reason,
            error: None,
            metadata,
        },
        None => Resolution::error(
            ErrorCode::General,
            format!(
                "flag `{}` has default variant `{name}`, which is not one of its variants ({})",
                flag.key,
                variant_names(flag)
            ),
            metadata,
        ),
    }
}

fn variant_names(flag: &Flag) -> String {
    flag.variants
        .iter()
        .map(|(k, _)| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
