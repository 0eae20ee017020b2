//! Conversions between OpenFeature's types and backout's (JSON).

use std::collections::HashMap;

use backout_flags::{Context, ErrorCode, EvalError, Reason};
use open_feature::{
    EvaluationContext, EvaluationContextFieldValue, EvaluationError, EvaluationErrorCode,
    EvaluationReason, FlagMetadata, FlagMetadataValue, StructValue, Value,
};
use serde_json::{Map, Value as Json};

/// An OpenFeature context as backout reads it: custom fields become
/// attributes; date-times become Unix seconds (rules compare numbers).
pub(crate) fn context(ctx: &EvaluationContext) -> Context {
    let mut attributes = Map::new();
    for (name, value) in &ctx.custom_fields {
        let json = match value {
            EvaluationContextFieldValue::Bool(b) => Json::Bool(*b),
            EvaluationContextFieldValue::Int(i) => Json::from(*i),
            EvaluationContextFieldValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number)
            }
            EvaluationContextFieldValue::String(s) => Json::String(s.clone()),
            EvaluationContextFieldValue::DateTime(dt) => Json::from(dt.unix_timestamp()),
            EvaluationContextFieldValue::Struct(any) => {
                if let Some(json) = any.downcast_ref::<Json>() {
                    json.clone()
                } else if let Some(s) = any.downcast_ref::<StructValue>() {
                    from_struct(s)
                } else {
                    // An opaque Rust value: rules cannot read it.
                    continue;
                }
            }
        };
        attributes.insert(name.clone(), json);
    }
    Context {
        targeting_key: ctx.targeting_key.clone(),
        attributes,
    }
}

fn from_value(v: &Value) -> Json {
    match v {
        Value::Bool(b) => Json::Bool(*b),
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(s.clone()),
        Value::Array(items) => Json::Array(items.iter().map(from_value).collect()),
        Value::Struct(s) => from_struct(s),
    }
}

fn from_struct(s: &StructValue) -> Json {
    Json::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), from_value(v)))
            .collect(),
    )
}

/// A JSON flag value as an OpenFeature value (`null` has no counterpart).
pub(crate) fn to_value(json: &Json) -> Option<Value> {
    Some(match json {
        Json::Null => return None,
        Json::Bool(b) => Value::Bool(*b),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Int(i),
            None => Value::Float(n.as_f64()?),
        },
        Json::String(s) => Value::String(s.clone()),
        Json::Array(items) => Value::Array(items.iter().filter_map(to_value).collect()),
        Json::Object(map) => Value::Struct(StructValue {
            fields: map
                .iter()
                .filter_map(|(k, v)| Some((k.clone(), to_value(v)?)))
                .collect(),
        }),
    })
}

pub(crate) fn reason(r: Reason) -> EvaluationReason {
    match r {
        Reason::Static => EvaluationReason::Static,
        Reason::TargetingMatch => EvaluationReason::TargetingMatch,
        Reason::Disabled => EvaluationReason::Disabled,
        Reason::Default => EvaluationReason::Default,
        Reason::Error => EvaluationReason::Error,
    }
}

pub(crate) fn metadata(m: &Map<String, Json>, stale: bool) -> FlagMetadata {
    let mut values: HashMap<String, FlagMetadataValue> = HashMap::new();
    for (k, v) in m {
        let value = match v {
            Json::Bool(b) => FlagMetadataValue::Bool(*b),
            Json::Number(n) => match n.as_i64() {
                Some(i) => FlagMetadataValue::Int(i),
                None => FlagMetadataValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            Json::String(s) => FlagMetadataValue::String(s.clone()),
            _ => continue,
        };
        values.insert(k.clone(), value);
    }
    if stale {
        values.insert("backout.stale".into(), FlagMetadataValue::Bool(true));
    }
    FlagMetadata { values }
}

pub(crate) fn error(e: &EvalError) -> EvaluationError {
    let code = match e.code {
        ErrorCode::FlagNotFound => EvaluationErrorCode::FlagNotFound,
        ErrorCode::ParseError => EvaluationErrorCode::ParseError,
        ErrorCode::TypeMismatch => EvaluationErrorCode::TypeMismatch,
        ErrorCode::TargetingKeyMissing => EvaluationErrorCode::TargetingKeyMissing,
        ErrorCode::InvalidContext => EvaluationErrorCode::InvalidContext,
        ErrorCode::General => EvaluationErrorCode::General(e.message.clone()),
    };
    EvaluationError {
        code,
        message: Some(e.message.clone()),
    }
}
