"""Runs the reference flagd evaluator (`openfeature-flagd-core` 2.x, PyPI)
over flag documents and contexts, so backout's evaluator can be checked
against it.

Subcommands:
  evaluate CORPUS OUT     evaluate every case of CORPUS (JSON) and write the
                          results to OUT (JSON), one per evaluation
  random SEED COUNT OUT   write COUNT randomly generated documents (with
                          contexts) to OUT
  vectors OUT             write the committed vectors: the hand-written
                          corpus plus a fixed random one, with the reference
                          results

A corpus is a list of cases: {"doc": <flag document>, "now": <unix secs>,
"evals": [{"flag": key, "ctx": object|null, "type": t|null, "default": v}]}
where t is boolean, string, integer, float or object (null: untyped).
A result is {"value", "variant", "reason", "error"}: `error` is the
OpenFeature error code or null.
"""

import json
import random
import sys
import time

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import OpenFeatureError

_NOW = [0]
# `$flagd.timestamp` reads the clock; the corpus fixes it.
time.time = lambda: _NOW[0]


def run_case(case):
    core = FlagdCore()
    # The reference edits the document it is given (it renames fields), so
    # it gets a copy.
    core.set_flags(json.loads(json.dumps(case["doc"])))
    _NOW[0] = case.get("now", 0)
    out = []
    for ev in case["evals"]:
        ctx = ev.get("ctx")
        ec = None
        if ctx is not None:
            attrs = dict(ctx)
            key = attrs.pop("targetingKey", None)
            ec = EvaluationContext(targeting_key=key, attributes=attrs)
        ty = ev.get("type")
        default = ev.get("default")
        try:
            if ty is None:
                res = core._resolve(ev["flag"], default, ec, None)
            else:
                method = getattr(core, "resolve_%s_value" % ty)
                res = method(ev["flag"], default, ec)
            reason = res.reason.value if hasattr(res.reason, "value") else str(res.reason)
            out.append(
                {
                    "value": res.value,
                    "variant": res.variant,
                    "reason": reason,
                    "error": None,
                    "metadata": dict(res.flag_metadata or {}),
                }
            )
        except OpenFeatureError as e:
            out.append({"value": default, "variant": None, "reason": "ERROR", "error": e.error_code.value})
        except Exception:  # noqa: BLE001 - any other raise is a GENERAL error to a provider
            out.append({"value": default, "variant": None, "reason": "ERROR", "error": "GENERAL"})
    return out


def evaluate(corpus):
    # JsonLogic's `log` prints to stdout; keep stdout for nothing else.
    real_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        return [run_case(case) for case in corpus]
    finally:
        sys.stdout = real_stdout


# --- Random corpus ---------------------------------------------------------

