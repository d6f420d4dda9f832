#!/usr/bin/env python
"""Kill training with SIGKILL at random moments, resume it, and check nothing was lost.

For each strategy (``iid``, ``jest``, ``flexi-jest``: ``curatorch train``; ``pareto``:
``curatorch pareto train``) on a tiny config that trains in seconds:

1. an uninterrupted run (``--resume`` on a missing folder: must start fresh), timed;
2. the same command into another folder (created empty first: ``--resume`` on an empty
   folder must start fresh too), SIGKILLed at least ``--kills`` times at seeded random
   moments: after a random delay, or while a checkpoint is being written (the trainer's
   ``checkpoints/.step_*.tmp`` folder is polled every millisecond and the process killed
   when the n-th write of a launch starts, plus a random few milliseconds); after every
   kill the latest checkpoint on disk must load (``latest_checkpoint`` +
   ``load_checkpoint``), have finite weights and be no older than before the kill, and
   the same command line is launched again until it exits 0;
3. ``metrics.jsonl`` (and ``diagnostics.jsonl`` for pareto) of both runs compared line by
   line (exactly equal apart from wall-clock fields) and the final weights compared bit for
   bit.

Where each kill landed is read off the folder after the process died: a new temporary
checkpoint folder (a write in progress), a checkpoint renamed into place but not yet
pointed at by ``checkpoints/latest``, a temporary ``latest`` pointer, before the first
checkpoint of the launch, or between checkpoints.

``--early-kills N`` also kills ``N`` fresh runs as soon as their output folder gets its
first entry (while ``prepare_run_dir`` writes it) and checks that ``--resume`` then
starts the run.

Prints one line per launch and, last, a JSON summary. Exit code 0 when every check
passed, 1 otherwise. Example::

    .venv/bin/python scripts/kill_resume.py --strategies iid,jest --kills 20 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

STRATEGIES = ("iid", "jest", "flexi-jest", "pareto")

# the tiny world of tests/helpers.py (TINY); eval and checkpoint cadences that do not align, so
# that a resume must carry the training-loss sums of a partial evaluation window
TWO_TOWER_CONFIG = """
[data]
world = "shapes"
raw_size = 1500
eval_size = 240
retrieval_size = 120
probe_shots = 2
seed = 0

[model]
size = "tiny"

[optim]
lr = 2e-3
warmup_steps = 2

[train]
steps = {steps}
batch_size = 32
eval_every = {eval_every}
checkpoint_every = {checkpoint_every}
keep_checkpoints = {keep}
seed = 0
threads = 1

[strategy]
chunks = 4
filter_ratio = 0.5
"""

PARETO_CONFIG = """
[data]
dataset = "coloured_gray_digits"

[model]
hidden = 16
embed_dim = 8

[optim]
lr = 0.05
warmup_steps = 2

[train]
steps = {steps}
batch_size = 32
eval_every = {eval_every}
checkpoint_every = {checkpoint_every}
keep_checkpoints = {keep}
diag_every = 2
threads = 1

