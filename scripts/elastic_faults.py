#!/usr/bin/env python
"""Faults at multi-process scale: kill ranks and "nodes" of a torchrun job, hang a rank, and
check that the job resumes to the result of an uninterrupted run.

Every run trains the tiny two-tower config of ``scripts/kill_resume.py`` with 2 processes
on CPU (gloo, world size 2), every launch with the same command line (``--resume``):

- **uninterrupted**: ``torchrun --standalone --nproc_per_node=2``, left to finish;
- **standalone** (``--rank-kills N --hangs H``): one ``torchrun --standalone
  --nproc_per_node=2 --max-restarts=N+H+2`` job; ``N`` times a seeded random rank of the
  running group is SIGKILLed at a seeded moment: during start-up (a random delay after the
  group's processes appeared), in training (a random delay of at most ``--max-delay``
  seconds after the group's first checkpoint) or a few milliseconds into a checkpoint
  write (rank 0's ``checkpoints/.step_*.tmp`` polled every millisecond); the agent restarts
  the group, which resumes from the latest checkpoint. Then ``H`` times rank 1 is stopped
  with SIGSTOP in training: rank 0 must stop within ``train.collective_timeout_s``
  (``--collective-timeout``) plus the few seconds it waits for the others' word, with one
  line naming the step and rank 1; the agent ends the stopped process (SIGTERM, then
  SIGKILL after its 30 s; ``--resume-stopped`` sends SIGCONT once the line is out, a rank
  that slept in its step) and restarts the group, which resumes;
- **two agents** (``--agent-rank-kills N --node-kills M``): two torchrun agents on this
  machine standing for two nodes (``--nnodes=2 --nproc_per_node=1``, c10d rendezvous on
  127.0.0.1, ``TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1``: see docs/scale.md); ``N`` rank
  kills as above, and ``M`` times the whole second "node" (its agent and its worker) is
  SIGKILLed at such a moment and launched again with the same command after a seeded
  pause.

Every interrupted job must exit 0, use exactly one restart per fault (a group that fails to
form uses one more and is reported), and end with ``metrics.jsonl`` equal line by line
(wall-clock fields aside) and final weights equal bit for bit to the uninterrupted run's.
Prints one line per event and, last, a JSON summary; exit code 0 when every check passed.

    .venv/bin/python scripts/elastic_faults.py --rank-kills 7 --agent-rank-kills 4 \\
        --node-kills 3 --hangs 2 --steps 1000 --seed 0
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kill_resume import (  # the sibling script's helpers
    _env,
    classify,
    compare_runs,
    folder_state,
    log,
    verify_latest,
    write_configs,
)

RESTART_LINE = "will restart worker group"
HANG_LINE = re.compile(r"rank (\d+) of 2 did not answer at step (\d+)")
# LOGLEVEL=INFO: torchrun's agents log their restarts ("will restart worker group")
AGENT_ENV = {"LOGLEVEL": "INFO"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def torchrun_cmd(
    config: Path, out: Path, *, layout: dict[str, Any], max_restarts: int, timeout_s: float
) -> list[str]:
    """The launch command; ``layout``: ``{"standalone": True}`` or ``{"endpoint": PORT,
    "run_id": ID}`` for one of two single-process "nodes"."""
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--max-restarts={max_restarts}"]
    if layout.get("standalone"):
        cmd += ["--standalone", "--nproc_per_node=2"]
    else:
        cmd += [
            "--nnodes=2",
            "--nproc_per_node=1",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint=127.0.0.1:{layout['endpoint']}",
            f"--rdzv-id={layout['run_id']}",
        ]
    cmd += ["-m", "curatorch", "train", str(config), "--out", str(out), "--resume"]
    return [*cmd, "--no-progress", "--set", f"train.collective_timeout_s={timeout_s}"]


class Agent:
    """One torchrun agent (its own process group: a "node"), its log appended to."""

    def __init__(self, cmd: list[str], logfile: Path, env: dict[str, str] | None = None) -> None:
        self.cmd, self.logfile = cmd, logfile
        self.env = {**_env(), **AGENT_ENV, **(env or {})}
        self.proc: subprocess.Popen | None = None
        self.launch()

    def launch(self) -> None:
        with open(self.logfile, "ab") as fh:
            fh.write(f"\n$ {' '.join(self.cmd)}\n".encode())
            self.proc = subprocess.Popen(
                self.cmd, stdout=fh, stderr=fh, env=self.env, start_new_session=True
            )

    def workers(self) -> dict[int, int]:
        """``{rank: pid}`` of the agent's live worker processes."""
        if self.proc is None or self.proc.poll() is not None:
            return {}
        try:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return {}
        out = {}
        for pid in map(int, children.split()):
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            ranks = [e[5:] for e in env if e.startswith(b"RANK=")]
            if ranks:
                out[int(ranks[0])] = pid
        return out

    def kill_node(self) -> None:
        """SIGKILL the agent and its workers (the whole "node"; torchrun starts each worker
        in a session of its own, so the agent's process group is not enough)."""
        if self.proc is not None and self.proc.poll() is None:
            workers = list(self.workers().values())
            os.killpg(self.proc.pid, signal.SIGKILL)
            for pid in workers:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            self.proc.wait()

    def restarts(self) -> int:
        return self.logfile.read_text(errors="replace").count(RESTART_LINE)


