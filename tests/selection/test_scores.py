import pytest
import torch
import torch.nn.functional as F

from curatorch.losses import sigmoid_pair_losses
from curatorch.selection import ModelEmbeddings, PairScorer
from tests.selection.helpers import make_embeddings


def _direct(m: ModelEmbeddings) -> torch.Tensor:
    """L_ij written out element by element."""
    n = m.image.shape[0]
    out = torch.empty(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            z = 1.0 if i == j else -1.0
            logit = m.logit_scale * float(m.image[i] @ m.text[j]) + m.logit_bias
            out[i, j] = float(F.softplus(torch.tensor(-z * logit, dtype=torch.float64)))
    return out


@pytest.mark.parametrize("score", ["learnability", "easy-reference", "hard-learner"])
def test_dense_matches_direct_formula(score: str) -> None:
    learner, reference = make_embeddings(12)
    scorer = PairScorer(learner=learner, reference=reference, score=score)
    expected = {
        "learnability": _direct(learner) - _direct(reference),
        "easy-reference": -_direct(reference),
        "hard-learner": _direct(learner),
    }[score]
    torch.testing.assert_close(scorer.dense(), expected)
    torch.testing.assert_close(scorer.diagonal(), expected.diagonal())


def test_matches_the_loss_module() -> None:
    learner, _ = make_embeddings(20)
    pairs = sigmoid_pair_losses(learner.image, learner.text, logit_scale=10.0, logit_bias=-5.0)
    torch.testing.assert_close(PairScorer(learner=learner, score="hard-learner").dense(), pairs)


def test_blocks_match_dense() -> None:
    learner, reference = make_embeddings(50)
    scorer = PairScorer(learner=learner, reference=reference)
    a = scorer.dense()
    chosen = torch.tensor([3, 17, 40])
    expected = a[chosen, :].sum(0) + a[:, chosen].sum(1)
    others = torch.ones(50, dtype=torch.bool)
    others[chosen] = False
    torch.testing.assert_close(scorer.cross_sums(chosen)[others], expected[others])
    own = a.sum(0) + a.sum(1) - a.diagonal()
    torch.testing.assert_close(scorer.row_col_sums(block_size=7), own)
    assert scorer.total(block_size=9) == pytest.approx(float(a.sum()))
    sub = torch.tensor([1, 5, 9, 30])
    torch.testing.assert_close(scorer.subset(sub).dense(), a[sub][:, sub])


def test_learner_and_reference_are_keyword_only_and_validated() -> None:
    learner, reference = make_embeddings(8)
    with pytest.raises(TypeError):
        PairScorer(learner, reference)  # type: ignore[misc]
    with pytest.raises(ValueError, match="reference"):
        PairScorer(learner=learner, score="learnability")
    with pytest.raises(ValueError, match="learner"):
        PairScorer(reference=reference, score="hard-learner")
    with pytest.raises(ValueError, match="score"):
        PairScorer(learner=learner, reference=reference, score="loud")
    short, _ = make_embeddings(6)
    with pytest.raises(ValueError, match="same super-batch"):
        PairScorer(learner=short, reference=reference)
    with pytest.raises(ValueError, match="logit_scale"):
        ModelEmbeddings(learner.image, learner.text, -1.0, 0.0)
    with pytest.raises(ValueError, match="same shape"):
        ModelEmbeddings(learner.image, learner.text[:4], 1.0, 0.0)


def test_swapping_models_inverts_learnability() -> None:
    learner, reference = make_embeddings(10)
    a = PairScorer(learner=learner, reference=reference).dense()
    b = PairScorer(learner=reference, reference=learner).dense()
    torch.testing.assert_close(a, -b)
