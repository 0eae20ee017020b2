//! The flag model: what a loaded flag is, once its document has been checked
//! and its targeting compiled.

use std::collections::HashMap;

use serde_json::{Map, Value as Json};

use crate::rule::Node;

/// Whether a flag is on at all. A disabled flag always gives the caller's
/// default: that is the kill switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Enabled,
    Disabled,
}

/// A flag ready to evaluate.
#[derive(Debug)]
pub struct Flag {
    pub(crate) key: String,
    pub(crate) state: State,
    /// Variants in document order; flags have a handful, so a linear scan
    /// beats hashing.
    pub(crate) variants: Vec<(String, Json)>,
    pub(crate) default_variant: Option<String>,
    pub(crate) targeting: Option<Node>,
    /// Flag-set metadata overlaid with the flag's own.
    pub(crate) metadata: Map<String, Json>,
}

impl Flag {
    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn default_variant(&self) -> Option<&str> {
        self.default_variant.as_deref()
    }

    pub fn has_targeting(&self) -> bool {
        self.targeting.is_some()
    }

    /// Variant names and values, in document order.
    pub fn variants(&self) -> impl Iterator<Item = (&str, &Json)> {
        self.variants.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn metadata(&self) -> &Map<String, Json> {
        &self.metadata
    }

    pub(crate) fn variant(&self, name: &str) -> Option<(&str, &Json)> {
        self.variants
            .iter()
            .find(|(k, _)| k == name)
            .map(|(k, v)| (k.as_str(), v))
    }
}

/// One key of a flag set: a flag, or the reason it could not be loaded. A
/// broken flag stays in the set so that evaluating it says what is wrong
/// instead of pretending the flag does not exist.
#[derive(Debug)]
pub(crate) enum Entry {
    Ready(Flag),
    Broken {
        message: String,
        metadata: Map<String, Json>,
    },
}

/// A loaded flag set. Immutable: a change builds a new set, which the edges
/// swap in atomically.
#[derive(Debug, Default)]
pub struct FlagSet {
    pub(crate) entries: HashMap<String, Entry>,
    /// Keys in sorted order, for bulk evaluation and listings.
    pub(crate) keys: Vec<String>,
    pub(crate) metadata: Map<String, Json>,
}

impl FlagSet {
    pub(crate) fn new(entries: HashMap<String, Entry>, metadata: Map<String, Json>) -> FlagSet {
        let mut keys: Vec<String> = entries.keys().cloned().collect();
        keys.sort();
        FlagSet {
            entries,
            keys,
            metadata,
        }
    }

    /// Every key, loaded or broken, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// A loaded flag, if the key names one that loaded.
    pub fn flag(&self, key: &str) -> Option<&Flag> {
        match self.entries.get(key) {
            Some(Entry::Ready(flag)) => Some(flag),
            _ => None,
        }
    }

    /// Why a flag could not be loaded, if it could not.
    pub fn broken(&self, key: &str) -> Option<&str> {
        match self.entries.get(key) {
            Some(Entry::Broken { message, .. }) => Some(message),
            _ => None,
        }
    }

    /// The flag-set level metadata.
    pub fn metadata(&self) -> &Map<String, Json> {
        &self.metadata
    }
}
