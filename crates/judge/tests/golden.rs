//! The judge's maths against SciPy (values in `fixtures/golden.json`,
//! written by `fixtures/generate.py`).

use backout_judge::evalue::{binomial_log_lr, exceedance, poisson_log_lr, quantile};
use serde_json::Value;

fn golden() -> Value {
    let text = include_str!("fixtures/golden.json");
    serde_json::from_str(text).expect("golden.json parses")
}

fn f(v: &Value, key: &str) -> f64 {
    v[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

fn list(v: &Value, key: &str) -> Vec<f64> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
        .iter()
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
fn binomial_likelihood_ratios_match_scipy() {
    for c in golden()["binomial_log_lr"].as_array().into_iter().flatten() {
        let got = binomial_log_lr(f(c, "k") as u64, f(c, "n") as u64, f(c, "p1"), f(c, "p0"));
        check("binomial", c, got, f(c, "log_lr"));
    }
}

#[test]
fn poisson_likelihood_ratios_match_scipy() {
    for c in golden()["poisson_log_lr"].as_array().into_iter().flatten() {
        let got = poisson_log_lr(f(c, "k") as u64, f(c, "exposure"), f(c, "p1"), f(c, "p0"));
        check("poisson", c, got, f(c, "log_lr"));
    }
}

#[test]
fn exceedance_is_the_mann_whitney_u_of_one_value() {
    for c in golden()["exceedance"].as_array().into_iter().flatten() {
        let got = exceedance(f(c, "canary"), &list(c, "baseline"), f(c, "factor"));
        check("exceedance", c, got, f(c, "score"));
    }
}

#[test]
fn quantiles_match_numpy() {
    for c in golden()["quantile"].as_array().into_iter().flatten() {
        let got = quantile(&list(c, "values"), f(c, "q")).unwrap_or(f64::NAN);
        check("quantile", c, got, f(c, "quantile"));
    }
}
