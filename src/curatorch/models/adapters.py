"""The model protocol of the loop and the selector, and adapters that fit models to it.

An :class:`ImageTextModel` is all that training, selection, evaluation and embedding
need to know about a two-tower image-text model: encode images, encode token ids, the
temperature and bias of the sigmoid pair scores, the image preprocessing, the text
geometry (vocabulary, context length, pad id and mask rule), a fingerprint of the weights
for caches, ``save`` (a folder that loads back), the trainable ``nn.Module`` and, only for a
FlexiViT, the patch sizes it runs at.

Adapters:

* :class:`TwoTowerAdapter`: curatorch's own :class:`~curatorch.models.TwoTower`;
* :class:`HFSiglipAdapter`: a ``transformers`` ``SiglipModel``;
* :class:`HFCLIPAdapter`: a ``transformers`` ``CLIPModel``, with a learnable sigmoid bias
  that the adapter adds (CLIP has none; see ``docs/models.md``).

:func:`load_model_adapter` loads one from a local folder (nothing is downloaded);
:func:`hf_adapter_from_config` builds an HF model from a config dict for training from
scratch. :func:`check_tokenizer_vocab` and :func:`check_image_size` refuse a tokenizer or
an image size that does not fit the model. ``transformers`` (the ``[hf]`` extra) is
imported only when an HF adapter is built.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from curatorch.models.config import ImageTowerConfig, TextTowerConfig, TwoTowerConfig
from curatorch.models.flops import transformer_forward_flops, two_tower_forward_flops
from curatorch.models.two_tower import TwoTower

__all__ = [
    "ADAPTER_FILE",
    "CLIP_INIT_LOGIT_BIAS",
    "MODEL_SOURCES",
    "SIGLIP_TEXT_PADDINGS",
    "HFCLIPAdapter",
    "HFSiglipAdapter",
    "ImagePreprocessing",
    "ImageTextModel",
    "TwoTowerAdapter",
    "check_image_size",
    "check_tokenizer_vocab",
    "fit_logit_bias",
    "hf_adapter_from_config",
    "load_model_adapter",
    "module_fingerprint",
]

MODEL_SOURCES = ("curatorch", "hf")
# what an adapter writes beside the model's own files (pad id, CLIP's sigmoid bias, ...)
ADAPTER_FILE = "curatorch_adapter.json"
# curatorch's own save format: weights + this JSON (model config and patch size)
_TWO_TOWER_FILE = "curatorch_model.json"
_FORMAT = 1
# the sigmoid bias an HF CLIP model starts from when none was saved: SigLIP's initial value
CLIP_INIT_LOGIT_BIAS = -10.0
# how HFSiglipAdapter feeds right-padded captions to the text tower (see its docstring):
# "max_length" is SigLIP's own convention, "masked" masks the pads and pools the last token
SIGLIP_TEXT_PADDINGS = ("max_length", "masked")
_RESAMPLE = {"bilinear": 2, "bicubic": 3}  # PIL codes, as in preprocessor_config.json
_RESIZE_RULES = ("squash", "shortest_edge_crop")
_OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
_OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ------------------------------------------------------------------ preprocessing


@dataclass(frozen=True)
class ImagePreprocessing:
    """How uint8 RGB images become a model's input, done in torch (no image processor).

    Attributes:
        image_size: side ``S`` in pixels of the square input the model takes.
        mean, std: per-channel normalisation on the [0, 1] scale:
            ``x = (pixels / 255 - mean) / std``.
        resample: ``"bilinear"`` or ``"bicubic"`` (antialiased when shrinking).
        resize: ``"squash"`` resizes both sides to ``S`` (SigLIP; curatorch's shard
            decoding); ``"shortest_edge_crop"`` resizes the shorter side to ``S`` and
            crops the centre ``S x S`` (CLIP). On square images the two agree.
    """

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    resample: str = "bilinear"
    resize: str = "squash"

    def __post_init__(self) -> None:
        if isinstance(self.image_size, bool) or not isinstance(self.image_size, int):
            raise ValueError(f"`image_size` must be a positive int, got {self.image_size!r}")
        if self.image_size <= 0:
            raise ValueError(f"`image_size` must be a positive int, got {self.image_size!r}")
        for name in ("mean", "std"):
            raw = getattr(self, name)
            if not isinstance(raw, (tuple, list)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw
            ):
                raise ValueError(f"`{name}` must be 3 finite floats, got {raw!r}")
            value = tuple(float(v) for v in raw)
            if len(value) != 3 or not all(math.isfinite(v) for v in value):
                raise ValueError(f"`{name}` must be 3 finite floats, got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"`std` must be positive, got {self.std!r}")
        if self.resample not in _RESAMPLE:
            raise ValueError(
                f"`resample` must be one of {sorted(_RESAMPLE)}, got {self.resample!r}"
            )
        if self.resize not in _RESIZE_RULES:
            raise ValueError(f"`resize` must be one of {list(_RESIZE_RULES)}, got {self.resize!r}")

    def __call__(self, images: Tensor) -> Tensor:
        """uint8 ``[B, 3, H, W]`` -> float32 ``[B, 3, S, S]`` in the model's normalisation.

        Images already ``S x S`` are only normalised; mean = std = 0.5 gives exactly
        curatorch's ``x / 127.5 - 1`` (:func:`curatorch.data.images.float_images`).
        """
        if not isinstance(images, Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = (images.dtype, tuple(images.shape)) if isinstance(images, Tensor) else images
            raise ValueError(f"`images` must be a uint8 tensor [B, 3, H, W], got {got!r}")
        if images.shape[1] != 3:
            raise ValueError(f"`images` must have 3 channels, got shape {tuple(images.shape)}")
        x = images.to(torch.float32)
        s = self.image_size
        h, w = x.shape[-2:]
        if (h, w) != (s, s):
            if self.resize == "squash":
                size = (s, s)
            else:  # shorter side to s, then the centre crop
                size = (s, max(s, round(w * s / h))) if h <= w else (max(s, round(h * s / w)), s)
            x = F.interpolate(x, size=size, mode=self.resample, align_corners=False, antialias=True)
            top, left = (x.shape[-2] - s) // 2, (x.shape[-1] - s) // 2
            x = x[..., top : top + s, left : left + s].clamp(0.0, 255.0)
        scale = torch.tensor([1.0 / (255.0 * v) for v in self.std], dtype=torch.float32)
        shift = torch.tensor([m / v for m, v in zip(self.mean, self.std, strict=True)])
        return x.mul_(scale.view(3, 1, 1).to(x.device)).sub_(shift.view(3, 1, 1).to(x.device))

    def to_hf_dict(self, processor_type: str) -> dict[str, Any]:
        """This preprocessing as a Hugging Face ``preprocessor_config.json`` record."""
        s = self.image_size
        out: dict[str, Any] = {
            "image_processor_type": processor_type,
            "do_resize": True,
            "resample": _RESAMPLE[self.resample],
            "do_rescale": True,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": True,
            "image_mean": list(self.mean),
            "image_std": list(self.std),
        }
        if self.resize == "squash":
            out.update(size={"height": s, "width": s}, do_center_crop=False)
        else:
            out.update(
                size={"shortest_edge": s}, do_center_crop=True, crop_size={"height": s, "width": s}
            )
        return out


def _preprocessing_from_hf(
    d: Mapping[str, Any], image_size: int, source: str
) -> ImagePreprocessing:
    """Parse a ``preprocessor_config.json`` record; anything our torch preprocessing cannot
    reproduce (no rescale by 1/255, a non-square or other-size input) is a ``ValueError``."""

    def bad(what: str) -> ValueError:
        return ValueError(f"{source}: {what}; curatorch cannot reproduce this preprocessing")

    if d.get("do_rescale", True) and not math.isclose(d.get("rescale_factor", 1 / 255), 1 / 255):
        raise bad(f"rescale_factor {d.get('rescale_factor')!r} is not 1/255")
    if not d.get("do_rescale", True):
        raise bad("do_rescale is false")
    resample = {v: k for k, v in _RESAMPLE.items()}.get(d.get("resample", 3))
    if resample is None:
        raise bad(f"resample {d.get('resample')!r} is not 2 (bilinear) or 3 (bicubic)")
    size = d.get("size", {}) or {}
    if d.get("do_center_crop", False):
        crop = d.get("crop_size", {}) or {}
        sides, rule = (crop.get("height"), crop.get("width")), "shortest_edge_crop"
    else:
        sides, rule = (size.get("height"), size.get("width")), "squash"
    if sides != (image_size, image_size):
        raise bad(f"its input is {sides[0]}x{sides[1]}, the model's image_size is {image_size}")
    normalize = d.get("do_normalize", True)
    return ImagePreprocessing(
        image_size=image_size,
        mean=tuple(d.get("image_mean", (0.5,) * 3)) if normalize else (0.0,) * 3,
        std=tuple(d.get("image_std", (0.5,) * 3)) if normalize else (1.0,) * 3,
        resample=resample,
        resize=rule,
    )


# ------------------------------------------------------------------ the protocol


@runtime_checkable
class ImageTextModel(Protocol):
    """What the loop, the selector, the evaluators and the embedders use of a model.

    Embeddings are L2-normalised ``[B, D]`` in the model's parameter dtype; pair logits
    are ``logit_scale * <x, y> + logit_bias`` (:mod:`curatorch.losses`).

    Attributes:
        kind: ``"curatorch"``, ``"hf-siglip"`` or ``"hf-clip"``.
        module: the ``nn.Module`` whose parameters are trained and whose ``state_dict`` is
            checkpointed (move it with ``.to(device)``, switch ``.train()``/``.eval()``).
        preprocessing: :class:`ImagePreprocessing` that makes ``encode_image``'s input.
        embed_dim: ``D``.
        context_length: the most tokens ``encode_text`` takes per row.
        vocab_size: rows of the text embedding table; every token id must be below it.
        pad_id: the id the tokens are right-padded with (see :meth:`text_mask`).
        patch_sizes: the patch sides ``encode_image`` accepts (one unless FlexiViT).
        default_patch_size: the one ``patch_size=None`` means.
        flexible_patch: True only for a FlexiViT (``patch_sizes`` may hold several).
        logit_scale: temperature ``t`` (exponentiated), scalar tensor, differentiable.
        logit_bias: bias ``b``, scalar tensor.
    """

    kind: str
    module: nn.Module
    preprocessing: ImagePreprocessing
    embed_dim: int
    context_length: int
    vocab_size: int
    pad_id: int
    patch_sizes: tuple[int, ...]
    default_patch_size: int
    flexible_patch: bool
    logit_scale: Tensor
    logit_bias: Tensor

    def encode_image(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """``images`` float ``[B, 3, S, S]`` (from :attr:`preprocessing`) -> unit ``[B, D]``."""
        ...

    def encode_text(self, tokens: Tensor) -> Tensor:
        """``tokens`` int64 ``[B, L]``, ``L <= context_length``, right-padded with
        :attr:`pad_id` -> unit ``[B, D]``."""
        ...

    def text_mask(self, tokens: Tensor) -> Tensor:
        """bool ``[B, L]``: the positions the text tower attends to (True)."""
        ...

    def forward_flops(self, patch_size: int | None = None) -> int:
        """Forward FLOPs of both towers for one pair (text at ``context_length``)."""
        ...

    def fingerprint(self) -> str:
        """SHA-256 hex of the weights and the config: equal after ``save`` and load."""
        ...

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write a folder that :func:`load_model_adapter` loads back; returns it."""
        ...


