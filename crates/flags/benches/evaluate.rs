//! In-process evaluation speed (issue goals: ≤ 60 ns static flag, ≤ 250 ns
//! with a three-condition rule, ≤ 500 ns `fractional`). Run with
//! `cargo bench -p backout-flags`; figures go to bench/RESULTS.md.

use std::hint::black_box;

use backout_flags::{Context, Format, load_str};
use criterion::{Criterion, criterion_group, criterion_main};

const FLAGS: &str = r##"{
  "flags": {
    "static-flag": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "on"
    },
    "three-conditions": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"if": [{"and": [
        {"==": [{"var": "country"}, "jp"]},
        {"in": ["Mac OS", {"var": "userAgent"}]},
        {">=": [{"var": "age"}, 18]}
      ]}, "on", "off"]}
    },
    "fractional": {
      "state": "ENABLED",
      "variants": {"red": "#f00", "green": "#0f0", "blue": "#00f"},
      "defaultVariant": "red",
      "targeting": {"fractional": [["red", 33], ["green", 33], ["blue", 34]]}
    }
  }
}"##;

fn evaluate(c: &mut Criterion) {
    let loaded = load_str(FLAGS, Format::Json).expect("bench flags load");
    let flags = loaded.flags;
    let ctx = Context::with_key("user-1234567")
        .attr("country", "jp")
        .attr("userAgent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5)")
        .attr("age", 34)
        .attr("email", "someone@example.com")
        .attr("plan", "pro");
    let now = 1_700_000_000;

    let mut group = c.benchmark_group("evaluate");
    group.bench_function("static", |b| {
        b.iter(|| {
            black_box(
                flags
                    .evaluate(black_box("static-flag"), black_box(&ctx), now)
                    .value
                    .is_some(),
            )
        })
    });
    group.bench_function("three_condition_rule", |b| {
        b.iter(|| {
            black_box(
                flags
                    .evaluate(black_box("three-conditions"), black_box(&ctx), now)
                    .value
                    .is_some(),
            )
        })
    });
    group.bench_function("fractional", |b| {
        b.iter(|| {
            black_box(
                flags
                    .evaluate(black_box("fractional"), black_box(&ctx), now)
                    .value
                    .is_some(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, evaluate);
criterion_main!(benches);
