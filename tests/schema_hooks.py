"""Schemathesis hooks for tests/test_schema.py (loaded through SCHEMATHESIS_HOOKS).

An OpenAPI schema cannot say that one field must not exceed another, so
schemathesis sends "valid" bodies that the API rightly refuses: salary_min
above salary_max, in a job and in recommendation filters (docs/api.md).

- filter_body drops such bodies where schemathesis lets hooks see them
  (the fuzzing and stateful phases);
- filter_failure forgives one failure only: "schema-valid request rejected"
  (ST202) for a body with salary_min above salary_max, answered 400
  invalid_request with a message that names exactly that. Every other
  failure, for that body too, stands."""
import json

import schemathesis


def _num(x):
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _salary_in_order(o):
    if not isinstance(o, dict):
        return True
    lo, hi = o.get("salary_min"), o.get("salary_max")
    return not (_num(lo) and _num(hi) and lo > hi)


def _in_order(body):
    return not isinstance(body, dict) or (_salary_in_order(body) and _salary_in_order(body.get("filters")))


@schemathesis.hook
def filter_body(context, body):
    return _in_order(body)


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if getattr(failure, "code", None) != "ST202" or _in_order(case.body) or response.status_code != 400:
        return True
    try:
        err = json.loads(response.text)["error"]
    except (ValueError, KeyError, TypeError):
        return True
    forgiven = err.get("code") == "invalid_request" and "salary_min is larger than" in err.get("message", "")
    return not forgiven
