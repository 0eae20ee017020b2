//! Agreement with the reference evaluator, `openfeature-flagd-core` (PyPI).
//!
//! `committed_vectors_agree` checks vectors the reference produced (see
//! `tests/reference/flagd_reference.py vectors`) and needs nothing but this
//! crate. `random_corpus_agrees_with_live_reference` runs the reference
//! itself, through `$BACKOUT_TEST_PYTHON` (set up by `scripts/test`), over a
//! freshly generated random corpus.

use std::path::{Path, PathBuf};
use std::process::Command;

use backout_flags::{Context, FlagType, Format, Resolution, load};
use serde_json::{Value as Json, json};

fn reference_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/reference")
}

fn flag_type(name: &Json) -> Option<FlagType> {
    match name.as_str()? {
        "boolean" => Some(FlagType::Bool),
        "string" => Some(FlagType::String),
        "integer" => Some(FlagType::Int),
        "float" => Some(FlagType::Float),
        "object" => Some(FlagType::Object),
        other => panic!("unknown type {other} in corpus"),
    }
}

/// JSON equality where `1` and `1.0` are the same number, as in Python.
fn same(a: &Json, b: &Json) -> bool {
    match (a, b) {
        (Json::Number(x), Json::Number(y)) => x.as_f64() == y.as_f64(),
        (Json::Array(x), Json::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Json::Object(x), Json::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

fn ours(res: &Resolution<'_>, default: &Json) -> Json {
    json!({
        "value": res.value.cloned().unwrap_or_else(|| default.clone()),
        "variant": res.variant,
        "reason": res.reason.as_str(),
        "error": res.error.as_ref().map(|e| e.code.as_str()),
        "metadata": res.metadata,
    })
}

fn ty_of(ev: &Json) -> Option<FlagType> {
    flag_type(&ev["type"])
}

/// Where backout differs from the reference on purpose. Python's `bool` is an
/// `int`, so the reference hands a boolean flag to a caller asking for a
/// float as 1.0 or 0.0; flagd's other evaluators (and backout) report a type
/// mismatch instead.
fn deliberate_divergence(ty: Option<FlagType>, value: Option<&Json>) -> bool {
    ty == Some(FlagType::Float) && value.is_some_and(Json::is_boolean)
}

/// Compares every evaluation of a corpus with its expected results and
/// returns the mismatches, described.
///
/// Flags that backout refuses on purpose although the reference evaluates
/// them (`Problem::stricter_than_flagd`: variants of mixed types, negative
/// or fractional weights) are left out; `skipped` counts their evaluations.
fn mismatches(corpus: &[Json], expected: &[Vec<Json>], skipped: &mut usize) -> Vec<String> {
    let mut out = Vec::new();
    for (case, results) in corpus.iter().zip(expected) {
        let loaded = load(&case["doc"]).expect("the reference loaded this document, so must we");
        let stricter: Vec<&str> = loaded
            .problems
            .iter()
            .filter(|p| p.stricter_than_flagd)
            .filter_map(|p| p.flag.as_deref())
            .collect();
        let now = case["now"].as_i64().unwrap_or(0);
        let evals = case["evals"].as_array().expect("evals");
        for (ev, want) in evals.iter().zip(results) {
            let ctx = Context::from_json(ev["ctx"].clone()).expect("corpus contexts are objects");
            let key = ev["flag"].as_str().expect("flag key");
            if stricter.contains(&key) {
                *skipped += 1;
                continue;
            }
            let raw = loaded.flags.evaluate(key, &ctx, now);
            let raw_value = raw.value;
            let res = match ty_of(ev) {
                Some(ty) => raw.typed(ty),
                None => raw,
            };
            let got = ours(&res, &ev["default"]);
            let agree = deliberate_divergence(ty_of(ev), raw_value)
                || got["error"] == want["error"]
                    && (want["error"].is_string()
                        || (got["reason"] == want["reason"]
                            && got["variant"] == want["variant"]
                            && same(&got["value"], &want["value"])
                            && same(&got["metadata"], &want["metadata"])));
            if !agree {
                let flag = &case["doc"]["flags"][key];
                out.push(format!(
                    "flag `{key}` = {flag}\n  context {} type {} now {now}\n  reference: {want}\n  backout:   {got}\n  ({})",
                    ev["ctx"],
                    ev["type"],
                    res.error.map(|e| e.message).unwrap_or_default()
                ));
            }
        }
    }
    out
}

fn report(bad: &[String], total: usize, skipped: usize) {
    // Most of the corpus is compared: the refusals are a corner of it.
    assert!(
        skipped * 3 < total,
        "{skipped} of {total} evaluations were of flags backout refuses; the corpus no longer tests agreement"
    );
    println!(
        "{} evaluations compared, {skipped} of refused flags left out",
        total - skipped
    );
    if let Ok(path) = std::env::var("BACKOUT_FLAGS_MISMATCHES") {
        let _ = std::fs::write(path, bad.join("\n"));
    }
    assert!(
        bad.is_empty(),
        "{} of {total} evaluations disagree with the reference evaluator; first ones:\n{}",
        bad.len(),
        bad.iter().take(8).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn committed_vectors_agree() {
    let text = std::fs::read_to_string(reference_dir().join("vectors.json"))
        .expect("vectors.json is committed");
    let corpus: Vec<Json> = serde_json::from_str(&text).expect("vectors parse");
    let expected: Vec<Vec<Json>> = corpus
        .iter()
        .map(|case| {
            case["evals"]
                .as_array()
                .expect("evals")
                .iter()
                .map(|ev| ev["expect"].clone())
                .collect()
        })
        .collect();
    let total = expected.iter().map(Vec::len).sum();
    assert!(
        total > 10_000,
        "the vectors should be substantial, found {total}"
    );
    let mut skipped = 0;
    let bad = mismatches(&corpus, &expected, &mut skipped);
    report(&bad, total, skipped);
}

/// The Python with the reference evaluator, or `None` (with the reason
/// printed) when it is not set up and the run is not strict.
fn reference_python() -> Option<String> {
    let strict = std::env::var("BACKOUT_TEST_STRICT").is_ok_and(|v| v == "1");
    match std::env::var("BACKOUT_TEST_PYTHON") {
        Ok(python) => Some(python),
        Err(_) if strict => panic!("BACKOUT_TEST_PYTHON is not set; scripts/test sets it up"),
        Err(_) => {
            eprintln!(
                "skipping: BACKOUT_TEST_PYTHON is not set (run scripts/test to install the reference evaluator)"
            );
            None
        }
    }
}

fn run_reference(python: &str, args: &[&str]) {
    let out = Command::new(python)
        .arg(reference_dir().join("flagd_reference.py"))
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "the reference evaluator failed ({args:?}): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn random_corpus_agrees_with_live_reference() {
    let Some(python) = reference_python() else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("backout-flags-ref-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    // Fixed seeds keep the test command deterministic; set
    // BACKOUT_FLAGS_SEED to explore other corpora.
    let seed: u64 = std::env::var("BACKOUT_FLAGS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    eprintln!("random corpus seed {seed} (set BACKOUT_FLAGS_SEED to replay)");
    let corpus_path = dir.join("corpus.json");
    let results_path = dir.join("results.json");
    run_reference(
        &python,
        &[
            "random",
            &seed.to_string(),
            "400",
            corpus_path.to_str().expect("utf-8 path"),
        ],
    );
    run_reference(
        &python,
        &[
            "evaluate",
            corpus_path.to_str().expect("utf-8"),
            results_path.to_str().expect("utf-8"),
        ],
    );
    let corpus: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(&corpus_path).expect("corpus"))
            .expect("json");
    let expected: Vec<Vec<Json>> =
        serde_json::from_str(&std::fs::read_to_string(&results_path).expect("results"))
            .expect("json");
    let total = expected.iter().map(Vec::len).sum();
    let mut skipped = 0;
    let bad = mismatches(&corpus, &expected, &mut skipped);
    let _ = std::fs::remove_dir_all(&dir);
    report(&bad, total, skipped);
}

#[test]
fn yaml_documents_load_like_json() {
    let yaml = "flags:\n  f:\n    state: ENABLED\n    variants: {on: true, off: false}\n    defaultVariant: 'on'\n";
    let loaded = backout_flags::load_str(yaml, Format::Yaml).expect("yaml loads");
    let res = loaded.flags.evaluate("f", &Context::new(), 0);
    assert_eq!(res.value, Some(&json!(true)));
}
