"""pet.core.maths against hand computations on small explicit tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pet.core import maths


def close(a, b, tol=1e-6):
    return torch.allclose(torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol, rtol=0)


# --- class scores ---------------------------------------------------------------------------------

def test_class_scores_mean_over_words_and_padding_ignored():
    # vocabulary of 6, two examples
    logits = torch.tensor([[0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
                           [10.0, -1.0, 7.0, 0.5, 100.0, 2.0]])
    # class 0: words 1, 3 (and padding id 4 which must not count); class 1: word 5 only (two pads)
    word_ids = torch.tensor([[1, 3, 4], [5, 4, 4]])
    word_mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    scores = maths.class_scores(logits, word_ids, word_mask)
    assert scores.shape == (2, 2)
    expected = [[(1.0 + 3.0) / 2, 5.0],
                [(-1.0 + 0.5) / 2, 2.0]]
    assert close(scores, expected)


def test_class_scores_three_words_per_label_and_bool_mask():
    logits = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]])
    word_ids = torch.tensor([[0, 1, 2], [3, 4, 5]])
    word_mask = torch.ones(2, 3, dtype=torch.bool)
    assert close(maths.class_scores(logits, word_ids, word_mask), [[7.0 / 3, 56.0 / 3]])


def test_class_scores_is_differentiable():
    logits = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    scores = maths.class_scores(logits, torch.tensor([[0, 1], [2, 0]]), torch.tensor([[1, 1], [1, 0]]))
    scores.sum().backward()
    # d/dlogit: word 0 and 1 each 1/2 from class 0, word 2 gets 1 from class 1
    assert close(logits.grad, [[0.5, 0.5, 1.0]])


def test_class_cross_entropy_by_hand():
    scores = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    loss = maths.class_cross_entropy(scores, labels)
    by_hand = (
        -math.log(math.exp(2) / (math.exp(2) + 1))
        - math.log(1 / (1 + math.e))
        - math.log(0.5)
    ) / 3
    assert loss.dtype == torch.float32
    assert abs(loss.item() - by_hand) < 1e-6


def test_class_cross_entropy_casts_half_scores_to_float():
    scores = torch.tensor([[2.0, 0.0]], dtype=torch.float16)
    loss = maths.class_cross_entropy(scores, torch.tensor([1]))
    assert loss.dtype == torch.float32
    assert abs(loss.item() - (-math.log(1 / (1 + math.exp(2))))) < 1e-5


# --- ensembles ------------------------------------------------------------------------------------

TEACHERS = torch.tensor([
    [[1.0, 2.0], [3.0, -1.0]],  # teacher 0: 2 examples x 2 classes
    [[3.0, 0.0], [1.0, 1.0]],  # teacher 1
    [[-1.0, 4.0], [2.0, 0.0]],  # teacher 2
])


def test_ensemble_uniform_mean():
    out = maths.ensemble_logits(TEACHERS)
    assert close(out, [[1.0, 2.0], [2.0, 0.0]])


def test_ensemble_weighted_mean_normalises_weights():
    out = maths.ensemble_logits(TEACHERS, torch.tensor([2.0, 1.0, 1.0]))
    expected = [[(2 * 1 + 3 - 1) / 4, (2 * 2 + 0 + 4) / 4],
                [(2 * 3 + 1 + 2) / 4, (2 * -1 + 1 + 0) / 4]]
    assert close(out, expected)
    # scaling all weights changes nothing: they are normalised
    assert close(maths.ensemble_logits(TEACHERS, torch.tensor([0.2, 0.1, 0.1])), expected)
    # equal weights give the plain mean
    assert close(maths.ensemble_logits(TEACHERS, torch.tensor([0.7, 0.7, 0.7])), maths.ensemble_logits(TEACHERS))


def test_ensemble_zero_weight_drops_a_teacher():
    out = maths.ensemble_logits(TEACHERS, torch.tensor([1.0, 0.0, 0.0]))
    assert close(out, TEACHERS[0])


@pytest.mark.parametrize("weights", [[-1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
def test_ensemble_rejects_bad_weights(weights):
    with pytest.raises(ValueError, match="non-negative with a positive sum"):
        maths.ensemble_logits(TEACHERS, torch.tensor(weights))


# --- soft labels, distillation --------------------------------------------------------------------

def test_soft_labels_temperature_one_is_softmax():
    z = torch.tensor([[0.0, math.log(3.0)]])
    assert close(maths.soft_labels(z, 1.0), [[0.25, 0.75]])


def test_soft_labels_temperature_two_by_hand():
    # z / 2 = [0, ln 3] -> softmax = [1/4, 3/4]
    z = torch.tensor([[0.0, 2 * math.log(3.0)], [2.0, 0.0]])
    p = maths.soft_labels(z, 2.0)
    e = math.e
    assert close(p, [[0.25, 0.75], [e / (e + 1), 1 / (e + 1)]])
    # T > 1 flattens: the top probability shrinks compared with T = 1
    assert p[1, 0] < maths.soft_labels(z, 1.0)[1, 0]


def test_soft_labels_three_classes_t2():
    z = torch.tensor([[2.0, 0.0, -2.0]])
    e = math.e
    denom = e + 1 + 1 / e
    assert close(maths.soft_labels(z, 2.0), [[e / denom, 1 / denom, (1 / e) / denom]])


@pytest.mark.parametrize("temperature", [0.0, -1.0])
def test_soft_labels_rejects_non_positive_temperature(temperature):
    with pytest.raises(ValueError, match="temperature must be positive"):
        maths.soft_labels(torch.zeros(1, 2), temperature)


def kl_by_hand(z: list[float], p: list[float], t: float) -> float:
    exps = [math.exp(v / t) for v in z]
    q = [v / sum(exps) for v in exps]
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q) if pi > 0) * t * t


def test_distillation_loss_by_hand():
    z = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    p = torch.tensor([[0.3, 0.7], [0.9, 0.1]])
    loss = maths.distillation_loss(z, p, 2.0)
    expected = (kl_by_hand([1.0, -1.0], [0.3, 0.7], 2.0) + kl_by_hand([0.5, 2.0], [0.9, 0.1], 2.0)) / 2
    assert abs(loss.item() - expected) < 1e-6


def test_distillation_loss_matches_torch_kl_div_times_t_squared():
    torch.manual_seed(0)
    z = torch.randn(5, 4)
    p = torch.softmax(torch.randn(5, 4), -1)
    t = 3.0
    ref = F.kl_div(F.log_softmax(z / t, -1), p, reduction="batchmean") * t * t
    assert abs(maths.distillation_loss(z, p, t).item() - ref.item()) < 1e-5


def test_distillation_loss_is_zero_when_student_matches():
    z = torch.tensor([[1.0, 3.0, -2.0], [0.0, 0.0, 5.0]])
    for t in (1.0, 2.0, 4.0):
        p = maths.soft_labels(z, t)
        assert abs(maths.distillation_loss(z, p, t).item()) < 1e-6
        # the gradient vanishes there too
        zz = z.clone().requires_grad_(True)
        maths.distillation_loss(zz, p, t).backward()
        assert zz.grad.abs().max() < 1e-6


def test_distillation_loss_handles_zero_targets_and_uses_log_softmax():
    # p has exact zeros (0 * log 0 must count as 0), and the student is extremely confident: a naive
    # log(softmax(z)) would give -inf/NaN, log_softmax stays finite.
    z = torch.tensor([[1000.0, -1000.0, 0.0]])
    p = torch.tensor([[1.0, 0.0, 0.0]])
    loss = maths.distillation_loss(z, p, 1.0)
    assert torch.isfinite(loss)
    assert abs(loss.item()) < 1e-6  # q(class 0) = 1 to within float precision
    p2 = torch.tensor([[0.0, 1.0, 0.0]])
    loss2 = maths.distillation_loss(z, p2, 1.0)
    assert torch.isfinite(loss2)
    assert abs(loss2.item() - 2000.0) < 1e-2  # -log q1 = 1000 - (-1000) exactly, up to logsumexp
    z_small = torch.tensor([[1.0, 2.0, 0.0]])
    assert abs(maths.distillation_loss(z_small, p2, 2.0).item() - kl_by_hand([1.0, 2.0, 0.0], [0.0, 1.0, 0.0], 2.0)) < 1e-6


def test_distillation_loss_scales_with_t_squared():
    z = torch.tensor([[0.3, -0.4]])
    p = torch.tensor([[0.8, 0.2]])
    # with the student logits scaled along with T, the KL term is unchanged and the loss scales by T^2
    base = maths.distillation_loss(z, p, 1.0).item()
    assert abs(maths.distillation_loss(z * 2, p, 2.0).item() - 4 * base) < 1e-6
    assert abs(maths.distillation_loss(z * 3, p, 3.0).item() - 9 * base) < 1e-5


# --- diagnostics ----------------------------------------------------------------------------------

def test_entropy_by_hand():
    p = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    expected = [math.log(2), 0.0, -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))]
    assert close(maths.entropy(p), expected)
    uniform4 = torch.full((1, 4), 0.25)
    assert close(maths.entropy(uniform4), [math.log(4)])


def test_agreement_fraction_of_teachers():
    logits = torch.tensor([
        [[1.0, 0.0], [0.0, 1.0], [5.0, 1.0]],
        [[2.0, 0.0], [1.0, 0.0], [0.0, 1.0]],
        [[0.0, 1.0], [1.0, 0.0], [0.0, 3.0]],
        [[3.0, 1.0], [0.0, 2.0], [0.5, 0.0]],
    ])  # [K=4, N=3, C=2]
    prediction = maths.ensemble_logits(logits).argmax(-1)
    # means: ex0 [1.5, .5] -> 0; ex1 [.5, .75] -> 1; ex2 [1.375, 1.25] -> 0
    assert prediction.tolist() == [0, 1, 0]
    assert close(maths.agreement(logits, prediction), [0.75, 0.5, 0.5])
    assert close(maths.agreement(logits, torch.tensor([1, 1, 1])), [0.25, 0.5, 0.5])


# --- ensemble weights from teacher records, and metrics --------------------------------------------

def test_ensemble_weights_from_teacher_accuracies():
    from pet.core.ensemble import ensemble_weights, member_weights

    entries = [{"weight": 0.75}, {"weight": 0.25}, {"weight": 0.5}]
    assert ensemble_weights(member_weights(entries, "wmean"), "mean").weights is None
    chosen = ensemble_weights(member_weights(entries, "wmean"), "wmean")
    assert chosen.method == "wmean" and close(chosen.weights, [0.75, 0.25, 0.5])
    assert chosen.normalised() == pytest.approx([0.5, 1 / 6, 1 / 3])
    # used as the ensemble, they are normalised: (0.75 a + 0.25 b + 0.5 c) / 1.5
    out = chosen.combine(TEACHERS)
    assert close(out, (0.75 * TEACHERS[0] + 0.25 * TEACHERS[1] + 0.5 * TEACHERS[2]) / 1.5)
    # every teacher at accuracy 0: fall back to the uniform mean rather than divide by zero, and say so
    zero = ensemble_weights([0.0, 0.0], "wmean")
    assert zero.weights is None and zero.method == "mean" and "accuracy 0" in zero.fallback
    assert close(zero.combine(TEACHERS[:2]), TEACHERS[:2].mean(0))
    # a teacher without a weight (zero-shot, no labelled set): the mean, reported as such
    missing = ensemble_weights([0.5, None], "wmean", warn=False)
    assert missing.weights is None and missing.method == "mean"


def test_classification_metrics_by_hand():
    from pet.core.metrics import classification_metrics

    # class 0: precision 1, recall 1/2 -> F1 2/3; class 1: precision 2/3, recall 1 -> F1 4/5
    got = classification_metrics([0, 0, 1, 1], [0, 1, 1, 1], ["negative", "positive"])
    assert got == {"accuracy": 0.75, "macro_f1": pytest.approx((2 / 3 + 4 / 5) / 2),
                   "per_class_f1": {"negative": pytest.approx(2 / 3), "positive": pytest.approx(4 / 5)}, "examples": 4}
    # a class that is never predicted nor present counts as F1 0 in the macro average, without warnings
    got = classification_metrics([0, 1], [0, 1], ["a", "b", "c"])
    assert got["accuracy"] == 1.0 and got["macro_f1"] == pytest.approx(2 / 3)
    assert got["per_class_f1"] == {"a": 1.0, "b": 1.0, "c": 0.0}
