"""Model adapters: one property suite run over every adapter (curatorch's TwoTower, tiny
HF SiglipModel and CLIPModel built from configs and saved with save_pretrained), their
slow twins (HF's own text pooling and logits, FlopCounterMode), and the bad inputs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from curatorch.data.images import float_images
from curatorch.losses import sigmoid_contrastive_loss
from curatorch.models import (
    ADAPTER_FILE,
    CLIP_INIT_LOGIT_BIAS,
    HFCLIPAdapter,
    HFSiglipAdapter,
    ImagePreprocessing,
    ImageTextModel,
    TwoTowerAdapter,
    build_model,
    check_image_size,
    check_tokenizer_vocab,
    fit_logit_bias,
    get_model_config,
    hf_adapter_from_config,
    load_model_adapter,
)
from tests.helpers import tiny_hf_config

os.environ.setdefault("HF_HUB_OFFLINE", "1")
pytest.importorskip("transformers")

VOCAB, CONTEXT, IMAGE, PAD, BOS, EOS = 64, 12, 16, 0, 1, 3
SIGLIP = tiny_hf_config("siglip", vocab_size=VOCAB, context_length=CONTEXT, bos=BOS, eos=EOS)
CLIP = tiny_hf_config("clip", vocab_size=VOCAB, context_length=CONTEXT, bos=BOS, eos=EOS)


def _two_tower() -> TwoTowerAdapter:
    cfg = get_model_config("tiny", image_size=IMAGE, vocab_size=VOCAB, context_length=CONTEXT)
    return TwoTowerAdapter(build_model(cfg))


BUILDERS: dict[str, Callable[[], ImageTextModel]] = {
    "curatorch": _two_tower,
    "hf-siglip": lambda: HFSiglipAdapter.from_config(SIGLIP),
    "hf-siglip-masked": lambda: HFSiglipAdapter.from_config(SIGLIP, text_padding="masked"),
    "hf-clip": lambda: HFCLIPAdapter.from_config(CLIP),
}
KINDS = list(BUILDERS)


@pytest.fixture(params=KINDS)
def adapter(request: pytest.FixtureRequest) -> ImageTextModel:
    torch.manual_seed(0)
    return BUILDERS[request.param]()


def _batch(model: ImageTextModel, n: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 pixels through the model's preprocessing, captions of 4..10 tokens."""
    g = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (n, 3, IMAGE, IMAGE), dtype=torch.uint8, generator=g)
    tokens = torch.randint(EOS + 1, VOCAB, (n, CONTEXT), generator=g)
    for i in range(n):
        length = 4 + i % 7
        tokens[i, length - 1] = EOS
        tokens[i, length:] = PAD
    return model.preprocessing(pixels), tokens


def _reload(model: ImageTextModel, path: Path) -> ImageTextModel:
    model.save(path)
    source = "curatorch" if model.kind == "curatorch" else "hf"
    return load_model_adapter(source, path)


# ------------------------------------------------------------------ the property suite


def test_protocol_conformance(adapter: ImageTextModel) -> None:
    assert isinstance(adapter, ImageTextModel)
    assert isinstance(adapter.module, nn.Module)
    assert adapter.flexible_patch == (adapter.kind == "curatorch")
    assert adapter.default_patch_size in adapter.patch_sizes
    assert len(adapter.patch_sizes) == 1 or adapter.flexible_patch
    adapter.module.eval()
    images, tokens = _batch(adapter)
    with torch.no_grad():
        for patch in (None, *adapter.patch_sizes):
            img = adapter.encode_image(images, patch_size=patch)
            assert img.shape == (6, adapter.embed_dim) and img.dtype == torch.float32
            assert torch.isfinite(img).all()
            torch.testing.assert_close(img.norm(dim=-1), torch.ones(6))
        txt = adapter.encode_text(tokens)
        assert txt.shape == (6, adapter.embed_dim) and txt.dtype == torch.float32
        torch.testing.assert_close(txt.norm(dim=-1), torch.ones(6))
        assert torch.equal(adapter.encode_image(images), adapter.encode_image(images))
        assert torch.equal(adapter.encode_text(tokens), txt)
    for value in (adapter.logit_scale, adapter.logit_bias):
        assert isinstance(value, torch.Tensor) and value.shape == () and torch.isfinite(value)
    assert adapter.logit_scale.item() > 0
    assert adapter.text_mask(tokens).shape == tokens.shape
    assert adapter.text_mask(tokens).dtype == torch.bool
    assert adapter.forward_flops() > 0
    assert 0 <= adapter.pad_id < adapter.vocab_size
    assert adapter.context_length == CONTEXT and adapter.preprocessing.image_size == IMAGE


