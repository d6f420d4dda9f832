#!/usr/bin/env python
"""Run every fault injection and write the measured table to ``docs/reliability.md``.

1. ``scripts/kill_resume.py``'s experiments: SIGKILL at random moments and during
   checkpoint writes for each strategy, then resume and compare with an uninterrupted
   run; SIGKILL while a fresh run creates its folder (``--early-kills``).
2. The fault tests, run through pytest and counted per test: resources
   (``tests/reliability/test_resources.py``: unwritable folders, a simulated full disk,
   folders holding another run), exact resume (``test_resume_exact.py``,
   ``test_kill_resume.py``), fuzzed inputs (``tests/fuzz``), and the data-fault and
   divergence tests other modules own (``tests/data/test_shards.py``,
   ``tests/train/test_divergence.py``).
3. With ``--tmpfs`` (root, Linux): a real full disk, a 3 MB tmpfs the second checkpoint
   does not fit on; then the tmpfs is grown and ``--resume`` finishes the run.
4. With ``--elastic`` (or a summary it wrote, ``--elastic-json``): ``scripts/elastic_faults.py``
   under torchrun with 2 processes: rank kills, kills and re-launches of a "node" (two
   agents), a rank stopped with SIGSTOP; each job compared with an uninterrupted run.

Prints progress and, last, a JSON summary. Example::

    .venv/bin/python scripts/fault_table.py --kills 20 --early-kills 10 --tmpfs --elastic
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

import elastic_faults  # noqa: E402  (the scripts next to this one)
import kill_resume  # noqa: E402

# test file -> rows of the table: (fault, how injected, test-name substrings)
TEST_ROWS: list[tuple[str, str, str, list[str]]] = [
    (
        "tests/reliability/test_resources.py",
        "Unwritable output folder",
        "the folder's write probe raises EACCES / EROFS; the output path lies below a "
        "regular file; a read-only parent (0o500; skipped as root)",
        ["unwritable_folder", "below_a_file", "read_only_parent"],
    ),
    (
        "tests/reliability/test_resources.py",
        "Full disk before training",
        "the write probe raises ENOSPC",
        ["full_disk_at_start"],
    ),
    (
        "tests/reliability/test_resources.py",
        "Full disk while writing a checkpoint (simulated)",
        "safetensors' `save_file` raises `OSError(ENOSPC)` or its own ENOSPC error on the "
        "model or the trainer file of the step-4 checkpoint; the `latest` pointer write "
        "raises ENOSPC",
        ["during_a_checkpoint", "pointing_latest", "keep_their_errno"],
    ),
    (
        "tests/reliability/test_resources.py",
        "Full disk while appending metrics",
        "the metrics file's `write` raises ENOSPC",
        ["appending_metrics"],
    ),
    (
        "tests/reliability/test_resources.py",
        "Folder holding another run",
        "train twice into one folder (both trainers): no flag, both flags, another config",
        ["holding_a_run"],
    ),
    (
        "tests/reliability/test_resume_exact.py",
        "Interrupted inside an evaluation window",
        "KeyboardInterrupt after the step-6 evaluation, before its checkpoint (eval every 3, "
        "checkpoint every 2), both trainers; resumed",
        ["interrupted_and_resumed"],
    ),
    (
        "tests/reliability/test_kill_resume.py",
        "`--resume` on a missing or empty folder",
        "both trainers, both cases",
        ["missing_or_empty"],
    ),
    (
        "tests/reliability/test_kill_resume.py",
        "Leftovers of a start killed in `prepare_run_dir`",
        "a folder holding only `.curatorch-write-test` or `.config.json.*.tmp`, then "
        "`--resume` (starts fresh); the same beside a user's file (refused, untouched)",
        ["during_folder_creation", "beside_foreign"],
    ),
    (
        "tests/fuzz/test_fuzz_selection.py",
        "Fuzzed selector input",
        "hypothesis (derandomised): B 1-64, f, N 1-8, embedding norms 1e-20-1e15, "
        "logit_scale 1e-6-1e30, float32/64, every sampler; invalid B, f, N, b, mode, init, "
        "steps, NaN/inf embeddings and scores",
        [""],
    ),
    (
        "tests/fuzz/test_fuzz_pareto.py",
        "Fuzzed gradients",
        "hypothesis: random shapes, zero, parallel, anti-parallel and nearly anti-parallel "
        "gradients, float32/64, 1e-8-1e8, every integrator",
        [""],
    ),
    (
        "tests/fuzz/test_fuzz_scaling.py",
        "Fuzzed scaling-law input and files",
        "hypothesis: law and fit arguments (empty, negative, NaN, inf, 1e300 passes), "
        "random CSV run tables and JSONL parameter files (malformed cells, NUL, quotes, "
        "oversized fields, deep nesting)",
        [""],
    ),
    (
        "tests/fuzz/test_fuzz_config.py",
        "Fuzzed configs",
        "hypothesis: every field of both trainers' configs with values of every type "
        "(NaN, inf, huge ints, lists, tables), unknown keys and sections, `--set` strings, "
        "random bytes as a TOML file",
        [""],
    ),
    (
        "tests/cli/test_shards_cli.py",
        "Corrupt shards in a training run",
        "`curatorch train` on exported shards with every 20th image replaced by garbage "
        "(completes, skips in the metrics), then with a whole shard corrupt (exit 1 naming "
        "shard, step and last good checkpoint)",
        ["corrupt_shards"],
    ),
    (
        "tests/data/test_webshards.py",
        "Failed downloads inside the tars",
        "`write_web_shards(failed_in_tar=True)`: failed samples as a `.txt` and a `.json` "
        'with `status = "failed_to_download"`, no image; read back by '
        "`iter_shard_batches`, `iter_shard`, `iter_captions` and the training stream "
        "(counted as `failed_download`, nothing else)",
        ["failed_samples_in_the_tar"],
    ),
    (
        "tests/distributed/test_shard_faults.py",
        "Shards vanish under 2 gloo processes",
        "2 of 4 shards deleted at the step-6 evaluation of an 18-step run; then all 4 "
        "(every rank's stream stops): counted on every rank, summed in `metrics.jsonl`, "
        "both ranks take 18 steps; or both stop at the same step with one message naming "
        "the rank",
        ["vanished_shards", "stream_stops"],
    ),
    (
        "tests/distributed/test_torchrun.py",
        "Resume with another number of processes",
        "a 2-process checkpoint resumed by 1 process (with a longer `train.steps`), a "
        "1-process one under `torchrun --nproc_per_node=2`: refused with one line naming "
        "both sizes, exit 2 (torchrun: 1, root cause exit code 2), the run folder "
        "byte-identical",
        ["other_process_count", "single_process_checkpoint"],
    ),
    (
        "tests/distributed/test_torchrun_pareto.py",
        "Resume with another number of processes (multimodal task)",
        "a 2-process `curatorch pareto train` checkpoint resumed by 1 process: refused with "
        "one line naming both sizes, exit 2, the run folder byte-identical",
        ["other_process_count"],
    ),
    (
        "tests/distributed/test_checkpoint_ranks.py",
        "A rank with a stale or unreadable checkpoint",
        "2 gloo processes resume; rank 1 sees step 4 as the latest (rank 0: step 6), or "
        "cannot read the checkpoint: both restore step 6 with equal weights, or both stop "
        "naming rank 1",
        ["every_rank_restores", "cannot_load"],
    ),
]

OTHER_ROWS: list[tuple[str, str, str]] = [
    (
        "tests/data/test_shards.py",
        "Corrupt shard data",
        "`tests/data/test_shards.py`: truncated tar, undecodable image, empty caption, "
        "non-UTF-8 caption, 16-bit image (mode), image past the pixel limit (size), "
        "duplicate key, image without caption, a shard deleted mid-stream "
        "(`unreadable_shard`) "
        "(each skipped and counted, once across resume and workers); 5% corrupt samples "
        "(the run completes); past `data.max_corrupt_ratio` (stops naming the shard); gray, "
        "RGBA and other-sized images converted and resized",
    ),
    (
        "tests/train/test_divergence.py",
        "Divergence",
        "`tests/train/test_divergence.py`: NaN and inf loss, NaN gradient (stop naming the "
        "step and the last good checkpoint, CLI exit 1, no NaN in any checkpoint); "
        '`train.on_nonfinite = "skip"` (steps counted, weights unchanged)',
    ),
]


def log(msg: str) -> None:
    print(msg, flush=True)


def run_pytest(files: list[str], work: Path) -> dict[str, list[tuple[str, str]]]:
    """Outcome of every test in ``files``: file -> [(test name, outcome)]."""
    xml = work / "junit.xml"
    existing = [f for f in files if (ROOT / f).exists()]
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={xml}"]
    subprocess.run([*cmd, *existing], cwd=ROOT, capture_output=True, text=True, timeout=3600)
    out: dict[str, list[tuple[str, str]]] = {f: [] for f in files}
    if not xml.exists():
        return out
    for case in ET.parse(xml).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/") + ".py"
        name = case.get("name", "")
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                msg = child.get("message", "") + child.get("type", "")
                outcome = "xfailed" if "xfail" in msg else "skipped"
        for f in files:
            if module.endswith(f):
                out[f].append((name, outcome))
    return out


def count(results: list[tuple[str, str]], needles: list[str]) -> Counter[str]:
    return Counter(o for name, o in results if any(n in name for n in needles))


def real_full_disk(work: Path) -> dict[str, Any] | None:
    """A 3 MB tmpfs: the step-2 checkpoint fits, the step-4 one does not; then the tmpfs
    grows to 64 MB and ``--resume`` finishes. ``None`` when a tmpfs cannot be mounted."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return None
    mnt = work / "tmpfs"
    mnt.mkdir(exist_ok=True)
    mount = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3M", "tmpfs", str(mnt)], capture_output=True
    )
    if mount.returncode != 0:
        return None
    try:
        cfg = work / "tmpfs.toml"
        cfg.write_text(
            kill_resume.TWO_TOWER_CONFIG.format(steps=10, eval_every=3, checkpoint_every=2, keep=2)
        )
        base = kill_resume.curatorch("train", str(cfg), "--no-progress")
        out = mnt / "run"
        env = kill_resume._env()
        first = subprocess.run([*base, "--out", str(out)], capture_output=True, text=True, env=env)
        err = [line for line in first.stderr.splitlines() if line.startswith("curatorch:")]
        left = sorted(p.name for p in (out / "checkpoints").iterdir())
        check = kill_resume.verify_latest(out)
        subprocess.run(["mount", "-o", "remount,size=64M", str(mnt)], check=True)
        resumed = subprocess.run(
            [*base, "--out", str(out), "--resume"], capture_output=True, text=True, env=env
        )
        full = work / "tmpfs-uninterrupted"
        shutil.rmtree(full, ignore_errors=True)
        subprocess.run([*base, "--out", str(full)], capture_output=True, env=env, check=True)
        same = kill_resume.read_lines(out / "metrics.jsonl") == kill_resume.read_lines(
            full / "metrics.jsonl"
        )
        return {
            "exit": first.returncode,
            "message": err[-1] if err else first.stderr[-300:],
            "traceback": "Traceback" in first.stderr,
            "checkpoints_left": left,
            "latest_loads": check["ok"],
            "latest_step": check["step"],
            "resume_exit": resumed.returncode,
            "identical_after_resume": same,
        }
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True)