[pareto]
method = "mmpareto"
"""

# fields that may differ between two identical runs (none are written today)
WALL_CLOCK_FIELDS = frozenset({"wall_s", "time", "timestamp", "elapsed_s", "step_time_s"})


def log(msg: str) -> None:
    print(msg, flush=True)


def curatorch(*args: str) -> list[str]:
    return [sys.executable, "-m", "curatorch", *args]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_checked(cmd: list[str], logfile: Path, timeout: float) -> float:
    """Run ``cmd`` to completion; raise naming the log on a non-zero exit. Returns seconds."""
    t0 = time.perf_counter()
    with open(logfile, "ab") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=fh, env=_env(), timeout=timeout).returncode
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {rc}; see {logfile}")
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ set-up


def write_configs(work: Path, *, steps: int, eval_every: int, ckpt_every: int, keep: int) -> dict:
    fmt = {"steps": steps, "eval_every": eval_every, "checkpoint_every": ckpt_every, "keep": keep}
    two = work / "tiny.toml"
    two.write_text(TWO_TOWER_CONFIG.format(**fmt), encoding="utf-8")
    par = work / "pareto.toml"
    par.write_text(PARETO_CONFIG.format(**fmt), encoding="utf-8")
    return {"two_tower": two, "pareto": par}


def make_reference(work: Path, config: Path, timeout: float) -> Path:
    """A tiny reference trained on the curated pool and its embedding cache of the raw pool
    (the README's ``curatorch train ... data.pool=curated`` then ``curatorch embed``)."""
    ref, cache = work / "reference", work / "reference-cache"
    if not (cache / "meta.json").is_file():
        logfile = work / "reference.log"
        overrides = ["--set", "data.pool=curated", "--set", "train.steps=8"]
        run_checked(
            curatorch("train", str(config), "--out", str(ref), "--overwrite", "--no-progress")
            + overrides,
            logfile,
            timeout,
        )
        shutil.rmtree(cache, ignore_errors=True)
        run_checked(
            curatorch(
                "embed", str(ref), "--config", str(config), "--out", str(cache), "--no-progress"
            ),
            logfile,
            timeout,
        )
    return cache


def command(strategy: str, configs: dict, out: Path, cache: Path | None) -> list[str]:
    """The command line of one launch (always ``--resume``: the same for every launch)."""
    if strategy == "pareto":
        return curatorch(
            "pareto",
            "train",
            str(configs["pareto"]),
            "--out",
            str(out),
            "--resume",
            "--no-progress",
        )
    cmd = curatorch(
        "train", str(configs["two_tower"]), "--out", str(out), "--resume", "--no-progress"
    )
    cmd += ["--set", f"strategy.name={strategy}"]
    if strategy != "iid":
        cmd += ["--set", f"strategy.reference={cache}"]
    return cmd


def _steps(configs: dict, strategy: str) -> int:
    import tomllib

    path = configs["pareto" if strategy == "pareto" else "two_tower"]
    return int(tomllib.loads(path.read_text(encoding="utf-8"))["train"]["steps"])


def _final_step(out: Path) -> int | None:
    records = read_lines(out / "metrics.jsonl")
    return int(records[-1]["step"]) if records else None


# ------------------------------------------------------------------------ folder state


def folder_state(out: Path) -> dict[str, Any]:
    """What the checkpoint folder holds right now."""
    root = out / "checkpoints"
    state: dict[str, Any] = {"tmp_dirs": set(), "steps": [], "latest": None, "latest_tmp": set()}
    try:
        entries = list(os.scandir(root))
    except OSError:
        return state
    for e in entries:
        if e.name.startswith(".step_") and e.name.endswith(".tmp"):
            state["tmp_dirs"].add(e.name)
        elif e.name.startswith(".latest.") and e.name.endswith(".tmp"):
            state["latest_tmp"].add(e.name)
        elif e.name.startswith("step_") and e.is_dir():
            state["steps"].append(e.name)
        elif e.name == "latest":
            with contextlib.suppress(OSError):
                state["latest"] = Path(e.path).read_text(encoding="utf-8").strip() or None
    state["steps"].sort()
    return state


def classify(before: dict[str, Any], after: dict[str, Any]) -> str:
    """Where a kill landed, from the folder before the launch and after the death."""
    if after["tmp_dirs"] - before["tmp_dirs"]:
        return "checkpoint write (temp folder)"
    if after["latest_tmp"] - before["latest_tmp"]:
        return "latest pointer write"
    if after["steps"] and after["latest"] != after["steps"][-1]:
        return "after rename, before latest pointer"
    if after["latest"] == before["latest"]:
        return "before the launch's first checkpoint"
    return "between checkpoints"


def verify_latest(out: Path) -> dict[str, Any]:
    """Load the run's latest checkpoint as a resume would; its step, or the error."""
    import torch

    from curatorch.train.checkpoint import latest_checkpoint, load_checkpoint

    folder = latest_checkpoint(out)
    if folder is None:
        return {"ok": True, "step": None}
    try:
        ckpt = load_checkpoint(folder)
    except Exception as exc:  # report any failure, whatever its type
        return {"ok": False, "step": None, "error": f"{type(exc).__name__}: {exc}"}
    finite = all(
        bool(torch.isfinite(t).all()) for t in ckpt.model.values() if t.is_floating_point()
    )
    return {"ok": finite, "step": int(ckpt.state["step"]), "error": None if finite else "NaN"}


# ------------------------------------------------------------------------- comparison


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def compare_runs(a: Path, b: Path, files: tuple[str, ...]) -> dict[str, Any]:
    """Line-by-line comparison of JSONL files, wall-clock fields left out, and of the final
    model weights."""
    import torch

    from curatorch.train.checkpoint import load_checkpoint

    out: dict[str, Any] = {"identical": True, "lines": {}, "differences": []}
    for name in files:
        ra, rb = read_lines(a / name), read_lines(b / name)
        out["lines"][name] = [len(ra), len(rb)]
        if len(ra) != len(rb):
            out["identical"] = False
            out["differences"].append(f"{name}: {len(ra)} vs {len(rb)} lines")
        for i, (x, y) in enumerate(zip(ra, rb, strict=False), start=1):
            x = {k: v for k, v in x.items() if k not in WALL_CLOCK_FIELDS}
            y = {k: v for k, v in y.items() if k not in WALL_CLOCK_FIELDS}
            if x != y:
                out["identical"] = False
                keys = sorted(k for k in set(x) | set(y) if x.get(k) != y.get(k))
                out["differences"].append(f"{name} line {i} (step {x.get('step')}): {keys[:6]}")
    wa, wb = load_checkpoint(a).model, load_checkpoint(b).model
    same = wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    out["weights_identical"] = same
    if not same:
        out["identical"] = False
        out["differences"].append("final weights differ")
    out["differences"] = out["differences"][:10]
    return out


# --------------------------------------------------------------------------- killing


def _launch(cmd: list[str], logfile: Path) -> tuple[subprocess.Popen, Any]:
    fh = open(logfile, "ab")  # noqa: SIM115 - closed by the caller after the process ends
    fh.write(f"\n$ {' '.join(cmd)}\n".encode())
    fh.flush()
    return subprocess.Popen(cmd, stdout=fh, stderr=fh, env=_env()), fh


def _kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)  # our own child, by its pid


