"""Evaluates flags through the real Python OpenFeature SDK and its OFREP
provider, against a running `backout flags serve`.

Usage: ofrep_client.py BASE_URL TOKEN < cases.json > results.json
cases: [{"flag", "type": boolean|string|integer|float|object, "default",
"context": {...}}]; results: [{"value", "variant", "reason", "error"}].
"""

import json
import sys

from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext


def main():
    base_url, token = sys.argv[1], sys.argv[2]
    headers = (lambda: {"Authorization": "Bearer " + token}) if token else None
    api.set_provider(OFREPProvider(base_url, headers_factory=headers))
    client = api.get_client()
    out = []
    for case in json.load(sys.stdin):
        ctx = dict(case.get("context") or {})
        key = ctx.pop("targetingKey", None)
        method = getattr(client, "get_%s_details" % case["type"])
        details = method(case["flag"], case["default"], EvaluationContext(key, ctx))
        out.append(
            {
                "value": details.value,
                "variant": details.variant,
                "reason": str(details.reason.value if hasattr(details.reason, "value") else details.reason),
                "error": details.error_code.value if details.error_code else None,
                "metadata": dict(details.flag_metadata or {}),
            }
        )
    json.dump(out, sys.stdout)


main()