def test_bad_encode_arguments(adapter: ImageTextModel) -> None:
    images, tokens = _batch(adapter)
    with pytest.raises(ValueError, match="patch_size"):
        adapter.encode_image(images, patch_size=3)
    with pytest.raises(ValueError, match="tokens"):
        adapter.encode_text(tokens.float())
    with pytest.raises(ValueError, match="context_length"):
        adapter.encode_text(torch.ones(2, CONTEXT + 1, dtype=torch.int64))
    with pytest.raises(ValueError, match="vocab_size"):
        adapter.encode_text(torch.full((2, 4), VOCAB, dtype=torch.int64))


def test_gradients_flow_to_every_parameter(adapter: ImageTextModel) -> None:
    adapter.module.train()
    images, tokens = _batch(adapter)
    loss = sigmoid_contrastive_loss(
        adapter.encode_image(images),
        adapter.encode_text(tokens),
        logit_scale=adapter.logit_scale,
        logit_bias=adapter.logit_bias,
    )
    loss.backward()
    params = dict(adapter.module.named_parameters())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, missing
    assert all(torch.isfinite(p.grad).all() for p in params.values())
    scale_bias = [p for p in params.values() if p.numel() == 1]  # temperature and bias
    assert len(scale_bias) == 2 and all(float(p.grad.abs()) > 0 for p in scale_bias)


