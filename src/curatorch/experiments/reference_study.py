"""The JEST paper's reference-curation study (Evans et al. 2024, arXiv 2406.17711,
Figure 5 and Table 3) on the built-in world: ``curatorch study reference CONFIG``.

The study is one compare config (``[[compare.references]]`` trained on pools of several
curation levels and lengths, ``[[compare.pools]]`` cut offline, strategies naming them:
:mod:`curatorch.experiments.compare_references`) plus a ``[study]`` table naming which
strategies answer which question::

    [study]
    baseline = "iid"                                  # IID on the raw pool ("" = compare.baseline)
    curation = ["jest-weak", "jest-moderate", "jest-strong"]   # (a) weakest curation first
    training = ["jest-s30", "jest-s60", "jest-s250"]           # (b) shortest training first
    raw = ["iid", "jest-strong"]                      # (c) on the raw pool ...
    filtered = ["iid-top50", "jest-top50"]            # ... and the same on the filtered pool

(a) and (b) give, per JEST strategy, its reference's own final score and JEST's gain
over the baseline (final score difference, seed means); (c) how much IID and JEST gain
from the offline filter. Each of the paper's three findings gets a verdict with its
numbers (:func:`findings`): a difference is *clear* when it exceeds twice its standard
error from the seeds (with one seed there is no error estimate and nothing is clear).
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from curatorch.experiments.jest_compare import (
    CompareConfig,
    parse_compare_config,
    run_compare,
)
from curatorch.train import ConfigError, apply_overrides
from curatorch.train.config import read_toml, section_from_dict

__all__ = [
    "StudyConfig",
    "StudySection",
    "findings",
    "load_study_config",
    "parse_study_config",
    "run_reference_study",
    "study_record",
]

STUDY_FILE = "study.json"
STUDY_REPORT = "study.md"


@dataclass(frozen=True)
class StudySection:
    """The ``[study]`` table (module docstring): strategy names of the compare config.

    Attributes:
        baseline: the IID strategy on the raw pool that gains are measured against
            ("" = ``compare.baseline``).
        curation: (a) JEST strategies whose references trained on pools of increasing
            curation (weakest first), the same steps.
        training: (b) JEST strategies whose references trained on one pool for
            increasing steps (shortest first).
        raw, filtered: (c) strategies on the raw pool and, position by position, the same
            strategies on an offline-filtered pool (``pool = ...``).
    """

    baseline: str = ""
    curation: tuple[str, ...] = ()
    training: tuple[str, ...] = ()
    raw: tuple[str, ...] = ()
    filtered: tuple[str, ...] = ()


@dataclass(frozen=True)
class StudyConfig:
    """A study: its comparison and its ``[study]`` table (checked against each other)."""

    compare: CompareConfig
    study: StudySection

    @property
    def baseline(self) -> str:
        return self.study.baseline or self.compare.compare.baseline


def _strategy(cc: CompareConfig, name: str, key: str) -> Any:
    active = {s.name: s for s in cc.compare.active}
    if name in active:
        return active[name]
    known = [s.name for s in cc.compare.strategies]
    if name in known:
        raise ConfigError(f"{key}: strategy {name!r} is left out by compare.only")
    raise ConfigError(f"{key}: unknown strategy {name!r} (known: {known})")


def _check_reference_part(cc: CompareConfig, names: Sequence[str], key: str) -> None:
    """(a) / (b): at least two strategies, each selecting on the raw pool with a listed
    reference that is trained here (so its own score is known)."""
    if len(names) == 1:
        raise ConfigError(f"{key} needs at least two strategies to compare, got {list(names)}")
    refs = {r.name: r for r in cc.compare.references}
    for name in names:
        st = _strategy(cc, name, key)
        if not st.reference or refs[st.reference].path:
            raise ConfigError(
                f"{key}: strategy {name!r} must select with a compare.references entry trained "
                f"here (its own score is the x axis), got reference={st.reference!r}"
            )
        if st.pool:
            raise ConfigError(f"{key}: strategy {name!r} trains on pool {st.pool!r}; use data.pool")


def _same_but_pool(a: Any, b: Any) -> bool:
    keep = ("strategy", "optim", "reference")
    return all(getattr(a, k) == getattr(b, k) for k in keep)


def check_study(study: StudySection, cc: CompareConfig) -> None:
    """Check the ``[study]`` table against the comparison; :class:`ConfigError` names the
    key."""
    base = _strategy(cc, study.baseline or cc.compare.baseline, "study.baseline")
    if base.strategy.selects or base.pool:
        raise ConfigError(
            f"study.baseline: {base.name!r} must be IID on data.pool (gains are over IID), got "
            f"strategy {base.strategy.name!r}" + (f" on pool {base.pool!r}" if base.pool else "")
        )
    _check_reference_part(cc, study.curation, "study.curation")
    _check_reference_part(cc, study.training, "study.training")
    if len(study.raw) != len(study.filtered):
        raise ConfigError(
            f"study.raw and study.filtered pair strategies by position: got {len(study.raw)} "
            f"and {len(study.filtered)}"
        )
    for i, (r, f) in enumerate(zip(study.raw, study.filtered, strict=True)):
        raw, filt = _strategy(cc, r, f"study.raw[{i}]"), _strategy(cc, f, f"study.filtered[{i}]")
        if raw.pool or not filt.pool:
            raise ConfigError(
                f"study.raw[{i}] ({r!r}) must train on data.pool and study.filtered[{i}] "
                f"({f!r}) on a compare.pools pool; got pools {raw.pool!r} and {filt.pool!r}"
            )
        if not _same_but_pool(raw, filt):
            raise ConfigError(
                f"study.raw[{i}] ({r!r}) and study.filtered[{i}] ({f!r}) must differ only in "
                f"their pool (strategy, optim and reference the same)"
            )
    if not (study.curation or study.training or study.raw):
        raise ConfigError("[study] names no strategies: set curation, training or raw/filtered")


def parse_study_config(
    raw: Mapping[str, Any], overrides: Sequence[str] = (), *, quick: bool = False
) -> StudyConfig:
    """A :class:`StudyConfig` from a parsed TOML: the ``[study]`` table (``--set study.key=``
    overrides) and the compare config (:func:`~curatorch.experiments.jest_compare.
    parse_compare_config`, with the other overrides and ``quick``)."""
    raw = dict(raw)
    if "study" not in raw:
        raise ConfigError("a study config needs a [study] table (the strategies of each part)")
    ours = [o for o in overrides if o.split("=", 1)[0].strip().startswith("study.")]
    rest = [o for o in overrides if o not in ours]
    table = apply_overrides({"study": raw.pop("study")}, ours, {"study": StudySection})["study"]
    study = section_from_dict(StudySection, table, "study")
    cc = parse_compare_config(raw, rest, quick=quick)
    check_study(study, cc)
    return StudyConfig(compare=cc, study=study)


def load_study_config(
    path: str | os.PathLike[str], overrides: Sequence[str] = (), *, quick: bool = False
) -> StudyConfig:
    """Read a study config file (see :func:`parse_study_config`)."""
    raw = read_toml(path)
    try:
        return parse_study_config(raw, overrides, quick=quick)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


# ------------------------------------------------------------------------------ numbers


def _final(results: Mapping[str, Any], name: str) -> tuple[float, float]:
    """A strategy's final score (mean over seeds) and its standard error."""
    metric = results["target"]["metric"]
    curve = results["curves"][name]
    n = len(results["seeds"])
    std = float(curve.get(f"{metric}_std", [0.0])[-1]) if n > 1 else 0.0
    return float(curve[metric][-1]), std / math.sqrt(n)