def _fmt(c: Counter[str]) -> str:
    parts = [f"{c[k]} {k}" for k in ("passed", "failed", "xfailed", "skipped") if c.get(k)]
    return ", ".join(parts) or "not run"


def _tests(c: Counter[str]) -> str:
    n = sum(c.values())
    return f"{n} test{'' if n == 1 else 's'}"


def markdown(
    kr: dict[str, Any], tests: dict, tmpfs: dict | None, argv: list[str], elastic: dict | None
) -> str:
    cmd = " ".join(["python scripts/fault_table.py", *argv]).strip()
    lines = [
        "# Reliability: faults and bad input",
        "",
        "Generated by `scripts/fault_table.py`; regenerate with",
        "",
        "```",
        f".venv/bin/{cmd}",
        "```",
        "",
        "Every number below was measured by that command on the machine it ran on "
        f"(seed {kr['seed']}, {time.strftime('%Y-%m-%d')}).",
        "",
        "## Kill and resume",
        "",
        "`scripts/kill_resume.py` runs each trainer on a tiny config (two-tower: "
        f"{kr['config']['two_tower']['steps']} steps, evaluation every "
        f"{kr['config']['two_tower']['eval_every']}, checkpoint every "
        f"{kr['config']['two_tower']['ckpt_every']}; pareto: "
        f"{kr['config']['pareto']['steps']} steps, every {kr['config']['pareto']['eval_every']}"
        f" / {kr['config']['pareto']['ckpt_every']}; `keep_checkpoints = 2`), SIGKILLs it at "
        "seeded random moments (half aimed at checkpoint writes: the `.step_*.tmp` folder is "
        "polled every millisecond and the process killed as the n-th write of a launch "
        "starts), checks after every kill that the latest checkpoint loads "
        "(`latest_checkpoint` + `load_checkpoint`, finite weights, never older than before), "
        "relaunches the same `--resume` command line until it exits 0 (a run that finishes "
        "before enough kills is followed by another from scratch), and compares "
        "`metrics.jsonl` (and pareto's `diagnostics.jsonl`) line by line with an "
        "uninterrupted run, and the final weights bit for bit. The uninterrupted run uses "
        "`--resume` on a missing folder, the killed one starts with `--resume` on an empty "
        "folder.",
        "",
        "| strategy | kills | during checkpoint write | other landing spots | latest "
        "checkpoint loadable after every kill | metrics identical (lines) | final weights "
        "identical | killed run / uninterrupted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s, r in kr["strategies"].items():
        other = {k: v for k, v in r["landed"].items() if k != "checkpoint write (temp folder)"}
        spots = "; ".join(f"{v} {k}" for k, v in sorted(other.items(), key=lambda kv: -kv[1]))
        compared = ", ".join(f"{n}: {a}" for n, (a, _b) in r.get("lines_compared", {}).items())
        lines.append(
            f"| {s} | {r['kills']} ({r['launches']} launches, {r.get('rounds', 1)} run(s)) | "
            f"{r['kills_during_checkpoint_write']} | {spots or '-'} | "
            f"{'yes' if r['all_checkpoints_loadable'] else 'NO'} | "
            f"{'yes' if r['identical_metrics'] else 'NO'} ({compared}) | "
            f"{'yes' if r.get('weights_identical') else 'NO'} | "
            f"{r['killed_run_s']:.0f} s / {r['uninterrupted_s']:.0f} s |"
        )
    total = sum(r["kills"] for r in kr["strategies"].values())
    writes = sum(r["kills_during_checkpoint_write"] for r in kr["strategies"].values())
    lines += [
        "",
        f"In all: {total} kills, {writes} of them while a temporary checkpoint folder existed.",
        "",
        "## Fault table",
        "",
        "| fault | how injected | times | outcome (measured) |",
        "|---|---|---|---|",
    ]
    for s, r in kr["strategies"].items():
        ok = r["ok"]
        lines.append(
            f"| SIGKILL during training ({s}) | random delay after launch, or as the n-th "
            f"checkpoint write of a launch starts | {r['kills']} | "
            + (
                "every kill left a loadable latest checkpoint; resumed to the end; metrics "
                "and weights identical to the uninterrupted run"
                if ok
                else "FAILED: " + "; ".join(r["problems"])
            )
            + " |"
        )
    early = kr.get("early_kills")
    if early:
        outcomes = ", ".join(f"{v} {k}" for k, v in early["outcomes"].items())
        left = ", ".join(f"{v}x {k}" for k, v in early["folder_contents"].items())
        lines.append(
            "| SIGKILL while a fresh run creates its folder | kill as soon as the output "
            "folder has an entry, then the same `--resume` command | "
            f"{early['kills']} | {outcomes} (folder held: {left})"
            + ("" if early["ok"] else "; **FAILED: a refused folder**")
            + " |"
        )
    for path, fault, how, needles in TEST_ROWS:
        c = count(tests.get(path, []), needles)
        lines.append(f"| {fault} | {how} (`{path}`) | {_tests(c)} | {_fmt(c)} |")
    if tmpfs is not None:
        lines.append(
            "| Full disk while writing a checkpoint (real) | a 3 MB tmpfs: the step-2 "
            "checkpoint fits, the step-4 one does not; then grown to 64 MB and `--resume` | 1 |"
            f" exit {tmpfs['exit']}, {'a traceback' if tmpfs['traceback'] else 'one line'}: "
            f"`{tmpfs['message']}`; left {tmpfs['checkpoints_left']}, latest (step "
            f"{tmpfs['latest_step']}) {'loads' if tmpfs['latest_loads'] else 'DOES NOT LOAD'}; "
            f"resume exit {tmpfs['resume_exit']}, metrics identical to an uninterrupted run: "
            f"{'yes' if tmpfs['identical_after_resume'] else 'NO'} |"
        )
    for path, fault, how in OTHER_ROWS:
        c = Counter(o for _n, o in tests.get(path, []))
        lines.append(f"| {fault} | {how} | {_tests(c)} | {_fmt(c)} |")
    if elastic is not None:
        lines += elastic_rows(elastic)
        lines += ["", *elastic_section(elastic)]
    lines += ["", *NOTES]
    return "\n".join(lines) + "\n"


def _events(summary: dict, kind: str) -> list[dict]:
    return [e for j in summary["jobs"].values() for e in j["events"] if e["event"] == kind]


def _landings(events: list[dict]) -> str:
    c = Counter(f"{e.get('mode', '?')}: {e.get('landed', '?')}" for e in events)
    return ", ".join(f"{v}x {k}" for k, v in sorted(c.items()))


def elastic_rows(summary: dict) -> list[str]:
    """Fault-table rows of an ``elastic_faults.py`` summary."""
    ok = {name: job["ok"] for name, job in summary["jobs"].items()}
    outcome = "resumed to the end; metrics and weights identical to the uninterrupted run"
    rows = []
    kills = _events(summary, "rank kill")
    if kills:
        rows.append(
            "| SIGKILL of one rank under `torchrun --max-restarts` (2 processes; 2 agents) | "
            f"{_landings(kills)} | {len(kills)} | "
            + (outcome if all(ok.values()) else "FAILED: see below")
            + " |"
        )
    nodes = _events(summary, "node kill")
    if nodes:
        rows.append(
            '| SIGKILL of a whole "node" (agent and worker), re-launched with the same command |'
            f" {_landings(nodes)} | {len(nodes)} | "
            + (outcome if ok.get("two-agents") else "FAILED: see below")
            + " |"
        )
    hangs = _events(summary, "hang")
    if hangs:
        after = ", ".join(f"{e.get('stopped_after_s')} s" for e in hangs)
        named = all(e.get("named_rank") == e["stopped_rank"] for e in hangs)
        rows.append(
            "| A rank stopped with SIGSTOP in training | rank 1, a random moment after the "
            f"group's first checkpoint | {len(hangs)} | rank 0 stopped after {after} "
            f"(collective timeout {hangs[0].get('timeout_s')} s) with one line naming "
            + ("rank 1 and the step" if named else "the WRONG rank")
            + "; the agent restarted the group; "
            + (outcome if ok.get("standalone") else "FAILED: see below")
            + " |"
        )
    return rows


def elastic_section(summary: dict) -> list[str]:
    """The section on faults under torchrun: one row per job."""
    lines = [
        "## Faults under torchrun",
        "",
        "`scripts/elastic_faults.py` (world size 2, gloo, the kill/resume config; every "
        "launch the same `--resume` command) against an uninterrupted "
        f"`torchrun --standalone --nproc_per_node=2` run ({summary['uninterrupted_s']} s):",
        "",
        "| job | faults | restarts used | exit codes | metrics identical (lines) | final "
        "weights identical | wall |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, job in summary["jobs"].items():
        kinds = Counter(e["event"] for e in job["events"])
        cmp = job["compare"]
        n_lines = cmp["lines"].get("metrics.jsonl", ["?", "?"])
        lines.append(
            f"| {name} | {', '.join(f'{v} {k}' for k, v in kinds.items())} | "
            f"{job['restarts']} | {job['exit_codes']} | "
            f"{'yes' if cmp['identical'] else 'NO'} ({n_lines[1]}) | "
            f"{'yes' if cmp['weights_identical'] else 'NO'} | {job['wall_s']} s |"
            + ("" if job["ok"] else f" **FAILED: {'; '.join(job['problems'])}**")
        )
    hangs = _events(summary, "hang")
    if hangs:
        lines += ["", f"The hung rank's line: `{hangs[0]['line']}`"]
    return lines


NOTES = [
    "## What the faults found",
    "",
    "- MMPareto turned gradients that are anti-parallel to working precision into a "
    "full-size gradient in a random direction (the rescaling blew up the min-norm "
    "combination's rounding noise): cos -1 with one objective on nearly anti-parallel "
    "inputs. Now such an encoder gets 0 (`curatorch.pareto.rule.stationary`).",
    "- `ModelEmbeddings`/`PairScorer` accepted NaN/inf embeddings (arbitrary selections) "
    "and logit scales whose sums overflow float32 (NaN scores, or a RuntimeError from "
    "`addmm`); now a ValueError naming the field. `gibbs_select` returned a negative index "
    "given one in `init`.",
    "- `pass_samples` allocated `n / N` floats (1e12 passes: an out-of-memory); "
    "`read_runs` let `csv.Error` escape, `read_params` a RecursionError; `pool_error` named "
    "`bucket_size` for a bad `pool_size`.",
    "- The configs accepted NaN/inf for `optim.eps`, `optim.weight_decay`, "
    "`optim.grad_clip`, `eval.fewshot_l2` (and pareto's `data.colour_variance`).",
    "- The pareto trainer did not checkpoint the training-loss sums of the evaluation "
    "window in progress: after a kill its `train_*` means differed from an uninterrupted "
    "run (found by kill/resume; fixed).",
    "- A full disk while checkpointing was a traceback (safetensors reports ENOSPC as its "
    "own error type); now one line, exit 1, the previous checkpoint intact and named.",
    "- A fresh run killed inside `prepare_run_dir` (while it wrote its write probe or the "
    "temporary `config.json`) left a folder that `--resume` refused as 'not empty and "
    "holds no curatorch run'. Now a folder holding only those leftovers counts as empty: "
    "they are removed and the run starts fresh (found by the early kills; fixed).",
    "- Under torchrun, a rank whose shard stream stopped (past "
    "`data.max_corrupt_ratio`, or no usable sample) raised alone while the other ranks "
    "waited in their next collective (the launcher's teardown, or on other nodes the "
    "collective timeout, ended them). Now the ranks agree each step (one float "
    "all-reduce): all stop at the same step with the failing rank's message.",
    "- A resume with another number of processes was refused only after `config.json` "
    "had been rewritten (when `train.steps` also changed) and the data prepared; now it"
    " is refused first, the folder untouched. Every rank picked the latest checkpoint "
    "from its own listing of the folder (on network storage it can lag); now rank 0 "
    "picks it and every rank restores that one, and a rank that cannot load it stops "
    "them all.",
    "- A shard deleted after the run started counted as `truncated_tar`; it is now "
    "`unreadable_shard`. Samples img2dataset marked as failed counted as "
    "`missing_member` (no image); they are now `failed_download`.",
    "- Under `torchrun --max-restarts`, a group restarted after a rank was killed failed to "
    "form (`Gloo connectFullMesh failed ... Connection refused`), using up a restart each "
    "time: the agent keeps one store for every restart and `init_process_group`'s keys "
    "carry no round, so the new ranks read the dead group's addresses (pytorch/pytorch#135712;"
    " `TORCHELASTIC_RESTART_COUNT` differs between nodes, so it cannot name the round). "
    "Now the ranks agree on a fresh round through the store first (a nonce handshake no "
    "stale key can satisfy) and form the group under its prefix.",
    "- With two agents sharing the rank-0 agent's store (torch's default), a node killed "
    "and launched again never rejoined: the rank-0 agent waited for its role, the new "
    "agent for a `MASTER_ADDR` torch publishes only in the first round. "
    "`TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1` avoids it; curatorch warns when several agents "
    "share the store.",
    "- A rank that hung (SIGSTOP) left the others waiting for the collective timeout "
    "(torch's default 30 min, not settable from curatorch; read from the code, not waited "
    "for) and then a traceback; now `train.collective_timeout_s` sets it (default the same "
    "1800 s) and the waiting ranks stop with one line naming the step and the rank that did "
    "not answer.",
]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs per strategy")
    p.add_argument("--early-kills", type=int, default=10)
    p.add_argument("--strategies", default="iid,jest,flexi-jest,pareto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tmpfs", action="store_true", help="also fill a real tmpfs (root)")
    p.add_argument("--elastic", action="store_true", help="also run elastic_faults.py")
    p.add_argument("--elastic-json", type=Path, default=None, help="its summary, measured")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "reliability.md")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fault_table-"))
    t0 = time.perf_counter()
    try:
        kr_args = kill_resume.build_parser().parse_args(
            [
                "--strategies",
                args.strategies,
                "--kills",
                str(args.kills),
                "--early-kills",
                str(args.early_kills),
                "--seed",
                str(args.seed),
                "--work",
                str(work / "kill_resume"),
            ]
        )
        kr = kill_resume.run(kr_args)
        files = sorted({row[0] for row in TEST_ROWS} | {row[0] for row in OTHER_ROWS})
        log(f"pytest {' '.join(files)}")
        tests = run_pytest(files, work)
        tmpfs = real_full_disk(work) if args.tmpfs else None
        if args.tmpfs:
            log(f"real full disk: {tmpfs}")
        elastic = None
        if args.elastic_json is not None:
            elastic = json.loads(args.elastic_json.read_text(encoding="utf-8"))
        elif args.elastic:
            out = work / "elastic.json"
            elastic_faults.main(["--work", str(work / "elastic"), "--json", str(out)])
            elastic = json.loads(out.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    args.out.write_text(markdown(kr, tests, tmpfs, argv, elastic), encoding="utf-8")
    failed = sum(1 for rs in tests.values() for _n, o in rs if o == "failed")
    summary = {
        "out": str(args.out),
        "kill_resume_ok": kr["ok"],
        "kills": {s: r["kills"] for s, r in kr["strategies"].items()},
        "kills_during_checkpoint_write": {
            s: r["kills_during_checkpoint_write"] for s, r in kr["strategies"].items()
        },
        "identical_metrics": {s: r["identical_metrics"] for s, r in kr["strategies"].items()},
        "early_kills": kr.get("early_kills", {}) and kr["early_kills"]["outcomes"],
        "tests": {f: dict(Counter(o for _n, o in rs)) for f, rs in tests.items()},
        "tests_failed": failed,
        "tmpfs": tmpfs,
        "elastic_ok": None if elastic is None else elastic["ok"],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    print(json.dumps(summary), flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
