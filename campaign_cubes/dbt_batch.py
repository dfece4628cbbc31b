"""Several dbt invocations in one process, one after the other.

`python -m campaign_cubes.dbt_batch '<JSON list of argument lists>'` runs each
with dbt's in-process runner, so that jobs run together pay for one Python start
and one import of dbt instead of one per job. Before and after each invocation it
prints a marker line (`{"campaign_cubes_batch": ...}`) between dbt's own JSON log
lines, which `campaign_cubes.dbt.run_dbt_batch` reads to split the output and the
exit codes by invocation. An interrupt (SIGINT) stops the invocation under way, as
it stops dbt's command line, and the ones not started.
"""

from __future__ import annotations

import json
import sys
import time

from campaign_cubes.dbt import BATCH_MARK

EXIT_INTERRUPTED = 130


def mark(**fields: object) -> None:
    print(json.dumps({BATCH_MARK: fields}), flush=True)


def exit_code(result: object) -> int:
    """dbt's command-line exit code for an in-process result: 0, 1 (a node failed) or 2."""
    if getattr(result, "success", False):
        return 0
    problem = getattr(result, "exception", None)
    if isinstance(problem, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return 2 if problem is not None else 1


def main(argv: list[str]) -> int:
    invocations = json.loads(argv[1])
    from dbt.cli.main import dbtRunner  # after the arguments parse: a bad call fails fast

    for index, args in enumerate(invocations):
        mark(start=index)
        started = time.monotonic()
        result = dbtRunner().invoke(args)
        code = exit_code(result)
        problem = getattr(result, "exception", None)
        if problem is not None and code == 2:
            print(f"Encountered an error:\n{problem}", flush=True)  # as dbt's command line says it
        mark(end=index, exit_code=code, seconds=time.monotonic() - started)
        if code == EXIT_INTERRUPTED:
            return EXIT_INTERRUPTED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
