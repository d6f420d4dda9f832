"""``curatorch pareto compare``: gradient integrators x seeds, plus each modality alone.

``run_pareto_compare(cfg, out)`` trains every method of ``cfg.compare.methods`` for every
seed, and each modality of ``cfg.compare.alone`` by itself, all as
:class:`~curatorch.train.multimodal.MultimodalClassifierTask` runs of the one loop in
``out/runs/<name>``; then it writes ``report.md`` (accuracies, conflict rates, step-time
ratios, checks), ``summary.json`` and ``cos.png`` (the mean ``cos(g_m, g_u)`` curves of
uniform and MMPareto). The checks are findings: a failed one is reported, not an error.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
from pathlib import Path
from typing import Any

from curatorch.data import MultimodalSplits
from curatorch.fileio import atomic_write_text
from curatorch.train.config import ConfigError
from curatorch.train.loop import prepare_run_dir
from curatorch.train.multimodal import (
    TRUNK,
    ParetoExperimentConfig,
    build_multimodal_splits,
    check_early_methods,
    pareto_config_to_dict,
    train_pareto,
)

__all__ = ["mean_curve", "run_pareto_compare"]


def _curve(run: Path, mod: str) -> list[tuple[int, float]]:
    """``(step, cos)`` points of one run's diagnostics for modality ``mod``."""
    path = run / "diagnostics.jsonl"
    if not path.exists():
        return []
    pts = []
    for line in path.read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        if rec.get(f"cos/{mod}") is not None:
            pts.append((int(rec["step"]), float(rec[f"cos/{mod}"])))
    return pts


def mean_curve(curves: list[list[tuple[int, float]]]) -> list[tuple[int, float]]:
    """The mean over runs of ``(step, value)`` curves, step by step (steps any run has)."""
    by_step: dict[int, list[float]] = {}
    for c in curves:
        for s, v in c:
            by_step.setdefault(s, []).append(v)
    return [(s, statistics.fmean(v)) for s, v in sorted(by_step.items())]


def _check_fits(cfg: ParetoExperimentConfig, splits: MultimodalSplits) -> list[str]:
    """The modalities the comparison trains; a :class:`ConfigError` before any run when
    ``compare.alone`` or ``model.encoder`` does not fit them."""
    mods = list(cfg.data.modalities or splits.train.modalities)
    unknown = [m for m in mods if m not in splits.train.modalities]
    if unknown:
        raise ConfigError(
            f"data.modalities names {unknown}, not among {list(splits.train.modalities)}"
        )
    if cfg.model.fusion == "early":
        check_early_methods("compare.methods", cfg.compare.methods)
    for m in cfg.compare.alone:
        if m not in mods:
            raise ConfigError(f"compare.alone names {m!r}, not one of the modalities {mods}")
    shapes = splits.train.input_shapes()
    flat = [f"{m} {shapes[m]}" for m in mods if len(shapes[m]) != 3]
    if cfg.model.encoder == "conv" and flat:
        raise ConfigError(
            f"model.encoder = 'conv' needs (C, H, W) modalities, but {cfg.data.dataset} has "
            f"{', '.join(flat)}: use model.encoder = 'mlp' or leave them out of "
            "data.modalities and compare.alone"
        )
    return mods