# ------------------------------------------------------------------ shared helpers


def module_fingerprint(module: nn.Module, config: Mapping[str, Any]) -> str:
    """SHA-256 hex of ``config`` (JSON, sorted keys) and of every tensor of
    ``module.state_dict()`` (name, dtype, shape and bytes, in name order)."""
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous().reshape(-1)
        h.update(f"{name}|{t.dtype}|{tuple(tensor.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _check_patch(patch_size: int | None, patch_sizes: tuple[int, ...], default: int) -> int:
    if patch_size is None:
        return default
    if patch_size not in patch_sizes:
        raise ValueError(f"`patch_size` must be one of {list(patch_sizes)}, got {patch_size!r}")
    return patch_size


def _check_tokens(tokens: Tensor, context_length: int, vocab_size: int) -> Tensor:
    """Validated ``[B, L]`` int64 tokens (int32 accepted and widened)."""
    if (
        not isinstance(tokens, Tensor)
        or tokens.dim() != 2
        or tokens.dtype
        not in (
            torch.int64,
            torch.int32,
        )
    ):
        got = (tokens.dtype, tuple(tokens.shape)) if isinstance(tokens, Tensor) else tokens
        raise ValueError(f"`tokens` must be an int64 tensor [B, L], got {got!r}")
    if not 0 < tokens.shape[1] <= context_length:
        raise ValueError(
            f"`tokens` length must be in [1, context_length={context_length}], "
            f"got {tokens.shape[1]}"
        )
    if tokens.numel():
        low, high = torch.stack(torch.aminmax(tokens)).tolist()  # one device sync
        if low < 0 or high >= vocab_size:
            raise ValueError(
                f"`tokens` ids must be in [0, vocab_size={vocab_size}), got [{low}, {high}]"
            )
    return tokens.long()


def _kept_lengths(tokens: Tensor, *, pad_id: int, eos_id: int | None) -> Tensor:
    """``[B]`` caption lengths of right-padded rows: the tokens before the first pad, plus
    that pad when ``pad_id == eos_id`` (a tokenizer that pads with its EOS token)."""
    kept = (tokens != pad_id).long().cumprod(dim=1).sum(dim=1)  # before the first pad
    if eos_id is not None and pad_id == eos_id:
        kept = (kept + 1).clamp_max(tokens.shape[1])
    return kept


def _check_image_input(images: Tensor, size: int) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, Tensor) else images
        raise ValueError(f"`images` must be a float tensor [B, 3, {size}, {size}], got {got!r}")
    if not images.is_floating_point():
        raise ValueError(f"`images` must be floating point (preprocessed), got {images.dtype}")