def _se(*errors: float) -> float:
    return math.sqrt(sum(e * e for e in errors))


def _reference_row(results: Mapping[str, Any], name: str, baseline: str) -> dict[str, Any]:
    """One JEST strategy of (a) / (b): its reference's pool, steps and own score, and its
    gain over the baseline."""
    metric = results["target"]["metric"]
    ref_name = results["strategy_references"][name]
    ref = results["references"][ref_name]
    pool = ref.get("pool_facts") or {}
    final, se = _final(results, name)
    base, base_se = _final(results, baseline)
    return {
        "strategy": name,
        "label": results["labels"].get(name, name),
        "reference": ref_name,
        "reference_label": ref.get("label", ref_name),
        "pool": pool.get("pool"),
        "pool_size": pool.get("size"),
        "pool_clean_fraction": pool.get("clean_fraction"),
        "reference_steps": ref.get("steps"),
        "reference_score": ref.get("final", {}).get(metric),
        "final": round(final, 4),
        "final_se": round(se, 4),
        "gain": round(final - base, 4),
        "gain_se": round(_se(se, base_se), 4),
        "speedup_examples": results["summary"]["speedup_examples"].get(name),
    }


def _filter_row(results: Mapping[str, Any], raw: str, filtered: str) -> dict[str, Any]:
    """One pair of (c): the strategy on the raw and on the filtered pool."""
    a, a_se = _final(results, raw)
    b, b_se = _final(results, filtered)
    pool = results["pools"][results["strategy_pools"][filtered]]
    selects = results["configs"][raw]["strategy"]["name"] != "iid"
    return {
        "raw": raw,
        "filtered": filtered,
        "label": results["labels"].get(raw, raw),
        "label_filtered": results["labels"].get(filtered, filtered),
        "selects": selects,
        "pool": pool.get("pool"),
        "pool_size": pool.get("size"),
        "pool_clean_fraction": pool.get("clean_fraction"),
        "final_raw": round(a, 4),
        "final_raw_se": round(a_se, 4),
        "final_filtered": round(b, 4),
        "final_filtered_se": round(b_se, 4),
        "dependence": round(b - a, 4),
        "dependence_se": round(_se(a_se, b_se), 4),
    }