def timed_run(cmd: list[str], out: Path, logfile: Path, timeout: float) -> dict[str, float]:
    """Run to completion, noting when the first metrics line appeared (start-up time)."""
    proc, fh = _launch(cmd, logfile)
    t0 = time.perf_counter()
    first = None
    try:
        while proc.poll() is None:
            if first is None and (out / "metrics.jsonl").exists():
                first = time.perf_counter() - t0
            if time.perf_counter() - t0 > timeout:
                _kill(proc)
                raise RuntimeError(f"{' '.join(cmd)} ran past {timeout} s; see {logfile}")
            time.sleep(0.005)
    finally:
        proc.wait()
        fh.close()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {logfile}")
    return {"wall_s": wall, "startup_s": first if first is not None else wall}


def kill_once(
    cmd: list[str], out: Path, logfile: Path, *, plan: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """One launch: killed per ``plan`` (or left to finish). Returns what happened."""
    before = folder_state(out)
    proc, fh = _launch(cmd, logfile)
    t0 = time.perf_counter()
    killed = False
    try:
        seen_writes: set[str] = set(before["tmp_dirs"])
        writes = 0
        deadline = None if plan["mode"] != "delay" else t0 + plan["delay"]
        while proc.poll() is None:
            now = time.perf_counter()
            if now - t0 > timeout:
                _kill(proc)
                raise RuntimeError(f"launch ran past {timeout} s; see {logfile}")
            if plan["mode"] == "delay" and now >= deadline:
                _kill(proc)
                killed = True
                break
            if plan["mode"] == "write":
                new = folder_state(out)["tmp_dirs"] - seen_writes
                if new:
                    seen_writes |= new
                    writes += 1
                    if writes >= plan["nth_write"]:
                        time.sleep(plan["delay"])
                        _kill(proc)
                        killed = True
                        break
            time.sleep(0.001 if plan["mode"] == "write" else 0.005)
    finally:
        proc.wait()
        fh.close()
    rc = proc.returncode
    result = {"killed": killed and rc == -signal.SIGKILL, "rc": rc, "s": time.perf_counter() - t0}
    if result["killed"]:
        result["landed"] = classify(before, folder_state(out))
    return result


def kill_resume(
    strategy: str,
    *,
    configs: dict,
    cache: Path | None,
    work: Path,
    kills: int,
    seed: int,
    write_fraction: float,
    timeout: float,
) -> dict[str, Any]:
    """The whole experiment for one strategy (see the module docstring)."""
    rng = random.Random(f"{seed}-{strategy}")
    ref_out, out = work / f"{strategy}-uninterrupted", work / f"{strategy}-killed"
    logfile = work / f"{strategy}.log"
    for p in (ref_out, out):
        shutil.rmtree(p, ignore_errors=True)
    # uninterrupted: --resume on a missing folder starts a fresh run
    timing = timed_run(command(strategy, configs, ref_out, cache), ref_out, logfile, timeout)
    steps = _steps(configs, strategy)
    fresh_on_missing = _final_step(ref_out) == steps
    log(
        f"[{strategy}] uninterrupted run: {timing['wall_s']:.1f} s "
        f"(start-up {timing['startup_s']:.1f} s)"
    )
    # random delays: from half the start-up to the start-up plus 1.5/kills of the training
    # time, so that some kills land in the start-up, most in training, and the run needs
    # more than ``kills`` launches (if it finishes first, another round starts afresh)
    train_s = max(timing["wall_s"] - timing["startup_s"], 0.5)
    min_delay = 0.5 * timing["startup_s"]
    max_delay = timing["startup_s"] + 1.5 * train_s / max(kills, 1)
    files = ("metrics.jsonl", "diagnostics.jsonl") if strategy == "pareto" else ("metrics.jsonl",)
    events: list[dict[str, Any]] = []
    problems: list[str] = []
    comparisons: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    launches = 0
    rounds = 0
    fresh_on_empty = True
    while len(events) < kills and not problems:
        rounds += 1
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)  # --resume on an empty folder starts a fresh run
        cmd = command(strategy, configs, out, cache)
        last_step = -1
        round_launches = 0
        while True:
            launches += 1
            round_launches += 1
            if launches > 6 * kills + 10:
                problems.append(f"gave up after {launches - 1} launches")
                break
            if len(events) < kills:
                if rng.random() < write_fraction:
                    plan = {"mode": "write", "nth_write": rng.choice((1, 2, 3)), "delay": 0.0}
                    plan["delay"] = rng.choice((0.0, 0.0, rng.uniform(0.0, 0.01)))
                else:
                    plan = {"mode": "delay", "delay": rng.uniform(min_delay, max_delay)}
            else:
                plan = {"mode": "finish"}
            res = kill_once(cmd, out, logfile, plan=plan, timeout=timeout)
            if not res["killed"]:
                if res["rc"] == 0:
                    log(f"[{strategy}] launch {launches}: completed (round {rounds})")
                    if round_launches == 1:
                        fresh_on_empty = _final_step(out) == steps
                    break
                problems.append(f"launch {launches} exited {res['rc']} (see {logfile})")
                log(f"[{strategy}] launch {launches}: exited {res['rc']}")
                break
            check = verify_latest(out)
            events.append(
                {
                    "launch": launches,
                    "plan": plan["mode"],
                    "after_s": round(res["s"], 3),
                    "landed": res["landed"],
                    "latest_step": check["step"],
                    "loadable": check["ok"],
                }
            )
            n = len(events)
            if not check["ok"]:
                problems.append(f"kill {n}: latest checkpoint unloadable: {check['error']}")
            step = -1 if check["step"] is None else check["step"]
            if step < last_step:
                problems.append(f"kill {n}: latest checkpoint went back {last_step}->{step}")
            last_step = max(last_step, step)
            log(
                f"[{strategy}] kill {n}/{kills} ({plan['mode']}) after {res['s']:.2f} s: "
                f"{res['landed']}; latest checkpoint step {check['step']} "
                f"{'loads' if check['ok'] else 'DOES NOT LOAD'}"
            )
        if problems:
            break
        comparison = compare_runs(ref_out, out, files)
        comparisons.append(comparison)
        if not comparison["identical"]:
            problems.append("runs differ: " + "; ".join(comparison["differences"][:3]))
    killed_wall = time.perf_counter() - t0
    identical = bool(comparisons) and all(c["identical"] for c in comparisons) and not problems
    landed = Counter(e["landed"] for e in events)
    result = {
        "strategy": strategy,
        "kills": len(events),
        "launches": launches,
        "rounds": rounds,
        "kills_during_checkpoint_write": landed.get("checkpoint write (temp folder)", 0),
        "landed": dict(landed),
        "all_checkpoints_loadable": all(e["loadable"] for e in events),
        "resume_on_missing_dir_fresh": bool(fresh_on_missing),
        "resume_on_empty_dir_fresh": fresh_on_empty and _final_step(out) == steps,
        "identical_metrics": identical,
        "comparison": comparisons[-1] if comparisons else {"differences": ["not compared"]},
        "uninterrupted_s": round(timing["wall_s"], 2),
        "killed_run_s": round(killed_wall, 2),
        "problems": problems,
        "ok": not problems and identical,
    }
    log(
        f"[{strategy}] {len(events)} kills in {rounds} round(s) "
        f"({result['kills_during_checkpoint_write']} during checkpoint writes), identical "
        f"metrics: {identical}, {killed_wall:.1f} s vs {timing['wall_s']:.1f} s uninterrupted"
    )
    return result


