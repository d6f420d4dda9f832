"""``curatorch pareto multitask``: group integrators x seeds, plus each task alone.

``run_multitask_compare(cfg, out)`` trains every method of ``cfg.compare.methods`` for
every seed, and each task of ``cfg.compare.alone`` by itself (its difficulty: the shared
encoder and its head, ``uniform``), all as :class:`~curatorch.train.multitask.MultiTaskTask`
runs of the one loop in ``out/runs/<name>``; then it writes ``report.md`` (task
difficulty, per-task accuracies and their mean, conflict rates, step-time ratios,
checks), ``summary.json`` and ``cos.png`` (each task pair's gradient cosine on the shared
encoder over training, uniform and MMPareto, averaged over seeds). The checks are
findings: a failed one is reported, not an error.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import torch

from curatorch.data import MultiTaskSplits
from curatorch.experiments.pareto_compare import mean_curve
from curatorch.fileio import atomic_write_text
from curatorch.train.config import ConfigError
from curatorch.train.loop import prepare_run_dir
from curatorch.train.multitask import (
    MultiTaskExperimentConfig,
    build_multitask_splits,
    multitask_config_to_dict,
    pair_cosines,
    task_pairs,
    train_multitask,
)
from curatorch.train.records import read_jsonl

__all__ = ["run_multitask_compare"]

_CURVE_METHODS = ("uniform", "mmpareto")


def _check_alone(cfg: MultiTaskExperimentConfig) -> list[str]:
    """The tasks the comparison trains; a :class:`ConfigError` before any run when
    ``compare.alone`` names another."""
    tasks = list(cfg.data.task_names)
    outside = [t for t in cfg.compare.alone if t not in tasks]
    if outside:
        raise ConfigError(f"compare.alone names {outside}, not among the tasks trained {tasks}")
    return tasks


def _task_info(splits: MultiTaskSplits, tasks: list[str]) -> dict[str, dict[str, Any]]:
    """Per task: its number of classes and the test split's majority-class share."""
    test = splits.test
    return {
        t: {
            "classes": test.num_classes[t],
            "majority": float(torch.bincount(test.labels[t]).max()) / max(len(test), 1),
        }
        for t in tasks
    }


class _Runs:
    """Trains the comparison's runs into ``out/runs`` with shared data and flags."""

    def __init__(
        self, cfg: MultiTaskExperimentConfig, out: Path, splits: MultiTaskSplits, **flags: Any
    ) -> None:
        self.cfg, self.splits, self.flags = cfg, splits, flags
        self.tasks = _check_alone(cfg)
        self.pairs = task_pairs(self.tasks)
        self.root = out / "runs"
        self.root.mkdir(exist_ok=True)

    def run(self, name: str, cfg: MultiTaskExperimentConfig) -> dict[str, Any]:
        summary = train_multitask(cfg, self.root / name, splits=self.splits, **self.flags)
        accs = " ".join(f"{t}={summary[f'test_acc/{t}']:.4f}" for t in cfg.data.task_names)
        print(f"{name}: test_acc={summary['test_acc']:.4f} {accs}", file=sys.stderr)
        return summary

    def _seeded(self, cfg: MultiTaskExperimentConfig, seed: int) -> MultiTaskExperimentConfig:
        return dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, seed=seed))

    def method(self, method: str) -> dict[str, Any]:
        """Every seed of ``method``: per-seed lists of the accuracies, step times, conflict
        rates and mean cosines, and the run folders."""
        keys = [
            "test_acc",
            *(f"test_acc/{t}" for t in self.tasks),
            "step_time_s",
            "conflict_rate",
            *(f"{k}/{p}" for k in ("conflict_rate", "mean_cos") for p in self.pairs),
        ]
        row: dict[str, Any] = {k: [] for k in ["runs", *keys]}
        cfg = dataclasses.replace(
            self.cfg, pareto=dataclasses.replace(self.cfg.pareto, method=method)
        )
        for seed in self.cfg.compare.seeds:
            s = self.run(f"{method}_seed{seed}", self._seeded(cfg, seed))
            row["runs"].append(s["run"])
            for k in keys:
                if s.get(k) is not None:
                    row[k].append(s[k])
        return row

    def alone(self, task: str) -> list[float]:
        """Test accuracy of ``task`` trained by itself, per seed."""
        cfg = dataclasses.replace(
            self.cfg,
            data=dataclasses.replace(self.cfg.data, tasks=(task,)),
            pareto=dataclasses.replace(self.cfg.pareto, method="uniform"),
        )
        seeds = self.cfg.compare.seeds
        return [self.run(f"alone_{task}_seed{s}", self._seeded(cfg, s))["test_acc"] for s in seeds]


