"""Record (``--write``) or check the metrics of five short runs, one per training kind.

The pinned records in ``tests/train/pinned_records.json`` were written by the code before
the one-loop refactor; ``tests/train/test_pinned_records.py`` checks that the code of today
gives the same records. The runs go through the command line, so they do not depend on
the Python API they exercise.

    python scripts/pin_records.py --write   # re-pin (say why in the commit)
    python scripts/pin_records.py           # compare, exit 1 on a difference
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PINNED = ROOT / "tests" / "train" / "pinned_records.json"

# configs/smoke.toml, made small: the shapes world of 1,500 pairs, 6 steps of 32
CONTRASTIVE_OVERRIDES = [
    "data.raw_size=1500",
    "data.eval_size=240",
    "data.retrieval_size=120",
    "data.probe_shots=2",
    "optim.warmup_steps=2",
    "train.steps=6",
    "train.batch_size=32",
    "train.eval_every=3",
    "train.checkpoint_every=2",
    "train.threads=1",
    "strategy.reference_steps=4",
    "strategy.chunks=4",
]

PARETO_OVERRIDES = [
    "train.steps=24",
    "train.eval_every=8",
    "train.checkpoint_every=12",
    "train.diag_every=4",
    "train.threads=1",
]

RUNS: dict[str, tuple[str, list[str]]] = {
    "contrastive-iid": ("contrastive", [*CONTRASTIVE_OVERRIDES, "strategy.name=iid"]),
    "contrastive-jest": ("contrastive", [*CONTRASTIVE_OVERRIDES, "strategy.name=jest"]),
    "contrastive-flexi-jest": (
        "contrastive",
        [*CONTRASTIVE_OVERRIDES, "strategy.name=flexi-jest"],
    ),
    "pareto-mmpareto": ("pareto", [*PARETO_OVERRIDES, "pareto.method=mmpareto"]),
    "pareto-uniform": ("pareto", [*PARETO_OVERRIDES, "pareto.method=uniform"]),
}


# keys renamed on purpose by the one-loop refactor (the values are the same): the loop
# logs each named loss term as ``train_loss/<name>`` and their total as ``train_loss``
RENAMED = {"train_loss_mm": "train_loss/multimodal"}


def upgrade(pinned: dict[str, list[dict[str, Any]]]) -> dict[str, list[dict[str, Any]]]:
    """Pinned records in today's key names: renamed keys, and ``train_loss`` (the mean of
    the terms' total, i.e. the sum of the terms' means) where the terms were logged."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, records in pinned.items():
        new = []
        for rec in records:
            r = {RENAMED.get(k, k): v for k, v in rec.items()}
            terms = [v for k, v in r.items() if k.startswith("train_loss/")]
            if terms and "train_loss" not in r:
                r["train_loss"] = sum(terms)
            new.append(r)
        out[kind] = new
    return out


def _jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def run_one(name: str, work: Path) -> dict[str, list[dict[str, Any]]]:
    """Train the pinned run ``name`` in ``work``; its metrics (and diagnostics) records."""
    from curatorch.cli import main

    kind, overrides = RUNS[name]
    sets = [x for o in overrides for x in ("--set", o)]
    out = work / name
    command = ["train", "smoke"] if kind == "contrastive" else ["pareto", "train", "pareto"]
    argv = [*command, *sets, "--out", str(out), "--no-progress"]
    code = main(argv)
    if code != 0:
        raise RuntimeError(f"{name}: curatorch {' '.join(argv)} exited {code}")
    return {
        "metrics": _jsonl(out / "metrics.jsonl"),
        "diagnostics": _jsonl(out / "diagnostics.jsonl"),
    }


def differences(
    want: Any, got: Any, *, where: str = "", rel: float = 0.0, abs_: float = 0.0
) -> list[str]:
    """Every place where ``got`` differs from ``want`` (numbers within ``rel``/``abs_``)."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = []
        for k in sorted(set(want) | set(got)):
            if k not in want or k not in got:
                out.append(f"{where}.{k}: only in {'want' if k in want else 'got'}")
            else:
                out += differences(want[k], got[k], where=f"{where}.{k}", rel=rel, abs_=abs_)
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{where}: {len(want)} records pinned, {len(got)} now"]
        return [
            d
            for i, (a, b) in enumerate(zip(want, got, strict=True))
            for d in differences(a, b, where=f"{where}[{i}]", rel=rel, abs_=abs_)
        ]
    num = (int, float)
    if isinstance(want, num) and isinstance(got, num) and not isinstance(want, bool):
        if math.isclose(want, got, rel_tol=rel, abs_tol=abs_):
            return []
    elif want == got:
        return []
    return [f"{where}: pinned {want!r}, now {got!r}"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--write", action="store_true", help="write the pinned records")
    p.add_argument("--only", nargs="*", default=list(RUNS), help="runs to do")
    args = p.parse_args(argv)
    pinned = json.loads(PINNED.read_text(encoding="utf-8")) if PINNED.exists() else {}
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.only:
            got = run_one(name, Path(tmp))
            if args.write:
                pinned[name] = got
                continue
            diffs = differences(upgrade(pinned[name]), got, where=name, rel=1e-12)
            print(f"{name}: {'identical' if not diffs else f'{len(diffs)} differences'}")
            for d in diffs[:20]:
                print("  ", d)
            bad += bool(diffs)
    if args.write:
        PINNED.write_text(json.dumps(pinned, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {PINNED}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
