"""Evaluation's numbers on hand-made inputs whose answers are known."""
import numpy as np
import pytest

import minigrad as mg
from minigrad import nn
from ssgan import evaluate


def test_confusion_matrix_counts_true_rows_and_predicted_columns():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    preds = np.array([0, 0, 1, 1, 2, 2, 0, 3])
    m = evaluate.confusion_matrix(labels, preds, num_classes=5)
    expected = np.zeros((5, 5), dtype=np.int64)
    for t, p in zip(labels, preds):
        expected[t, p] += 1
    np.testing.assert_array_equal(m, expected)
    assert m[0, 1] == 1 and m[1, 0] == 0 and m[3, 0] == 1     # row = true class, column = predicted
    assert m.sum() == len(labels)


def test_per_class_accuracy_is_per_true_class_with_an_empty_class():
    labels = np.array([0, 0, 0, 1, 1, 2, 3, 3])
    preds = np.array([0, 0, 1, 1, 2, 2, 0, 3])
    acc = evaluate.per_class_accuracy(evaluate.confusion_matrix(labels, preds, num_classes=5))
    np.testing.assert_allclose(acc[:4], [2 / 3, 1 / 2, 1.0, 1 / 2])   # correct / examples of that class
    assert np.isnan(acc[4])                                             # class 4 has no example
    # an asymmetric case where row sums and column sums differ: class 0 is predicted 4 times, true 1 time
    m = evaluate.confusion_matrix(np.array([0, 1, 1, 1]), np.array([0, 0, 0, 0]), num_classes=2)
    np.testing.assert_allclose(evaluate.per_class_accuracy(m), [1.0, 0.0])


def test_an_out_of_range_label_gets_its_own_row_and_never_counts_as_right():
    m = evaluate.confusion_matrix(np.array([10, 10, 1]), np.array([0, 9, 1]), num_classes=10)
    assert m.shape == (11, 10) and m[10].sum() == 2
    acc = evaluate.per_class_accuracy(m)
    assert acc[10] == 0.0 and acc[1] == 1.0


def test_confusion_matrix_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="confusion_matrix"):
        evaluate.confusion_matrix(np.array([0, 1]), np.array([0]), num_classes=2)


class _Fixed(nn.Module):
    """Predicts class (first pixel) and records its mode."""

    def __init__(self):
        super().__init__()
        self.modes = []

    def forward(self, x):
        self.modes.append(self.training)
        k = x.numpy()[:, 0].astype(np.int64)
        logits = np.full((len(k), 10), -5.0, dtype=np.float32)
        logits[np.arange(len(k)), k] = 5.0
        return mg.tensor(logits), None


def test_predict_batches_in_eval_mode_and_restores_the_mode():
    model = _Fixed()
    images = np.repeat(np.arange(10, dtype=np.float32)[:, None], 3, axis=1)[np.arange(23) % 10]
    got = evaluate.predict(model, images, batch_size=5)
    np.testing.assert_array_equal(got, np.arange(23) % 10)
    assert model.modes == [False] * 5 and model.training          # 5 batches, evaluation mode, then back
    assert evaluate.predict(model, images[:0]).shape == (0,)


def test_report_columns_line_up_also_for_an_empty_class():
    text = evaluate.format_report(np.array([[2, 1], [0, 0]]))
    head, full, empty = text.splitlines()
    assert len(head) == len(full) == len(empty)
    assert full.split()[-2] == "0.6667" and empty.split()[-2:] == ["-", "0"]
