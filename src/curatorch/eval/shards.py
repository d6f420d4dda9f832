"""Evaluation on the user's own held-out WebDataset shards.

:class:`ShardEvalSet` reads held-out shards (img2dataset layout: ``{key}.jpg``,
``{key}.txt``, optionally ``{key}.json`` and ``{key}.cls``) once, in a fixed order (the
shards in the order of the pattern, the samples of each in file order), and keeps the
decoded images, captions and labels in memory, optionally also in a cache file on disk.
:class:`ShardEvaluator` scores any model with ``encode_image`` / ``encode_text`` on it:

- ``i2t_r1``, ``i2t_r5``, ``t2i_r1``, ``t2i_r5``: retrieval recall from the pairs
  (:func:`~curatorch.eval.retrieval.retrieval_recall_at_k` says what counts as a hit when
  captions repeat);
- ``zeroshot_acc`` and ``fewshot_acc``: zero-shot classification with prompt templates
  and a 10-shot ridge probe, when a classes list is given and the samples carry labels.

``mean_score`` is the mean of those of ``zeroshot_acc``, ``fewshot_acc``, ``i2t_r1`` and
``t2i_r1`` that were computed (the JEST paper's average, as the built-in evaluation has
it); ``scores_used`` lists them.

Labels come from the field ``label_field`` of the sample's ``.json`` (what img2dataset
writes with ``--save_additional_columns``) or else from a ``.cls`` member. A JSON integer,
or a ``.cls`` holding a decimal integer, is a class index; a string is a class name,
looked up in the classes list (a file with one class name per line).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import tarfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch

from curatorch.data.shards import FAULT_REASONS, ShardFault, expand_shards, iter_shard
from curatorch.eval.fewshot import fewshot_probe_accuracy
from curatorch.eval.retrieval import retrieval_recall_at_k
from curatorch.eval.zeroshot import class_prompts, zero_shot_accuracy
from curatorch.fileio import atomic_write

__all__ = [
    "DEFAULT_TEMPLATES",
    "MEAN_SCORE_TERMS",
    "SHARD_EVAL_SCORES",
    "CaptionTokenizer",
    "ImageTextEncoder",
    "ShardEvalSet",
    "ShardEvaluator",
    "build_shard_evaluator",
    "load_classes",
    "load_templates",
]

DEFAULT_TEMPLATES = ("a photo of {}.",)
SHARD_EVAL_SCORES = ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "zeroshot_acc", "fewshot_acc")
MEAN_SCORE_TERMS = ("zeroshot_acc", "fewshot_acc", "i2t_r1", "t2i_r1")

_CACHE_FORMAT = "curatorch-shard-eval-cache"
_CACHE_VERSION = 1
_LABEL_SUFFIXES = ("json", "cls")
_INT_RE = re.compile(r"[+-]?\d+")
_NORM_TOL = 2e-2  # |norm - 1| allowed of an "L2-normalised" embedding (bf16 models)


class ImageTextEncoder(Protocol):
    """What shard evaluation needs of a model: L2-normalised embeddings of each modality.

    ``encode_image(images [n, 3, H, W] float) -> [n, D]`` and
    ``encode_text(tokens [n, L] int64) -> [n, D]``. curatorch's ``TwoTower``, the model
    adapters and an open_clip model (with ``normalize=True``) all fit.
    """

    def encode_image(self, images: torch.Tensor) -> torch.Tensor: ...

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor: ...


class CaptionTokenizer(Protocol):
    """``encode(texts) -> [n, L] int64`` (see :mod:`curatorch.data.tokenizer`)."""

    def encode(self, texts: Sequence[str]) -> torch.Tensor: ...


# ----------------------------------------------------------------------------- files


def load_classes(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line, in order (line ``i`` is class ``i``).

    Surrounding whitespace and trailing empty lines are dropped. Raises ``ValueError``
    naming the file when it is missing or unreadable, holds no class, has an empty line
    between classes, or names a class twice.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"classes file {path} cannot be read: {exc}") from exc
    names = [line.strip() for line in text.rstrip().splitlines()]
    if not names or names == [""]:
        raise ValueError(f"classes file {path} is empty: it needs one class name per line")
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if not name:
            raise ValueError(f"classes file {path} has an empty line {i + 1} between classes")
        if name in seen:
            raise ValueError(
                f"classes file {path} names class {name!r} twice (lines {seen[name] + 1} "
                f"and {i + 1})"
            )
        seen[name] = i
    return names


def _check_templates(templates: Sequence[str], source: str = "templates") -> tuple[str, ...]:
    if isinstance(templates, str) or not isinstance(templates, Sequence) or not templates:
        raise ValueError(f"{source} must be a non-empty list of strings, got {templates!r}")
    for t in templates:
        if not isinstance(t, str) or t.count("{}") != 1:
            raise ValueError(
                f"{source}: template {t!r} must contain '{{}}' exactly once, where the class "
                f"name goes"
            )
        try:
            t.format("x")
        except (IndexError, KeyError, ValueError) as exc:
            raise ValueError(f"{source}: template {t!r} cannot be formatted: {exc}") from exc
    return tuple(templates)


def load_templates(path: str | os.PathLike[str]) -> tuple[str, ...]:
    """Prompt templates from a text file, one per line (empty lines skipped), each with
    one ``{}`` where the class name goes. Raises ``ValueError`` naming the file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"templates file {path} cannot be read: {exc}") from exc
    templates = [line.strip() for line in text.splitlines() if line.strip()]
    if not templates:
        raise ValueError(f"templates file {path} is empty: it needs one template per line")
    return _check_templates(templates, f"templates file {path}")