def early_kills(*, configs: dict, work: Path, n: int, seed: int, timeout: float) -> dict[str, Any]:
    """Kill fresh runs as soon as their folder gets its first entry; ``--resume`` must then
    start the run (exit 0), not refuse the folder."""
    rng = random.Random(f"{seed}-early")
    outcomes: Counter[str] = Counter()
    leftovers: Counter[str] = Counter()
    details = []
    logfile = work / "early.log"
    for i in range(n):
        out = work / f"early-{i}"
        shutil.rmtree(out, ignore_errors=True)
        strategy = "pareto" if i % 2 else "iid"
        # a short run: only its start matters here (the same command line both times)
        cmd = [*command(strategy, configs, out, None), "--set", "train.steps=2"]
        proc, fh = _launch(cmd, logfile)
        t0 = time.perf_counter()
        spin = rng.choice((0, 0, 50, 200))  # polls to wait after the first entry appears
        try:
            while proc.poll() is None and time.perf_counter() - t0 < timeout:
                try:
                    entries = os.listdir(out)
                except OSError:
                    entries = []
                if entries:
                    for _ in range(spin):
                        os.listdir(out)
                    _kill(proc)
                    break
        finally:
            proc.wait()
            fh.close()
        names = sorted(os.listdir(out)) if out.is_dir() else []
        leftovers[" ".join(names) or "(empty)"] += 1
        with open(logfile, "ab") as fh2:  # the same command again, to completion
            rc = subprocess.run(
                cmd,
                stdout=fh2,
                stderr=fh2,
                env=_env(),
                timeout=timeout,
            ).returncode
        outcome = "resumed" if rc == 0 else f"refused (exit {rc})"
        outcomes[outcome] += 1
        details.append({"strategy": strategy, "left": names, "outcome": outcome})
        log(f"[early {i + 1}/{n}] {strategy}: folder held {names or 'nothing'} -> {outcome}")
    return {
        "kills": n,
        "outcomes": dict(outcomes),
        "folder_contents": dict(leftovers),
        "ok": outcomes.get("resumed", 0) == n,
        "details": details,
    }


