//! Loading an analysis config from YAML, with errors at file:line:col.
//!
//! The file is either the `analysis:` section itself or a whole service
//! spec that has an `analysis:` key (its other keys are left to the spec
//! loader). Shape errors come from serde-saphyr with their location;
//! meaning errors come from the judge's validation as field paths
//! (`analysis.checks[1].tolerance`), which are mapped back to the YAML
//! through a span tree of the same document.

use backout_judge::{AnalysisConfig, Judge};
use miette::miette;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};
use std::fmt;
use std::path::Path;

/// A YAML document reduced to its shape and the position of every value.
#[derive(Debug)]
enum Node {
    Map(Vec<(String, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Leaf,
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

/// Where a field path (`analysis.checks[1].tolerance`) sits in the
/// document: the deepest node on the path that exists, and whether it is
/// the field itself (a missing field is reported at its parent).
fn locate(root: &Spanned<Node>, path: &str) -> (Location, bool) {
    let mut node = root;
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, indices) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        let Node::Map(entries) = &node.value else {
            return (node.referenced, false);
        };
        let Some((_, child)) = entries.iter().find(|(k, _)| k == key) else {
            return (node.referenced, false);
        };
        node = child;
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

/// A service spec, seen only for its `analysis:` key.
#[derive(Deserialize)]
struct SpecWithAnalysis {
    #[serde(default)]
    analysis: AnalysisConfig,
}

fn yaml_error(file: &str, e: &serde_saphyr::Error) -> miette::Report {
    match e.location() {
        Some(l) if l.line() > 0 => miette!("{file}:{}:{}: {e}", l.line(), l.column()),
        _ => miette!("{file}: {e}"),
    }
}

/// Parses `text` (from `file`) into a config and a judge for it.
pub fn parse(file: &str, text: &str) -> miette::Result<(AnalysisConfig, Judge)> {
    let tree: Spanned<Node> = serde_saphyr::from_str(text).map_err(|e| yaml_error(file, &e))?;
    let is_spec =
        matches!(&tree.value, Node::Map(entries) if entries.iter().any(|(k, _)| k == "analysis"));
    let (config, prefix) = if is_spec {
        let spec: SpecWithAnalysis =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(file, &e))?;
        (spec.analysis, "analysis")
    } else if matches!(tree.value, Node::Leaf) {
        // An empty file: every default.
        (AnalysisConfig::default(), "")
    } else {
        let config: AnalysisConfig =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(file, &e))?;
        (config, "")
    };
    match Judge::new(&config, prefix) {
        Ok(judge) => Ok((config, judge)),
        Err(errors) => {
            let lines: Vec<String> = errors
                .0
                .iter()
                .map(|e| {
                    let (at, exact) = locate(&tree, &e.path);
                    let whose = if exact { "" } else { " (in this entry)" };
                    format!(
                        "{file}:{}:{}: {}: {}{whose}",
                        at.line(),
                        at.column(),
                        e.path,
                        e.message
                    )
                })
                .collect();
            Err(miette!("invalid analysis config:\n{}", lines.join("\n")))
        }
    }
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> miette::Result<(AnalysisConfig, Judge)> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| miette!("cannot read analysis config {}: {e}", path.display()))?;
    parse(&path.display().to_string(), &text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(yaml: &str, expected: Result<usize, &str>) {
        match (parse("spec.yaml", yaml), expected) {
            (Ok((config, _)), Ok(n)) => {
                let got = config.checks.map_or(0, |c| c.len());
                assert_eq!(got, n, "{yaml}");
            }
            (Err(e), Err(want)) => {
                let text = format!("{e}");
                assert!(
                    text.contains(want),
                    "{yaml}:\n{text}\ndoes not contain: {want}"
                );
            }
            (got, want) => panic!("{yaml}: got {:?}, want {want:?}", got.map(|g| g.0)),
        }
    }

    #[test]
    fn loads_sections_and_specs_with_locations() {
        check("", Ok(0));
        check("alpha: 0.02\n", Ok(0));
        check("checks:\n  - kind: error_rate\n    tolerance: 0.3\n", Ok(1));
        check(
            "name: web\nupstreams: [a]\nanalysis:\n  checks:\n    - kind: latency\n",
            Ok(1),
        );
        // Neither a section nor a spec with `analysis:`: say which key is unknown.
        check("name: web\n", Err("unknown field `name`"));
        check(
            "name: web\nanalysis:\n  checks:\n    - kind: error_rate\n    - kind: latency\n      tolerance: -1\n",
            Err("spec.yaml:6:18: analysis.checks[1].tolerance: must be between 0 and 10"),
        );
        check(
            "checks:\n  - kind: threshold\n    max: 3\n",
            Err("spec.yaml:2:5: checks[0].metric: a threshold check needs a metric"),
        );
        check(
            "alpha: 7\n",
            Err("spec.yaml:1:8: alpha: must be between 0 and 1"),
        );
        check("alpah: 0.01\n", Err("spec.yaml:1:1: "));
        check("alpah: 0.01\n", Err("unknown field `alpah`"));
        check(
            "analysis:\n  checks:\n    - kind: errors\n",
            Err("spec.yaml:3:"),
        );
        check("checks: [\n", Err("spec.yaml:"));
        check(
            "analysis:\n  checks:\n    - kind: latency\n      warmup: soon\n",
            Err("cannot read \"soon\" as a duration"),
        );
    }
}