class _Runs:
    """Trains the comparison's runs into ``out/runs`` with shared data and flags."""

    def __init__(
        self, cfg: ParetoExperimentConfig, out: Path, splits: MultimodalSplits, **flags: Any
    ) -> None:
        self.cfg, self.flags = cfg, flags
        self.splits = splits
        self.mods = _check_fits(cfg, splits)
        # the parameter groups with diagnostics: the encoders, and the trunk with early fusion
        self.groups = [*self.mods, TRUNK] if cfg.model.fusion == "early" else list(self.mods)
        self.root = out / "runs"
        self.root.mkdir(exist_ok=True)

    def run(self, name: str, cfg: ParetoExperimentConfig) -> dict[str, Any]:
        summary = train_pareto(cfg, self.root / name, splits=self.splits, **self.flags)
        accs = " ".join(f"{m}={summary.get(f'test_acc/{m}', float('nan')):.4f}" for m in self.mods)
        print(f"{name}: test_acc={summary['test_acc']:.4f} {accs}", file=sys.stderr)
        return summary

    def method(self, method: str) -> dict[str, Any]:
        """Every seed of ``method``: accuracies, step times, conflict rates, run folders."""
        cfg, mods = self.cfg, self.mods
        row: dict[str, Any] = {"test_acc": [], "step_time_s": [], "runs": []}
        for m in mods:
            row[f"test_acc/{m}"] = []
        for g in self.groups:
            row[f"conflict_rate/{g}"] = []
        for seed in cfg.compare.seeds:
            c = dataclasses.replace(
                cfg,
                pareto=dataclasses.replace(cfg.pareto, method=method),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            s = self.run(f"{method}_seed{seed}", c)
            row["runs"].append(s["run"])
            row["test_acc"].append(s["test_acc"])
            row["step_time_s"].append(s["step_time_s"])
            for m in mods:
                row[f"test_acc/{m}"].append(s[f"test_acc/{m}"])
            for g in self.groups:
                if f"conflict_rate/{g}" in s:
                    row[f"conflict_rate/{g}"].append(s[f"conflict_rate/{g}"])
        return row

    def alone(self, mod: str) -> list[float]:
        """Fused accuracy of ``mod`` trained by itself, per seed."""
        cfg = self.cfg
        accs = []
        for seed in cfg.compare.seeds:
            c = dataclasses.replace(
                cfg,
                data=dataclasses.replace(cfg.data, modalities=(mod,)),
                pareto=dataclasses.replace(cfg.pareto, method="multimodal"),
                train=dataclasses.replace(cfg.train, seed=seed),
            )
            accs.append(self.run(f"alone_{mod}_seed{seed}", c)["test_acc"])
        return accs


def _checks(methods: dict[str, dict[str, Any]], alone: dict[str, list[float]]) -> dict:
    """The paper's claims as checks (``pass`` and a ``detail`` of the measured values)."""
    mean = statistics.fmean
    checks: dict[str, dict[str, Any]] = {}
    if "mmpareto" in methods and "uniform" in methods:
        a, b = mean(methods["mmpareto"]["test_acc"]), mean(methods["uniform"]["test_acc"])
        checks["mmpareto multimodal acc > uniform"] = {
            "pass": a > b,
            "detail": f"{100 * a:.2f} vs {100 * b:.2f}",
        }
        ratio = methods["mmpareto"]["step_time_ratio"]
        if ratio is not None:
            checks["mmpareto step time / uniform <= 1.5"] = {
                "pass": ratio <= 1.5,
                "detail": f"{ratio:.2f} (training loop, diagnostics included)",
            }
    if "mmpareto" in methods:
        for mod in alone:
            a, b = mean(methods["mmpareto"][f"test_acc/{mod}"]), mean(alone[mod])
            checks[f"mmpareto {mod} head >= {mod} alone"] = {
                "pass": a >= b,
                "detail": f"{100 * a:.2f} vs {100 * b:.2f}",
            }
    return checks


def _cos_plot(methods: dict[str, dict[str, Any]], mods: list[str], out: Path) -> str | None:
    from curatorch.report import pareto_cos_plot

    curves = {
        method: {m: mean_curve([_curve(Path(r), m) for r in methods[method]["runs"]]) for m in mods}
        for method in methods
        if method in ("uniform", "mmpareto")
    }
    if any(pts for per in curves.values() for pts in per.values()):
        return str(pareto_cos_plot(curves, out / "cos.png"))
    return None


def _final(out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The one-line summary the command prints: means per method and the checks."""
    mean, methods, mods = statistics.fmean, result["methods"], result["modalities"]
    return {
        "out": str(out),
        "report": str(out / "report.md"),
        "cos_plot": result["cos_plot"],
        **{f"{method}/test_acc": mean(row["test_acc"]) for method, row in methods.items()},
        **{
            f"{method}/test_acc/{m}": mean(row[f"test_acc/{m}"])
            for method, row in methods.items()
            for m in mods
        },
        **{f"alone/{m}": mean(v) for m, v in result["alone"].items()},
        **{f"{method}/step_time_ratio": row["step_time_ratio"] for method, row in methods.items()},
        "checks": {k: v["pass"] for k, v in result["checks"].items()},
    }


def _data_description(cfg: ParetoExperimentConfig) -> str:
    """The data line of the report: the dataset and its generation parameters."""
    d = cfg.data
    extra = (
        f", profile noise {d.profile_noise}" if d.dataset == "coloured_gray_profile_digits" else ""
    )
    m = cfg.model
    model = (
        f"early fusion (patch {m.patch}, depth {m.depth}, width {m.embed_dim}; the trunk's "
        "conflict rate is over the least pairwise cosine of its objectives)"
        if m.fusion == "early"
        else f"late fusion ({m.encoder} encoders)"
    )
    return (
        f"{d.dataset} (seed {d.seed}, test fraction {d.test_fraction}, "
        f"colour variance {d.colour_variance}{extra}); model: {model}"
    )


def run_pareto_compare(
    cfg: ParetoExperimentConfig,
    out: Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the comparison into ``out`` (see the module docstring); returns the printed
    summary (means per method, unimodal-alone accuracies, step-time ratios, checks)."""
    from curatorch.report import pareto_markdown

    splits = build_multimodal_splits(cfg.data)
    _check_fits(cfg, splits)  # before the run folder is made
    prepare_run_dir(out, config=pareto_config_to_dict(cfg), resume=resume, overwrite=overwrite)
    runs = _Runs(cfg, out, splits, resume=resume, overwrite=overwrite, progress=progress)
    methods = {method: runs.method(method) for method in cfg.compare.methods}
    alone = {mod: runs.alone(mod) for mod in cfg.compare.alone}
    base = statistics.median(methods["uniform"]["step_time_s"]) if "uniform" in methods else None
    for row in methods.values():
        med = statistics.median(row["step_time_s"])
        row["step_time_ratio"] = med / base if base else None
    result = {
        "data": _data_description(cfg),
        "seeds": list(cfg.compare.seeds),
        "modalities": runs.mods,
        "groups": runs.groups,
        "methods": methods,
        "alone": alone,
        "checks": _checks(methods, alone),
        "cos_plot": _cos_plot(methods, runs.groups, out),
    }
    atomic_write_text(out / "report.md", pareto_markdown(result))
    atomic_write_text(out / "summary.json", json.dumps(result, indent=1) + "\n")
    return _final(out, result)
