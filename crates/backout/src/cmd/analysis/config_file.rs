//! Loading an analysis config from YAML, with errors at file:line:col.
//!
//! The file is either the `analysis:` section itself or a whole service
//! spec that has an `analysis:` key (its other keys are left to the spec
//! loader). Shape errors come from serde-saphyr with their location;
//! meaning errors come from the judge's validation as field paths
//! (`analysis.checks[1].tolerance`), which are mapped back to the YAML
//! through a span tree of the same document.

use backout_judge::{AnalysisConfig, Judge};
use backout_spec::SpanTree;
use miette::miette;
use serde::Deserialize;
use std::path::Path;

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
    // Not YAML at all: the error comes from serde-saphyr with its location.
    let Some(tree) = SpanTree::parse(text) else {
        let e = serde_saphyr::from_str::<serde::de::IgnoredAny>(text)
            .err()
            .map_or_else(
                || miette!("{file}: not a YAML document"),
                |e| yaml_error(file, &e),
            );
        return Err(e);
    };
    let (config, prefix) = if tree.has_key("analysis") {
        let spec: SpecWithAnalysis =
            serde_saphyr::from_str(text).map_err(|e| yaml_error(file, &e))?;
        (spec.analysis, "analysis")
    } else if tree.is_scalar() {
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
                    let (at, exact) = tree.locate(&e.path);
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
