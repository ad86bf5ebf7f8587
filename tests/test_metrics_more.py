"""Per-class precision, recall and F1, their macro average, and top-k accuracy, on a
small example worked out by hand (and checked against scikit-learn)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from fcnn import metrics

# 7 examples of 3 classes. Predictions (arg-max): 0 1 | 1 1 | 2 0 1
LABELS = np.array([0, 0, 1, 1, 2, 2, 2], np.int32)
LOGITS = np.array([
    [3, 1, 0],  # label 0, predicted 0; top-2 {0, 1}: hit
    [1, 3, 0],  # label 0, predicted 1; top-2 {1, 0}: hit
    [0, 3, 1],  # label 1, predicted 1
    [1, 3, 0],  # label 1, predicted 1
    [0, 1, 3],  # label 2, predicted 2
    [3, 1, 0],  # label 2, predicted 0; top-2 {0, 1}: miss
    [0, 3, 2],  # label 2, predicted 1; top-2 {1, 2}: hit
], np.float32)
# rows: true class, columns: predicted class
CONFUSION = np.array([[1, 1, 0],
                      [0, 2, 0],
                      [1, 1, 1]])
# tp = (1, 2, 1); predicted (column sums) = (2, 4, 1); labels (row sums) = (2, 2, 3)
PRECISION = np.array([1 / 2, 2 / 4, 1 / 1])
RECALL = np.array([1 / 2, 2 / 2, 1 / 3])
F1 = np.array([2 / 4, 4 / 6, 2 / 4])  # 2 tp / (predicted + labels)


def test_confusion_and_per_class_scores_by_hand():
    confusion = metrics.confusion_matrix(LOGITS, LABELS)
    np.testing.assert_array_equal(confusion, CONFUSION)
    scores = metrics.scores_from_confusion(confusion)
    np.testing.assert_allclose(scores["precision"], PRECISION, rtol=1e-6)
    np.testing.assert_allclose(scores["recall"], RECALL, rtol=1e-6)
    np.testing.assert_allclose(scores["f1"], F1, rtol=1e-6)
    np.testing.assert_array_equal(scores["support"], [2, 2, 3])
    # F1 is the harmonic mean of precision and recall
    np.testing.assert_allclose(F1, 2 * PRECISION * RECALL / (PRECISION + RECALL), rtol=1e-12)
    np.testing.assert_allclose(metrics.precision(LOGITS, LABELS), PRECISION, rtol=1e-6)
    np.testing.assert_allclose(metrics.recall(LOGITS, LABELS), RECALL, rtol=1e-6)
    np.testing.assert_allclose(metrics.f1(LOGITS, LABELS), F1, rtol=1e-6)


def test_macro_averages_by_hand_and_against_scikit_learn():
    confusion = metrics.confusion_matrix(LOGITS, LABELS)
    for name, per_class, by_hand in (("precision", PRECISION, (0.5 + 0.5 + 1) / 3),
                                     ("recall", RECALL, (0.5 + 1 + 1 / 3) / 3),
                                     ("f1", F1, (0.5 + 2 / 3 + 0.5) / 3)):
        got = float(metrics.macro_average(per_class, confusion))
        assert got == pytest.approx(by_hand, rel=1e-6), name
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    p, r, f, support = sklearn_metrics.precision_recall_fscore_support(
        LABELS, LOGITS.argmax(-1), average=None, zero_division=0)
    np.testing.assert_allclose(p, PRECISION)
    np.testing.assert_allclose(r, RECALL)
    np.testing.assert_allclose(f, F1)
    macro = sklearn_metrics.precision_recall_fscore_support(
        LABELS, LOGITS.argmax(-1), average="macro", zero_division=0)[:3]
    ours = [float(metrics.macro_average(fn(LOGITS, LABELS), confusion))
            for fn in (metrics.precision, metrics.recall, metrics.f1)]
    np.testing.assert_allclose(ours, macro, rtol=1e-6)


def test_a_class_that_occurs_nowhere_is_left_out_of_the_macro_average():
    # a 4th output the data never uses and the model never predicts
    logits = np.concatenate([LOGITS, np.full((7, 1), -10, np.float32)], axis=1)
    confusion = metrics.confusion_matrix(logits, LABELS)
    assert confusion.shape == (4, 4) and int(confusion[3].sum() + confusion[:, 3].sum()) == 0
    f1 = metrics.f1(logits, LABELS)
    np.testing.assert_allclose(f1, np.append(F1, 0.0), rtol=1e-6)
    assert float(metrics.macro_average(f1, confusion)) == pytest.approx(F1.mean(), rel=1e-6)


def test_a_class_never_predicted_has_precision_zero_and_counts_in_the_macro_average():
    labels = np.array([0, 1, 2, 2], np.int32)
    logits = np.eye(3, dtype=np.float32)[[0, 1, 1, 0]]  # class 2 is never predicted
    scores = metrics.scores_from_confusion(metrics.confusion_matrix(logits, labels))
    np.testing.assert_allclose(scores["precision"], [1 / 2, 1 / 2, 0.0])  # 0/0 -> 0
    np.testing.assert_allclose(scores["recall"], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(scores["f1"], [2 / 3, 2 / 3, 0.0], rtol=1e-6)
    confusion = metrics.confusion_matrix(logits, labels)
    assert float(metrics.macro_average(scores["recall"], confusion)) == pytest.approx(2 / 3)


def test_top_k_accuracy_by_hand_and_one_hot_labels():
    assert float(metrics.top_k_accuracy(LOGITS, LABELS, 1)) == pytest.approx(4 / 7)
    assert float(metrics.accuracy(LOGITS, LABELS)) == pytest.approx(4 / 7)
    assert float(metrics.top_k_accuracy(LOGITS, LABELS, 2)) == pytest.approx(6 / 7)
    assert float(metrics.top_k_accuracy(LOGITS, LABELS, 3)) == pytest.approx(1.0)
    one_hot = np.eye(3, dtype=np.float32)[LABELS]
    np.testing.assert_allclose(metrics.f1(LOGITS, one_hot), F1, rtol=1e-6)
    np.testing.assert_array_equal(metrics.confusion_matrix(LOGITS, one_hot), CONFUSION)


def test_scores_work_under_jit():
    f1 = jax.jit(metrics.f1)(jnp.asarray(LOGITS), jnp.asarray(LABELS))
    np.testing.assert_allclose(f1, F1, rtol=1e-6)
    macro = jax.jit(lambda c: metrics.macro_average(metrics.scores_from_confusion(c)["f1"], c))(
        jnp.asarray(CONFUSION))
    assert float(macro) == pytest.approx(F1.mean(), rel=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: metrics.scores_from_confusion(np.zeros((2, 3))), r"confusion has shape \(2, 3\)"),
    (lambda: metrics.scores_from_confusion(np.zeros(3)), r"expected \(C, C\) counts"),
    (lambda: metrics.macro_average(np.zeros(2), CONFUSION),
     r"per_class has shape \(2,\) for a confusion matrix of shape \(3, 3\): expected \(3,\)"),
    (lambda: metrics.f1(LOGITS, LABELS[:5]), r"labels has shape \(5,\)"),
])
def test_bad_inputs_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()