def _one_line(exc: BaseException) -> str:
    """``exc``'s message on one line (whitespace runs collapsed)."""
    return " ".join(str(exc).split())


def _write_json(path: Path, record: Mapping[str, Any]) -> None:
    path.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON: {_one_line(exc)}") from exc
    if not isinstance(record, dict):
        raise ValueError(f"{path} must hold a JSON object, got {type(record).__name__}")
    return record


# ------------------------------------------------------------------ curatorch's TwoTower


def _two_tower_config_from_dict(d: Mapping[str, Any], source: Path) -> TwoTowerConfig:
    try:
        return TwoTowerConfig(
            image=ImageTowerConfig(**d["image"]),
            text=TextTowerConfig(**d["text"]),
            embed_dim=d["embed_dim"],
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source} holds no valid curatorch model config: {exc}") from exc


class TwoTowerAdapter:
    """curatorch's :class:`TwoTower` as an :class:`ImageTextModel`.

    A thin view: :attr:`module` is the ``TwoTower`` itself, so its ``state_dict`` keys,
    checkpoints and numbers are those of the bare model. Images are normalised as the
    built-in data does (``x / 127.5 - 1``, mean = std = 0.5), tokens are masked where they
    equal ``cfg.text.pad_id`` (keys of the attention and the mean pooling).

    Args:
        model: the two-tower model.
        patch_size: the patch size ``encode_image(patch_size=None)`` and
            :meth:`forward_flops` use (the one the model was trained at); default the
            smallest of the model's patch sizes.
    """

    kind = "curatorch"
    flexible_patch = True

    def __init__(self, model: TwoTower, *, patch_size: int | None = None) -> None:
        if not isinstance(model, TwoTower):
            raise ValueError(f"`model` must be a TwoTower, got {type(model).__name__}")
        self.module: TwoTower = model
        self.cfg: TwoTowerConfig = model.cfg
        self.patch_sizes: tuple[int, ...] = tuple(self.cfg.image.patch_sizes)
        smallest = min(self.patch_sizes)
        self.default_patch_size: int = _check_patch(patch_size, self.patch_sizes, smallest)
        self.preprocessing = ImagePreprocessing(
            image_size=self.cfg.image.image_size, mean=(0.5,) * 3, std=(0.5,) * 3
        )
        self.embed_dim: int = self.cfg.embed_dim
        self.context_length: int = self.cfg.text.context_length
        self.vocab_size: int = self.cfg.text.vocab_size
        self.pad_id: int = self.cfg.text.pad_id

    @property
    def logit_scale(self) -> Tensor:
        """Temperature ``t = exp(t')`` (scalar tensor, differentiable)."""
        return self.module.logit_scale

    @property
    def logit_bias(self) -> Tensor:
        """Bias ``b`` (scalar parameter)."""
        return self.module.logit_bias

    def encode_image(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """float ``[B, 3, S, S]`` -> unit ``[B, D]`` at ``patch_size`` (default
        :attr:`default_patch_size`)."""
        p = _check_patch(patch_size, self.patch_sizes, self.default_patch_size)
        return self.module.encode_image(images, p)

    def encode_text(self, tokens: Tensor) -> Tensor:
        """int64 ``[B, L]`` right-padded with :attr:`pad_id` -> unit ``[B, D]``."""
        return self.module.encode_text(_check_tokens(tokens, self.context_length, self.vocab_size))

    def text_mask(self, tokens: Tensor) -> Tensor:
        """``tokens != pad_id`` ``[B, L]``: pads are never attended to nor pooled."""
        return tokens != self.pad_id

    def forward_flops(self, patch_size: int | None = None) -> int:
        """:func:`~curatorch.models.two_tower_forward_flops` at ``patch_size``."""
        p = _check_patch(patch_size, self.patch_sizes, self.default_patch_size)
        return two_tower_forward_flops(self.cfg, p)

    def _record(self) -> dict[str, Any]:
        return {
            "format": _FORMAT,
            "kind": self.kind,
            "model_config": dataclasses.asdict(self.cfg),
            "patch_size": self.default_patch_size,
        }

    def fingerprint(self) -> str:
        """SHA-256 of the model config, the default patch size and the weights."""
        return module_fingerprint(self.module, self._record())

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write ``model.safetensors`` and ``curatorch_model.json`` into ``path``."""
        from safetensors.torch import save_file

        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().cpu().contiguous() for k, v in self.module.state_dict().items()}
        save_file(weights, str(out / "model.safetensors"))
        _write_json(out / _TWO_TOWER_FILE, self._record())
        return out

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, device: str | torch.device = "cpu"
    ) -> TwoTowerAdapter:
        """Load a folder written by :meth:`save`, or a run's checkpoint folder
        (``state.json`` with ``model_config`` beside ``model.safetensors``)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = Path(path)
        if (folder / _TWO_TOWER_FILE).is_file():
            record = _read_json(folder / _TWO_TOWER_FILE)
            cfg_dict, patch = record.get("model_config"), record.get("patch_size")
        elif (folder / "state.json").is_file():
            state = _read_json(folder / "state.json")
            cfg_dict = state.get("model_config")
            model_section = (state.get("config") or {}).get("model") or {}
            patch = model_section.get("train_patch_size") or None  # 0: the smallest
        else:
            found = sorted(p.name for p in folder.iterdir())[:8] if folder.is_dir() else []
            raise ValueError(
                f"model.path {folder} holds no curatorch model (no {_TWO_TOWER_FILE} or "
                f"checkpoint state.json; found {found}); for a run folder pass its "
                f"checkpoint, checkpoints/step_*"
            )
        cfg = _two_tower_config_from_dict(cfg_dict or {}, folder)
        model = TwoTower(cfg)
        try:
            model.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        except (OSError, RuntimeError, SafetensorError) as exc:
            raise ValueError(
                f"{folder / 'model.safetensors'} does not fit the model: {_one_line(exc)}"
            ) from exc
        return cls(model.to(device).eval(), patch_size=patch)


# ------------------------------------------------------------------ Hugging Face models

# config keys that record where and how a model was loaded, not what it is
_VOLATILE_CONFIG_KEYS = frozenset(
    {"transformers_version", "architectures", "dtype", "torch_dtype", "output_attentions"}
)


def _stable_config(d: Any) -> Any:
    """A config dict without its private (``_name_or_path``, ...) and volatile keys."""
    if isinstance(d, dict):
        return {
            k: _stable_config(v)
            for k, v in d.items()
            if not str(k).startswith("_") and k not in _VOLATILE_CONFIG_KEYS
        }
    return d


def _pooled(out: Any) -> Tensor:
    """``get_*_features`` output: a tensor (transformers 4) or a model output (5)."""
    return out if isinstance(out, Tensor) else out.pooler_output


class _HFAdapter(nn.Module):
    """Shared part of the Hugging Face adapters (the module is the adapter itself)."""

    kind = "hf"
    flexible_patch = False
    model_type = ""
    processor_type = ""

    def __init__(
        self,
        hf_model: nn.Module,
        *,
        pad_id: int | None = None,
        preprocessing: ImagePreprocessing | None = None,
    ) -> None:
        super().__init__()
        cfg = getattr(hf_model, "config", None)
        if getattr(cfg, "model_type", None) != self.model_type:
            raise ValueError(
                f"`hf_model` must be a {self.model_type} model, got model_type "
                f"{getattr(cfg, 'model_type', None)!r}"
            )
        self.hf = hf_model
        text, vision = cfg.text_config, cfg.vision_config
        self.vocab_size: int = int(text.vocab_size)
        self.context_length: int = int(text.max_position_embeddings)
        pad = text.pad_token_id if pad_id is None else pad_id
        if isinstance(pad, bool) or not isinstance(pad, int) or not 0 <= pad < self.vocab_size:
            raise ValueError(
                f"`pad_id` must be an int in [0, vocab_size={self.vocab_size}), got {pad!r}"
            )
        self.pad_id: int = pad
        self.patch_sizes: tuple[int, ...] = (int(vision.patch_size),)
        self.default_patch_size: int = self.patch_sizes[0]
        size = int(vision.image_size)
        if size % self.default_patch_size != 0:
            raise ValueError(
                f"vision image_size {size} is not a multiple of patch_size "
                f"{self.default_patch_size}"
            )
        pre = preprocessing if preprocessing is not None else self.default_preprocessing(size)
        if not isinstance(pre, ImagePreprocessing) or pre.image_size != size:
            raise ValueError(
                f"`preprocessing` must be an ImagePreprocessing with image_size {size}, got {pre!r}"
            )
        self.preprocessing: ImagePreprocessing = pre

    @staticmethod
    def default_preprocessing(image_size: int) -> ImagePreprocessing:
        """The Hugging Face image processor's defaults for this model type."""
        raise NotImplementedError

    @property
    def module(self) -> nn.Module:
        """The adapter itself: the HF model plus anything the adapter adds."""
        return self

    @property
    def embed_dim(self) -> int:
        """``D``: the projection width of both towers."""
        raise NotImplementedError

    def encode_image(self, images: Tensor, patch_size: int | None = None) -> Tensor:
        """float ``[B, 3, S, S]`` in :attr:`preprocessing`'s normalisation -> unit ``[B, D]``.

        ``patch_size`` may only be ``None`` or the model's one patch size."""
        _check_patch(patch_size, self.patch_sizes, self.default_patch_size)
        s = self.preprocessing.image_size
        _check_image_input(images, s)
        if tuple(images.shape[-2:]) != (s, s):
            raise ValueError(
                f"`images` must be {s}x{s} (the model's image_size), got shape "
                f"{tuple(images.shape)}; resize with the adapter's preprocessing"
            )
        return F.normalize(_pooled(self.hf.get_image_features(pixel_values=images)), dim=-1)

    def forward_flops(self, patch_size: int | None = None) -> int:
        """Forward FLOPs of one pair, counted as in :mod:`curatorch.models.flops`."""
        p = _check_patch(patch_size, self.patch_sizes, self.default_patch_size)
        return self._image_flops(p) + self._text_flops()

    def _image_flops(self, patch_size: int) -> int:
        raise NotImplementedError

    def _text_flops(self) -> int:
        raise NotImplementedError

    def _adapter_record(self) -> dict[str, Any]:
        """What :data:`ADAPTER_FILE` holds (the HF files hold the rest)."""
        return {"format": _FORMAT, "kind": self.kind, "pad_id": self.pad_id}

    def fingerprint(self) -> str:
        """SHA-256 of the model config (load paths and versions left out), the adapter's
        record (without provenance such as ``bias_source``), the preprocessing and every
        tensor of the adapter's ``state_dict``."""
        adapter = {k: v for k, v in self._adapter_record().items() if k != "bias_source"}
        record = {
            "adapter": adapter,
            "config": _stable_config(self.hf.config.to_dict()),
            "preprocessing": dataclasses.asdict(self.preprocessing),
        }
        return module_fingerprint(self, record)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """``save_pretrained(path)`` (so ``from_pretrained(path)`` loads the model), plus
        ``preprocessor_config.json`` and :data:`ADAPTER_FILE`."""
        out = Path(path)
        self.hf.save_pretrained(str(out))
        pre = self.preprocessing.to_hf_dict(self.processor_type)
        _write_json(out / "preprocessor_config.json", pre)
        _write_json(out / ADAPTER_FILE, self._adapter_record())
        return out

    @classmethod
    def _model_class(cls) -> type:
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        path: str | os.PathLike[str],
        *,
        pad_id: int | None = None,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device = "cpu",
        text_padding: str | None = None,
    ) -> _HFAdapter:
        """Load a local folder (``local_files_only``: nothing is downloaded).

        The pad id is ``pad_id``, else the one :data:`ADAPTER_FILE` saved, else the text
        config's ``pad_token_id``; the preprocessing is ``preprocessor_config.json``'s,
        else the model type's defaults. ``text_padding`` (SigLIP only, see
        :class:`HFSiglipAdapter`): default the one :data:`ADAPTER_FILE` saved, else
        ``"max_length"``.
        """
        folder = Path(path)
        model_type = _hf_model_type(folder)
        if model_type != cls.model_type:
            raise ValueError(f"{folder} holds a {model_type!r} model, not {cls.model_type!r}")
        extra = _read_json(folder / ADAPTER_FILE) if (folder / ADAPTER_FILE).is_file() else {}
        hf = cls._model_class().from_pretrained(str(folder), local_files_only=True, dtype=dtype)
        size = int(hf.config.vision_config.image_size)
        pre_file = folder / "preprocessor_config.json"
        pre = (
            _preprocessing_from_hf(_read_json(pre_file), size, str(pre_file))
            if pre_file.is_file()
            else None
        )
        pad = pad_id if pad_id is not None else extra.get("pad_id")
        if text_padding is not None and cls.model_type != "siglip":
            raise ValueError(
                f"`text_padding` applies to SigLIP models, got {text_padding!r} for the "
                f"{cls.model_type} model in {folder}"
            )
        if text_padding is not None:
            extra = {**extra, "text_padding": text_padding}
        return cls._build(hf, pad_id=pad, preprocessing=pre, extra=extra).to(device).eval()

    @classmethod
    def _build(
        cls,
        hf: nn.Module,
        *,
        pad_id: int | None,
        preprocessing: ImagePreprocessing | None,
        extra: Mapping[str, Any],
    ) -> _HFAdapter:
        return cls(hf, pad_id=pad_id, preprocessing=preprocessing)