ATTRS = ["age", "country", "email", "tier", "tags", "profile", "score", "version", "beta", "nothing", "ua"]
PATHS = ATTRS + [
    "targetingKey",
    "$flagd.flagKey",
    "$flagd.timestamp",
    "profile.plan",
    "profile.seats",
    "tags.0",
    "tags.length",
    "email.length",
    "missing.deep",
    "",
]
STRINGS = ["jp", "us", "de", "", "a", "abc", "10", "9", "1.5", " 2 ", "1_0", "true", "null", "é", "Mac OS X", "x@example.com", "gold"]
VERSIONS = ["1.2.3", "v1.2", "2", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0+b", "01.2.3", "1.2.3.4", "bad", 1.5, 3]
VARIANT_NAMES = ["on", "off", "a", "b", "true", "false", "1", "1.5", "0", "gold", ""]


def rand_scalar(r):
    return r.choice(
        [
            None,
            True,
            False,
            r.randint(-5, 20),
            r.choice([0, 1, 2, 10, 100, -1]),
            r.choice([0.5, 1.0, 1.5, -2.25, 0.1, 1e16, 3.0]),
            r.choice(STRINGS),
        ]
    )


def rand_context(r):
    ctx = {}
    if r.random() < 0.8:
        ctx["targetingKey"] = r.choice(["user-%d" % r.randint(0, 50), "", "u"])
    for name in ATTRS:
        if r.random() < 0.55:
            kind = r.random()
            if name == "tags":
                ctx[name] = [r.choice(STRINGS) for _ in range(r.randint(0, 3))]
            elif name == "profile":
                ctx[name] = {"plan": r.choice(["free", "pro", None, 3]), "seats": r.randint(0, 9)}
            elif name == "version":
                ctx[name] = r.choice(VERSIONS)
            elif kind < 0.15:
                ctx[name] = [rand_scalar(r) for _ in range(r.randint(0, 2))]
            else:
                ctx[name] = rand_scalar(r)
    return ctx


def rand_expr(r, depth):
    """A random JsonLogic expression (any result type)."""
    if depth <= 0 or r.random() < 0.3:
        if r.random() < 0.5:
            return {"var": r.choice(PATHS)} if r.random() < 0.8 else {"var": [r.choice(PATHS), rand_scalar(r)]}
        if r.random() < 0.15:
            return [rand_scalar(r) for _ in range(r.randint(0, 3))]
        return rand_scalar(r)
    d = depth - 1
    op = r.choice(
        [
            "==", "!=", "===", "!==", "<", "<=", ">", ">=", "<3",
            "!", "!!", "and", "or", "if",
            "+", "-", "*", "/", "%", "min", "max",
            "cat", "substr", "in", "merge", "missing", "missing_some",
            "map", "filter", "reduce", "all", "some", "none",
            "starts_with", "ends_with", "sem_ver", "fractional", "var_dyn",
        ]
    )
    e = lambda: rand_expr(r, d)  # noqa: E731
    if op in ("==", "!=", "===", "!==", "<", "<=", ">", ">="):
        return {op: [e(), e()]}
    if op == "<3":
        return {r.choice(["<", "<="]): [e(), e(), e()]}
    if op in ("!", "!!"):
        return {op: [e()]} if r.random() < 0.7 else {op: e()}
    if op in ("and", "or"):
        return {op: [e() for _ in range(r.randint(1, 3))]}
    if op == "if":
        return {"if": [e() for _ in range(r.choice([1, 2, 3, 3, 4, 5]))]}
    if op in ("+", "*", "min", "max", "cat", "merge"):
        return {op: [e() for _ in range(r.randint(0, 3))]}
    if op in ("-", "/", "%"):
        return {op: [e() for _ in range(r.randint(1, 2))]}
    if op == "substr":
        return {"substr": [e()] + [r.choice([r.randint(-4, 4), e()]) for _ in range(r.randint(0, 2))]}
    if op == "in":
        return {"in": [e(), r.choice([e(), [rand_scalar(r) for _ in range(3)], r.choice(STRINGS)])]}
    if op == "missing":
        return {"missing": [r.choice(PATHS) for _ in range(r.randint(0, 3))]}
    if op == "missing_some":
        return {"missing_some": [r.randint(0, 3), [r.choice(PATHS) for _ in range(r.randint(0, 3))]]}
    if op in ("map", "filter", "all", "some", "none"):
        items = r.choice([{"var": "tags"}, [rand_scalar(r) for _ in range(r.randint(0, 3))], e()])
        inner = r.choice([{"var": ""}, {"==": [{"var": ""}, rand_scalar(r)]}, {"!!": {"var": ""}}, {"cat": [{"var": ""}, "x"]}])
        return {op: [items, inner]}
    if op == "reduce":
        items = r.choice([{"var": "tags"}, [r.randint(0, 5) for _ in range(r.randint(0, 3))]])
        logic = r.choice([{"+": [{"var": "accumulator"}, {"var": "current"}]}, {"cat": [{"var": "accumulator"}, {"var": "current"}]}])
        return {"reduce": [items, logic, rand_scalar(r)]}
    if op in ("starts_with", "ends_with"):
        return {op: [r.choice([{"var": "email"}, {"var": "ua"}, e()]), r.choice(STRINGS + ["x", "Mac"])]}
    if op == "sem_ver":
        return {"sem_ver": [r.choice([{"var": "version"}, r.choice(VERSIONS)]), r.choice(["=", "!=", "<", "<=", ">", ">=", "^", "~", "==", 1]), r.choice(VERSIONS)]}
    if op == "fractional":
        return rand_fractional(r, d)
    return {"var": [r.choice([{"cat": ["profile", ".", r.choice(["plan", "seats"])]}, r.choice(PATHS), 0, 1.0, True])]}


def rand_fractional(r, depth):
    names = r.sample(["on", "off", "a", "b", "gold"], r.randint(1, 3))
    fractions = []
    for n in names:
        roll = r.random()
        if roll < 0.7:
            fractions.append([n, r.randint(0, 60)])
        elif roll < 0.8:
            fractions.append([n])
        elif roll < 0.87:
            fractions.append([n, r.choice([-5, 2147483647, 1.5, True])])
        else:
            fractions.append([n, {"var": "score"}])
    form = r.random()
    if form < 0.4:
        return {"fractional": fractions}
    if form < 0.6:
        by = {"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}
    elif form < 0.8:
        by = {"var": r.choice(["email", "age", "score", "tags", "profile", "nothing", "beta"])}
    else:
        by = rand_scalar(r)
    return {"fractional": [by] + fractions}


def rand_variant_expr(r, depth):
    roll = r.random()
    if roll < 0.5:
        return r.choice(VARIANT_NAMES)
    if roll < 0.6:
        return rand_fractional(r, depth)
    return rand_expr(r, depth)


def rand_flag(r):
    names = r.sample(VARIANT_NAMES[:-1], r.randint(1, 4))
    value_kind = r.choice(["bool", "string", "int", "float", "object", "mixed"])
    variants = {}
    for i, n in enumerate(names):
        if value_kind == "bool":
            variants[n] = i % 2 == 0
        elif value_kind == "string":
            variants[n] = "value-" + n
        elif value_kind == "int":
            variants[n] = i * 10
        elif value_kind == "float":
            variants[n] = i + 0.5
        elif value_kind == "object":
            variants[n] = {"n": i} if i % 2 else [i]
        else:
            variants[n] = rand_scalar(r)
    flag = {"state": "ENABLED" if r.random() < 0.9 else "DISABLED", "variants": variants}
    roll = r.random()
    if roll < 0.8:
        flag["defaultVariant"] = r.choice(names)
    elif roll < 0.9:
        flag["defaultVariant"] = None
    if r.random() < 0.85:
        depth = r.randint(1, 4)
        shape = r.random()
        if shape < 0.6:
            flag["targeting"] = {"if": [rand_expr(r, depth), rand_variant_expr(r, depth), rand_variant_expr(r, depth)]}
        elif shape < 0.8:
            flag["targeting"] = rand_fractional(r, depth)
        else:
            flag["targeting"] = {"if": [rand_expr(r, depth), rand_variant_expr(r, depth)]}
    if r.random() < 0.3:
        flag["metadata"] = {"owner": "team-" + r.choice(["a", "b"]), "weight": r.randint(0, 3)}
    return flag


def rand_doc(r):
    doc = {"flags": {}}
    for i in range(r.randint(1, 4)):
        doc["flags"]["flag-%d" % i] = rand_flag(r)
    if r.random() < 0.3:
        doc["metadata"] = {"flagSetId": "set-%d" % r.randint(0, 9), "version": 1.5}
    return doc


TYPES = [None, None, "boolean", "string", "integer", "float", "object"]
DEFAULTS = {None: "caller-default", "boolean": False, "string": "caller", "integer": -1, "float": -1.5, "object": {"caller": True}}


def rand_corpus(seed, count):
    r = random.Random(seed)
    corpus = []
    for _ in range(count):
        doc = rand_doc(r)
        evals = []
        for key in list(doc["flags"]) + ["no-such-flag"]:
            for _ in range(6):
                ty = r.choice(TYPES)
                evals.append({"flag": key, "ctx": rand_context(r) if r.random() < 0.95 else None, "type": ty, "default": DEFAULTS[ty]})
        corpus.append({"doc": doc, "now": 1_700_000_000 + r.randint(0, 1000), "evals": evals})
    return corpus


# --- Hand-written corpus ---------------------------------------------------


def hand_corpus():
    """flagd's documented examples and the corners worth pinning down."""
    docs = [
        {
            "flags": {
                "myBoolFlag": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
                "myStringFlag": {"state": "ENABLED", "variants": {"key1": "val1", "key2": "val2"}, "defaultVariant": "key1"},
                "myFloatFlag": {"state": "ENABLED", "variants": {"one": 1.23, "two": 2.34}, "defaultVariant": "one"},
                "myIntFlag": {"state": "ENABLED", "variants": {"one": 1, "two": 2}, "defaultVariant": "one"},
                "myObjectFlag": {"state": "ENABLED", "variants": {"object1": {"key": "val"}, "object2": {"key": True}}, "defaultVariant": "object1"},
                "isColorYellow": {
                    "state": "ENABLED",
                    "variants": {"on": True, "off": False},
                    "defaultVariant": "off",
                    "targeting": {"if": [{"==": [{"var": ["color"]}, "yellow"]}, "on", "off"]},
                },
                "fibAlgo": {
                    "variants": {"recursive": "recursive", "memo": "memo", "loop": "loop", "binet": "binet"},
                    "defaultVariant": "recursive",
                    "state": "ENABLED",
                    "targeting": {"if": [{"$ref": "emailWithFaas"}, "binet", None]},
                },
                "headerColor": {
                    "variants": {"red": "#FF0000", "blue": "#0000FF", "green": "#00FF00", "yellow": "#FFFF00"},
                    "defaultVariant": "red",
                    "state": "ENABLED",
                    "targeting": {"if": [{"$ref": "emailWithFaas"}, {"fractional": [{"var": "email"}, ["red", 25], ["blue", 25], ["green", 25], ["yellow", 25]]}, None]},
                },
                "split": {
                    "state": "ENABLED",
                    "variants": {"a": "A", "b": "B", "c": "C"},
                    "defaultVariant": "a",
                    "targeting": {"fractional": [["a", 10], ["b", 30], ["c", 60]]},
                },
                "splitByCat": {
                    "state": "ENABLED",
                    "variants": {"a": 1, "b": 2},
                    "defaultVariant": "a",
                    "targeting": {"fractional": [{"cat": [{"var": "$flagd.flagKey"}, {"var": "email"}]}, ["a", 50], ["b", 50]]},
                },
                "mobile": {
                    "state": "ENABLED",
                    "variants": {"on": True, "off": False},
                    "defaultVariant": "off",
                    "targeting": {
                        "if": [
                            {"and": [{"==": [{"var": "country"}, "jp"]}, {"in": ["Mac OS", {"var": "ua"}]}]},
                            {"fractional": [["on", 5], ["off", 95]]},
                            None,
                        ]
                    },
                },
                "versioned": {
                    "state": "ENABLED",
                    "variants": {"new": "new", "old": "old"},
                    "defaultVariant": "old",
                    "targeting": {"if": [{"sem_ver": [{"var": "version"}, ">=", "1.2.0"]}, "new", "old"]},
                },
                "domains": {
                    "state": "ENABLED",
                    "variants": {"staff": "staff", "ext": "ext"},
                    "defaultVariant": "ext",
                    "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "staff", {"if": [{"starts_with": [{"var": "email"}, "admin"]}, "staff"]}]},
                },
                "disabled": {"state": "DISABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"},
                "noDefault": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": None, "targeting": {"if": [{"var": "beta"}, "on"]}},
                "noDefaultStatic": {"state": "ENABLED", "variants": {"on": True}},
                "badDefault": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "nope"},
                "boolVariant": {"state": "ENABLED", "variants": {"true": "yes", "false": "no"}, "defaultVariant": False, "targeting": {"==": [{"var": "tier"}, "gold"]}},
                "numVariant": {"state": "ENABLED", "variants": {"1": "one", "1.5": "one and a half", "2.0": "two"}, "defaultVariant": "1", "targeting": {"if": [{"var": "n"}, {"+": [{"var": "n"}, 0.5]}, {"+": [1, 1.0]}]}},
                "badTargetingVariant": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "targeting": {"cat": ["o", "ff"]}},
                "unknownOp": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "targeting": {"nope": [1]}},
                "divZero": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "targeting": {"if": [{"/": [1, 0]}, "on"]}},
                "timestamp": {"state": "ENABLED", "variants": {"before": 0, "after": 1}, "defaultVariant": "before", "targeting": {"if": [{">": [{"var": "$flagd.timestamp"}, 1700000500]}, "after", "before"]}},
                "emptyTargeting": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "targeting": {}},
                "withMeta": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on", "metadata": {"owner": "payments", "flagSetId": "override"}},
                "nullValue": {"state": "ENABLED", "variants": {"on": None, "off": False}, "defaultVariant": "on", "targeting": {"if": [{"var": "beta"}, "on", "off"]}},
            },
            "$evaluators": {"emailWithFaas": {"in": ["@faas.com", {"var": ["email"]}]}},
            "metadata": {"flagSetId": "examples", "version": 3},
        }
    ]
    contexts = [
        None,
        {},
        {"targetingKey": "user-1"},
        {"targetingKey": "user-2", "color": "yellow", "email": "jon@faas.com", "country": "jp", "ua": "Mozilla/5.0 (Macintosh; Mac OS X)"},
        {"targetingKey": "user-3", "email": "admin@corp.io", "version": "v1.3", "tier": "gold", "beta": True, "n": 1},
        {"targetingKey": "", "email": "ann@example.com", "version": "1.1.9", "n": 0.5},
        {"targetingKey": "user-4", "email": "x@faas.com", "version": "1.2.0-rc.1", "tier": "silver", "n": 1.0},
    ] + [{"targetingKey": "user-%d" % i, "email": "u%d@faas.com" % i, "country": "jp", "ua": "Mac OS"} for i in range(5, 40)]
    corpus = []
    for doc in docs:
        evals = []
        for key in list(doc["flags"]) + ["no-such-flag"]:
            for ctx in contexts:
                for ty in TYPES[1:] + [None]:
                    evals.append({"flag": key, "ctx": ctx, "type": ty, "default": DEFAULTS[ty]})
        for now in (1_700_000_000, 1_700_001_000):
            corpus.append({"doc": doc, "now": now, "evals": [dict(ev) for ev in evals]})
    return corpus


def main(argv):
    cmd = argv[1]
    if cmd == "evaluate":
        with open(argv[2]) as f:
            corpus = json.load(f)
        with open(argv[3], "w") as f:
            json.dump(evaluate(corpus), f)
    elif cmd == "random":
        with open(argv[4], "w") as f:
            json.dump(rand_corpus(int(argv[2]), int(argv[3])), f)
    elif cmd == "vectors":
        corpus = hand_corpus() + rand_corpus(20261122, 100)
        results = evaluate(corpus)
        for case, res in zip(corpus, results):
            for ev, r in zip(case["evals"], res):
                ev["expect"] = r
        with open(argv[2], "w") as f:
            json.dump(corpus, f, separators=(",", ":"))
    else:
        raise SystemExit("unknown subcommand %r" % cmd)


if __name__ == "__main__":
    main(sys.argv)