# ------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--strategies",
        default="iid,jest,flexi-jest,pareto",
        help=f"comma-separated, from {list(STRATEGIES)}",
    )
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs per strategy (at least)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="training steps (default: 60 for two-tower, 1200 for pareto)",
    )
    p.add_argument(
        "--checkpoint-every", type=int, default=0, help="default: 3 (two-tower), 20 (pareto)"
    )
    p.add_argument("--eval-every", type=int, default=0, help="default: 4 (two-tower), 25 (pareto)")
    p.add_argument("--keep", type=int, default=2, help="train.keep_checkpoints")
    p.add_argument(
        "--write-fraction",
        type=float,
        default=0.5,
        help="fraction of kills aimed at checkpoint writes (the rest: random delays)",
    )
    p.add_argument(
        "--early-kills",
        type=int,
        default=0,
        help="also kill this many fresh runs while their folder is being created",
    )
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per launch")
    p.add_argument("--work", type=Path, default=None, help="work folder (default: a temp one)")
    p.add_argument("--keep-work", action="store_true", help="do not delete the work folder")
    return p


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every experiment ``args`` asks for; the JSON summary."""
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    for s in strategies:
        if s not in STRATEGIES:
            raise SystemExit(f"kill_resume: unknown strategy {s!r} (known: {list(STRATEGIES)})")
    if args.kills < 0 or not 0.0 <= args.write_fraction <= 1.0:
        raise SystemExit("kill_resume: --kills must be >= 0 and --write-fraction in [0, 1]")
    work = args.work or Path(tempfile.mkdtemp(prefix="kill_resume-"))
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results: dict[str, Any] = {}
    try:
        two = {
            "steps": args.steps or 60,
            "eval_every": args.eval_every or 4,
            "ckpt_every": args.checkpoint_every or 3,
            "keep": args.keep,
        }
        par = {
            "steps": args.steps or 1200,
            "eval_every": args.eval_every or 25,
            "ckpt_every": args.checkpoint_every or 20,
            "keep": args.keep,
        }
        (work / "two").mkdir(exist_ok=True)
        (work / "par").mkdir(exist_ok=True)
        configs = {
            "two_tower": write_configs(work / "two", **two)["two_tower"],
            "pareto": write_configs(work / "par", **par)["pareto"],
        }
        cache = None
        if any(s in ("jest", "flexi-jest") for s in strategies):
            t = time.perf_counter()
            cache = make_reference(work, configs["two_tower"], args.timeout)
            log(f"reference + embedding cache: {time.perf_counter() - t:.1f} s ({cache})")
        for s in strategies:
            results[s] = kill_resume(
                s,
                configs=configs,
                cache=cache,
                work=work,
                kills=args.kills,
                seed=args.seed,
                write_fraction=args.write_fraction,
                timeout=args.timeout,
            )
        early = None
        if args.early_kills:
            early = early_kills(
                configs=configs, work=work, n=args.early_kills, seed=args.seed, timeout=args.timeout
            )
    finally:
        if not args.keep_work and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    summary = {
        "seed": args.seed,
        "kills_per_strategy": args.kills,
        "config": {"two_tower": two, "pareto": par},
        "strategies": {
            s: {k: v for k, v in r.items() if k != "comparison"}
            | {
                "differences": r["comparison"].get("differences", []),
                "lines_compared": r["comparison"].get("lines", {}),
                "weights_identical": r["comparison"].get("weights_identical", False),
            }
            for s, r in results.items()
        },
        "early_kills": early,
        "ok": all(r["ok"] for r in results.values()) and (early is None or early["ok"]),
        "wall_s": round(time.perf_counter() - t0, 1),
        "work": str(work) if (args.keep_work or args.work is not None) else None,
    }
    return summary


def main(argv: list[str] | None = None) -> int:
    summary = run(build_parser().parse_args(argv))
    print(json.dumps(summary), flush=True)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