def _text_tower_flops(text: Any, out_dim: int) -> int:
    """Blocks over ``max_position_embeddings`` tokens plus the output projection."""
    w, n = int(text.hidden_size), int(text.max_position_embeddings)
    blocks = transformer_forward_flops(
        n, w, int(text.num_hidden_layers), int(text.intermediate_size) / w
    )
    return blocks + 2 * w * out_dim


class HFSiglipAdapter(_HFAdapter):
    """A ``transformers`` ``SiglipModel`` as an :class:`ImageTextModel`.

    Text (``text_padding``, one of :data:`SIGLIP_TEXT_PADDINGS`):

    * ``"max_length"`` (default; SigLIP's own convention): SigLIP was trained on captions
      padded to ``max_length`` with no attention mask, and it pools the *last* position.
      So ``encode_text`` right-pads every row to :attr:`context_length` with
      :attr:`pad_id` and passes no mask: pads are attended to, as in training
      (:meth:`text_mask` is all True), and the embedding is
      ``SiglipModel.get_text_features``'s. Use it for every pretrained SigLIP.
    * ``"masked"``, for a SigLIP trained from scratch on short captions: pads are masked
      as attention keys (:meth:`text_mask`: the tokens before the first pad, plus that pad
      when ``pad_id`` equals the config's ``eos_token_id``) and the pooled position is the
      last kept one, i.e. the caption's last token (its EOS with a tokenizer that appends
      one), through the same final LayerNorm and ``head``. Under ``"max_length"`` a short
      caption in a long context is read by a pad position whose attention is mostly on
      the other pads; masking them is what lets a small model trained from scratch learn
      the caption (``docs/your_data.md``). A row of only pads keeps position 0. A model
      trained this way must be read this way: the choice is saved in
      :data:`ADAPTER_FILE` and is part of :meth:`fingerprint`.

    In both, appending pads does not change the embedding. The pad id must be the one
    the model was trained with (its tokenizer's); by default the text config's
    ``pad_token_id``. Temperature and bias are the model's ``logit_scale.exp()`` and
    ``logit_bias``.

    Args:
        hf_model: a ``SiglipModel`` (vision tower with its attention-pooling head).
        pad_id: the id the tokens are right-padded with.
        preprocessing: default mean = std = 0.5, bicubic, squash to ``image_size``
            (the ``SiglipImageProcessor`` defaults).
        text_padding: ``"max_length"`` or ``"masked"`` (above).
    """

    kind = "hf-siglip"
    model_type = "siglip"
    processor_type = "SiglipImageProcessor"

    def __init__(
        self,
        hf_model: nn.Module,
        *,
        pad_id: int | None = None,
        preprocessing: ImagePreprocessing | None = None,
        text_padding: str = "max_length",
    ) -> None:
        super().__init__(hf_model, pad_id=pad_id, preprocessing=preprocessing)
        if text_padding not in SIGLIP_TEXT_PADDINGS:
            raise ValueError(
                f"`text_padding` must be one of {list(SIGLIP_TEXT_PADDINGS)}, got {text_padding!r}"
            )
        self.text_padding: str = text_padding
        cfg = hf_model.config
        eos = cfg.text_config.eos_token_id
        self.eos_id: int | None = eos if isinstance(eos, int) else None
        if not cfg.vision_config.vision_use_head:
            raise ValueError("a SiglipModel without vision_use_head has no image embedding")
        proj = int(cfg.text_config.projection_size)
        if proj != int(cfg.vision_config.hidden_size):
            raise ValueError(
                f"text projection_size {proj} differs from the vision hidden_size "
                f"{cfg.vision_config.hidden_size}: the towers' embeddings do not match"
            )

    @staticmethod
    def default_preprocessing(image_size: int) -> ImagePreprocessing:
        return ImagePreprocessing(image_size, (0.5,) * 3, (0.5,) * 3, "bicubic", "squash")

    @property
    def embed_dim(self) -> int:
        return int(self.hf.config.vision_config.hidden_size)

    @property
    def logit_scale(self) -> Tensor:
        """``exp(logit_scale)`` of the model (scalar tensor, differentiable)."""
        return self.hf.logit_scale.exp().reshape(())

    @property
    def logit_bias(self) -> Tensor:
        """The model's learned ``logit_bias`` (scalar tensor)."""
        return self.hf.logit_bias.reshape(())

    def text_mask(self, tokens: Tensor) -> Tensor:
        """bool ``[B, L]``: all True under ``"max_length"`` (SigLIP attends to every
        position, pads included); under ``"masked"`` the caption's tokens (at least
        position 0), as in the class docstring."""
        if self.text_padding == "max_length":
            return torch.ones_like(tokens, dtype=torch.bool)
        kept = _kept_lengths(tokens, pad_id=self.pad_id, eos_id=self.eos_id).clamp_min(1)
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return positions[None, :] < kept[:, None]

    def encode_text(self, tokens: Tensor) -> Tensor:
        """int64 ``[B, L]`` -> unit ``[B, D]``; rows right-padded to ``context_length``
        and pooled as :attr:`text_padding` says."""
        tokens = _check_tokens(tokens, self.context_length, self.vocab_size)
        missing = self.context_length - tokens.shape[1]
        if missing:
            tokens = F.pad(tokens, (0, missing), value=self.pad_id)
        if self.text_padding == "max_length":
            return F.normalize(_pooled(self.hf.get_text_features(input_ids=tokens)), dim=-1)
        mask = self.text_mask(tokens)  # [B, L]
        text = self.hf.text_model
        hidden = text(input_ids=tokens, attention_mask=mask.long()).last_hidden_state
        last = mask.long().sum(dim=1) - 1  # [B], the caption's last token
        pooled = hidden[torch.arange(tokens.shape[0], device=tokens.device), last]  # [B, W]
        return F.normalize(text.head(pooled), dim=-1)

    def _image_flops(self, patch_size: int) -> int:
        v = self.hf.config.vision_config
        w, inner = int(v.hidden_size), int(v.intermediate_size)
        n = (int(v.image_size) // patch_size) ** 2
        patch = 2 * n * 3 * patch_size * patch_size * w
        blocks = transformer_forward_flops(n, w, int(v.num_hidden_layers), inner / w)
        # attention-pooling head: one probe query over n keys, then its MLP
        head = 2 * w * w + 2 * n * w * 2 * w + 2 * 2 * n * w + 2 * w * w + 2 * 2 * w * inner
        return patch + blocks + head

    def _text_flops(self) -> int:
        flops = _text_tower_flops(self.hf.config.text_config, self.embed_dim)
        if self.text_padding == "masked":  # SiglipTextModel also runs its head on [:, -1]
            flops += 2 * int(self.hf.config.text_config.hidden_size) * self.embed_dim
        return flops

    def _adapter_record(self) -> dict[str, Any]:
        return {**super()._adapter_record(), "text_padding": self.text_padding}

    @classmethod
    def _model_class(cls) -> type:
        from transformers import SiglipModel

        return SiglipModel

    @classmethod
    def _build(
        cls,
        hf: nn.Module,
        *,
        pad_id: int | None,
        preprocessing: ImagePreprocessing | None,
        extra: Mapping[str, Any],
    ) -> HFSiglipAdapter:
        # a folder saved before the option existed was read the model's own way
        padding = extra.get("text_padding", "max_length")
        return cls(hf, pad_id=pad_id, preprocessing=preprocessing, text_padding=padding)

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | Any,
        *,
        pad_id: int | None = None,
        preprocessing: ImagePreprocessing | None = None,
        text_padding: str = "max_length",
    ) -> HFSiglipAdapter:
        """A freshly initialised ``SiglipModel`` from a config dict (``SiglipConfig``
        fields, ``text_config`` / ``vision_config`` as dicts) or a ``SiglipConfig``.

        Temperature and bias start at SigLIP's ``t = 10``, ``b = -10`` (HF's own init is
        ``t = 1``, ``b = 0``), as curatorch's :class:`TwoTower` does. Uses the global torch RNG.
        ``text_padding``: see the class docstring (``"masked"`` for short captions).
        """
        from transformers import SiglipConfig, SiglipModel

        cfg = config if isinstance(config, SiglipConfig) else _hf_config(SiglipConfig, config)
        model = SiglipModel(cfg)
        with torch.no_grad():
            model.logit_scale.fill_(math.log(10.0))
            model.logit_bias.fill_(-10.0)
        return cls(model, pad_id=pad_id, preprocessing=preprocessing, text_padding=text_padding)