def _expand(shards: str | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The shard files of a brace pattern (:func:`~curatorch.data.expand_shards`: all must
    exist) or of a list of paths, in order."""
    if isinstance(shards, (str, os.PathLike)):
        return expand_shards(os.fspath(shards), what="eval shards")
    urls = [os.fspath(u) for u in shards]
    if not urls:
        raise ValueError("eval shards: the list of shard files is empty")
    missing = [u for u in urls if not os.path.isfile(u)]
    if missing:
        raise ValueError(
            f"eval shards: shard file {missing[0]} does not exist ({len(missing)} of "
            f"{len(urls)} files are missing)"
        )
    if len(set(map(os.path.abspath, urls))) != len(urls):
        raise ValueError(f"eval shards {urls!r} name a file twice")
    return urls


# ----------------------------------------------------------------------------- reading


def _label_members(url: str) -> dict[str, dict[str, bytes]]:
    """``key -> {"json": bytes, "cls": bytes}`` of a shard's samples (the members present).

    Samples are grouped as :func:`~curatorch.data.iter_shard` groups them (consecutive
    members sharing a key; a key seen before starts a duplicate, which is ignored here as
    it is skipped there). A damaged tar ends the reading quietly: ``iter_shard`` counts
    the damage.
    """
    from webdataset.tariterators import base_plus_ext

    out: dict[str, dict[str, bytes]] = {}
    key, suffixes, duplicate = None, set(), False
    try:
        with open(url, "rb") as fh, tarfile.open(fileobj=fh, mode="r|*") as tf:
            for info in tf:
                base = info.name.rsplit("/", 1)[-1]
                if not info.isreg() or (base.startswith("__") and base.endswith("__")):
                    continue
                prefix, suffix = base_plus_ext(info.name)
                if prefix is None:
                    continue
                suffix = suffix.lower()
                if prefix != key or suffix in suffixes:
                    key, suffixes, duplicate = prefix, set(), prefix in out
                    out.setdefault(prefix, {})
                suffixes.add(suffix)
                if suffix in _LABEL_SUFFIXES and not duplicate:
                    member = tf.extractfile(info)
                    out[prefix][suffix] = member.read() if member is not None else b""
                tf.members = []
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        pass  # iter_shard reports it as truncated_tar
    return out


def _raw_label(members: dict[str, bytes], label_field: str) -> tuple[int | str | None, str]:
    """The label of a sample as stored (``None`` if absent) and, if unusable, why."""
    if "json" in members:
        try:
            info = json.loads(members["json"].decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            return None, f"its .json is not valid UTF-8 JSON ({exc})"
        value = info.get(label_field) if isinstance(info, dict) else None
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            value = int(value)  # pandas writes int columns with gaps as floats
        elif isinstance(value, float) and math.isnan(value):
            value = None
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                return None, f".json field {label_field!r} is {value!r}, not an int or a name"
            return value, ""
    if "cls" in members:
        try:
            text = members["cls"].decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            return None, f"its .cls is not UTF-8 ({exc})"
        if text:
            return (int(text) if _INT_RE.fullmatch(text) else text), ""
    return None, ""


def _decode_shards(urls: Sequence[str], *, image_size: int, label_field: str) -> dict[str, Any]:
    """Every usable sample of ``urls`` in order, the raw labels and the fault counts."""
    keys: list[str] = []
    shard_of: list[int] = []
    captions: list[str] = []
    images: list[torch.Tensor] = []
    raw: list[int | str | None] = []
    errors: list[tuple[int, str]] = []  # (sample row, why its label is unusable)
    counts = {"samples_ok": 0, "samples_skipped": 0} | {f"skipped_{r}": 0 for r in FAULT_REASONS}
    for s, url in enumerate(urls):
        labels = _label_members(url)
        for item in iter_shard(url, image_size=image_size):
            if isinstance(item, ShardFault):
                counts["samples_skipped"] += 1
                counts[f"skipped_{item.reason}"] += 1
                continue
            counts["samples_ok"] += 1
            value, error = _raw_label(labels.get(item.key, {}), label_field)
            if error:
                errors.append((len(keys), error))
            keys.append(item.key)
            shard_of.append(s)
            captions.append(item.caption)
            images.append(item.image)
            raw.append(value)
    stacked = (
        torch.stack(images)
        if images
        else torch.empty(0, 3, image_size, image_size, dtype=torch.uint8)
    )
    return {
        "keys": keys,
        "shard_of": shard_of,
        "captions": captions,
        "images": stacked,  # [N, 3, S, S] uint8
        "raw_labels": raw,
        "label_errors": errors,
        "counts": counts,
    }


# ----------------------------------------------------------------------------- disk cache


def _fingerprint(urls: Sequence[str], *, image_size: int, label_field: str) -> dict[str, Any]:
    """What the cached content depends on: every shard file's path, size and mtime, the
    image size and the label field (normalisation is applied after the cache)."""
    files = []
    for url in urls:
        st = os.stat(url)
        files.append([os.path.abspath(url), int(st.st_size), int(st.st_mtime_ns)])
    return {"files": files, "image_size": image_size, "label_field": label_field}


def _stale_reason(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why a cache with fingerprint ``old`` does not hold data of fingerprint ``new``."""
    for name in ("image_size", "label_field"):
        if old.get(name) != new[name]:
            return f"{name} was {old.get(name)!r}, is {new[name]!r}"
    old_files = old.get("files", [])
    if [f[0] for f in old_files] != [f[0] for f in new["files"]]:
        return "the shard files are not the same"
    for (path, size, mtime), (_, old_size, old_mtime) in zip(new["files"], old_files, strict=True):
        if (size, mtime) != (old_size, old_mtime):
            return f"shard {path} changed (size {old_size} -> {size}, mtime changed)"
    return ""  # pragma: no cover - only called when the fingerprints differ


def _read_cache(path: Path, fingerprint: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """The cached data if it is current, else ``(None, why it is stale)``. A file that is
    not an eval-shard cache is an error (it is never overwritten)."""
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for foreign files
        raise ValueError(
            f"eval cache {path} is not a curatorch eval-shard cache ({type(exc).__name__}); "
            f"delete it or choose another eval.cache"
        ) from exc
    if not isinstance(obj, dict) or obj.get("format") != _CACHE_FORMAT:
        raise ValueError(
            f"eval cache {path} is not a curatorch eval-shard cache; delete it or choose "
            f"another eval.cache"
        )
    if obj.get("version") != _CACHE_VERSION:
        return None, f"cache version {obj.get('version')!r}, this curatorch writes {_CACHE_VERSION}"
    if obj.get("fingerprint") != fingerprint:
        return None, _stale_reason(obj.get("fingerprint") or {}, fingerprint)
    return obj["data"], ""


def _write_cache(path: Path, fingerprint: dict[str, Any], data: dict[str, Any]) -> None:
    obj = {
        "format": _CACHE_FORMAT,
        "version": _CACHE_VERSION,
        "fingerprint": fingerprint,
        "data": data,
    }
    atomic_write(path, lambda tmp: torch.save(obj, tmp), parents=True)


def _load(
    urls: Sequence[str], *, image_size: int, label_field: str, cache: Path | None
) -> tuple[dict[str, Any], str]:
    """The decoded shards and the cache status (see :attr:`ShardEvalSet.cache_status`)."""
    if cache is None:
        return _decode_shards(urls, image_size=image_size, label_field=label_field), "memory"
    fingerprint = _fingerprint(urls, image_size=image_size, label_field=label_field)
    status = "written"
    if cache.exists():
        data, why = _read_cache(cache, fingerprint)
        if data is not None:
            return data, "loaded"
        status = f"rebuilt: {why}"
    data = _decode_shards(urls, image_size=image_size, label_field=label_field)
    _write_cache(cache, fingerprint, data)
    return data, status


# ----------------------------------------------------------------------------- labels


def _map_labels(
    data: dict[str, Any], urls: Sequence[str], classes: Sequence[str], source: str, field: str
) -> torch.Tensor:
    """The raw labels as class indices ``[N]`` int64; a missing or unknown label raises a
    one-line ``ValueError`` naming the first such sample (key and shard) and ``source``."""
    keys, shard_of = data["keys"], data["shard_of"]

    def where(row: int) -> str:
        return f"sample {keys[row]} of eval shard {urls[shard_of[row]]}"

    if data["label_errors"]:
        row, why = data["label_errors"][0]
        raise ValueError(f"eval shards: the label of {where(row)} is unusable: {why}")
    index = {name: i for i, name in enumerate(classes)}
    out = []
    missing: list[int] = []
    for row, value in enumerate(data["raw_labels"]):
        if value is None:
            raise ValueError(
                f"eval shards: {where(row)} has no label (no .json field {field!r}, no .cls) "
                f"but classes are given ({source}); label every sample or drop eval.classes"
            )
        if isinstance(value, int):
            ok = 0 <= value < len(classes)
            out.append(value)
        else:
            ok = value in index
            out.append(index.get(value, -1))
        if not ok:
            missing.append(row)
    if missing:
        row = missing[0]
        value = data["raw_labels"][row]
        what = (
            f"label index {value} is outside the {len(classes)} classes"
            if isinstance(value, int)
            else f"label {value!r} is not a class"
        )
        raise ValueError(
            f"eval shards: {what} of {source} ({where(row)}; {len(missing)} of "
            f"{len(out)} samples have labels missing from the classes)"
        )
    return torch.tensor(out, dtype=torch.int64)


def _check_norm(values: Sequence[float], name: str) -> tuple[float, float, float]:
    if (
        isinstance(values, str)
        or not isinstance(values, Sequence)
        or len(values) != 3
        or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values)
        or not all(math.isfinite(v) for v in values)
    ):
        raise ValueError(f"{name} must be 3 finite numbers (R, G, B), got {values!r}")
    return (float(values[0]), float(values[1]), float(values[2]))


# ----------------------------------------------------------------------------- the set


class ShardEvalSet:
    """Held-out shards decoded once, in a fixed order, kept in memory (and on disk).

    Args:
        shards: a brace pattern such as ``"data/eval-{00000..00003}.tar"`` or a list of
            tar paths. Samples are in shard order, then in file order within each shard.
        image_size: side of the square images (other sizes are resized bilinearly, as
            :func:`~curatorch.data.iter_shard` does).
        mean, std: per-channel normalisation of the [0, 1] pixel values, R, G, B
            (curatorch's own models: ``(0.5,) * 3`` both; CLIP: its image processor's).
        label_field: the ``.json`` field holding the label (else a ``.cls`` member).
        classes: class names (a list) or a classes file (one name per line); ``None``
            reads no labels (retrieval only). With classes, every sample needs a label in
            them, else ``ValueError``.
        cache: a cache file. A current one (same shard paths, sizes and mtimes, image
            size and label field) is loaded instead of decoding; a stale one is rebuilt
            and replaced; a file that is not such a cache is an error. ``None``: memory
            only. Labels are mapped to classes after loading, so the classes may change.

    Faulty samples (undecodable image, missing or empty caption, ...) are skipped and
    counted in :attr:`counts` as :class:`~curatorch.data.ShardStream` counts them.

    Attributes:
        urls: the shard files; keys, captions: per sample; shard_of: index into ``urls``.
        images: ``[N, 3, S, S]`` uint8 (normalised per batch by :meth:`image_batch`).
        labels: ``[N]`` int64 class indices, or ``None`` without classes.
        classes: the class names or ``None``; classes_source: the file (or "the given list").
        cache_status: ``"memory"``, ``"written"``, ``"loaded"`` or ``"rebuilt: <why>"``.
    """

    def __init__(
        self,
        shards: str | Sequence[str | os.PathLike[str]],
        *,
        image_size: int,
        mean: Sequence[float],
        std: Sequence[float],
        label_field: str = "label",
        classes: Sequence[str] | str | os.PathLike[str] | None = None,
        cache: str | os.PathLike[str] | None = None,
    ) -> None:
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
            raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
        self.mean = _check_norm(mean, "mean")
        self.std = _check_norm(std, "std")
        if min(self.std) <= 0:
            raise ValueError(f"std must be > 0, got {std!r}")
        if not isinstance(label_field, str) or not label_field:
            raise ValueError(f"label_field must be a non-empty string, got {label_field!r}")
        self.classes, self.classes_source = self._classes(classes)
        self.urls = _expand(shards)
        self.image_size = image_size
        self.label_field = label_field
        data, self.cache_status = _load(
            self.urls,
            image_size=image_size,
            label_field=label_field,
            cache=None if cache is None or os.fspath(cache) == "" else Path(cache),
        )
        if not data["keys"]:
            raise ValueError(
                f"eval shards hold no usable sample ({data['counts']['samples_skipped']} "
                f"skipped): {self.urls[0]} ... {self.urls[-1]}"
            )
        self.keys: list[str] = data["keys"]
        self.shard_of: list[int] = data["shard_of"]
        self.captions: list[str] = data["captions"]
        self.images: torch.Tensor = data["images"]
        self.counts: dict[str, int] = dict(data["counts"])
        self.labels: torch.Tensor | None = None
        if self.classes is not None:
            self.labels = _map_labels(
                data, self.urls, self.classes, self.classes_source, label_field
            )

    @staticmethod
    def _classes(
        classes: Sequence[str] | str | os.PathLike[str] | None,
    ) -> tuple[list[str] | None, str]:
        if classes is None:
            return None, ""
        if isinstance(classes, (str, os.PathLike)):
            return load_classes(classes), f"classes file {os.fspath(classes)}"
        names = list(classes)
        if not names:
            raise ValueError("classes is an empty list: give at least one class name")
        if not all(isinstance(c, str) and c for c in names) or len(set(names)) != len(names):
            raise ValueError(f"classes must be distinct non-empty strings, got {names!r}")
        return names, "the given classes list"

    def __len__(self) -> int:
        return len(self.keys)

    def image_batch(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` as float32 ``[n, 3, S, S]``: ``(pixel / 255 - mean) / std``."""
        mean = torch.tensor(self.mean).view(3, 1, 1)
        std = torch.tensor(self.std).view(3, 1, 1)
        return (self.images[start:stop].to(torch.float32).div_(255.0) - mean) / std


# ----------------------------------------------------------------------------- evaluator


@contextlib.contextmanager
def _eval_mode(model: Any) -> Iterator[None]:
    """``model.eval()`` inside, its training mode restored afterwards."""
    was_training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if was_training and hasattr(model, "train"):
            model.train()


def _encode_tokens(tokenizer: CaptionTokenizer, texts: list[str], what: str) -> torch.Tensor:
    if not hasattr(tokenizer, "encode"):
        raise ValueError(f"tokenizer must have an encode method, got {type(tokenizer).__name__}")
    tokens = tokenizer.encode(texts)
    if (
        not isinstance(tokens, torch.Tensor)
        or tokens.dtype != torch.int64
        or tokens.dim() != 2
        or tokens.shape[0] != len(texts)
    ):
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(
            f"tokenizer.encode of the {len(texts)} {what} must return [n, L] int64, got {got}"
        )
    return tokens


def _fewshot_split(
    labels: torch.Tensor, classes: Sequence[str], shots: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of the probe's shots (the first ``shots`` samples of each class present, in
    set order) and of its test samples (the others)."""
    train: list[int] = []
    for c in labels.unique().tolist():
        rows = (labels == c).nonzero().flatten()
        if rows.numel() <= shots:
            raise ValueError(
                f"eval shards: class {classes[c]!r} has {rows.numel()} labelled samples; the "
                f"{shots}-shot probe needs at least {shots + 1} ({shots} shots, 1 to test): add "
                f"samples of that class or set fewshot_shots=0 (no probe)"
            )
        train += rows[:shots].tolist()
    mask = torch.zeros(labels.shape[0], dtype=torch.bool)
    mask[train] = True
    return mask.nonzero().flatten(), (~mask).nonzero().flatten()


def _embed(
    encode: Callable[[torch.Tensor], torch.Tensor],
    n: int,
    batch: Callable[[int, int], torch.Tensor],
    *,
    batch_size: int,
    device: torch.device | str,
    what: str,
) -> torch.Tensor:
    """``encode`` of ``batch(start, stop)`` for all ``n`` rows: float32 ``[n, D]`` on CPU,
    checked to be finite and L2-normalised."""
    out = []
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        emb = encode(batch(start, stop).to(device, non_blocking=True))
        if not isinstance(emb, torch.Tensor) or emb.dim() != 2 or emb.shape[0] != stop - start:
            got = tuple(emb.shape) if isinstance(emb, torch.Tensor) else type(emb).__name__
            raise ValueError(f"{what} of {stop - start} inputs must return [n, D], got {got}")
        out.append(emb.float().cpu())
    emb = torch.cat(out)
    norms = emb.norm(dim=1)
    if not torch.isfinite(emb).all() or (norms - 1).abs().max() > _NORM_TOL:
        raise ValueError(
            f"{what} must return finite L2-normalised embeddings; norms range "
            f"[{norms.min():.4g}, {norms.max():.4g}]"
        )
    return emb


class ShardEvaluator:
    """Scores of any two-tower model on a :class:`ShardEvalSet`.

    Args:
        data: the held-out shards.
        tokenizer: ``encode(list[str]) -> [n, L] int64``; captions and class prompts are
            tokenised once, here.
        templates: prompt templates, each with one ``{}`` for the class name (zero-shot
            prompts are ``class_prompts(classes, templates)``, a prompt ensemble).
        batch_size: images or texts per forward pass.
        fewshot_shots: shots per class of the linear probe (the first ones of each class,
            in set order; the probe is tested on the other samples); 0 = no probe. Every
            class present needs more than ``fewshot_shots`` samples.
        fewshot_l2: ridge penalty of the probe.
        device: where the model runs; embeddings come back to CPU as float32.

    Call :meth:`evaluate` (or the evaluator itself) with the model.
    """

    def __init__(
        self,
        data: ShardEvalSet,
        *,
        tokenizer: CaptionTokenizer,
        templates: Sequence[str] = DEFAULT_TEMPLATES,
        batch_size: int = 500,
        fewshot_shots: int = 10,
        fewshot_l2: float = 1.0,
        device: torch.device | str = "cpu",
    ) -> None:
        if not isinstance(data, ShardEvalSet):
            raise ValueError(f"data must be a ShardEvalSet, got {type(data).__name__}")
        for name, value, lo in (("batch_size", batch_size, 1), ("fewshot_shots", fewshot_shots, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < lo:
                raise ValueError(f"{name} must be an int >= {lo}, got {value!r}")
        if not (isinstance(fewshot_l2, (int, float)) and math.isfinite(fewshot_l2)) or (
            fewshot_l2 < 0
        ):
            raise ValueError(f"fewshot_l2 must be a finite number >= 0, got {fewshot_l2!r}")
        if len(data) < 5:
            raise ValueError(
                f"eval shards hold {len(data)} usable samples; recall@5 needs at least 5"
            )
        self.data = data
        self.templates = _check_templates(templates)
        self.batch_size, self.fewshot_shots, self.fewshot_l2 = batch_size, fewshot_shots, fewshot_l2
        self.device = device
        self.tokens = _encode_tokens(tokenizer, data.captions, "captions")  # [N, L]
        self.prompt_tokens: torch.Tensor | None = None  # [C * T, L]
        self.probe_split: tuple[torch.Tensor, torch.Tensor] | None = None
        if data.labels is not None and data.classes is not None:
            prompts = class_prompts(data.classes, self.templates)
            self.prompt_tokens = _encode_tokens(tokenizer, prompts, "class prompts")
            if fewshot_shots:
                self.probe_split = _fewshot_split(data.labels, data.classes, fewshot_shots)

    def _texts(self, model: ImageTextEncoder, tokens: torch.Tensor, what: str) -> torch.Tensor:
        return _embed(
            model.encode_text,
            tokens.shape[0],
            lambda a, b: tokens[a:b],
            batch_size=self.batch_size,
            device=self.device,
            what=what,
        )

    @torch.no_grad()
    def evaluate(self, model: ImageTextEncoder, *, patch_size: int | None = None) -> dict[str, Any]:
        """The scores of ``model``, in eval mode (its training mode is restored after).

        ``patch_size``, when given, is passed to ``encode_image`` (FlexiViT models).

        Returns:
            ``i2t_r1``, ``i2t_r5``, ``t2i_r1``, ``t2i_r5`` always; ``zeroshot_acc``,
            ``zeroshot_chance`` (1 / number of classes) and ``fewshot_acc`` with labels;
            ``mean_score`` (mean of the :data:`MEAN_SCORE_TERMS` present), ``scores_used``
            (their names), ``eval_samples`` and ``eval_skipped``. Scores are fractions.
        """
        data = self.data

        def encode_image(images: torch.Tensor) -> torch.Tensor:
            if patch_size is None:
                return model.encode_image(images)
            return model.encode_image(images, patch_size=patch_size)  # type: ignore[call-arg]

        with _eval_mode(model):
            kw = {"batch_size": self.batch_size, "device": self.device}
            img = _embed(encode_image, len(data), data.image_batch, what="encode_image", **kw)
            txt = self._texts(model, self.tokens, "encode_text")
            scores: dict[str, Any] = retrieval_recall_at_k(img, txt, self.tokens, ks=(1, 5))
            if self.prompt_tokens is not None and data.labels is not None:
                prompt_emb = self._texts(model, self.prompt_tokens, "encode_text (prompts)")
                scores["zeroshot_acc"] = zero_shot_accuracy(
                    img, prompt_emb, data.labels, num_templates=len(self.templates)
                )
                scores["zeroshot_chance"] = 1.0 / len(data.classes or ())
            if self.probe_split is not None and data.labels is not None:
                train, test = self.probe_split
                scores["fewshot_acc"] = fewshot_probe_accuracy(
                    img[train],
                    data.labels[train],
                    img[test],
                    data.labels[test],
                    num_classes=len(data.classes or ()),
                    l2=self.fewshot_l2,
                )
        used = [name for name in MEAN_SCORE_TERMS if name in scores]
        scores["mean_score"] = sum(scores[name] for name in used) / len(used)
        scores["scores_used"] = used
        scores["eval_samples"] = len(data)
        scores["eval_skipped"] = data.counts["samples_skipped"]
        return scores

    __call__ = evaluate


def build_shard_evaluator(
    eval_cfg: Any,
    *,
    image_size: int,
    mean: Sequence[float],
    std: Sequence[float],
    tokenizer: CaptionTokenizer,
    device: torch.device | str = "cpu",
) -> ShardEvaluator:
    """The evaluator an ``[eval]`` section with ``shards`` asks for (``eval_cfg``: anything
    with the fields of :class:`curatorch.train.EvalConfig`; eval does not import train).

    ``eval.classes`` (a file; "" = retrieval only), ``eval.label_field``,
    ``eval.templates`` (a list, or a file with one template per line), ``eval.cache``
    ("" = memory only), ``eval.batch_size`` and ``eval.fewshot_l2`` are used as
    :class:`ShardEvalSet` and :class:`ShardEvaluator` document; the image settings come
    from the model or the data config. Raises ``ValueError`` when ``eval.shards`` is empty.
    """
    if not eval_cfg.shards:
        raise ValueError("eval.shards is empty: there are no held-out shards to evaluate on")
    templates = eval_cfg.templates
    if isinstance(templates, str):
        templates = load_templates(templates)
    data = ShardEvalSet(
        eval_cfg.shards,
        image_size=image_size,
        mean=mean,
        std=std,
        label_field=eval_cfg.label_field,
        classes=eval_cfg.classes or None,
        cache=eval_cfg.cache or None,
    )
    return ShardEvaluator(
        data,
        tokenizer=tokenizer,
        templates=templates,
        batch_size=eval_cfg.batch_size,
        fewshot_shots=getattr(eval_cfg, "fewshot_shots", 10),
        fewshot_l2=eval_cfg.fewshot_l2,
        device=device,
    )
