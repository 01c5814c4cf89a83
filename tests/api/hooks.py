"""schemathesis checks of Ignis's own, loaded by tests/api/schemathesis.toml."""

import schemathesis

# What invoke and the playground answer when a *function* failed (its handler raised,
# timed out, crashed, ran out of memory, answered something unreadable, could not start,
# or its deploy failed): 5xx by design, as an API gateway answers them. Nothing else may
# be a 5xx.
FUNCTION_OUTCOMES = {
    "function_error",
    "timeout",
    "instance_crashed",
    "out_of_memory",
    "response_too_large",
    "invalid_response",
    "instance_start_failed",
    "not_ready",
}
CALLS = {"/v1/functions/{name}/invoke", "/v1/playground/run"}


@schemathesis.check
def no_server_fault(ctx, response, case):
    """A 5xx only reports a function's own failure, on the routes that run functions."""
    if response.status_code < 500:
        return None
    try:
        code = response.json()["error"]["code"]
    except Exception:  # not the API's error shape: the handler's own answer, if anything
        code = None
    if case.operation.path in CALLS:
        if code in FUNCTION_OUTCOMES:
            return None
        # A handler may answer any status itself: the answer then carries the invocation.
        if code is None and response.headers.get("x-ignis-invocation-id"):
            return None
    raise AssertionError(
        f"{response.status_code} with error code {code!r}: a fault of the server, not of a function"
    )