class HFCLIPAdapter(_HFAdapter):
    """A ``transformers`` ``CLIPModel`` as an :class:`ImageTextModel`, with a sigmoid bias.

    Text: CLIP's text tower is causal and pools the hidden state of the end-of-text
    token. Rows are right-padded with :attr:`pad_id`; the mask (:meth:`text_mask`) keeps
    the tokens before the first pad, and also that first pad when ``pad_id`` equals the
    config's ``eos_token_id`` (OpenAI's tokenizer pads with its EOS token). The embedding
    is the projected hidden state at the *last kept position*: the EOS token whenever the
    tokenizer ends captions with one (then it equals ``CLIPModel.get_text_features``),
    and the last caption token for a tokenizer without EOS (the one position that, under
    causal attention, has seen the whole caption). A row of only pads pools position 0.

    Bias: CLIP is trained with the softmax loss, which no bias changes, so it has none.
    The adapter adds a learnable scalar :attr:`sigmoid_bias` (a parameter of this
    module, so it is trained and checkpointed with the model, saved in
    :data:`ADAPTER_FILE` beside the HF files), initialised to ``logit_bias`` (default
    :data:`CLIP_INIT_LOGIT_BIAS`, SigLIP's ``-10``, or the value saved with the model).
    For a pretrained CLIP used as a reference, fit it to the data first
    (:func:`fit_logit_bias`). :attr:`bias_source` records where the value came from.

    Args:
        hf_model: a ``CLIPModel``.
        pad_id: the id the tokens are right-padded with (default: ``pad_token_id``).
        preprocessing: default OpenAI CLIP mean/std, bicubic, shorter side to
            ``image_size`` and centre crop (the ``CLIPImageProcessor`` defaults).
        logit_bias: the initial sigmoid bias.
        bias_source: ``"init"``, ``"saved"``, ``"fitted"`` or ``"given"``.
    """

    kind = "hf-clip"
    model_type = "clip"
    processor_type = "CLIPImageProcessor"

    def __init__(
        self,
        hf_model: nn.Module,
        *,
        pad_id: int | None = None,
        preprocessing: ImagePreprocessing | None = None,
        logit_bias: float = CLIP_INIT_LOGIT_BIAS,
        bias_source: str = "init",
    ) -> None:
        super().__init__(hf_model, pad_id=pad_id, preprocessing=preprocessing)
        if not isinstance(logit_bias, (int, float)) or not math.isfinite(logit_bias):
            raise ValueError(f"`logit_bias` must be a finite float, got {logit_bias!r}")
        eos = hf_model.config.text_config.eos_token_id
        self.eos_id: int | None = eos if isinstance(eos, int) else None
        dtype = hf_model.logit_scale.dtype
        self.sigmoid_bias = nn.Parameter(torch.tensor(float(logit_bias), dtype=dtype))
        self.bias_source = bias_source

    @staticmethod
    def default_preprocessing(image_size: int) -> ImagePreprocessing:
        return ImagePreprocessing(
            image_size, _OPENAI_CLIP_MEAN, _OPENAI_CLIP_STD, "bicubic", "shortest_edge_crop"
        )

    @property
    def embed_dim(self) -> int:
        return int(self.hf.config.projection_dim)

    @property
    def logit_scale(self) -> Tensor:
        """``exp(logit_scale)`` of the model (scalar tensor, differentiable)."""
        return self.hf.logit_scale.exp().reshape(())

    @property
    def logit_bias(self) -> Tensor:
        """The adapter's :attr:`sigmoid_bias` (scalar parameter)."""
        return self.sigmoid_bias

    def set_logit_bias(self, value: float, *, source: str = "given") -> None:
        """Set the sigmoid bias (e.g. to :func:`fit_logit_bias`'s value)."""
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"`value` must be a finite float, got {value!r}")
        with torch.no_grad():
            self.sigmoid_bias.fill_(float(value))
        self.bias_source = source

    def _lengths(self, tokens: Tensor) -> Tensor:
        """``[B]`` kept positions per row (the mask rule of the class docstring)."""
        return _kept_lengths(tokens, pad_id=self.pad_id, eos_id=self.eos_id)

    def text_mask(self, tokens: Tensor) -> Tensor:
        """bool ``[B, L]``: the positions before the first pad (and that pad if it is EOS)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        return positions[None, :] < self._lengths(tokens)[:, None]

    def encode_text(self, tokens: Tensor) -> Tensor:
        """int64 ``[B, L]`` right-padded with :attr:`pad_id` -> unit ``[B, D]``."""
        tokens = _check_tokens(tokens, self.context_length, self.vocab_size)
        mask = self.text_mask(tokens)
        hidden = self.hf.text_model(input_ids=tokens, attention_mask=mask.long())
        hidden = hidden.last_hidden_state  # [B, L, W], after the final LayerNorm
        last = (mask.long().sum(dim=1) - 1).clamp_min(0)  # [B]
        pooled = hidden[torch.arange(tokens.shape[0], device=tokens.device), last]  # [B, W]
        return F.normalize(self.hf.text_projection(pooled), dim=-1)

    def _image_flops(self, patch_size: int) -> int:
        v = self.hf.config.vision_config
        w, grid = int(v.hidden_size), int(v.image_size) // patch_size
        patch = 2 * grid * grid * 3 * patch_size * patch_size * w
        blocks = transformer_forward_flops(
            grid * grid + 1, w, int(v.num_hidden_layers), int(v.intermediate_size) / w
        )  # patches + the class token
        return patch + blocks + 2 * w * self.embed_dim

    def _text_flops(self) -> int:
        return _text_tower_flops(self.hf.config.text_config, self.embed_dim)

    def _adapter_record(self) -> dict[str, Any]:
        return {
            **super()._adapter_record(),
            "logit_bias": float(self.sigmoid_bias.detach()),
            "bias_source": self.bias_source,
        }

    @classmethod
    def _model_class(cls) -> type:
        from transformers import CLIPModel

        return CLIPModel

    @classmethod
    def _build(
        cls,
        hf: nn.Module,
        *,
        pad_id: int | None,
        preprocessing: ImagePreprocessing | None,
        extra: Mapping[str, Any],
    ) -> HFCLIPAdapter:
        if "logit_bias" in extra:
            bias, source = extra["logit_bias"], "saved"
        else:
            bias, source = CLIP_INIT_LOGIT_BIAS, "init"
        return cls(
            hf, pad_id=pad_id, preprocessing=preprocessing, logit_bias=bias, bias_source=source
        )

    @classmethod
    def from_config(
        cls,
        config: Mapping[str, Any] | Any,
        *,
        pad_id: int | None = None,
        preprocessing: ImagePreprocessing | None = None,
        logit_bias: float = CLIP_INIT_LOGIT_BIAS,
    ) -> HFCLIPAdapter:
        """A freshly initialised ``CLIPModel`` from a config dict (``CLIPConfig`` fields,
        ``text_config`` / ``vision_config`` as dicts) or a ``CLIPConfig``; the
        temperature starts at the config's ``logit_scale_init_value``. Uses the global
        torch RNG."""
        from transformers import CLIPConfig, CLIPModel

        cfg = config if isinstance(config, CLIPConfig) else _hf_config(CLIPConfig, config)
        return cls(
            CLIPModel(cfg), pad_id=pad_id, preprocessing=preprocessing, logit_bias=logit_bias
        )


# ------------------------------------------------------------------ loading and checks

_HF_ADAPTERS: dict[str, type[_HFAdapter]] = {"siglip": HFSiglipAdapter, "clip": HFCLIPAdapter}


def _hf_config(config_class: type, config: Mapping[str, Any]) -> Any:
    """``config_class(**config)``; a ``model_type`` in ``config`` must be the class's."""
    if not isinstance(config, Mapping):
        raise ValueError(f"`config` must be a dict or a {config_class.__name__}, got {config!r}")
    d = dict(config)
    model_type = d.pop("model_type", config_class.model_type)
    if model_type != config_class.model_type:
        raise ValueError(
            f"`config` model_type must be {config_class.model_type!r}, got {model_type!r}"
        )
    return config_class(**d)


