"""The mutation score of the last ``mutmut run``, with the equivalent mutants set aside.

    python -m tests.mutation_score            # the table
    python -m tests.mutation_score --list     # also every mutant not killed, by status

Reads mutmut's per-file results (``mutants/**/*.meta``: exit code 1 = killed, 0 = survived,
33 = no test reaches it, -24/24/36 = timeout/suspicious, null = not run yet) and
``docs/mutation_equivalents.txt`` (one mutant name per line, then ``#`` and the reason it cannot
change any observable behaviour; blank lines and whole-line comments ignored). The score is

    killed / (killed + survived that are not equivalent + no tests + timeouts),

over the mutants run so far: a mutant no test reaches counts against the suite, an equivalent
one counts for nothing.
"""

from __future__ import annotations

import argparse
import collections
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATUS = {1: "killed", 0: "survived", 33: "no tests", None: "not run"}


def equivalents(path: Path = ROOT / "docs" / "mutation_equivalents.txt") -> dict[str, str]:
    """name -> reason, from the hand-kept list of equivalent mutants."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, reason = line.partition("#")
        found[name.strip()] = reason.strip()
    return found


def results(root: Path = ROOT / "mutants") -> dict[str, int | None]:
    """mutant name -> mutmut's exit code, over every mutated file."""
    codes = {}
    for meta in sorted(root.glob("**/*.meta")):
        codes.update(json.loads(meta.read_text(encoding="utf-8"))["exit_code_by_key"])
    return codes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list every mutant run and not killed")
    args = parser.parse_args()
    codes, equivalent = results(), equivalents()
    status = {
        name: "equivalent" if code == 0 and name in equivalent else STATUS.get(code, "timeout")
        for name, code in codes.items()
    }
    counts = collections.Counter(status.values())
    counted = sum(counts[s] for s in ("killed", "survived", "no tests", "timeout"))
    for key in ("killed", "survived", "equivalent", "no tests", "timeout", "not run"):
        print(f"{key:>11}: {counts[key]:5d}")
    print(f"{'total':>11}: {len(codes):5d}")
    if counted:
        print(f"{'score':>11}: {counts['killed'] / counted:.1%} of the non-equivalent mutants run")
    stale = sorted(set(equivalent) - {n for n, s in status.items() if s == "equivalent"})
    if stale:
        print(f"{len(stale)} listed as equivalent but not surviving (killed, changed or gone)")
    if args.list:
        for name in sorted(status):
            if status[name] not in ("killed", "equivalent", "not run"):
                print(f"{status[name]:>9}  {name}")


if __name__ == "__main__":
    main()
