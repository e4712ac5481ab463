"""Ours by instructions: each Bundle of the compare corpus against the same resources alone, counted by callgrind,
beside the timed pairs (bench/protocol.py rule 4). An instruction count does not move with the host's load, so it
says whether a timed ratio away from 1.00 is the validator's or the machine's; it counts neither cache misses nor
the collector's timing, which the timed ratio does. Run only when valgrind is on PATH, for ours only (a JIT's
instructions, HAPI's and Node's, are no measure of its steady speed).

    python -m bench.instructions child MANIFEST.json   # under valgrind; the parent is count()
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TIMEOUT_S = 600
REPS = 2  # pairs counted per Bundle: a collection falls in one or the other, so the ratio is of their sums
WHAT = (f"callgrind instructions of parse + validate, {REPS} calls of the Bundle against {REPS} passes over its "
        f"entries as singles, alternated, after a warm-up, PYTHONHASHSEED=0")


def count(files: list[dict[str, Any]], pairs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per Bundle size, its instructions over its singles' (as the pairs: `pairs` from contenders.Plan.pairs)."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return {"what": WHAT, "status": "not counted: valgrind is not on PATH"}
    with tempfile.TemporaryDirectory(prefix="kfhir-bench-cg-") as tmp:
        manifest = Path(tmp) / "manifest.json"
        manifest.write_text(json.dumps({"files": files, "pairs": pairs}), encoding="utf-8")
        env = dict(os.environ, PYTHONHASHSEED="0")  # string hashes move the count by ~0.3 % between processes
        command = [valgrind, "--tool=callgrind", "--instr-atstart=no", "--dump-before=os_getppid",
                   f"--callgrind-out-file={tmp}/cg.out",
                   sys.executable, "-m", "bench.instructions", "child", str(manifest)]
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT_S,  # noqa: S603
                                  check=False, cwd=Path(__file__).resolve().parent.parent)
        except subprocess.TimeoutExpired:
            return {"what": WHAT, "status": f"not counted: over {TIMEOUT_S} s"}
        if done.returncode != 0:
            return {"what": WHAT, "status": f"not counted: exited {done.returncode}"}
        totals = _totals(tmp)
    # per Bundle a dump of its untimed calls (the first also the start-up and warm-up), then REPS pairs of dumps: its
    # call, its singles'
    step = 1 + 2 * REPS
    if len(totals) < step * len(pairs):
        return {"what": WHAT, "status": f"not counted: {len(totals)} dumps"}
    counted = {str(files[spec["bundle"]]["entries"]): totals[step * k + 1:step * (k + 1)]
               for k, spec in enumerate(pairs)}
    return {"what": WHAT, "status": "counted", "instructions": counted,
            "ratios": {k: sum(n[0::2]) / sum(n[1::2]) for k, n in counted.items()}}


def _totals(folder: str) -> list[int]:
    """Each dump's instruction total, in dump order (cg.out.1, cg.out.2 …)."""
    out = []
    for path in sorted(glob.glob(f"{folder}/cg.out.*"), key=lambda p: int(p.rsplit(".", 1)[1])):
        with open(path, encoding="utf-8") as f:
            out.append(next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:"))))
    return out


def child(manifest_path: str) -> None:
    """Under callgrind, instrumented once warm: warm up as the contenders do (each single and the smallest Bundle,
    twice), then per Bundle REPS calls of it and passes over its singles, alternated, each between two os.getppid()
    calls (a callgrind dump each), after one untimed call of each."""
    from bench.child import CONTENDERS

    manifest = json.loads(Path(manifest_path).read_text(encoding="utf-8"))
    _, check, _ = CONTENDERS["ours"]([])
    texts = [Path(f["path"]).read_text(encoding="utf-8") for f in manifest["files"]]
    smallest = min(manifest["pairs"], key=lambda spec: len(spec["singles"]))["bundle"]
    for _ in range(2):
        for i, f in enumerate(manifest["files"]):
            if f["kind"] != "bundle" or i == smallest:
                check(texts[i])
    # instrumented from here on (the start-up, uncounted, runs several times faster so); callgrind_control writes a
    # command file that callgrind reads within a second
    subprocess.run(["callgrind_control", "-i", "on", str(os.getpid())], capture_output=True, check=False)  # noqa: S603, S607
    began = time.monotonic()
    while time.monotonic() - began < 1.0:
        pass
    for spec in manifest["pairs"]:
        check(texts[spec["bundle"]])
        for i in spec["singles"]:
            check(texts[i])
        os.getppid()
        for _ in range(REPS):
            check(texts[spec["bundle"]])
            os.getppid()
            for i in spec["singles"]:
                check(texts[i])
            os.getppid()


if __name__ == "__main__":
    if sys.argv[1:2] == ["child"]:
        child(sys.argv[2])