def _hf_model_type(folder: Path) -> str:
    """``model_type`` of the HF model in ``folder``; a missing folder or ``config.json``
    is a ``ValueError`` naming the folder and what it holds."""
    if not folder.is_dir():
        raise ValueError(f"model.path {folder} is not a folder")
    config_file = folder / "config.json"
    if not config_file.is_file():
        found = sorted(p.name for p in folder.iterdir())[:8]
        raise ValueError(
            f"model.path {folder} holds no Hugging Face model (no config.json; found {found})"
        )
    return str(_read_json(config_file).get("model_type"))


def hf_adapter_from_config(
    config: Mapping[str, Any], *, pad_id: int | None = None, **kwargs: Any
) -> HFSiglipAdapter | HFCLIPAdapter:
    """A freshly initialised HF model for training from scratch, chosen by
    ``config["model_type"]`` (``"siglip"`` or ``"clip"``); ``kwargs`` go to its
    ``from_config``."""
    model_type = config.get("model_type") if isinstance(config, Mapping) else None
    if model_type not in _HF_ADAPTERS:
        raise ValueError(
            f"`config` model_type must be one of {sorted(_HF_ADAPTERS)}, got {model_type!r}"
        )
    return _HF_ADAPTERS[model_type].from_config(config, pad_id=pad_id, **kwargs)  # type: ignore[attr-defined]