def test_sigmoid_loss_trains(adapter: ImageTextModel) -> None:
    adapter.module.train()
    images, tokens = _batch(adapter, n=8)
    opt = torch.optim.Adam(adapter.module.parameters(), lr=3e-3)
    losses = []
    for _ in range(8):
        loss = sigmoid_contrastive_loss(
            adapter.encode_image(images),
            adapter.encode_text(tokens),
            logit_scale=adapter.logit_scale,
            logit_bias=adapter.logit_bias,
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_save_load_identical_embeddings_and_fingerprint(
    adapter: ImageTextModel, tmp_path: Path
) -> None:
    adapter.module.eval()
    images, tokens = _batch(adapter)
    before = adapter.fingerprint()
    assert before == adapter.fingerprint() and len(before) == 64
    loaded = _reload(adapter, tmp_path / "saved")
    assert loaded.kind == adapter.kind and loaded.fingerprint() == before
    with torch.no_grad():
        assert torch.equal(loaded.encode_image(images), adapter.encode_image(images))
        assert torch.equal(loaded.encode_text(tokens), adapter.encode_text(tokens))
    assert torch.equal(loaded.logit_scale.detach(), adapter.logit_scale.detach())
    assert torch.equal(loaded.logit_bias.detach(), adapter.logit_bias.detach())
    with torch.no_grad():
        next(adapter.module.parameters()).add_(1e-3)
    assert adapter.fingerprint() != before
    torch.manual_seed(1)
    assert BUILDERS[adapter.kind]().fingerprint() != before


def test_appending_pads_does_not_change_text_embedding(adapter: ImageTextModel) -> None:
    adapter.module.eval()
    _, tokens = _batch(adapter)
    short = tokens[:, :10]  # every caption fits in 10 tokens
    with torch.no_grad():
        torch.testing.assert_close(adapter.encode_text(short), adapter.encode_text(tokens))


# ------------------------------------------------------------------ HF slow twins


def test_hf_folders_load_with_plain_from_pretrained(tmp_path: Path) -> None:
    from transformers import CLIPModel, SiglipModel

    for kind, cls in (("hf-siglip", SiglipModel), ("hf-clip", CLIPModel)):
        torch.manual_seed(0)
        adapter = BUILDERS[kind]()
        adapter.save(tmp_path / kind)
        hf = cls.from_pretrained(tmp_path / kind, local_files_only=True)
        for name, tensor in adapter.hf.state_dict().items():
            assert torch.equal(hf.state_dict()[name], tensor), name
        files = {p.name for p in (tmp_path / kind).iterdir()}
        assert {
            "config.json",
            "model.safetensors",
            "preprocessor_config.json",
            ADAPTER_FILE,
        } <= files


def test_siglip_scores_equal_siglip_model_forward() -> None:
    torch.manual_seed(0)
    adapter = HFSiglipAdapter.from_config(SIGLIP).eval()
    images, tokens = _batch(adapter)
    padded = torch.nn.functional.pad(tokens[:, :10], (0, 2), value=PAD)
    with torch.no_grad():
        out = adapter.hf(input_ids=padded, pixel_values=images)
        ours = (
            adapter.logit_scale * adapter.encode_image(images) @ adapter.encode_text(tokens).T
            + adapter.logit_bias
        )
    torch.testing.assert_close(ours, out.logits_per_image)
    assert adapter.logit_scale.item() == pytest.approx(10.0) and adapter.logit_bias.item() == -10.0


@pytest.mark.parametrize("pad", [PAD, EOS])
def test_siglip_masked_pools_the_last_caption_token(pad: int) -> None:
    """Slow twin of text_padding="masked": each caption alone (no pads, no mask) through
    SiglipTextModel, whose pooler takes its last position: the caption's last token."""
    torch.manual_seed(0)
    adapter = HFSiglipAdapter.from_config(SIGLIP, pad_id=pad, text_padding="masked").eval()
    _, tokens = _batch(adapter)
    tokens[tokens == PAD] = pad
    lengths = adapter.text_mask(tokens).sum(dim=1)
    assert torch.equal(lengths, torch.tensor([4 + i % 7 for i in range(6)]))
    assert torch.equal(tokens[torch.arange(6), lengths - 1], torch.full((6,), EOS))
    with torch.no_grad():
        ours = adapter.encode_text(tokens)
        for i, n in enumerate(lengths.tolist()):
            alone = adapter.hf.text_model(input_ids=tokens[i : i + 1, :n]).pooler_output
            torch.testing.assert_close(ours[i : i + 1], torch.nn.functional.normalize(alone))
        default = HFSiglipAdapter(adapter.hf, pad_id=pad)  # SigLIP's own: a pad pooled
        assert (default.encode_text(tokens) - ours).abs().max() > 1e-3
        only_pads = adapter.encode_text(torch.full((2, CONTEXT), pad))  # keeps position 0
        assert torch.isfinite(only_pads).all()


def test_siglip_text_padding_is_saved_and_refused_where_it_does_not_apply(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    masked = HFSiglipAdapter.from_config(SIGLIP, text_padding="masked")
    folder = masked.save(tmp_path / "masked")
    assert json.loads((folder / ADAPTER_FILE).read_text())["text_padding"] == "masked"
    assert load_model_adapter("hf", folder).text_padding == "masked"
    other = load_model_adapter("hf", folder, text_padding="max_length")
    assert other.text_padding == "max_length" and other.fingerprint() != masked.fingerprint()
    record = json.loads((folder / ADAPTER_FILE).read_text())
    del record["text_padding"]  # a folder saved before the option: SigLIP's own convention
    (folder / ADAPTER_FILE).write_text(json.dumps(record))
    assert load_model_adapter("hf", folder).text_padding == "max_length"
    with pytest.raises(ValueError, match=r"`text_padding` must be one of .*got 'left'"):
        HFSiglipAdapter.from_config(SIGLIP, text_padding="left")
    HFCLIPAdapter.from_config(CLIP).save(tmp_path / "clip")
    with pytest.raises(ValueError, match="`text_padding` applies to SigLIP models"):
        load_model_adapter("hf", tmp_path / "clip", text_padding="masked")
    _two_tower().save(tmp_path / "tt")
    with pytest.raises(ValueError, match="`text_padding` applies to HF SigLIP"):
        load_model_adapter("curatorch", tmp_path / "tt", text_padding="masked")


@pytest.mark.parametrize("pad", [PAD, EOS])
def test_clip_text_pooling_equals_get_text_features(pad: int) -> None:
    """With captions ending in EOS (pads distinct from EOS, or equal to it as OpenAI's
    tokenizer pads), the adapter pools where CLIPModel.get_text_features does."""
    torch.manual_seed(0)
    adapter = HFCLIPAdapter.from_config(CLIP, pad_id=pad).eval()
    _, tokens = _batch(adapter)
    tokens[tokens == PAD] = pad
    with torch.no_grad():
        out = adapter.hf.get_text_features(
            input_ids=tokens, attention_mask=adapter.text_mask(tokens)
        )
        hf = out if isinstance(out, torch.Tensor) else out.pooler_output
        torch.testing.assert_close(
            adapter.encode_text(tokens), torch.nn.functional.normalize(hf, dim=-1)
        )
    lengths = adapter.text_mask(tokens).sum(dim=1)
    assert torch.equal(tokens[torch.arange(6), lengths - 1], torch.full((6,), EOS))


def test_clip_bias_is_the_adapters_and_is_saved(tmp_path: Path) -> None:
    torch.manual_seed(0)
    adapter = HFCLIPAdapter.from_config(CLIP)
    assert adapter.logit_bias.item() == CLIP_INIT_LOGIT_BIAS and adapter.bias_source == "init"
    assert adapter.logit_bias is adapter.sigmoid_bias and "sigmoid_bias" in adapter.state_dict()
    adapter.set_logit_bias(-3.25, source="fitted")
    adapter.save(tmp_path / "clip")
    record = json.loads((tmp_path / "clip" / ADAPTER_FILE).read_text())
    assert record["logit_bias"] == -3.25 and record["bias_source"] == "fitted"
    loaded = load_model_adapter("hf", tmp_path / "clip")
    assert loaded.logit_bias.item() == -3.25 and loaded.bias_source == "saved"
    (tmp_path / "clip" / ADAPTER_FILE).unlink()  # a CLIP folder from elsewhere
    assert load_model_adapter("hf", tmp_path / "clip").logit_bias.item() == CLIP_INIT_LOGIT_BIAS


@pytest.mark.parametrize("kind", ["hf-siglip", "hf-siglip-masked", "hf-clip"])
def test_hf_forward_flops_match_flop_counter(kind: str) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    adapter = BUILDERS[kind]()
    adapter.hf.set_attn_implementation("eager")  # FlopCounterMode counts no SDPA on CPU
    images, tokens = _batch(adapter, n=1)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        adapter.encode_image(images)
        adapter.encode_text(tokens)
    assert counter.get_total_flops() == adapter.forward_flops()


def test_two_tower_adapter_is_the_bare_model(tmp_path: Path) -> None:
    torch.manual_seed(0)
    adapter = _two_tower()
    model = adapter.module.eval()
    images, tokens = _batch(adapter)
    with torch.no_grad():
        assert torch.equal(adapter.encode_image(images, 8), model.encode_image(images, 8))
        assert torch.equal(adapter.encode_text(tokens), model.encode_text(tokens))
    assert adapter.logit_scale is not None and adapter.logit_bias is model.logit_bias
    assert TwoTowerAdapter(model, patch_size=8).forward_flops() == adapter.forward_flops(8)


def test_two_tower_loads_from_a_checkpoint_folder(tmp_path: Path) -> None:
    """A run checkpoint's layout (curatorch.train.checkpoint): model.safetensors and a
    state.json holding the model config and the run config."""
    import dataclasses

    from safetensors.torch import save_file

    torch.manual_seed(0)
    adapter = _two_tower()
    folder = tmp_path / "checkpoints" / "step_00000003"
    folder.mkdir(parents=True)
    save_file(adapter.module.state_dict(), str(folder / "model.safetensors"))
    state = {
        "step": 3,
        "model_config": dataclasses.asdict(adapter.cfg),
        "config": {"model": {"train_patch_size": 8}},
    }
    (folder / "state.json").write_text(json.dumps(state))
    loaded = load_model_adapter("curatorch", folder)
    assert loaded.default_patch_size == 8
    images, _ = _batch(adapter)
    with torch.no_grad():
        expected = adapter.module.eval().encode_image(images, 8)
        assert torch.equal(loaded.encode_image(images), expected)
    state["config"] = {"model": {"train_patch_size": 0}}  # the config's default: the smallest
    (folder / "state.json").write_text(json.dumps(state))
    assert load_model_adapter("curatorch", folder).default_patch_size == min(adapter.patch_sizes)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=r"model\.safetensors") as info:
        load_model_adapter("curatorch", folder)
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ preprocessing


def test_preprocessing_half_half_is_curatorchs_normalisation() -> None:
    pixels = torch.randint(0, 256, (2, 3, IMAGE, IMAGE), dtype=torch.uint8)
    assert torch.equal(_two_tower().preprocessing(pixels), float_images(pixels))


def test_preprocessing_resizes_and_crops() -> None:
    clip = HFCLIPAdapter.default_preprocessing(16)
    wide = torch.randint(0, 256, (2, 3, 8, 32), dtype=torch.uint8)
    assert clip(wide).shape == (2, 3, 16, 16)
    solid = torch.full((1, 3, 20, 40), 255, dtype=torch.uint8)
    mean, std = torch.tensor(clip.mean), torch.tensor(clip.std)
    torch.testing.assert_close(clip(solid)[0, :, 5, 5], (1 - mean) / std)
    squash = HFSiglipAdapter.default_preprocessing(16)
    assert squash(wide).shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match="uint8"):
        squash(wide.float())
    with pytest.raises(ValueError, match="resample"):
        ImagePreprocessing(16, (0.5,) * 3, (0.5,) * 3, resample="nearest")


