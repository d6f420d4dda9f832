"""Evaluation on held-out shards: ShardEvalSet, ShardEvaluator, build_shard_evaluator.

Shards are written here in the img2dataset layout (``{key}.jpg``, ``{key}.txt``,
``{key}.json`` with img2dataset's fields plus ``label``). Each image is a solid colour
that encodes its pair index ``p`` and class ``c``; each caption says "pair {p} shows a
{class}". The oracle encoder reads both back (from the pixels, and from the caption text
through the test tokenizer), so it knows the truth: R@1 = 1 and accuracy = 1.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import curatorch.eval.shards as shard_eval
from curatorch.eval import (
    MEAN_SCORE_TERMS,
    ShardEvalSet,
    ShardEvaluator,
    build_shard_evaluator,
    load_classes,
    load_templates,
    retrieval_recall_at_k,
)
from curatorch.train.config import ConfigError, EvalConfig

CLASSES = ["cat", "dog", "bird"]
SIZE = 8
HALF = (0.5, 0.5, 0.5)
MEAN, STD = (0.48, 0.46, 0.41), (0.27, 0.26, 0.28)  # CLIP-like, to test normalisation


# ----------------------------------------------------------------------------- writing


def _jpeg(p: int, c: int) -> bytes:
    """A solid JPEG whose colour encodes pair ``p`` (R, G) and class ``c`` (B), in steps of
    16 so that JPEG's rounding cannot move them."""
    colour = (16 * (p % 16) + 8, 16 * (p // 16) + 8, 16 * c + 8)
    buf = io.BytesIO()
    Image.new("RGB", (SIZE, SIZE), colour).save(buf, format="JPEG", quality=95, subsampling=0)
    return buf.getvalue()


def _sample(
    key: str, p: int, c: int, *, label: object = "name", caption: str | None = None
) -> dict[str, bytes]:
    """img2dataset-like members of one sample; ``label``: "name", "int", "cls-int",
    "cls-name", None (no label) or a literal value of the .json field."""
    text = caption if caption is not None else f"pair {p} shows a {CLASSES[c]}"
    info: dict[str, object] = {
        "key": key,
        "caption": text,
        "url": f"https://example.com/{key}.jpg",
        "status": "success",
        "width": SIZE,
        "height": SIZE,
    }
    members = {"jpg": _jpeg(p, c), "txt": text.encode()}
    if label == "name":
        info["label"] = CLASSES[c]
    elif label == "int":
        info["label"] = c
    elif label == "cls-int":
        members["cls"] = f"{c}\n".encode()
    elif label == "cls-name":
        members["cls"] = CLASSES[c].encode()
    elif label is not None:
        info["label"] = label
    members["json"] = json.dumps(info).encode()
    return members


def _write_tar(path: Path, samples: Sequence[tuple[str, dict[str, bytes]]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for key, members in samples:
            for ext, data in members.items():
                info = tarfile.TarInfo(f"{key}.{ext}")
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    return path


def _write_set(root: Path, *, shards: int = 2, per_shard: int = 24, label: object = "name"):
    """``shards`` shards ``eval-0000k.tar`` of ``per_shard`` samples; pair ``p`` has class
    ``p % 3``. Returns the brace pattern."""
    root.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        samples = []
        for j in range(per_shard):
            p = s * per_shard + j
            key = f"{p:09d}"
            samples.append((key, _sample(key, p, p % 3, label=label)))
        _write_tar(root / f"eval-{s:05d}.tar", samples)
    return str(root / f"eval-{{00000..{shards - 1:05d}}}.tar")


def _classes_file(tmp_path: Path, names: Sequence[str] = CLASSES) -> Path:
    f = tmp_path / "classes.txt"
    f.write_text("".join(f"{n}\n" for n in names))
    return f


# ----------------------------------------------------------------------------- models


class DictTokenizer:
    """Token row ``[id, 0]``: ``id`` numbers the distinct strings it has seen."""

    def __init__(self) -> None:
        self.texts: list[str] = []
        self._ids: dict[str, int] = {}

    def encode(self, texts: Sequence[str]) -> torch.Tensor:
        rows = []
        for t in texts:
            if t not in self._ids:
                self._ids[t] = len(self.texts)
                self.texts.append(t)
            rows.append([self._ids[t], 0])
        return torch.tensor(rows, dtype=torch.int64).reshape(len(texts), 2)


class Oracle(torch.nn.Module):
    """Embeddings from the pair index and the class: image and caption of pair ``p`` of
    class ``c`` -> normalise(e_p + e_c); the prompt of class ``c`` -> e_c."""

    def __init__(self, tokenizer: DictTokenizer, *, mean=HALF, std=HALF, pairs: int = 64):
        super().__init__()
        self.tok, self.pairs = tokenizer, pairs
        self.mean = torch.tensor(mean).view(1, 3)
        self.std = torch.tensor(std).view(1, 3)
        self.modes: list[bool] = []

    def _emb(self, p: int | None, c: int) -> torch.Tensor:
        e = torch.zeros(self.pairs + len(CLASSES))
        if p is not None:
            e[p] = 1.0
        e[self.pairs + c] = 1.0
        return F.normalize(e, dim=0)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        self.modes.append(self.training)
        rgb = ((images[:, :, 0, 0] * self.std + self.mean) * 255).round().long()  # [n, 3]
        codes = ((rgb - 8) / 16).round().long()
        return torch.stack([self._emb(int(r + 16 * g), int(b)) for r, g, b in codes.tolist()])

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        out = []
        for i in tokens[:, 0].tolist():
            text = self.tok.texts[i]
            pair = re.fullmatch(r"pair (\d+) shows a (\w+)", text)
            if pair:
                out.append(self._emb(int(pair[1]), CLASSES.index(pair[2])))
            else:
                out.append(self._emb(None, CLASSES.index(text.split()[-1].rstrip("."))))
        return torch.stack(out)


class RandomEncoder:
    """Fixed random projections of the pixels and of the token ids: unrelated towers."""

    def __init__(self, dim: int = 16) -> None:
        gen = torch.Generator().manual_seed(1)
        self.w = torch.randn(3 * SIZE * SIZE, dim, generator=gen)
        self.table = torch.randn(1000, dim, generator=gen)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(images.flatten(1) @ self.w, dim=-1)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.table[tokens[:, 0]], dim=-1)


def _evaluate(data: ShardEvalSet, **kw) -> dict:
    tok = DictTokenizer()
    evaluator = ShardEvaluator(data, tokenizer=tok, batch_size=7, **kw)
    return evaluator(Oracle(tok, mean=data.mean, std=data.std))


# ----------------------------------------------------------------------------- scores


def test_oracle_scores_are_perfect_and_mode_restored(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d")
    data = ShardEvalSet(
        pattern, image_size=SIZE, mean=MEAN, std=STD, classes=_classes_file(tmp_path)
    )
    assert len(data) == 48 and data.labels.tolist() == [p % 3 for p in range(48)]
    tok = DictTokenizer()
    model = Oracle(tok, mean=MEAN, std=STD)
    model.train()
    scores = ShardEvaluator(data, tokenizer=tok, batch_size=7, templates=["a photo of {}."])(model)
    for name in ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "zeroshot_acc", "fewshot_acc"):
        assert scores[name] == 1.0, name
    assert scores["mean_score"] == 1.0
    assert scores["scores_used"] == list(MEAN_SCORE_TERMS)
    assert scores["zeroshot_chance"] == pytest.approx(1 / 3)
    assert scores["eval_samples"] == 48 and scores["eval_skipped"] == 0
    assert model.modes and not any(model.modes) and model.training


def test_random_encoder_is_near_chance(tmp_path: Path) -> None:
    data = ShardEvalSet(_write_set(tmp_path / "d"), image_size=SIZE, mean=HALF, std=HALF)
    scores = ShardEvaluator(data, tokenizer=DictTokenizer())(RandomEncoder())
    # chance: R@1 = 1/48 ~ 0.02, R@5 = 5/48 ~ 0.10
    for d in ("i2t", "t2i"):
        assert scores[f"{d}_r1"] < 0.15 and scores[f"{d}_r5"] < 0.35
    assert scores["scores_used"] == ["i2t_r1", "t2i_r1"]
    assert scores["mean_score"] == pytest.approx((scores["i2t_r1"] + scores["t2i_r1"]) / 2)
    assert "zeroshot_acc" not in scores and "fewshot_acc" not in scores


def test_duplicate_captions_count_as_hits(tmp_path: Path) -> None:
    # pairs 2k and 2k+1 share an image colour and a caption: identical embeddings
    root = tmp_path / "d"
    root.mkdir()
    samples = [(f"{i:04d}", _sample(f"{i:04d}", i // 2, 0)) for i in range(20)]
    data = ShardEvalSet(
        [_write_tar(root / "dup.tar", samples)], image_size=SIZE, mean=HALF, std=HALF
    )
    scores = _evaluate(data)
    assert scores["i2t_r1"] == scores["t2i_r1"] == 1.0
    # counting only the pair's own index as a hit would miss about half of them
    tok = DictTokenizer()
    oracle = Oracle(tok)
    img = oracle.encode_image(data.image_batch(0, 20))
    txt = oracle.encode_text(tok.encode(data.captions))
    by_index = retrieval_recall_at_k(img, txt, torch.arange(20)[:, None], ks=(1,))
    assert by_index["i2t_r1"] < 0.8 and by_index["t2i_r1"] < 0.8


def test_recall_at_k_matches_a_slow_twin() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 37
    img = F.normalize(torch.randn(n, 8, generator=gen), dim=-1)
    txt = F.normalize(img + 0.8 * torch.randn(n, 8, generator=gen), dim=-1)
    tokens = torch.randint(0, 30, (n, 1), generator=gen)  # many duplicate captions
    txt = F.normalize(torch.randn(30, 8, generator=gen), dim=-1)[tokens[:, 0]] + 0.5 * txt
    txt = F.normalize(txt, dim=-1)
    fast = retrieval_recall_at_k(img, txt, tokens, ks=(1, 3, 5), chunk_size=4)
    same = tokens[:, 0][:, None] == tokens[:, 0][None, :]  # [n, n] same caption
    sim = img @ txt.T
    for k in (1, 3, 5):
        i2t = sum(bool(same[i, sim[i].argsort(descending=True)[:k]].any()) for i in range(n))
        t2i = sum(bool(same[j, sim[:, j].argsort(descending=True)[:k]].any()) for j in range(n))
        assert fast[f"i2t_r{k}"] == pytest.approx(i2t / n)
        assert fast[f"t2i_r{k}"] == pytest.approx(t2i / n)
    with pytest.raises(ValueError, match="ks"):
        retrieval_recall_at_k(img, txt, tokens, ks=(n + 1,))


# ----------------------------------------------------------------------------- reading


def test_order_is_shard_then_member_and_deterministic(tmp_path: Path) -> None:
    _write_set(tmp_path / "d", shards=3, per_shard=6)
    urls = [str(tmp_path / "d" / f"eval-{s:05d}.tar") for s in (2, 0, 1)]
    a = ShardEvalSet(urls, image_size=SIZE, mean=HALF, std=HALF)
    b = ShardEvalSet(urls, image_size=SIZE, mean=HALF, std=HALF)
    expected = [f"{s * 6 + j:09d}" for s in (2, 0, 1) for j in range(6)]
    assert a.keys == b.keys == expected
    assert a.shard_of == [0] * 6 + [1] * 6 + [2] * 6
    assert torch.equal(a.images, b.images) and a.captions == b.captions
    assert _evaluate(a) == _evaluate(b)


def test_image_batch_normalises(tmp_path: Path) -> None:
    data = ShardEvalSet(_write_set(tmp_path / "d"), image_size=4, mean=MEAN, std=STD)
    x = data.image_batch(3, 9)
    assert x.shape == (6, 3, 4, 4) and x.dtype == torch.float32
    raw = data.images[3:9].float() / 255
    expected = (raw - torch.tensor(MEAN).view(3, 1, 1)) / torch.tensor(STD).view(3, 1, 1)
    assert torch.allclose(x, expected)


def test_faulty_samples_are_skipped_and_counted(tmp_path: Path) -> None:
    good = [(f"{i:03d}", _sample(f"{i:03d}", i, i % 3)) for i in range(8)]
    broken = dict(_sample("100", 9, 0), jpg=b"not an image")
    no_caption = {k: v for k, v in _sample("101", 10, 0).items() if k != "txt"}
    root = tmp_path / "d"
    root.mkdir()
    url = _write_tar(root / "x.tar", [*good[:4], ("100", broken), ("101", no_caption), *good[4:]])
    data = ShardEvalSet([url], image_size=SIZE, mean=HALF, std=HALF, classes=CLASSES)
    assert data.keys == [k for k, _ in good]
    assert data.counts["samples_ok"] == 8 and data.counts["samples_skipped"] == 2
    assert data.counts["skipped_corrupt_image"] == data.counts["skipped_missing_member"] == 1
    assert _evaluate(data, fewshot_shots=0)["eval_skipped"] == 2


# ----------------------------------------------------------------------------- disk cache


def test_disk_cache_is_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pattern = _write_set(tmp_path / "d")
    cache = tmp_path / "cache" / "eval.pt"
    first = ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, cache=cache)
    assert first.cache_status == "written" and cache.is_file()

    def no_decoding(*args: object, **kw: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(shard_eval, "iter_shard", no_decoding)
    again = ShardEvalSet(pattern, image_size=SIZE, mean=MEAN, std=STD, cache=cache, classes=CLASSES)
    assert again.cache_status == "loaded"
    assert again.keys == first.keys and again.captions == first.captions
    assert torch.equal(again.images, first.images) and again.labels is not None
    assert again.mean == MEAN  # normalisation is applied after the cache


def test_disk_cache_is_rebuilt_when_a_shard_or_setting_changes(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d")
    cache = tmp_path / "eval.pt"
    ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, cache=cache)
    shard = tmp_path / "d" / "eval-00001.tar"
    stat = shard.stat()
    _write_tar(shard, [(f"{p:09d}", _sample(f"{p:09d}", p, 0, caption="new")) for p in range(5)])
    os.utime(shard, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    data = ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, cache=cache)
    assert data.cache_status.startswith("rebuilt: shard ") and "eval-00001.tar" in (
        data.cache_status
    )
    assert len(data) == 29 and data.captions[-5:] == ["new"] * 5
    again = ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, cache=cache)
    assert again.cache_status == "loaded" and again.captions == data.captions
    resized = ShardEvalSet(pattern, image_size=4, mean=HALF, std=HALF, cache=cache)
    assert resized.cache_status == "rebuilt: image_size was 8, is 4"
    assert resized.images.shape[-1] == 4


def test_disk_cache_refuses_a_foreign_file(tmp_path: Path) -> None:
    cache = tmp_path / "notes.pt"
    cache.write_text("my notes")
    with pytest.raises(ValueError, match="not a curatorch eval-shard cache") as exc:
        ShardEvalSet(_write_set(tmp_path / "d"), image_size=SIZE, mean=HALF, std=HALF, cache=cache)
    assert "\n" not in str(exc.value) and cache.read_text() == "my notes"


# ----------------------------------------------------------------------------- labels


@pytest.mark.parametrize("label", ["name", "int", "cls-int", "cls-name", 1.0])
def test_labels_as_names_ints_and_cls_members(tmp_path: Path, label: object) -> None:
    pattern = _write_set(tmp_path / "d", label=label)
    data = ShardEvalSet(
        pattern, image_size=SIZE, mean=HALF, std=HALF, classes=_classes_file(tmp_path)
    )
    expected = [1] * 48 if label == 1.0 else [p % 3 for p in range(48)]
    assert data.labels.tolist() == expected
    if label != 1.0:
        assert _evaluate(data)["zeroshot_acc"] == 1.0


def test_label_field_is_configurable(tmp_path: Path) -> None:
    root = tmp_path / "d"
    root.mkdir()
    samples = []
    for p in range(6):
        members = _sample(f"{p:03d}", p, p % 3, label=None)
        info = json.loads(members["json"])
        members["json"] = json.dumps(info | {"category": CLASSES[p % 3]}).encode()
        samples.append((f"{p:03d}", members))
    url = _write_tar(root / "x.tar", samples)
    data = ShardEvalSet(
        [url], image_size=SIZE, mean=HALF, std=HALF, classes=CLASSES, label_field="category"
    )
    assert data.labels.tolist() == [0, 1, 2, 0, 1, 2]


def test_missing_label_names_label_shard_key_and_classes_file(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d")
    classes = _classes_file(tmp_path, ["cat", "bird"])  # no "dog"
    with pytest.raises(ValueError) as exc:
        ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, classes=classes)
    msg = str(exc.value)
    assert "\n" not in msg
    assert "'dog'" in msg and "000000001" in msg and "eval-00000.tar" in msg and str(classes) in msg
    assert "16 of 48" in msg
    ints = _write_set(tmp_path / "i", label="int")
    with pytest.raises(ValueError, match="label index 2 is outside the 2 classes"):
        ShardEvalSet(ints, image_size=SIZE, mean=HALF, std=HALF, classes=classes)


def test_empty_classes_file(tmp_path: Path) -> None:
    empty = tmp_path / "classes.txt"
    empty.write_text("\n\n")
    with pytest.raises(ValueError, match=r"classes file .*classes.txt is empty") as exc:
        ShardEvalSet(
            _write_set(tmp_path / "d"), image_size=SIZE, mean=HALF, std=HALF, classes=empty
        )
    assert "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="twice"):
        load_classes(_classes_file(tmp_path, ["cat", "cat"]))
    gap = tmp_path / "gap.txt"
    gap.write_text("cat\n\ndog\n")
    with pytest.raises(ValueError, match="empty line 2"):
        load_classes(gap)


def test_label_field_absent_when_classes_are_given(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d", label=None)
    with pytest.raises(ValueError) as exc:
        ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF, classes=CLASSES)
    msg = str(exc.value)
    assert "\n" not in msg and "has no label" in msg and "'label'" in msg
    assert "000000000" in msg and "eval-00000.tar" in msg
    # without classes the labels are not needed
    assert ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF).labels is None
    with pytest.raises(ValueError, match="not an int or a name"):
        ShardEvalSet(
            _write_set(tmp_path / "bad", label=[1]),
            image_size=SIZE,
            mean=HALF,
            std=HALF,
            classes=CLASSES,
        )


def test_templates_without_braces(tmp_path: Path) -> None:
    data = ShardEvalSet(_write_set(tmp_path / "d"), image_size=SIZE, mean=HALF, std=HALF)
    with pytest.raises(ValueError, match="'a photo' must contain") as exc:
        ShardEvaluator(data, tokenizer=DictTokenizer(), templates=["a photo of {}.", "a photo"])
    assert "\n" not in str(exc.value)
    f = tmp_path / "templates.txt"
    f.write_text("a photo of {}.\nno slot here\n")
    with pytest.raises(ValueError, match=r"templates file .*templates.txt: template 'no slot"):
        load_templates(f)
    with pytest.raises(ConfigError, match=r"eval\.templates"):
        EvalConfig(templates=("no slot",)).validate()


def test_fewshot_needs_enough_samples_per_class(tmp_path: Path) -> None:
    data = ShardEvalSet(
        _write_set(tmp_path / "d", shards=1, per_shard=24),  # 8 per class
        image_size=SIZE,
        mean=HALF,
        std=HALF,
        classes=CLASSES,
    )
    with pytest.raises(ValueError, match="class 'cat' has 8 labelled samples"):
        ShardEvaluator(data, tokenizer=DictTokenizer())
    scores = _evaluate(data, fewshot_shots=0)
    assert scores["scores_used"] == ["zeroshot_acc", "i2t_r1", "t2i_r1"]
    assert _evaluate(data, fewshot_shots=5)["fewshot_acc"] == 1.0


def test_bad_arguments_name_the_culprit(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d")
    with pytest.raises(ValueError, match=r"eval-00002\.tar does not exist \(6 of 8"):
        ShardEvalSet(
            str(tmp_path / "d" / "eval-{00000..00007}.tar"), image_size=8, mean=HALF, std=HALF
        )
    with pytest.raises(ValueError, match="std must be > 0"):
        ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=(0.5, 0.0, 0.5))
    with pytest.raises(ValueError, match="mean must be 3 finite numbers"):
        ShardEvalSet(pattern, image_size=SIZE, mean=(0.5,), std=HALF)
    data = ShardEvalSet(pattern, image_size=SIZE, mean=HALF, std=HALF)

    class NotNormalised(RandomEncoder):
        def encode_image(self, images: torch.Tensor) -> torch.Tensor:
            return 3 * super().encode_image(images)

    with pytest.raises(ValueError, match="encode_image must return finite L2-normalised"):
        ShardEvaluator(data, tokenizer=DictTokenizer())(NotNormalised())


# ----------------------------------------------------------------------------- config


def test_build_shard_evaluator_from_the_eval_config(tmp_path: Path) -> None:
    pattern = _write_set(tmp_path / "d")
    templates = tmp_path / "templates.txt"
    templates.write_text("a photo of {}.\na picture of a {}.\n")
    cfg = EvalConfig(
        batch_size=5,
        shards=pattern,
        classes=str(_classes_file(tmp_path)),
        templates=str(templates),
        cache=str(tmp_path / "cache.pt"),
    )
    cfg.validate()
    tok = DictTokenizer()
    evaluator = build_shard_evaluator(cfg, image_size=SIZE, mean=MEAN, std=STD, tokenizer=tok)
    assert evaluator.templates == ("a photo of {}.", "a picture of a {}.")
    assert evaluator.batch_size == 5 and evaluator.data.cache_status == "written"
    assert evaluator(Oracle(tok, mean=MEAN, std=STD))["mean_score"] == 1.0
    with pytest.raises(ValueError, match=r"eval\.shards is empty"):
        build_shard_evaluator(EvalConfig(), image_size=SIZE, mean=MEAN, std=STD, tokenizer=tok)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"classes": "c.txt"}, "eval.classes is set but eval.shards"),
        ({"cache": "c.pt"}, "eval.cache is set but eval.shards"),
        ({"shards": "x.tar", "label_field": " "}, "eval.label_field"),
        ({"shards": "x.tar", "templates": ()}, "eval.templates must not be empty"),
        ({"shards": "x.tar", "templates": ""}, "eval.templates must be a list"),
    ],
)
def test_eval_config_validation(fields: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        EvalConfig(**fields).validate()
