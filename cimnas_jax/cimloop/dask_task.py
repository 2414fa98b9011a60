"""Child process of one timed layer evaluation (``dask_executor.evaluate_task``).

stdin: cloudpickle of ``(evaluate_fn, record)``; stdout: pickle of ``(status, result, error)``
with status ``ok`` or ``error``. Whatever the evaluation prints goes to stderr, so stdout
carries only the outcome. The parent kills this process's group at the deadline.
"""
from __future__ import annotations

import os
import pickle
import sys


def main() -> int:
    from cimnas_jax.cimloop.runner import format_failure
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)                    # the evaluation's prints go to stderr
    fn, record = pickle.loads(sys.stdin.buffer.read())
    try:
        outcome = ("ok", fn(record), None)
    except Exception as e:  # noqa: BLE001 - a failure of the layer is an outcome
        outcome = ("error", None, format_failure(e))
    out.write(pickle.dumps(outcome))
    out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
