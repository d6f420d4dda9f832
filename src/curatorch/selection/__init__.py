"""Data selection: pair scores from embeddings and batch samplers (JEST and baselines).

Works on plain tensors: pass embeddings from any two-tower model.

>>> scorer = PairScorer(learner=ModelEmbeddings(li, lt, 10.0, -10.0),
...                     reference=ModelEmbeddings(ri, rt, 10.0, -10.0))
>>> idx = joint_select(scorer, batch_size=b, chunks=16)
"""

from curatorch.selection.analysis import learnability_vs_chunks, learnability_vs_filter_ratio
from curatorch.selection.distributed import distributed_joint_select
from curatorch.selection.kernels import KERNELS, PRECISIONS, pair_softplus_sums, softplus_poly
from curatorch.selection.samplers import (
    MODES,
    batch_score,
    batch_size_for,
    chunk_sizes,
    dense_joint_select,
    gibbs_select,
    gumbel_topk,
    independent_select,
    joint_select,
    random_select,
)
from curatorch.selection.scores import SCORES, ModelEmbeddings, PairScorer

__all__ = [
    "KERNELS",
    "MODES",
    "PRECISIONS",
    "SCORES",
    "ModelEmbeddings",
    "PairScorer",
    "batch_score",
    "batch_size_for",
    "chunk_sizes",
    "dense_joint_select",
    "distributed_joint_select",
    "gibbs_select",
    "gumbel_topk",
    "independent_select",
    "joint_select",
    "learnability_vs_chunks",
    "learnability_vs_filter_ratio",
    "pair_softplus_sums",
    "random_select",
    "softplus_poly",
]
