//! The evaluation context: who is asking. OpenFeature's shape, a targeting
//! key plus free-form attributes, kept as JSON so rules read attributes
//! without conversion.

use serde_json::{Map, Value as Json};

/// Who a flag is being evaluated for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// The stable identity used by `fractional` splits (a user id, a session).
    pub targeting_key: Option<String>,
    /// Everything else rules can read with `var`.
    pub attributes: Map<String, Json>,
}

/// Why a JSON object is not a usable context.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextError {
    #[error("the context must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("`targetingKey` must be a string, not {0}")]
    TargetingKeyNotString(&'static str),
}

impl Context {
    /// An empty context.
    pub fn new() -> Context {
        Context::default()
    }

    /// A context with a targeting key.
    pub fn with_key(key: impl Into<String>) -> Context {
        Context {
            targeting_key: Some(key.into()),
            attributes: Map::new(),
        }
    }

    /// Adds an attribute.
    pub fn attr(mut self, name: impl Into<String>, value: impl Into<Json>) -> Context {
        self.attributes.insert(name.into(), value.into());
        self
    }

    /// Reads the OFREP / OpenFeature wire form: an object whose
    /// `targetingKey` (if any) is the targeting key and whose other members
    /// are attributes. `null` is an empty context.
    pub fn from_json(json: Json) -> Result<Context, ContextError> {
        let mut attributes = match json {
            Json::Object(map) => map,
            Json::Null => Map::new(),
            other => return Err(ContextError::NotAnObject(type_name(&other))),
        };
        let targeting_key = match attributes.remove("targetingKey") {
            None | Some(Json::Null) => None,
            Some(Json::String(s)) => Some(s),
            Some(other) => return Err(ContextError::TargetingKeyNotString(type_name(&other))),
        };
        Ok(Context {
            targeting_key,
            attributes,
        })
    }
}

/// A JSON type's name, for error messages.
pub(crate) fn type_name(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(input: Json, expected: Result<Context, ContextError>) {
        assert_eq!(Context::from_json(input.clone()), expected, "{input}");
    }

    #[test]
    fn wire_form() {
        check(
            json!({"targetingKey": "u1", "country": "jp"}),
            Ok(Context::with_key("u1").attr("country", "jp")),
        );
        check(json!({}), Ok(Context::new()));
        check(json!(null), Ok(Context::new()));
        check(json!({"targetingKey": null}), Ok(Context::new()));
        check(
            json!({"targetingKey": 5}),
            Err(ContextError::TargetingKeyNotString("a number")),
        );
        check(json!([1]), Err(ContextError::NotAnObject("an array")));
    }
}