def test_preprocessor_config_round_trip_and_refusal(tmp_path: Path) -> None:
    torch.manual_seed(0)
    adapter = HFCLIPAdapter.from_config(CLIP)
    adapter.save(tmp_path / "m")
    assert load_model_adapter("hf", tmp_path / "m").preprocessing == adapter.preprocessing
    pre_file = tmp_path / "m" / "preprocessor_config.json"
    record = json.loads(pre_file.read_text())
    pre_file.write_text(json.dumps({**record, "resample": 0}))
    with pytest.raises(ValueError, match="resample 0") as info:
        load_model_adapter("hf", tmp_path / "m")
    assert "\n" not in str(info.value) and "preprocessor_config.json" in str(info.value)


# ------------------------------------------------------------------ bad inputs


def _one_line(info: pytest.ExceptionInfo[ValueError]) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_folder_without_a_model(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("nothing here")
    with pytest.raises(ValueError) as info:
        load_model_adapter("hf", tmp_path)
    assert str(tmp_path) in _one_line(info) and "notes.txt" in str(info.value)
    with pytest.raises(ValueError) as info:
        load_model_adapter("curatorch", tmp_path)
    assert str(tmp_path) in _one_line(info)
    with pytest.raises(ValueError, match="not a folder"):
        load_model_adapter("hf", tmp_path / "missing")
    with pytest.raises(ValueError, match=r"model\.source"):
        load_model_adapter("timm", tmp_path)


def test_folder_with_a_bert_model(tmp_path: Path) -> None:
    from transformers import BertConfig, BertModel

    cfg = BertConfig(
        vocab_size=32,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
    )
    BertModel(cfg).save_pretrained(tmp_path / "bert")
    with pytest.raises(ValueError) as info:
        load_model_adapter("hf", tmp_path / "bert")
    message = _one_line(info)
    assert str(tmp_path / "bert") in message and "'bert'" in message and "CLIP" in message
    with pytest.raises(ValueError, match="model_type"):
        hf_adapter_from_config({"model_type": "bert"})
    with pytest.raises(ValueError, match="'siglip'"):
        HFCLIPAdapter.from_pretrained(_siglip_folder(tmp_path))


def _siglip_folder(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return HFSiglipAdapter.from_config(SIGLIP).save(tmp_path / "siglip")


def test_tokenizer_vocabulary_too_big(adapter: ImageTextModel) -> None:
    check_tokenizer_vocab(adapter, vocab_size=VOCAB, tokenizer="tok.json")
    with pytest.raises(ValueError) as info:
        check_tokenizer_vocab(adapter, vocab_size=VOCAB + 1, tokenizer="tok.json")
    message = _one_line(info)
    assert "tok.json" in message and str(VOCAB + 1) in message and str(VOCAB) in message


def test_image_size_mismatch(adapter: ImageTextModel) -> None:
    assert check_image_size(adapter, image_size=IMAGE) == adapter.preprocessing
    with pytest.raises(ValueError) as info:
        check_image_size(adapter, image_size=32)
    message = _one_line(info)
    assert "data.image_size=32" in message and str(IMAGE) in message
    pre = check_image_size(adapter, image_size=32, resize=True)
    big = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    assert adapter.encode_image(pre(big)).shape == (2, adapter.embed_dim)


def test_bad_pad_id_and_config() -> None:
    with pytest.raises(ValueError, match="pad_id"):
        HFSiglipAdapter.from_config(SIGLIP, pad_id=VOCAB)
    with pytest.raises(ValueError, match="model_type"):
        HFSiglipAdapter.from_config({**SIGLIP, "model_type": "clip"})


# ------------------------------------------------------------------ the CLIP bias fit


def test_fit_logit_bias_minimises_the_sigmoid_loss() -> None:
    g = torch.Generator().manual_seed(0)
    text = torch.nn.functional.normalize(torch.randn(32, 16, generator=g), dim=-1)
    image = torch.nn.functional.normalize(text + 0.7 * torch.randn(32, 16, generator=g), dim=-1)
    b = fit_logit_bias(image, text, logit_scale=100.0)  # a pretrained CLIP's temperature
    bias = torch.tensor(b, dtype=torch.float64, requires_grad=True)
    loss = sigmoid_contrastive_loss(
        image.double(), text.double(), logit_scale=100.0, logit_bias=bias
    )
    (grad,) = torch.autograd.grad(loss, bias)
    assert abs(float(grad)) < 1e-6
    for other in (b - 1.0, b + 1.0, -10.0):
        worse = sigmoid_contrastive_loss(image, text, logit_scale=100.0, logit_bias=other)
        assert worse.item() > loss.item()
    with pytest.raises(ValueError, match="B >= 2"):
        fit_logit_bias(image[:1], text[:1], logit_scale=1.0)
