//! A YAML document reduced to its shape and the position of every value,
//! so that a problem found after parsing — by field path, such as
//! `analysis.checks[1].tolerance` or `strategy.steps[3]` — is reported at
//! the line and column where the user wrote it.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
}

/// Positions of every value of one document.
#[derive(Debug)]
pub struct SpanTree(Spanned<Node>);

impl SpanTree {
    /// `None` when the text is not YAML at all (callers report the parse
    /// error from their own deserialisation instead).
    pub fn parse(text: &str) -> Option<SpanTree> {
        serde_saphyr::from_str::<Spanned<Node>>(text)
            .ok()
            .map(SpanTree)
    }

    /// Whether the document is a mapping with this top-level key.
    pub fn has_key(&self, key: &str) -> bool {
        matches!(&self.0.value, Node::Map(entries) if entries.iter().any(|(k, _)| k == key))
    }

    /// Whether the document holds no collection at all (empty, or one
    /// scalar).
    pub fn is_scalar(&self) -> bool {
        matches!(self.0.value, Node::Leaf)
    }

    /// Where `path` sits: the deepest value on the path that exists, and
    /// whether it is the value itself (a missing field is reported at its
    /// parent).
    pub fn locate(&self, path: &str) -> (Location, bool) {
        let mut node = &self.0;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (key, indices) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !key.is_empty() {
                let Node::Map(entries) = &node.value else {
                    return (node.referenced, false);
                };
                let Some((_, child)) = entries.iter().find(|(k, _)| k == key) else {
                    return (node.referenced, false);
                };
                node = child;
            }
            for index in indices.split(['[', ']']).filter(|s| !s.is_empty()) {
                let Node::Seq(items) = &node.value else {
                    return (node.referenced, false);
                };
                let Some(item) = index.parse::<usize>().ok().and_then(|i| items.get(i)) else {
                    return (node.referenced, false);
                };
                node = item;
            }
        }
        (node.referenced, true)
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Leaf)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Node>>()? {
            items.push(item);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<KeyText>()? {
            entries.push((key.0, map.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(entries))
    }
}

/// A mapping key as text, whatever scalar it was written as.
struct KeyText(String);

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = KeyText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar key")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<KeyText, E> {
                Ok(KeyText(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<KeyText, E> {
                Ok(KeyText(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, path: &str, expected: (u64, u64, bool)) {
        let tree = SpanTree::parse(text).unwrap();
        let (at, exact) = tree.locate(path);
        assert_eq!(
            (at.line(), at.column(), exact),
            expected,
            "{path} in\n{text}"
        );
    }

    #[test]
    fn locates_paths() {
        let doc = "a:\n  b: [1, {c: 2}]\n  d: x\nsteps:\n  - set_weight: 5\n  - pause: 30s\n";
        check(doc, "a.d", (3, 6, true));
        check(doc, "a.b[1].c", (2, 14, true));
        check(doc, "steps[1]", (6, 5, true));
        check(doc, "steps[1].pause", (6, 12, true));
        check(doc, "a.missing", (2, 3, false));
        check(doc, "steps[9]", (5, 3, false));
    }
}