def running_group(agents: list[Agent], seen: set[int], timeout: float) -> dict[int, int]:
    """Wait until both ranks of a group none of whose processes is in ``seen`` run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ranks: dict[int, int] = {}
        for agent in agents:
            ranks.update(agent.workers())
        if len(ranks) == 2 and not set(ranks.values()) & seen:
            return ranks
        if any(a.proc is not None and a.proc.poll() is not None for a in agents):
            raise RuntimeError("an agent exited while a group was awaited; see its log")
        time.sleep(0.01)
    raise RuntimeError(f"no new group ran within {timeout} s")


def wait_write(out: Path, timeout: float) -> bool:
    """Poll until a checkpoint write starts (a new temporary folder); False on timeout."""
    before = folder_state(out)["tmp_dirs"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if folder_state(out)["tmp_dirs"] - before:
            return True
        time.sleep(0.001)
    return False


def wait_training(agents: list[Agent], out: Path, timeout: float) -> bool:
    """Wait until the running group writes a checkpoint (it trains, past its start-up)."""
    latest, deadline = folder_state(out)["latest"], time.monotonic() + timeout
    while folder_state(out)["latest"] == latest and time.monotonic() < deadline:
        if any(a.proc is not None and a.proc.poll() is not None for a in agents):
            return False
        time.sleep(0.01)
    return time.monotonic() < deadline


def kill_moment(agents: list[Agent], out: Path, rng: random.Random, max_delay: float) -> str:
    """Sleep until a seeded moment of one of three kinds; which: ``startup`` (a random
    delay after the group's processes appeared), ``training`` (a random delay after the
    group's first checkpoint) or ``write`` (a few ms into a checkpoint write)."""
    mode = rng.choices(["startup", "training", "write"], weights=[0.2, 0.5, 0.3])[0]
    if mode == "startup":
        time.sleep(rng.uniform(0.2, 3.0))
    elif mode == "training":
        wait_training(agents, out, timeout=180)
        time.sleep(rng.uniform(0.0, max_delay))
    elif wait_write(out, timeout=180):
        time.sleep(rng.uniform(0.0, 0.004))
    return mode


def kill_rank(
    agents: list[Agent], out: Path, rng: random.Random, seen: set[int], max_delay: float
) -> dict:
    """SIGKILL one rank of the running group at a seeded moment; what happened."""
    group = running_group(agents, seen, timeout=180)
    seen |= set(group.values())
    rank = rng.choice(sorted(group))
    before = folder_state(out)
    mode = kill_moment(agents, out, rng, max_delay)
    try:
        os.kill(group[rank], signal.SIGKILL)
    except ProcessLookupError:
        return {"event": "rank kill", "rank": rank, "mode": mode, "landed": "already gone"}
    latest = verify_latest(out)
    return {
        "event": "rank kill",
        "rank": rank,
        "mode": mode,
        "landed": classify(before, folder_state(out)),
        "latest_step": latest.get("step"),
        "latest_loads": latest["ok"],
    }


def kill_node(
    agents: list[Agent], out: Path, rng: random.Random, seen: set[int], max_delay: float
) -> dict:
    """SIGKILL the second "node" (agent and worker) at a seeded moment, then launch it again
    with the same command after a seeded pause."""
    group = running_group(agents, seen, timeout=180)
    seen |= set(group.values())
    before = folder_state(out)
    mode = kill_moment(agents, out, rng, max_delay)
    agents[1].kill_node()
    landed = classify(before, folder_state(out))
    pause = rng.uniform(1.0, 4.0)
    time.sleep(pause)
    agents[1].launch()
    return {
        "event": "node kill",
        "mode": mode,
        "landed": landed,
        "relaunched_after_s": round(pause, 2),
    }


def finish(agents: list[Agent], timeout: float) -> list[int]:
    """Wait for every agent; their exit codes."""
    deadline = time.monotonic() + timeout
    codes = []
    for agent in agents:
        assert agent.proc is not None
        try:
            codes.append(agent.proc.wait(timeout=max(1.0, deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            agent.kill_node()
            codes.append(-9)
    return codes


def hang_rank(
    agent: Agent, out: Path, rng: random.Random, timeout_s: float, resume_stopped: bool
) -> dict:
    """SIGSTOP rank 1 at a seeded moment; how long until rank 0's line, and what it said.
    ``resume_stopped``: SIGCONT the stopped rank once the line is out (a rank that slept in
    its step), so that the agent's SIGTERM ends it at once rather than its SIGKILL 30 s
    later."""
    running_group([agent], set(), timeout=180)
    wait_training([agent], out, timeout=180)
    time.sleep(rng.uniform(0.0, 2.0))
    group = agent.workers()
    text_before = len(agent.logfile.read_text(errors="replace"))
    os.kill(group[1], signal.SIGSTOP)
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s + 60:
        tail = agent.logfile.read_text(errors="replace")[text_before:]
        found = HANG_LINE.search(tail)
        if found:
            line = next(ln for ln in tail.splitlines() if HANG_LINE.search(ln))
            if resume_stopped:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(group[1], signal.SIGCONT)
            return {
                "event": "hang",
                "stopped_rank": 1,
                "named_rank": int(found.group(1)),
                "step": int(found.group(2)),
                "stopped_after_s": round(time.monotonic() - t0, 2),
                "timeout_s": timeout_s,
                "line": line[:400],
            }
        time.sleep(0.05)
    return {"event": "hang", "stopped_rank": 1, "named_rank": None, "line": "none"}


def run_job(
    name: str, *, work: Path, config: Path, events: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    """One interrupted job (``events``: ``rank``, ``node``, ``hang``); checks and results."""
    rng = random.Random(f"{args.seed}-{name}")
    out, logfile = work / name, work / f"{name}.log"
    faults = len(events)
    if name == "two-agents":
        layout = {"endpoint": free_port(), "run_id": f"curatorch-{args.seed}"}
        cmd = torchrun_cmd(
            config, out, layout=layout, max_restarts=faults + 2, timeout_s=args.collective_timeout
        )
        # torch's shared agent store leaves a re-launched node waiting forever for a
        # MASTER_ADDR the rank-0 agent never publishes again: docs/scale.md
        env = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}
        agents = [Agent(cmd, logfile, env)]
        time.sleep(1.0)  # the first agent hosts the rendezvous store
        agents.append(Agent(cmd, work / f"{name}-node1.log", env))
    else:
        timeout = args.collective_timeout if "hang" in events else 300.0
        cmd = torchrun_cmd(
            config, out, layout={"standalone": True}, max_restarts=faults + 2, timeout_s=timeout
        )
        agents = [Agent(cmd, logfile)]
    t0, seen, happened = time.monotonic(), set(), []
    for event in events:
        try:
            if event == "rank":
                record = kill_rank(agents, out, rng, seen, args.max_delay)
            elif event == "node":
                record = kill_node(agents, out, rng, seen, args.max_delay)
            else:
                record = hang_rank(
                    agents[0], out, rng, args.collective_timeout, args.resume_stopped
                )
                seen |= set(agents[0].workers().values())
        except RuntimeError as exc:  # the job ended (or hung) before this fault
            record = {"event": event, "landed": "already gone", "error": str(exc)}
        log(f"{name}: {json.dumps(record)}")
        happened.append(record)
    codes = finish(agents, timeout=args.timeout)
    return {
        "faults_planned": faults,
        "events": happened,
        "exit_codes": codes,
        "restarts": agents[0].restarts(),
        "wall_s": round(time.monotonic() - t0, 1),
    }


def uninterrupted(work: Path, config: Path, timeout: float) -> tuple[Path, float]:
    out, logfile = work / "uninterrupted", work / "uninterrupted.log"
    cmd = torchrun_cmd(config, out, layout={"standalone": True}, max_restarts=0, timeout_s=300.0)
    t0 = time.monotonic()
    with open(logfile, "ab") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=fh, env=_env(), timeout=timeout).returncode
    if rc != 0:
        raise RuntimeError(f"the uninterrupted run exited {rc}; see {logfile}")
    return out, time.monotonic() - t0


def check(name: str, job: dict[str, Any], ref: Path, work: Path, expected: int) -> dict:
    """Exit codes, restarts used, named ranks and identity with the uninterrupted run."""
    job["compare"] = compare_runs(ref, work / name, ("metrics.jsonl",))
    problems = []
    if any(c != 0 for c in job["exit_codes"]):
        problems.append(f"exit codes {job['exit_codes']}")
    # standalone: one restart per fault exactly; two agents: the surviving agent may see the
    # other re-join before its own worker fails, a restart that torchrun does not count
    if job["restarts"] > expected or (name != "two-agents" and job["restarts"] != expected):
        problems.append(f"{job['restarts']} restarts for {expected} faults")
    logs = "".join(f.read_text(errors="replace") for f in work.glob(f"{name}*.log"))
    if "connectFullMesh" in logs or "did not form" in logs:
        problems.append("a restarted group failed to form")
    if not all(e.get("latest_loads", True) for e in job["events"]):
        problems.append("a latest checkpoint did not load after a kill")
    for e in job["events"]:
        if e["event"] == "hang" and e.get("named_rank") != e["stopped_rank"]:
            problems.append(f"hang: named rank {e.get('named_rank')}")
        elif e["event"] == "hang" and e["stopped_after_s"] > e["timeout_s"] + 5:
            problems.append(f"hang: stopped after {e['stopped_after_s']} s")
    if not job["compare"]["identical"]:
        problems.append("; ".join(job["compare"]["differences"]))
    injected = [e for e in job["events"] if e.get("landed") != "already gone"]
    if len(injected) < job["faults_planned"]:
        problems.append(f"{len(injected)} of {job['faults_planned']} faults injected")
    job["ok"] = not problems
    job["problems"] = problems
    return job


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rank-kills", type=int, default=7, help="kills of one rank, standalone")
    p.add_argument("--agent-rank-kills", type=int, default=4, help="rank kills, two agents")
    p.add_argument("--node-kills", type=int, default=3, help='kills of the second "node"')
    p.add_argument("--hangs", type=int, default=2, help="SIGSTOPs of rank 1, standalone")
    p.add_argument("--collective-timeout", type=float, default=10.0, help="seconds")
    p.add_argument("--max-delay", type=float, default=12.0, help="seconds, kill moments")
    p.add_argument("--resume-stopped", action="store_true", help="SIGCONT a hung rank")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--checkpoint-every", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per job")
    p.add_argument("--work", type=Path, default=None, help="folder (default: a temporary one)")
    p.add_argument("--json", type=Path, default=None, help="also write the summary here")
    return p


def plan(args: argparse.Namespace) -> dict[str, list[str]]:
    """The faults of each job: rank kills then hangs in the standalone job, rank and node
    kills in a seeded order in the two-agent job."""
    rng = random.Random(f"{args.seed}-plan")
    two = ["rank"] * args.agent_rank_kills + ["node"] * args.node_kills
    rng.shuffle(two)
    jobs = {"standalone": ["rank"] * args.rank_kills + ["hang"] * args.hangs, "two-agents": two}
    return {k: v for k, v in jobs.items() if v}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="curatorch-elastic-"))
    work.mkdir(parents=True, exist_ok=True)
    configs = write_configs(
        work, steps=args.steps, eval_every=50, ckpt_every=args.checkpoint_every, keep=2
    )
    ref, ref_s = uninterrupted(work, configs["two_tower"], args.timeout)
    log(f"uninterrupted: {ref_s:.1f} s")
    summary: dict[str, Any] = {"work": str(work), "uninterrupted_s": round(ref_s, 1), "jobs": {}}
    for name, events in plan(args).items():
        job = run_job(name, work=work, config=configs["two_tower"], events=events, args=args)
        job = check(name, job, ref, work, expected=len(events))
        log(f"{name}: ok={job['ok']} {job['problems']} ({job['wall_s']} s)")
        summary["jobs"][name] = job
    summary["ok"] = all(j["ok"] for j in summary["jobs"].values())
    text = json.dumps(summary)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
