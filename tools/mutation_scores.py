"""Print the mutation score of each mutated file after ``mutmut run`` (tox -e mutation).

mutmut 3 keeps each file's results in ``mutants/<path>.meta`` (JSON), one
exit code per mutant: 1 or 3 killed, 0 survived, 33 no test ran it, 36 or
24 timed out, ``None`` not run yet. The score is killed / (killed + survived
+ no tests): a mutant no test runs is a surviving one. Timeouts count as
killed, as mutmut counts them; they are listed apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

KILLED = {1, 3}
SURVIVED = {0}
NO_TESTS = {5, 33}
TIMEOUT = {24, -24, 36, 152, 255}


def main() -> int:
    metas = sorted(Path("mutants").rglob("*.py.meta"))
    if not metas:
        print("no mutmut results: run `mutmut run` first", file=sys.stderr)
        return 1
    print(f"{'file':<32} {'killed':>7} {'timeout':>7} {'survived':>8} {'no test':>7} {'score':>7}")
    for meta in metas:
        codes = list(json.loads(meta.read_text("utf-8"))["exit_code_by_key"].values())
        killed = sum(code in KILLED for code in codes)
        timeout = sum(code in TIMEOUT for code in codes)
        survived = sum(code in SURVIVED for code in codes)
        untested = sum(code in NO_TESTS for code in codes)
        judged = killed + timeout + survived + untested
        score = f"{100 * (killed + timeout) / judged:.1f}%" if judged else "-"
        name = str(meta.relative_to("mutants"))[: -len(".meta")]
        print(f"{name:<32} {killed:>7} {timeout:>7} {survived:>8} {untested:>7} {score:>7}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