def load_model_adapter(
    source: str,
    path: str | os.PathLike[str],
    *,
    pad_id: int | None = None,
    device: str | torch.device = "cpu",
    text_padding: str | None = None,
) -> TwoTowerAdapter | HFSiglipAdapter | HFCLIPAdapter:
    """The model in the local folder ``path``, as an :class:`ImageTextModel` in eval mode.

    Args:
        source: ``"curatorch"`` (a folder written by :meth:`TwoTowerAdapter.save`, or a
            checkpoint folder) or ``"hf"`` (a ``save_pretrained`` folder of a
            ``SiglipModel`` or ``CLIPModel``, read with ``local_files_only``).
        path: the folder.
        pad_id: HF only: the pad id of the tokens (default: saved, else the config's).
        device: where the weights go.
        text_padding: HF SigLIP only (:class:`HFSiglipAdapter`): ``"max_length"`` or
            ``"masked"`` (default: saved, else ``"max_length"``, SigLIP's own).

    Raises ``ValueError`` naming the folder for a folder holding no such model (with
    the ``model_type`` found, e.g. ``'bert'``).
    """
    if source not in MODEL_SOURCES:
        raise ValueError(f"model.source must be one of {list(MODEL_SOURCES)}, got {source!r}")
    folder = Path(path)
    if source == "curatorch":
        if pad_id is not None:
            raise ValueError(
                f"`pad_id` is the model config's for source 'curatorch', got {pad_id!r}"
            )
        if text_padding is not None:
            raise ValueError(
                f"`text_padding` applies to HF SigLIP models, got {text_padding!r} for "
                f"source 'curatorch'"
            )
        return TwoTowerAdapter.load(folder, device=device)
    model_type = _hf_model_type(folder)
    if model_type not in _HF_ADAPTERS:
        raise ValueError(
            f"model.path {folder} holds no CLIP or SigLIP model: its config.json has "
            f"model_type {model_type!r} (expected one of {sorted(_HF_ADAPTERS)})"
        )
    return _HF_ADAPTERS[model_type].from_pretrained(  # type: ignore[return-value]
        folder, pad_id=pad_id, device=device, text_padding=text_padding
    )


