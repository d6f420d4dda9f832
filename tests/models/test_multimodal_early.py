"""Early-fusion multimodal classifier: shapes, determinism, unimodal isolation through the
shared trunk, parameter groups, learning, validation, the split-features path and FLOPs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from curatorch.models import (
    MultimodalClassifier,
    MultimodalClassifierConfig,
    multimodal_forward_flops,
    no_weight_decay_names,
)
from curatorch.pareto import INTEGRATORS, build_integrator, split_features

MODS = ("gray", "colour", "signal")
SHAPES = ((1, 8, 8), (3, 8, 8), (1, 16))


def early_cfg(**kw) -> MultimodalClassifierConfig:
    args = dict(
        modalities=MODS,
        input_shapes=SHAPES,
        num_classes=5,
        hidden=32,
        embed_dim=16,
        fusion="early",
        depth=2,
        num_heads=4,
    )
    args.update(kw)
    return MultimodalClassifierConfig(**args)


def make_inputs(b: int = 6, seed: int = 0, cfg: MultimodalClassifierConfig | None = None):
    cfg = cfg or early_cfg()
    g = torch.Generator().manual_seed(seed)
    return {
        m: torch.randn(b, *s, generator=g)
        for m, s in zip(cfg.modalities, cfg.input_shapes, strict=True)
    }


def test_shapes() -> None:
    model = MultimodalClassifier(early_cfg())
    out = model(make_inputs(6))
    assert out["logits"].shape == (6, 5)
    assert {m: v.shape for m, v in out["unimodal_logits"].items()} == {m: (6, 5) for m in MODS}
    # 8x8 at patch 2: 16 patches; length 16 at patch 2: 8 chunks
    assert {m: v.shape for m, v in out["features"].items()} == {
        "gray": (6, 16, 16),
        "colour": (6, 16, 16),
        "signal": (6, 8, 16),
    }
    assert model.encode(make_inputs(6))["signal"].shape == (6, 8, 16)
    assert early_cfg().token_counts() == {"gray": 16, "colour": 16, "signal": 8}
    assert early_cfg(patch=4).token_counts() == {"gray": 4, "colour": 4, "signal": 4}


def test_patchify_is_the_patch_grid() -> None:
    """Token (i, j) of an image holds pixels [p i : p (i+1), p j : p (j+1)] of every channel."""
    tok = MultimodalClassifier(early_cfg()).encoders["colour"]
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    patches = tok.patchify(x)  # [2, 16, 12]
    torch.testing.assert_close(patches[1, 1 * 4 + 2], x[1, :, 2:4, 4:6].reshape(-1))
    seq = MultimodalClassifier(early_cfg()).encoders["signal"]
    s = torch.arange(2 * 16, dtype=torch.float32).reshape(2, 1, 16)
    torch.testing.assert_close(seq.patchify(s)[0, 3], s[0, :, 6:8].reshape(-1))


def test_same_seed_same_model_and_outputs() -> None:
    outs = []
    for _ in range(2):
        torch.manual_seed(3)
        model = MultimodalClassifier(early_cfg())
        outs.append((model.state_dict(), model(make_inputs(4))))
    (sd_a, out_a), (sd_b, out_b) = outs
    for k in sd_a:
        torch.testing.assert_close(sd_a[k], sd_b[k], rtol=0, atol=0)
    torch.testing.assert_close(out_a["logits"], out_b["logits"], rtol=0, atol=0)
    for m in MODS:
        torch.testing.assert_close(
            out_a["unimodal_logits"][m], out_b["unimodal_logits"][m], rtol=0, atol=0
        )
    # no dropout: the same model gives the same numbers twice, in train mode too
    model = MultimodalClassifier(early_cfg()).train()
    x = make_inputs(4)
    torch.testing.assert_close(model(x)["logits"], model(x)["logits"], rtol=0, atol=0)


def test_unimodal_logits_reach_only_their_tokenizer_and_the_trunk() -> None:
    model = MultimodalClassifier(early_cfg()).double()
    x = {m: v.double().requires_grad_() for m, v in make_inputs(5).items()}
    out = model(x)
    enc = model.encoder_parameters()
    shared, heads = model.shared_parameters(), model.head_parameters()
    for _ in range(2):  # repeated autograd.grad on one retained graph
        for k in MODS:
            target = out["unimodal_logits"][k].sum()
            for j in MODS:
                gp = torch.autograd.grad(target, enc[j], retain_graph=True, allow_unused=True)
                gx = torch.autograd.grad(target, x[j], retain_graph=True, allow_unused=True)[0]
                if j == k:
                    assert all(g is not None and g.abs().sum() > 0 for g in gp)
                    assert gx is not None and gx.abs().sum() > 0
                else:
                    assert all(g is None or not g.any() for g in gp), (k, j)
                    assert gx is None or not gx.any(), (k, j)
            gs = torch.autograd.grad(target, shared, retain_graph=True, allow_unused=True)
            assert all(g is not None for g in gs)
            gh = torch.autograd.grad(target, heads, retain_graph=True, allow_unused=True)
            assert sum(g is not None for g in gh) == 2  # its own head's weight and bias
        fused = out["logits"].sum()
        for j in MODS:
            gx = torch.autograd.grad(fused, x[j], retain_graph=True)[0]
            assert gx.abs().sum() > 0  # the fused prediction reads every modality


@pytest.mark.parametrize("fusion", ["late", "early"])
def test_parameter_groups_are_disjoint_and_cover_the_model(fusion: str) -> None:
    kw = {} if fusion == "early" else {"fusion": "late"}
    model = MultimodalClassifier(early_cfg(**kw))
    groups = [*model.encoder_parameters().values(), model.shared_parameters()]
    groups.append(model.head_parameters())
    ids = [id(p) for g in groups for p in g]
    assert len(ids) == len(set(ids))
    assert sorted(ids) == sorted(id(p) for p in model.parameters())
    if fusion == "late":
        assert model.shared_parameters() == []
        assert model.trunk is None
    else:
        trunk_ids = {id(p) for p in model.trunk.parameters()}
        assert {id(p) for p in model.shared_parameters()} == trunk_ids
        assert id(model.trunk.cls) in trunk_ids


def test_embeddings_are_not_weight_decayed() -> None:
    model = MultimodalClassifier(early_cfg())
    names = no_weight_decay_names(model)
    assert "trunk.cls" in names
    for m in MODS:
        assert {f"encoders.{m}.pos_embed", f"encoders.{m}.type_embed"} <= names
        assert f"encoders.{m}.proj.weight" not in names


def test_parameter_count() -> None:
    cfg = early_cfg(embed_dim=64, hidden=128, depth=2, num_heads=4)
    model = MultimodalClassifier(cfg)
    d, h, k = 64, 128, 5
    tokenizers = sum(t * d + dim * d + d + d for t, dim in ((16, 4), (16, 12), (8, 2)))
    block = 2 * 2 * d + (3 * d * d + 3 * d) + (d * d + d) + (d * h + h) + (h * d + d)
    trunk = d + 2 * block + 2 * d
    heads = 4 * (d * k + k)
    assert sum(p.numel() for p in model.parameters()) == tokenizers + trunk + heads


def test_sgd_reduces_the_summed_cross_entropy() -> None:
    """30 SGD steps on a fixed batch of 20 (a template per class plus noise, every
    modality) cut the fused plus unimodal cross-entropy by more than half (measured over
    seeds 0-9: to 0.12-0.30 of its first value)."""
    g = torch.Generator().manual_seed(1)
    y = torch.arange(20) % 5
    x = {
        m: torch.randn(5, *s, generator=g)[y] + 0.5 * torch.randn(20, *s, generator=g)
        for m, s in zip(MODS, SHAPES, strict=True)
    }
    torch.manual_seed(0)
    model = MultimodalClassifier(early_cfg())

    def total_loss() -> torch.Tensor:
        out = model(x)
        uni = sum(F.cross_entropy(v, y) for v in out["unimodal_logits"].values())
        return F.cross_entropy(out["logits"], y) + uni

    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    with torch.no_grad():
        first = total_loss().item()
    for _ in range(30):
        opt.zero_grad()
        total_loss().backward()
        opt.step()
    with torch.no_grad():
        last = total_loss().item()
    assert last < 0.5 * first, (first, last)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"fusion": "middle"}, "fusion must be one of.*'middle'"),
        ({"patch": 0}, "patch must be a positive integer, got 0"),
        ({"depth": 0}, "depth must be a positive integer, got 0"),
        ({"num_heads": 0}, "num_heads must be a positive integer, got 0"),
        ({"num_heads": 3}, "num_heads must divide embed_dim=16, got 3"),
        ({"patch": 3}, r"patch=3.*\(1, 8, 8\) for modality 'gray'"),
        ({"input_shapes": ((1, 8, 8), (3, 8, 7), (1, 16))}, r"\(3, 8, 7\).*'colour'"),
        ({"input_shapes": ((1, 8, 8), (3, 8, 8), (1, 15))}, r"\(1, 15\).*'signal'"),
        ({"input_shapes": ((1, 8, 8), (3, 8, 8), (16,))}, r"\(16,\).*'signal'"),
        ({"input_shapes": ((1, 8, 8), (1, 3, 8, 8), (1, 16))}, r"\(1, 3, 8, 8\).*'colour'"),
        ({"encoder": "conv"}, "encoder applies only to fusion='late'.*'conv'"),
    ],
)
def test_invalid_configs_name_the_field(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        early_cfg(**kw)


def test_wrong_inputs_are_errors() -> None:
    model = MultimodalClassifier(early_cfg())
    x = make_inputs(3)
    x["colour"] = torch.zeros(3, 3, 8, 6)
    with pytest.raises(ValueError, match=r"inputs\['colour'\] must have shape \[B, 3, 8, 8\]"):
        model(x)
    feats = model.encode(make_inputs(3))
    feats["gray"] = feats["gray"][:, :4]
    with pytest.raises(ValueError, match=r"features\['gray'\] must be tokens \[B, 16, 16\]"):
        model.forward_from_features(feats)


def test_split_features_path_equals_forward() -> None:
    model = MultimodalClassifier(early_cfg()).double()
    x = {m: v.double() for m, v in make_inputs(5).items()}
    want = model(x)
    split = split_features(model.encode(x))
    got = model.forward_from_features(split.fusion, split.unimodal)
    torch.testing.assert_close(got["logits"], want["logits"], rtol=0, atol=0)
    for m in MODS:
        torch.testing.assert_close(
            got["unimodal_logits"][m], want["unimodal_logits"][m], rtol=0, atol=0
        )
        torch.testing.assert_close(got["features"][m], want["features"][m], rtol=0, atol=0)


@pytest.mark.parametrize("method", sorted(INTEGRATORS))
def test_integrators_split_path_equals_per_loss_path(method: str) -> None:
    """The integrators run on the early model with the trunk among the ``heads``: the
    one-head-backward path over split token features equals the per-loss path."""
    torch.manual_seed(0)
    model = MultimodalClassifier(early_cfg(num_classes=3)).double()
    x = {m: v.double() for m, v in make_inputs(8).items()}
    y = torch.arange(8) % 3
    grads = []
    for use_split in (False, True):
        opts = {"generator": torch.Generator().manual_seed(0)} if method == "ogm_ge" else {}
        integ = build_integrator(
            method,
            encoders=model.encoder_parameters(),
            heads=[*model.shared_parameters(), *model.head_parameters()],
            **opts,
        )
        split = split_features(model.encode(x)) if use_split else None
        out = model.forward_from_features(split.fusion, split.unimodal) if split else model(x)
        lm = F.cross_entropy(out["logits"], y)
        lu = {m: F.cross_entropy(out["unimodal_logits"][m], y) for m in MODS}
        conf = {m: torch.tensor(float(i + 1)) for i, m in enumerate(MODS)}
        model.zero_grad(set_to_none=True)
        integ.backward(multimodal_loss=lm, unimodal_losses=lu, confidences=conf, features=split)
        grads.append([p.grad.clone() for p in model.parameters()])
    for want, got in zip(*grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    ("fusion", "encoder"), [("late", "mlp"), ("late", "conv"), ("early", "mlp")]
)
def test_flops_match_the_counter(fusion: str, encoder: str) -> None:
    shapes = SHAPES if encoder == "mlp" else ((1, 8, 8), (3, 7, 9), (2, 5, 5))
    cfg = early_cfg(fusion=fusion, encoder=encoder, input_shapes=shapes)
    model = MultimodalClassifier(cfg)
    if model.trunk is not None:  # SDPA counts no FLOPs on CPU: count the math path
        for block in model.trunk.blocks:
            block.attn.attention = "math"
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(make_inputs(3, cfg=cfg))
    assert counter.get_total_flops() == 3 * multimodal_forward_flops(cfg)