def study_record(results: Mapping[str, Any], study: StudySection) -> dict[str, Any]:
    """The study's numbers from the comparison's ``results`` (``results.json``): rows of
    (a), (b) and (c) and :func:`findings`."""
    baseline = study.baseline or results["target"]["baseline"]
    base, base_se = _final(results, baseline)
    record = {
        "metric": results["target"]["metric"],
        "seeds": list(results["seeds"]),
        "baseline": {"strategy": baseline, "final": round(base, 4), "final_se": round(base_se, 4)},
        "curation": [_reference_row(results, n, baseline) for n in study.curation],
        "training": [_reference_row(results, n, baseline) for n in study.training],
        "filter": [
            _filter_row(results, r, f) for r, f in zip(study.raw, study.filtered, strict=True)
        ],
        "budget": results["budget"],
    }
    record["findings"] = findings(record)
    return record


# ----------------------------------------------------------------------------- findings


def _clear(diff: float, se: float) -> bool:
    """Whether ``diff`` is more than twice its standard error (never without one)."""
    return se > 0 and abs(diff) > 2 * se


def _spearman(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    """Spearman's rank correlation (``None`` when a side is constant or too short)."""
    from scipy.stats import spearmanr

    if len(xs) < 2 or len(set(xs)) < 2 or len(set(ys)) < 2:
        return None
    return round(float(spearmanr(xs, ys).statistic), 3)


def _noise_words(clear: bool, se: float) -> str:
    if se <= 0:
        return "one seed: no error estimate"
    return "clear" if clear else "within seed noise"


def _qualified(verdict: str, direction: str, clear: bool, se: float) -> str:
    """``verdict`` (``holds``, ``partly: ...``, ``does not hold: ...``) when the difference
    it rests on is clear; else ``not shown (within seed noise): <direction>``."""
    return verdict if clear else f"not shown ({_noise_words(clear, se)}): {direction}"


def _curation_finding(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """(a): stronger curation helps JEST although the reference itself is weaker."""
    if len(rows) < 2:
        return {"verdict": "not measured"}
    weak, strong = rows[0], rows[-1]
    d_gain = strong["gain"] - weak["gain"]
    se = _se(strong["final_se"], weak["final_se"])
    d_ref = strong["reference_score"] - weak["reference_score"]
    clear = _clear(d_gain, se)
    gains = [r["gain"] for r in rows]
    if d_gain > 0 and d_ref < 0:
        verdict = "holds"
        direction = "the strongest curation gives the larger gain with the weaker reference"
    elif d_gain > 0:
        direction = "the strongest curation gives the larger gain, but its reference is not weaker"
        verdict = f"partly: {direction}"
    else:
        direction = "the strongest curation does not give the larger gain"
        verdict = f"does not hold: {direction}"
    return {
        "claim": "stronger curation of the reference's data helps JEST although the "
        "reference itself is weaker",
        "verdict": _qualified(verdict, direction, clear, se),
        "gain_strong_minus_weak": round(d_gain, 4),
        "gain_difference_se": round(se, 4),
        "noise": _noise_words(clear, se),
        "reference_score_strong_minus_weak": round(d_ref, 4),
        "gain_monotone_in_curation": all(b >= a for a, b in itertools.pairwise(gains)),
        "spearman_reference_score_gain": _spearman([r["reference_score"] for r in rows], gains),
    }


def _training_finding(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """(b): with data held fixed, a better-trained reference helps JEST."""
    if len(rows) < 2:
        return {"verdict": "not measured"}
    scores = [r["reference_score"] for r in rows]
    gains = [r["gain"] for r in rows]
    best = max(range(len(rows)), key=lambda i: scores[i])
    worst = min(range(len(rows)), key=lambda i: scores[i])
    d_gain = gains[best] - gains[worst]
    se = _se(rows[best]["final_se"], rows[worst]["final_se"])
    rho = _spearman(scores, gains)
    clear = _clear(d_gain, se)
    if rho is not None and rho > 0 and d_gain > 0:
        verdict, direction = "holds", "the better-trained reference gives the larger gain"
    else:
        direction = "the better reference does not give the larger gain"
        verdict = f"does not hold: {direction}"
    return {
        "claim": "with the reference's data held fixed, a better-trained reference helps JEST",
        "verdict": _qualified(verdict, direction, clear, se),
        "spearman_steps_reference_score": _spearman(
            [float(r["reference_steps"]) for r in rows], scores
        ),
        "spearman_reference_score_gain": rho,
        "best_reference": rows[best]["reference"],
        "worst_reference": rows[worst]["reference"],
        "gain_best_minus_worst": round(d_gain, 4),
        "gain_difference_se": round(se, 4),
        "noise": _noise_words(clear, se),
    }


def _filter_verdict(iid: Mapping[str, Any], jest: Mapping[str, Any]) -> str:
    """(c)'s verdict from the two pairs' gains from the filter (``dependence``)."""
    dep_iid, dep_jest = iid["dependence"], jest["dependence"]
    se_iid = iid["dependence_se"]
    gap, gap_se = dep_iid - dep_jest, _se(se_iid, jest["dependence_se"])
    iid_clear = dep_iid > 0 and _clear(dep_iid, se_iid)
    jest_clear = dep_jest > 0 and _clear(dep_jest, jest["dependence_se"])
    if dep_iid <= 0:
        direction = "IID does not gain from the offline filter"
        return _qualified(f"does not hold: {direction}", direction, _clear(dep_iid, se_iid), se_iid)
    if dep_jest >= dep_iid:
        direction = "JEST gains from the filter as much as IID"
        return _qualified(f"does not hold: {direction}", direction, _clear(gap, gap_se), gap_se)
    if iid_clear and not jest_clear:
        return "holds"
    if iid_clear and _clear(gap, gap_se):
        return "partly: JEST gains from the filter too, but clearly less than IID"
    direction = "IID gains more from the filter than JEST"
    return _qualified("", direction, False, gap_se if iid_clear else se_iid)


def _filter_finding(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """(c): JEST needs no offline pre-filter, IID does."""
    iid = next((r for r in rows if not r["selects"]), None)
    jest = next((r for r in rows if r["selects"]), None)
    if iid is None or jest is None:
        return {"verdict": "not measured"}
    return {
        "claim": "JEST needs no offline pre-filter of its training pool; IID does",
        "verdict": _filter_verdict(iid, jest),
        "iid_dependence": iid["dependence"],
        "iid_dependence_se": iid["dependence_se"],
        "jest_dependence": jest["dependence"],
        "jest_dependence_se": jest["dependence_se"],
        "jest_raw_minus_iid_filtered": round(jest["final_raw"] - iid["final_filtered"], 4),
    }


def findings(record: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The paper's three findings, each with a verdict and its numbers, from a
    :func:`study_record`'s rows: ``curation`` (a), ``training`` (b), ``filter`` (c)."""
    return {
        "curation": _curation_finding(record["curation"]),
        "training": _training_finding(record["training"]),
        "filter": _filter_finding(record["filter"]),
    }


# ------------------------------------------------------------------------------ running


def run_reference_study(
    sc: StudyConfig,
    out: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the study's comparison into ``out`` (:func:`~curatorch.experiments.
    jest_compare.run_compare`: its ``report.md`` and ``results.json`` too), then write
    ``study.json``, ``study.md`` and the plots ``gain_vs_reference.png`` and
    ``offline_filter.png``. Returns ``{"study": record, "compare": run_compare's}``."""
    from curatorch.report.reference_study import (
        plot_gain_vs_reference,
        plot_offline_filter,
        study_markdown,
    )

    out = Path(out)
    t0 = time.perf_counter()
    kwargs = {} if log is None else {"log": log}
    result = run_compare(
        sc.compare, out, overwrite=overwrite, progress=progress, command=command, **kwargs
    )
    record = study_record(result["results"], sc.study)
    record["plots"] = {}
    if record["curation"] or record["training"]:
        plot_gain_vs_reference(record, out / "gain_vs_reference.png")
        record["plots"]["gain_vs_reference"] = "gain_vs_reference.png"
    if record["filter"]:
        plot_offline_filter(record, out / "offline_filter.png")
        record["plots"]["offline_filter"] = "offline_filter.png"
    results = result["results"]
    record.update(
        command=command,
        wall_s=round(time.perf_counter() - t0, 1),
        run_wall_s=results["run_wall_s"],
        references={k: _reference_facts(v) for k, v in results["references"].items()},
        pools=results["pools"],
        threads=results["threads"],
        load_average=results["load_average"],
    )
    (out / STUDY_FILE).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    (out / STUDY_REPORT).write_text(study_markdown(record), encoding="utf-8")
    return {"study": record, "compare": result}


def _reference_facts(info: Mapping[str, Any]) -> dict[str, Any]:
    """What the study keeps of a reference's facts."""
    keep = ("label", "pool", "pool_facts", "steps", "batch_size", "model", "final", "wall_s")
    return {k: info[k] for k in keep if k in info}