def check_tokenizer_vocab(
    model: ImageTextModel, *, vocab_size: int, tokenizer: str = "tokenizer"
) -> None:
    """Refuse a tokenizer with more ids than the model's text embedding table.

    Args:
        model: the adapter.
        vocab_size: the tokenizer's vocabulary size (added tokens included).
        tokenizer: how to name the tokenizer in the message (its path).
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size <= 0:
        raise ValueError(f"`vocab_size` must be a positive int, got {vocab_size!r}")
    if vocab_size > model.vocab_size:
        raise ValueError(
            f"{tokenizer} has {vocab_size} token ids but the model's text embedding table has "
            f"{model.vocab_size} rows; use a tokenizer of at most {model.vocab_size} ids "
            f"(the model's own, or --vocab-size {model.vocab_size})"
        )


def check_image_size(
    model: ImageTextModel, *, image_size: int, resize: bool = False
) -> ImagePreprocessing:
    """Refuse ``data.image_size`` unlike the model's unless ``resize`` is asked for.

    Returns the model's :attr:`~ImageTextModel.preprocessing`, which resizes the data's
    ``image_size`` images to the model's side when ``resize`` is true.
    """
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size <= 0:
        raise ValueError(f"`image_size` must be a positive int, got {image_size!r}")
    own = model.preprocessing.image_size
    if image_size != own and not resize:
        raise ValueError(
            f"data.image_size={image_size} differs from the model's image size {own} "
            f"({model.kind}); set data.image_size = {own} or ask for a resize"
        )
    return model.preprocessing


def fit_logit_bias(
    image_emb: Tensor, text_emb: Tensor, *, logit_scale: Tensor | float, steps: int = 100
) -> float:
    """The bias ``b`` minimising the mean SigLIP loss of ``B`` matching pairs at a fixed
    temperature: the bias a sigmoid-trained model with these embeddings would have.

    Args:
        image_emb: unit ``[B, D]``; row ``i`` matches ``text_emb`` row ``i``; ``B >= 2``.
        text_emb: unit ``[B, D]``.
        logit_scale: ``t`` (exponentiated).
        steps: bisection steps.

    The loss is convex in ``b``, so its derivative (increasing in ``b``) has one root; it
    is bracketed by ``[-max(t s) - 40, -min(t s) + 40]`` and found by bisection in float64.
    Returns ``b`` as a float.
    """
    if image_emb.dim() != 2 or image_emb.shape != text_emb.shape or image_emb.shape[0] < 2:
        raise ValueError(
            f"`image_emb` and `text_emb` must be [B, D] with B >= 2, got "
            f"{tuple(image_emb.shape)} and {tuple(text_emb.shape)}"
        )
    sims = float(logit_scale) * (image_emb.double() @ text_emb.double().T)  # [B, B]
    z = 2.0 * torch.eye(sims.shape[0], dtype=torch.float64, device=sims.device) - 1.0
    lo, hi = -float(sims.max()) - 40.0, -float(sims.min()) + 40.0
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        grad = float((-z * torch.sigmoid(-z * (sims + mid))).sum())  # d loss / d b
        lo, hi = (mid, hi) if grad < 0 else (lo, mid)
    return 0.5 * (lo + hi)
