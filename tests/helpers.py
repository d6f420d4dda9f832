"""Config text and small helpers shared between test modules (test modules never import
each other). The fixtures that write these configs live in ``tests/conftest.py``."""

from __future__ import annotations

import json
from pathlib import Path

# two-tower training on the built-in shapes world: 6 steps, evaluation at steps 0/3/6,
# checkpoints every 2 steps
TINY = """
[data]
world = "shapes"
raw_size = 1500
eval_size = 240
retrieval_size = 120
probe_shots = 2
seed = 0

[model]
size = "tiny"

[optim]
lr = 2e-3
warmup_steps = 2

[train]
steps = 6
batch_size = 32
eval_every = 3
checkpoint_every = 2
seed = 0
"""

# the multimodal classifier (``curatorch pareto train`` / ``compare``): 12 steps,
# checkpoints every 4 steps
PARETO_TINY = """
[data]
dataset = "coloured_gray_digits"
[model]
hidden = 16
embed_dim = 8
[optim]
lr = 0.05
warmup_steps = 2
[train]
steps = 12
batch_size = 32
eval_every = 6
checkpoint_every = 4
keep_checkpoints = 1
diag_every = 2
threads = 1
[pareto]
method = "mmpareto"
[compare]
methods = ["uniform", "mmpareto"]
seeds = [0, 1]
alone = ["gray"]
"""


def records(run: Path) -> list[dict]:
    """The records of a run's ``metrics.jsonl``."""
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def last_json(text: str) -> dict:
    """The JSON object on the last line of a command's output."""
    return json.loads(text.strip().splitlines()[-1])


def interrupt_after(monkeypatch, step: int) -> None:
    """Ctrl-C right after the loop writes the metrics record of ``step`` (undo with
    ``monkeypatch.undo()``)."""
    from curatorch.train import loop

    real = loop.append_jsonl

    def append(path, record):
        real(path, record)
        if Path(path).name == "metrics.jsonl" and record["step"] == step:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "append_jsonl", append)


def tiny_hf_config(
    model_type: str,
    *,
    vocab_size: int,
    context_length: int,
    image_size: int = 16,
    pad: int = 0,
    bos: int = 2,
    eos: int = 3,
) -> dict:
    """A tiny Hugging Face ``SiglipModel`` / ``CLIPModel`` config (width 32, one layer per
    tower, two heads, patch 8) for the tests: built with ``from_config``, nothing
    downloaded. ``bos``/``eos`` default to ``train_tokenizer``'s special ids."""
    text = {
        "vocab_size": vocab_size,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "max_position_embeddings": context_length,
        "pad_token_id": pad,
        "bos_token_id": bos,
        "eos_token_id": eos,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 8,
    }
    extra = {"projection_dim": 24} if model_type == "clip" else {}
    return {"model_type": model_type, "text_config": text, "vision_config": vision, **extra}


# the reference-curation study (``curatorch study reference``) on a tiny world: two
# references on the curated pool (2 and 4 steps), one on the raw pool's top half by the
# first one's cosine; IID and JEST on the raw pool and on that top half; 4 steps, 2 seeds
STUDY_TINY = """
[data]
world = "shapes"
raw_size = 1200
eval_size = 200
retrieval_size = 100
probe_shots = 2
curated_fraction = 0.2

[model]
size = "tiny"
attention = "math"

[optim]
warmup_steps = 1

[train]
threads = 1
steps = 4
batch_size = 16
eval_every = 2
checkpoint_every = 4

[eval]
batch_size = 256

[strategy]
chunks = 4

[compare]
seeds = [0, 1]
reference_steps = 4
analyze = false
quick = ["train.steps=2", "compare.seeds=[0]", "compare.reference_steps_scale=0.5"]

[[compare.references]]
name = "strong"
label = "curated"
pool = "curated"

[[compare.references]]
name = "weak"
label = "raw top half"
pool = "top50"

[[compare.references]]
name = "short"
steps = 2

[[compare.pools]]
name = "top50"
filter = "strong"
keep_fraction = 0.5

[[compare.strategies]]
name = "iid"
strategy = { name = "iid" }

[[compare.strategies]]
name = "jest-weak"
strategy = { name = "jest", filter_ratio = 0.5 }
reference = "weak"

[[compare.strategies]]
name = "jest-short"
strategy = { name = "jest", filter_ratio = 0.5 }
reference = "short"

[[compare.strategies]]
name = "jest"
strategy = { name = "jest", filter_ratio = 0.5 }
reference = "strong"

[[compare.strategies]]
name = "iid-top50"
strategy = { name = "iid" }
pool = "top50"

[[compare.strategies]]
name = "jest-top50"
strategy = { name = "jest", filter_ratio = 0.5 }
reference = "strong"
pool = "top50"

[study]
curation = ["jest-weak", "jest"]
training = ["jest-short", "jest"]
raw = ["iid", "jest"]
filtered = ["iid-top50", "jest-top50"]
"""


def compare_once(root: Path, config_text: str) -> dict:
    """``curatorch compare`` of ``config_text`` run once in this process into ``root/out``
    (torch's thread count restored after): ``{"cfg", "out", "summary"`` (its printed last
    JSON line), ``"res"`` (``results.json`` as first written)``}``."""
    import contextlib
    import io

    import torch

    from curatorch.cli import main

    cfg = root / "cmp.toml"
    cfg.write_text(config_text)
    out = root / "out"
    printed = io.StringIO()
    n = torch.get_num_threads()
    try:
        with contextlib.redirect_stdout(printed):
            rc = main(["compare", str(cfg), "--out", str(out), "--no-progress"])
    finally:
        torch.set_num_threads(n)
    assert rc == 0, printed.getvalue()[-2000:]
    return {
        "cfg": cfg,
        "out": out,
        "summary": json.loads(printed.getvalue().strip().splitlines()[-1]),
        "res": json.loads((out / "results.json").read_text()),
    }