def _checks(
    methods: dict[str, dict[str, Any]], alone: dict[str, list[float]], tasks: list[str]
) -> dict[str, dict[str, Any]]:
    """The paper's claims as checks (``pass`` and a ``detail`` of the measured values)."""
    mean = statistics.fmean
    checks: dict[str, dict[str, Any]] = {}
    if len(alone) >= 2:
        means = sorted((mean(v), t) for t, v in alone.items())
        spread = max((statistics.stdev(v) if len(v) > 1 else 0.0) for v in alone.values())
        gap = min(b[0] - a[0] for a, b in itertools.pairwise(means))
        checks["tasks differ in difficulty (alone accuracies > 2 std apart)"] = {
            "pass": gap > 2 * spread,
            "detail": ", ".join(f"{t} {100 * m:.2f}" for m, t in means)
            + f"; least gap {100 * gap:.2f}, largest std {100 * spread:.2f}",
        }
    if "mmpareto" in methods and "uniform" in methods:
        mm, un = methods["mmpareto"], methods["uniform"]
        for key, what in [
            ("test_acc", "mean acc over tasks"),
            *((f"test_acc/{t}", f"{t} acc") for t in tasks),
        ]:
            a, b = mean(mm[key]), mean(un[key])
            checks[f"mmpareto {what} >= uniform"] = {
                "pass": a >= b,
                "detail": f"{100 * a:.2f} vs {100 * b:.2f}",
            }
    if "mmpareto" in methods and len(methods) > 1:
        ranked = sorted(methods, key=lambda m: -mean(methods[m]["test_acc"]))
        checks["mmpareto has the best mean acc over tasks"] = {
            "pass": ranked[0] == "mmpareto",
            "detail": ", ".join(f"{m} {100 * mean(methods[m]['test_acc']):.2f}" for m in ranked),
        }
    return checks


def _cos_plot(methods: dict[str, dict[str, Any]], tasks: list[str], out: Path) -> str | None:
    """``cos.png``: each pair's cosine curve, mean over seeds, for uniform and MMPareto."""
    from curatorch.report import multitask_cos_plot

    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for method in (m for m in _CURVE_METHODS if m in methods):
        per_run: dict[str, list[list[tuple[int, float]]]] = {p: [] for p in task_pairs(tasks)}
        for run in methods[method]["runs"]:
            records = read_jsonl(Path(run) / "diagnostics.jsonl")
            for pair in per_run:
                pts = [
                    (int(r["step"]), c[pair])
                    for r in records
                    if pair in (c := pair_cosines(r, tasks))
                ]
                per_run[pair].append(pts)
        curves[method] = {p: mean_curve(c) for p, c in per_run.items()}
    if any(pts for per in curves.values() for pts in per.values()):
        return str(multitask_cos_plot(curves, out / "cos.png"))
    return None


def _final(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The one-line summary the command prints: means per method and the checks."""
    mean, methods, tasks = statistics.fmean, result["methods"], result["tasks"]
    per_method = {
        f"{method}/{key}": mean(row[key])
        for method, row in methods.items()
        for key in ("test_acc", *(f"test_acc/{t}" for t in tasks), "conflict_rate")
        if row[key]
    }
    return {
        "out": str(out),
        "report": str(out / "report.md"),
        "cos_plot": result["cos_plot"],
        **per_method,
        **{f"alone/{t}": mean(v) for t, v in result["alone"].items()},
        **{f"{method}/step_time_ratio": row["step_time_ratio"] for method, row in methods.items()},
        "checks": {k: v["pass"] for k, v in result["checks"].items()},
    }


def _descriptions(cfg: MultiTaskExperimentConfig) -> dict[str, str]:
    """The report's data and model lines."""
    d, m, o, t = cfg.data, cfg.model, cfg.optim, cfg.train
    return {
        "data": f"{d.dataset} (seed {d.seed}, test fraction {d.test_fraction}, "
        f"pixel noise {d.pixel_noise})",
        "model": f"a shared {m.encoder} encoder (hidden {m.hidden}, features {m.embed_dim}) "
        f"and a linear head per task; {o.name} lr {o.lr}, {t.steps} steps of batch "
        f"{t.batch_size}",
    }


def run_multitask_compare(
    cfg: MultiTaskExperimentConfig,
    out: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the comparison into ``out`` (see the module docstring); returns the printed
    summary (means per method, each task's accuracy alone, step-time ratios, checks)."""
    from curatorch.report import multitask_markdown

    _check_alone(cfg)  # before the run folder is made
    splits = build_multitask_splits(cfg.data)
    prepare_run_dir(out, config=multitask_config_to_dict(cfg), resume=resume, overwrite=overwrite)
    runs = _Runs(cfg, out, splits, resume=resume, overwrite=overwrite, progress=progress)
    methods = {method: runs.method(method) for method in cfg.compare.methods}
    alone = {task: runs.alone(task) for task in cfg.compare.alone}
    base = statistics.median(methods["uniform"]["step_time_s"]) if "uniform" in methods else None
    for row in methods.values():
        row["step_time_ratio"] = statistics.median(row["step_time_s"]) / base if base else None
    result = {
        **_descriptions(cfg),
        "seeds": list(cfg.compare.seeds),
        "tasks": runs.tasks,
        "pairs": runs.pairs,
        "diag_every": cfg.train.diag_every,
        "task_info": _task_info(splits, runs.tasks),
        "methods": methods,
        "alone": alone,
        "checks": _checks(methods, alone, runs.tasks),
        "cos_plot": _cos_plot(methods, runs.tasks, out),
    }
    atomic_write_text(out / "report.md", multitask_markdown(result))
    atomic_write_text(out / "summary.json", json.dumps(result, indent=1) + "\n")
    return _final(out, result)
