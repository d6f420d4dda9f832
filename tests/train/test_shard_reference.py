"""``curatorch embed`` with any model adapter: tiny HF SiglipModel and CLIPModel saved with
``save_pretrained``, a curatorch checkpoint, img2dataset-layout shards and a tokenizer
trained on them. Each cache equals its slow twin (the adapter's own ``encode_*`` on the
same preprocessed inputs; for curatorch, today's ``float_images`` path), records the
model's fingerprint, and is refused for another model; the JEST selector reads it."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from curatorch.cli import main
from curatorch.data import ShardEmbeddingCache, file_sha256, load_tokenizer
from curatorch.data.images import float_images
from curatorch.data.shards import expand_shards, iter_captions, iter_shard, shard_name
from curatorch.data.tokenizer import train_tokenizer
from curatorch.data.webshards import write_web_shards
from curatorch.models import (
    HFCLIPAdapter,
    HFSiglipAdapter,
    TwoTowerAdapter,
    build_model,
    fit_logit_bias,
    get_model_config,
    load_model_adapter,
)
from curatorch.train import ExperimentConfig, config_to_dict
from curatorch.train.checkpoint import save_checkpoint
from curatorch.train.reference import load_trained_model
from curatorch.train.shard_reference import BIAS_FIT_PAIRS, load_shard_reference
from curatorch.train.strategy import Candidates, Selector
from tests.helpers import tiny_hf_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")

IMAGE, CONTEXT, VOCAB = 16, 16, 256  # the tokenizer has <= VOCAB ids
PAD, BOS, EOS = 0, 2, 3  # train_tokenizer's special ids
_IDS = {"vocab_size": VOCAB, "context_length": CONTEXT, "pad": PAD, "bos": BOS, "eos": EOS}
SIGLIP = tiny_hf_config("siglip", **_IDS)
CLIP = tiny_hf_config("clip", **_IDS)
CONFIG = """
[data]
world = "shapes"
image_size = {image}
shards = "{shards}"
tokenizer = "{tok}"
context_length = {context}

