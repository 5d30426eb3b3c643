"""A/B performance gate between two checkouts: the same benchmarks, alternating processes.

Single runs on a shared 2-core VM vary by 15-30 %, so one run decides nothing: each round
runs every benchmark once in each checkout (the order alternates between rounds), and the
verdict is the median over rounds of new/old per benchmark (a speed ratio: > 1 is faster).

Usage::

    git worktree add /tmp/old <old-commit>
    python benchmarks/ab.py /tmp/old . --rounds 5                  # window, join, nexmark
    python benchmarks/ab.py /tmp/old . --rounds 5 --only window

Each checkout runs with ``PYTHONPATH=<checkout>`` and its own ``NUMBA_CACHE_DIR``
(compilation happens in a warm-up run before round 1, never timed). Suites run at
``VSTREAM_BENCH_SCALE`` (default 0.2) of their full sizes; ``window_runs.py`` at full size.
Suites are judged on vstream's own best round per benchmark (``best ms <label>`` in the
report's extra_info); the peers (Polars, ...) run the same code on both sides, so their
ratios are printed as a control: how far the machine alone moved a ratio in this run. An
older checkout needs ``benchmarks/_bench.py`` from this one (``git show
main:benchmarks/_bench.py > /tmp/old/benchmarks/_bench.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

WINDOW_RUNS = [
    ("q1 by host_id", ["benchmarks/window_runs.py", "q1", "--rounds", "1"]),
    ("q1 by host", ["benchmarks/window_runs.py", "q1", "--by", "host", "--rounds", "1"]),
    ("q2 hopping", ["benchmarks/window_runs.py", "q2", "--rounds", "1"]),
]
SUITES = {
    "window": ["benchmarks/test_windows.py", "-k", "sparse or dense_tumbling or sessions"],
    "join": [
        "benchmarks/test_joins.py",
        "-k",
        "test_asof or test_interval or test_windowed or test_lookup",
    ],
    "nexmark": ["benchmarks/nexmark/test_nexmark.py", "-k", "test_throughput and not generation"],
}


def _env(tree: Path, scale: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=str(tree),
        NUMBA_CACHE_DIR=str(tree / ".numba-cache-ab"),
        POLARS_MAX_THREADS="1",
        NUMBA_NUM_THREADS="1",
        VSTREAM_BENCH_SCALE=scale,
        # one seed on both sides: str hashes (dict and set layouts) vary by process
        # otherwise, one source of the process-to-process spread
        PYTHONHASHSEED="0",
    )
    env.pop("VSTREAM_BENCH_QUICK", None)
    return env


def _window_run(tree: Path, args: list[str], scale: str) -> float:
    out = subprocess.run(
        [sys.executable, *args],
        cwd=tree,
        env=_env(tree, scale),
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # "  vstream q1 by host   263.7 ms  37.9 M events/s": our line
    found = re.search(r"^\s+vstream .*?\s([\d.]+) ms", out, re.MULTILINE)
    if found is None:
        msg = f"no timing in the output of {args}:\n{out}"
        raise RuntimeError(msg)
    return float(found.group(1))


def _suite_run(tree: Path, args: list[str], scale: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "bench.json"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pytest",
                *args,
                "--benchmark-only",
                "-q",
                "-p",
                "no:cacheprovider",
                f"--benchmark-json={report}",
                "--benchmark-max-time=0.2",  # pytest-benchmark's rounds: a few suffice here
                "--benchmark-min-rounds=3",
            ],
            cwd=tree,
            env=_env(tree, scale),
            capture_output=True,
            text=True,
            check=True,
        )
        data = json.loads(report.read_text())
    got: dict[str, float] = {}
    for b in data["benchmarks"]:
        # each callable's best round (vstream and its peer apart), where the harness
        # records it; else the whole round's median (ours and the peer together)
        each = {k[len(_BEST) :]: v for k, v in b["extra_info"].items() if k.startswith(_BEST)}
        got.update(each or {b["fullname"].split("::")[-1]: b["stats"]["median"] * 1e3})
    return got


_BEST = "best ms "


def _is_peer(name: str) -> bool:
    """A peer's timing (Polars, numpy, a hand-written loop): the same code in both
    checkouts, so its new/old ratio shows how much the machine drifted, not the change."""
    return ": " in name and "vstream" not in name.lower()  # window_runs: vstream's own


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", choices=["window_runs", *SUITES], action="append")
    parser.add_argument("--scale", default="0.2", help="suite sizes, fraction of full")
    parser.add_argument(
        "--save",
        type=Path,
        help="write every round's times (old and new, by benchmark) to this JSON file, "
        "so runs can be pooled: the spread on this VM needs more rounds than one run has",
    )
    args = parser.parse_args()
    chosen = args.only or ["window_runs", *SUITES]
    trees = {"old": args.old.resolve(), "new": args.new.resolve()}
    for side, tree in trees.items():
        # a checkout whose harness ignores VSTREAM_BENCH_SCALE would run its suites at full
        # size against the other's fraction: give it _bench.py's two lines for it
        harness = (tree / "benchmarks" / "_bench.py").read_text()
        if any(s in SUITES for s in chosen) and "VSTREAM_BENCH_SCALE" not in harness:
            msg = f"{side} checkout {tree}: benchmarks/_bench.py does not read VSTREAM_BENCH_SCALE"
            raise SystemExit(msg)
        if any(s in SUITES for s in chosen) and _BEST not in harness:
            # its suites would report whole rounds (vstream + peer) against the other's
            # vstream-only times: give it _bench.py's "best ms" lines
            msg = f"{side} checkout {tree}: benchmarks/_bench.py does not record {_BEST!r}"
            raise SystemExit(msg)
    times: dict[str, dict[str, list[float]]] = {"old": {}, "new": {}}

    def one(side: str) -> dict[str, float]:
        tree = trees[side]
        got: dict[str, float] = {}
        if "window_runs" in chosen:
            for name, cmd in WINDOW_RUNS:
                got[name] = _window_run(tree, cmd, args.scale)
        for suite in chosen:
            if suite in SUITES:
                got.update(
                    {
                        f"{suite}: {k}": v
                        for k, v in _suite_run(tree, SUITES[suite], args.scale).items()
                    }
                )
        return got

    for side in ("old", "new"):  # warm-up: numba caches, page cache; not counted
        one(side)
    for r in range(args.rounds):
        order = ("old", "new") if r % 2 == 0 else ("new", "old")
        for side in order:
            for name, ms in one(side).items():
                times[side].setdefault(name, []).append(ms)
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr, flush=True)
        if args.save is not None:  # after every round: an interrupted run keeps its rounds
            args.save.write_text(json.dumps(times, indent=1))

    print(
        f"{'benchmark':55s} {'old ms':>9s} {'new ms':>9s} {'new/old speed':>13s}  spread of ratios"
    )
    worst = float("inf")
    peers: list[float] = []
    for name in sorted(times["old"], key=_is_peer):
        old, new = times["old"][name], times["new"].get(name)
        if not new:
            continue
        ratios = [o / n for o, n in zip(old, new, strict=False)]
        med = statistics.median(ratios)
        if _is_peer(name):
            peers.append(med)
        else:
            worst = min(worst, med)
        tag = "  (peer: control)" if _is_peer(name) else ""
        print(
            f"{name:55s} {statistics.median(old):9.1f} {statistics.median(new):9.1f} "
            f"{med:13.3f}  {min(ratios):.2f}-{max(ratios):.2f}{tag}"
        )
    print(f"lowest median speed ratio of vstream: {worst:.3f} (gate: >= 0.95)")
    if peers:
        print(
            f"peers (same code both sides), median ratios {min(peers):.3f}-{max(peers):.3f}: "
            "how far the machine alone moves a ratio"
        )


if __name__ == "__main__":
    main()
