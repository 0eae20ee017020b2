#!/usr/bin/env python3
"""Writes the replay traces the snapshot tests use (run once, commit output).

Each trace is 3 minutes of 1-second ticks in the format of
`backout analysis replay`: per group the tick's requests, errors and a
uniform sample of 10 latencies (log-normal). Seeded, so re-running gives the
same files.
"""
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def trace(name, seed, canary_error=lambda t: 0.01, canary_latency=lambda t: 1.0,
          baseline_error=lambda t: 0.01, baseline_latency=lambda t: 1.0, rps=200.0, weight=0.1):
    rng = np.random.default_rng(seed)
    lines = []
    for t in range(1, 181):
        groups = {}
        for group, share, err, lat in [
            ("baseline", 1 - weight, baseline_error(t), baseline_latency(t)),
            ("canary", weight, canary_error(t), canary_latency(t)),
        ]:
            n = int(rng.poisson(rps * share))
            e = int(rng.binomial(n, min(err, 1.0)))
            k = min(n, 10)
            sample = np.round(rng.lognormal(np.log(80 * lat), 0.5, k), 1).tolist()
            groups[group] = {"requests": n, "errors": e, "latency_ms": sample}
        lines.append(json.dumps({"t": t, **groups}, separators=(",", ":")))
    with open(os.path.join(HERE, f"{name}.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    trace("healthy", 1)
    trace("errors-5x-at-60s", 2, canary_error=lambda t: 0.05 if t >= 60 else 0.01)
    trace("latency-2x", 3, canary_latency=lambda t: 2.0)
    incident = lambda t: 0.01 + (0.3 if 60 <= t < 150 else 0.0)
    trace("shared-incident", 4, canary_error=incident, baseline_error=incident)
    trace("low-traffic", 5, rps=3.0, weight=0.3, canary_error=lambda t: 0.2)


if __name__ == "__main__":
    main()
