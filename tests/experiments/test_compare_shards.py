"""``curatorch compare`` on the user's shards: web-like training shards with a trained
tokenizer, labelled held-out shards, the reference given as a cache written by
``curatorch embed`` from a tiny curatorch run trained on clean shards, as a tiny HF
``SiglipModel`` folder (embedded once through its adapter), or trained inside the
comparison on the clean shards (``compare.reference_shards``). No built-in world is built."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

import curatorch.data
import curatorch.data.registry
import curatorch.experiments.jest_compare
import curatorch.train.contrastive
from curatorch.cli import main
from curatorch.data.shard_cache import is_shard_cache
from curatorch.data.shards import expand_shards, iter_captions
from curatorch.data.tokenizer import train_tokenizer
from curatorch.data.webshards import write_web_shards
from curatorch.experiments.jest_compare import parse_compare_config
from curatorch.train import ConfigError
from tests.helpers import TINY, tiny_hf_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IMAGE, CONTEXT, VOCAB = 16, 16, 256
PAD, BOS, EOS = 0, 2, 3  # train_tokenizer's special ids
SHARD_SCORES = ("i2t_r1", "i2t_r5", "t2i_r1", "t2i_r5", "zeroshot_acc", "mean_score")

# the learner's (and the reference run's) experiment sections
TRAIN = """
[data]
shards = "{shards}"
tokenizer = "{tok}"
context_length = {context}
image_size = {image}

[model]
size = "tiny"
attention = "math"

[optim]
warmup_steps = 1

[train]
threads = 1
steps = 4
batch_size = 8
eval_every = 2
checkpoint_every = 4

[eval]
shards = "{heldout}"
classes = "{classes}"
fewshot_shots = 0
batch_size = 64

[strategy]
chunks = 2
"""

COMPARE = """
[compare]
seeds = [0]
metric = "i2t_r1"
{reference}

[[compare.strategies]]
name = "iid"
strategy = {{ name = "iid" }}