[eval]
source = "world"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 shards of 16 web pairs, a BPE tokenizer trained on them, a tiny HF SigLIP and
    CLIP (plain ``save_pretrained`` folders, as downloaded), a curatorch checkpoint."""
    root = tmp_path_factory.mktemp("embed_models")
    info = write_web_shards(root / "web", pairs=48, shard_size=16, image_size=IMAGE, seed=3)
    pattern = info["pattern"]
    urls = expand_shards(pattern)
    tok = root / "tok.json"
    train_tokenizer(iter_captions(urls), tok, vocab_size=VOCAB)
    torch.manual_seed(0)
    HFSiglipAdapter.from_config(SIGLIP).hf.save_pretrained(str(root / "siglip"))
    HFCLIPAdapter.from_config(CLIP).hf.save_pretrained(str(root / "clip"))
    cfg = get_model_config("tiny", image_size=IMAGE, vocab_size=VOCAB, context_length=CONTEXT)
    model = build_model(cfg)
    run = ExperimentConfig()
    state = {"config": config_to_dict(run), "model_config": dataclasses.asdict(cfg)}
    save_checkpoint(
        root / "run", step=1, model_state=model.state_dict(), trainer_tensors={}, state=state
    )
    config = root / "embed.toml"
    config.write_text(CONFIG.format(image=IMAGE, shards=pattern, tok=tok, context=CONTEXT))
    return {"root": root, "config": config, "tok": tok, "pattern": Path(pattern)}


@pytest.fixture
def env(setup: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> dict:
    return {**setup, "capsys": capsys}


def _embed(env: dict, out: Path, *args: str) -> tuple[int, str, str]:
    """``curatorch embed ARGS --config embed.toml --out OUT``: ``(exit code, stdout, stderr)``."""
    argv = ["embed", *args, "--config", str(env["config"]), "--out", str(out)]
    rc = main([*argv, "--batch-size", "64", "--no-progress"])
    stdout, stderr = env["capsys"].readouterr()
    return rc, stdout, stderr


def _samples(url: str, tokenizer) -> tuple[list[str], torch.Tensor, torch.Tensor]:
    """``(keys, uint8 images [n, 3, S, S], tokens [n, L])`` of a shard, as embed reads it."""
    items = list(iter_shard(url, image_size=IMAGE))
    keys = [s.key for s in items]
    return keys, torch.stack([s.image for s in items]), tokenizer.encode([s.caption for s in items])


@pytest.mark.parametrize("kind", ["siglip", "clip"])
def test_hf_cache_equals_the_adapters_own_encoders(env: dict, kind: str) -> None:
    folder, out = env["root"] / kind, env["root"] / f"cache-{kind}"
    argv = ("--model-source", "hf", "--model", str(folder)) if kind == "siglip" else (str(folder),)
    rc, stdout, err = _embed(env, out, *argv)  # CLIP by auto-detection
    assert rc == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    tokenizer = load_tokenizer(env["tok"], CONTEXT)
    adapter = load_model_adapter("hf", folder, pad_id=tokenizer.pad_id)
    assert summary["model_kind"] == adapter.kind == f"hf-{kind}"
    assert summary["model_fingerprint"] == adapter.fingerprint() and summary["count"] == 48
    cache = ShardEmbeddingCache(out)
    assert (cache.fingerprint, cache.kind) == (adapter.fingerprint(), adapter.kind)
    want_pre = json.loads(json.dumps(dataclasses.asdict(adapter.preprocessing)))
    assert cache.meta["preprocessing"] == want_pre
    images, texts = [], []
    for url in expand_shards(str(env["pattern"])):
        keys, pixels, tokens = _samples(url, tokenizer)
        with torch.no_grad():  # the slow twin: the adapter on the same preprocessed input
            img = adapter.encode_image(adapter.preprocessing(pixels))
            txt = adapter.encode_text(tokens)
        got_img, got_txt = cache.lookup([shard_name(url)] * len(keys), keys)
        assert torch.equal(got_img, img.half()) and torch.equal(got_txt, txt.half())
        with safe_open(str(cache.shard_file(shard_name(url))), framework="pt") as fh:
            assert fh.metadata()["model_fingerprint"] == adapter.fingerprint()
        images.append(img)
        texts.append(txt)
    assert cache.logit_scale == pytest.approx(float(adapter.logit_scale))
    if kind == "siglip":
        assert cache.logit_bias == pytest.approx(float(adapter.logit_bias))
        assert cache.meta["logit_bias_source"] == "model"
    else:  # never fitted (a plain save_pretrained folder): fitted on the first pairs
        assert adapter.bias_source == "init" and cache.meta["logit_bias_source"] == "fitted"
        first_img, first_txt = torch.cat(images)[:BIAS_FIT_PAIRS], torch.cat(texts)[:BIAS_FIT_PAIRS]
        want = fit_logit_bias(first_img, first_txt, logit_scale=float(adapter.logit_scale))
        assert cache.logit_bias == pytest.approx(want) == summary["logit_bias"]
        assert cache.meta["logit_bias_fit_pairs"] == 48


def test_curatorch_checkpoint_keeps_todays_numbers(env: dict) -> None:
    out = env["root"] / "cache-curatorch"
    rc, stdout, err = _embed(env, out, str(env["root"] / "run"))  # a run folder
    assert rc == 0, err
    summary = json.loads(stdout.strip().splitlines()[-1])
    model, _, patch, ckpt = load_trained_model(env["root"] / "run")
    assert summary["model_kind"] == "curatorch"
    assert summary["checkpoint_sha256"] == file_sha256(ckpt / "model.safetensors")
    cache = ShardEmbeddingCache(out)
    tokenizer = load_tokenizer(env["tok"], CONTEXT)
    for url in expand_shards(str(env["pattern"])):
        keys, pixels, tokens = _samples(url, tokenizer)
        with torch.no_grad():  # the code before adapters: float_images, the bare TwoTower
            img = model.encode_image(float_images(pixels), patch_size=patch)
            txt = model.encode_text(tokens)
        got_img, got_txt = cache.lookup([shard_name(url)] * len(keys), keys)
        assert torch.equal(got_img, img.half()) and torch.equal(got_txt, txt.half())
    assert cache.logit_bias == pytest.approx(float(model.logit_bias))
    assert cache.meta["forward_flops_per_example"] > 0 and cache.meta["patch_size"] == patch


def test_cache_of_another_model_is_refused_naming_both(env: dict) -> None:
    out = env["root"] / "cache-refused"
    siglip, clip = env["root"] / "siglip", env["root"] / "clip"
    assert _embed(env, out, str(siglip))[0] == 0
    first = ShardEmbeddingCache(out).fingerprint
    assert _embed(env, out, str(siglip))[0] == 0  # the same model rewrites its cache
    rc, _, err = _embed(env, out, str(clip))
    assert rc == 2
    line = err.strip().splitlines()[-1]  # after transformers' loading bar
    other = load_model_adapter("hf", clip, pad_id=PAD).fingerprint()
    assert line.startswith("curatorch: error: shard embedding cache") and str(out) in line
    assert f"hf-siglip {first[:12]}..., not hf-clip {other[:12]}..." in line
    assert "--overwrite" in line and ShardEmbeddingCache(out).fingerprint == first
    assert _embed(env, out, str(clip), "--overwrite")[0] == 0
    assert (ShardEmbeddingCache(out).kind, ShardEmbeddingCache(out).fingerprint) == (
        "hf-clip",
        other,
    )


def test_model_folder_errors_exit_2(env: dict) -> None:
    root = env["root"]
    both = root / "both"
    both.mkdir(exist_ok=True)
    (both / "config.json").write_text(json.dumps({"model_type": "siglip"}))
    (both / "state.json").write_text("{}")
    rc, _, err = _embed(env, root / "c1", str(both))
    assert rc == 2 and "both an HF siglip model" in err and "--model-source" in err
    bert = root / "bert"
    bert.mkdir(exist_ok=True)
    (bert / "config.json").write_text(json.dumps({"model_type": "bert"}))
    rc, _, err = _embed(env, root / "c2", str(bert))
    assert rc == 2 and "model_type 'bert'" in err and not (root / "c2").exists()
    rc, _, err = _embed(env, root / "c3", str(root / "siglip"), "--model", str(root / "clip"))
    assert rc == 2 and "CHECKPOINT or --model" in err
    small = root / "small-vocab"
    torch.manual_seed(0)
    tiny_text = {**SIGLIP["text_config"], "vocab_size": 40}
    HFSiglipAdapter.from_config({**SIGLIP, "text_config": tiny_text}).hf.save_pretrained(str(small))
    rc, _, err = _embed(env, root / "c4", str(small))
    assert rc == 2 and "40 rows" in err and not (root / "c4").exists()
    pool = ("--set", "data.shards=''", "--set", "data.tokenizer='builtin'")
    rc, _, err = _embed(
        env, root / "c5", str(root / "siglip"), *pool, "--set", "data.context_length=0"
    )
    assert rc == 2 and "is an HF model: it embeds shards" in err


def test_candidates_take_the_models_normalisation(env: dict) -> None:
    tokenizer = load_tokenizer(env["tok"], CONTEXT)
    _, pixels, tokens = _samples(expand_shards(str(env["pattern"]))[0], tokenizer)
    batch = Candidates(pixels, tokens)
    cpu = torch.device("cpu")
    cfg = get_model_config("tiny", image_size=IMAGE, vocab_size=VOCAB, context_length=CONTEXT)
    ours = TwoTowerAdapter(build_model(cfg)).preprocessing
    assert torch.equal(batch.to_device(cpu)[0], float_images(pixels))  # as before
    assert torch.equal(batch.to_device(cpu, ours)[0], float_images(pixels))
    clip = load_model_adapter("hf", env["root"] / "clip").preprocessing
    images, got_tokens = batch.to_device(cpu, clip)
    assert torch.equal(images, clip(pixels)) and torch.equal(got_tokens, tokens)
    assert not torch.allclose(images, float_images(pixels))


def test_jest_selector_reads_an_hf_cache(env: dict) -> None:
    out = env["root"] / "cache-select"
    assert _embed(env, out, str(env["root"] / "clip"))[0] == 0
    urls = expand_shards(str(env["pattern"]))
    ref = load_shard_reference(out, urls=urls)
    tokenizer = load_tokenizer(env["tok"], CONTEXT)
    keys, pixels, tokens = _samples(urls[1], tokenizer)
    batch = Candidates(pixels, tokens, keys=keys, shards=[shard_name(urls[1])] * len(keys))
    emb = ref.embeddings_for(batch, torch.device("cpu"))
    cache = ShardEmbeddingCache(out)
    assert (emb.logit_scale, emb.logit_bias) == (cache.logit_scale, cache.logit_bias)
    assert torch.equal(emb.image, cache.lookup(batch.shards, keys)[0].float())
    learner = build_model(
        get_model_config("tiny", image_size=IMAGE, vocab_size=VOCAB, context_length=CONTEXT)
    )
    selector = Selector(
        name="jest",
        score="learnability",
        batch_size=8,
        super_batch=16,
        chunks=2,
        mode="sample",
        score_patch_size=min(learner.cfg.image.patch_sizes),
        learner_forward_flops=1,
        reference=ref,
    )
    chosen = selector.select(
        model=learner,
        candidates=batch,
        generator=torch.Generator().manual_seed(0),
        device=torch.device("cpu"),
    )
    assert len(set(chosen.index.tolist())) == 8 and chosen.reference_flops == 0
