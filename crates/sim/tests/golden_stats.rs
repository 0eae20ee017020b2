//! The peers' classical tests against SciPy (values in
//! `fixtures/golden_stats.json`, written by
//! `crates/judge/tests/fixtures/generate.py`).

use backout_sim::stats::{chi2_2x2, mann_whitney_greater, normal_sf};
use serde_json::Value;

fn golden() -> Value {
    serde_json::from_str(include_str!("fixtures/golden_stats.json"))
        .expect("golden_stats.json parses")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn list(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_f64)
        .collect()
}

fn check(what: &str, case: &Value, got: f64, want: f64) {
    let tol = 1e-9 * (1.0 + want.abs());
    assert!(
        (got - want).abs() <= tol,
        "{what} {case}: got {got}, scipy says {want}"
    );
}

#[test]
fn chi_squared_matches_scipy_chi2_contingency() {
    for c in golden()["chi2_2x2"].as_array().into_iter().flatten() {
        let t = list(c, "table");
        let (stat, p) = chi2_2x2(t[0], t[1], t[2], t[3]).expect("non-degenerate table");
        check("chi2 statistic", c, stat, f(c, "statistic"));
        check("chi2 p", c, p, f(c, "p"));
    }
}

#[test]
fn mann_whitney_matches_scipy_mannwhitneyu() {
    for c in golden()["mann_whitney_greater"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let (u, p) = mann_whitney_greater(&list(c, "x"), &list(c, "y")).expect("non-empty samples");
        check("U", c, u, f(c, "u"));
        check("p", c, p, f(c, "p"));
    }
}

#[test]
fn normal_survival_matches_scipy() {
    for c in golden()["normal_sf"].as_array().into_iter().flatten() {
        check("norm.sf", c, normal_sf(f(c, "z")), f(c, "sf"));
    }
}