[[compare.strategies]]
name = "jest"
label = "JEST f=0.5"
strategy = {{ name = "jest", filter_ratio = 0.5 }}
"""


def _siglip() -> dict:
    """A tiny SiglipModel config for 16 px images and the tokenizer's ids and context."""
    return tiny_hf_config(
        "siglip", vocab_size=VOCAB, context_length=CONTEXT, image_size=IMAGE, pad=PAD, bos=BOS,
        eos=EOS,
    )  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    # train.threads = 1 sets torch's global thread count: put it back
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Noisy training shards (64 pairs), clean curated shards (32), labelled clean held-out
    shards (24) and a BPE tokenizer trained on the training and curated captions."""
    root = tmp_path_factory.mktemp("compare_shards")
    kw = {"image_size": IMAGE, "shard_size": 32}
    train = write_web_shards(root / "train", pairs=64, seed=0, **kw)["pattern"]
    clean = write_web_shards(
        root / "clean", pairs=32, seed=1, misaligned=0, boilerplate=0, degraded=0, **kw
    )["pattern"]
    held = write_web_shards(
        root / "heldout",
        pairs=24,
        seed=2,
        misaligned=0,
        boilerplate=0,
        degraded=0,
        labelled=True,
        **kw,
    )["pattern"]
    tok = root / "tok.json"
    captions = iter_captions([*expand_shards(train), *expand_shards(clean)])
    train_tokenizer(captions, tok, vocab_size=VOCAB)
    fields = {
        "tok": str(tok),
        "context": CONTEXT,
        "image": IMAGE,
        "heldout": held,
        "classes": str(root / "heldout" / "classes.txt"),
    }
    learner = root / "learner.toml"
    learner.write_text(TRAIN.format(shards=train, **fields))
    return {"root": str(root), "train": train, "clean": clean, "learner": str(learner), **fields}


@pytest.fixture
def no_world(monkeypatch: pytest.MonkeyPatch) -> None:
    """Building a built-in world is an error (every name the code builds one by)."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a built-in world was built")

    for module in (
        curatorch.data,
        curatorch.data.registry,
        curatorch.experiments.jest_compare,
        curatorch.train.contrastive,
    ):
        monkeypatch.setattr(module, "build_world", refuse)


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main([*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return rc, out, err


def _compare_config(web: dict[str, str], reference: str, name: str) -> Path:
    """The learner's config plus a ``[compare]`` table with ``reference`` (a TOML line)."""
    path = Path(web["root"]) / f"{name}.toml"
    path.write_text(Path(web["learner"]).read_text() + COMPARE.format(reference=reference))
    return path


def _check_comparison(out: Path, stdout: str) -> dict:
    """The summary line, report and records of a finished comparison on shards."""
    summary = json.loads(stdout.strip().splitlines()[-1])
    assert set(summary["strategies"]) == {"iid", "jest"}
    for name in ("report.md", "results.json", "score_vs_examples.png", "score_vs_flops.png"):
        assert (out / name).is_file(), name
    for name in ("iid", "jest"):
        last = json.loads(
            (out / "runs" / name / "seed0" / "metrics.jsonl").read_text().splitlines()[-1]
        )
        assert set(SHARD_SCORES) <= set(last) and last["eval_samples"] == 24
        assert last["scores_used"] == ["zeroshot_acc", "i2t_r1", "t2i_r1"]
        final = summary["strategies"][name]["final"]
        assert final["i2t_r5"] == pytest.approx(last["i2t_r5"], abs=1e-4)
        assert "fewshot_acc" not in final  # no probe: no score, never a made-up one
    res = json.loads((out / "results.json").read_text())
    assert res["target"]["metric"] == "i2t_r1"
    assert res["target"]["value"] == pytest.approx(res["curves"]["iid"]["i2t_r1"][-1], abs=1e-4)
    assert res["curves"]["jest"]["flops_total"][-1] > res["curves"]["iid"]["flops_total"][-1]
    assert "skipped" in res["analysis"]  # the Figure-2 analysis reads built-in pools
    report = (out / "report.md").read_text()
    assert "i2t R@5" in report and "fewshot" not in report.split("## Plots")[0]
    assert "held-out shards" in report and "JEST f=0.5" in report
    return res


def test_compare_on_shards_with_a_cache_embedded_from_a_curatorch_run(
    web: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_world: None
) -> None:
    run, cache = tmp_path / "reference", tmp_path / "cache"
    clean = ["--set", f"data.shards='{web['clean']}'", "--set", "train.steps=2"]
    rc, _, err = _main(["train", web["learner"], "--out", str(run), *clean], capsys)
    assert rc == 0, err
    rc, _, err = _main(["embed", str(run), "--config", web["learner"], "--out", str(cache)], capsys)
    assert rc == 0, err
    cfg = _compare_config(web, f'reference = "{cache}"', "cmp_cache")
    out = tmp_path / "out"
    rc, stdout, err = _main(["compare", str(cfg), "--out", str(out)], capsys)
    assert rc == 0, err
    res = _check_comparison(out, stdout)
    assert res["reference"] == {"cache": str(cache), "given": True}
    assert res["configs"]["jest"]["strategy"]["reference"] == str(cache)
    assert not (out / "reference-cache").exists()  # a given cache is used as is


def test_compare_on_shards_with_an_hf_siglip_folder(
    web: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_world: None
) -> None:
    pytest.importorskip("transformers")
    from curatorch.models import HFSiglipAdapter

    folder = tmp_path / "siglip"
    HFSiglipAdapter.from_config(_siglip()).hf.save_pretrained(str(folder))
    cfg = _compare_config(web, f'reference = "{folder}"', "cmp_hf")
    out = tmp_path / "out"
    rc, stdout, err = _main(["compare", str(cfg), "--out", str(out)], capsys)
    assert rc == 0, err
    res = _check_comparison(out, stdout)
    cache = out / "reference-cache"
    assert is_shard_cache(cache) and res["reference"]["model_source"] == "hf"
    meta = json.loads((cache / "meta.json").read_text())
    assert meta["model_kind"] == "hf-siglip" and meta["urls"] == expand_shards(web["train"])
    assert "embed_s" in res["reference"]
    # a second call: the runs and the cache (same model, same shards) are reused
    stamp = (cache / "meta.json").stat().st_mtime_ns
    rc, again, err = _main(["compare", str(cfg), "--out", str(out)], capsys)
    assert rc == 0, err
    assert json.loads(again.strip().splitlines()[-1]) == json.loads(stdout.strip().splitlines()[-1])
    assert (cache / "meta.json").stat().st_mtime_ns == stamp


def test_compare_trains_its_reference_on_curated_shards(
    web: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_world: None
) -> None:
    line = f'reference_shards = "{web["clean"]}"\nreference_steps = 2'
    cfg = _compare_config(web, line, "cmp_trained")
    out = tmp_path / "out"
    rc, stdout, err = _main(["compare", str(cfg), "--out", str(out)], capsys)
    assert rc == 0, err
    res = _check_comparison(out, stdout)
    ref = res["reference"]
    assert ref["shards"] == web["clean"] and ref["steps"] == 2
    assert set(ref["final"]) >= {"i2t_r1", "i2t_r5", "zeroshot_acc", "mean_score"}
    recorded = json.loads((out / "reference" / "config.json").read_text())
    assert recorded["data"]["shards"] == web["clean"]
    assert recorded["strategy"]["name"] == "iid"
    meta = json.loads((out / "reference-cache" / "meta.json").read_text())
    assert meta["urls"] == expand_shards(web["train"])  # the training shards, embedded
    assert "curated shards" in (out / "report.md").read_text()


def test_compare_with_an_hf_learner_trains_an_hf_reference_on_curated_shards(
    web: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str], no_world: None
) -> None:
    """An HF SiglipModel learner (model.source = 'hf'): the reference trained on the
    curated shards is one too, embedded from the folder its run saved."""
    pytest.importorskip("transformers")
    config = tmp_path / "siglip.json"
    config.write_text(json.dumps(_siglip()))
    line = f'reference_shards = "{web["clean"]}"\nreference_steps = 2'
    cfg = _compare_config(web, line, "cmp_hf_learner")
    out = tmp_path / "out"
    hf = ["--set", "model.source='hf'", "--set", f"model.hf_config='{config}'"]
    rc, stdout, err = _main(["compare", str(cfg), "--out", str(out), *hf], capsys)
    assert rc == 0, err
    _check_comparison(out, stdout)
    meta = json.loads((out / "reference-cache" / "meta.json").read_text())
    assert meta["model_kind"] == "hf-siglip" and meta["model"] == str(out / "reference" / "model")


def _parse(web: dict[str, str], compare: str, *overrides: str):
    import tomllib

    raw = tomllib.loads(Path(web["learner"]).read_text() + COMPARE.format(reference=compare))
    return parse_compare_config(raw, list(overrides))


@pytest.mark.parametrize(
    ("compare", "overrides", "needle"),
    [
        ("", (), "compare.reference: a comparison on data.shards needs a reference"),
        ('reference = "x"\nreference_shards = "y"', (), "cannot both be set"),
        ('reference = "x"', ("eval.classes=''", "compare.metric='zeroshot_acc'"), "eval.classes"),
        ('reference = "x"', ("compare.metric='fewshot_acc'",), "eval.fewshot_shots >= 1"),
        ('reference = "x"', ("compare.metric='bogus'",), "compare.metric must be one of"),
    ],
)
def test_shard_comparison_config_errors_name_the_key(
    web: dict[str, str], compare: str, overrides: tuple[str, ...], needle: str
) -> None:
    with pytest.raises(ConfigError, match=needle) as info:
        _parse(web, compare, *overrides)
    assert "\n" not in str(info.value)


def test_shard_scores_are_targets_only_where_recorded(web: dict[str, str]) -> None:
    import tomllib

    cc = _parse(web, 'reference = "x"', "compare.metric='t2i_r5'")
    assert cc.compare.metric == "t2i_r5"
    world = TINY + '[compare]\n[[compare.strategies]]\nname = "iid"\n'
    with pytest.raises(ConfigError, match="held-out-shards score"):
        parse_compare_config(tomllib.loads(world), ["compare.metric='i2t_r5'"])
