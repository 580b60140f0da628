"""Held-out parsing metrics against hand-computed values."""

import numpy as np
import pytest

from jaxfp.core import schema as schema_lib
from jaxfp.report import metrics

SCHEMA = schema_lib.Schema(
    continuous=('a', 'b'),
    discrete=(schema_lib.DiscreteParam('norm', ('x', 'y', 'z')),),
    coarse=('pixel',), fine=('l1', 'mse'), fine_to_coarse=(0, 0))


def _table(names, continuous, discrete, coarse, fine):
  return schema_lib.GroundTruth(
      schema=SCHEMA, gm_names=tuple(names),
      continuous=np.array(continuous, np.float32),
      discrete=np.array(discrete, np.int32), coarse=np.array(coarse, np.int32),
      fine=np.array(fine, np.int32),
      continuous_range=np.array([[0, 10], [0, 1]], np.float32))


def _predictions():
  return {
      'continuous': np.array([[0.5, 0.0], [0.0, 1.0], [1.0, 0.5]]),
      'discrete': (np.array([[0.9, 0.1, 0.0], [0.1, 0.8, 0.1],
                             [0.1, 0.8, 0.1]]),),
      'coarse': np.array([[0.9], [0.2], [0.6]]),
      'fine': np.array([[0.1, 0.9], [0.3, 0.2], [0.8, 0.4]]),
  }


def test_metrics_match_hand_computation():
  gt = _table(['g0', 'g1'], [[0.5, 0.5], [1.0, np.nan]], [[0], [2]],
              [[1], [0]], [[0, 1], [1, -1]])
  rows = np.array([0, 1, 1])  # Three images: one of g0, two of g1.
  out = metrics.parsing_metrics(_predictions(), metrics.Labels.of(gt, rows),
                                SCHEMA)
  # a: |0.5-0.5|, |0-1|, |1-1| -> 1/3; b: |0-0.5| only (g1's b is missing).
  assert out['continuous_l1/a'] == pytest.approx(1 / 3)
  assert out['continuous_l1/b'] == pytest.approx(0.5)
  assert out['continuous_l1'] == pytest.approx((1 / 3 + 0.5) / 2)
  # Predicted classes 0, 1, 1 against 0, 2, 2.
  assert out['discrete_accuracy/norm'] == pytest.approx(1 / 3)
  # pixel: labels 1, 0, 0 with scores 0.9, 0.2, 0.6 -> both negatives below.
  assert out['loss_auc/pixel'] == pytest.approx(1.0)
  # l1: labels 0, 1, 1, scores 0.1, 0.3, 0.8 -> 1.0; mse: labels 1 and
  # missing twice -> one class only, so no AUC.
  assert out['loss_auc/l1'] == pytest.approx(1.0)
  assert 'loss_auc/mse' not in out
  assert out['loss_auc'] == pytest.approx(1.0)


def test_shuffled_baseline_keeps_each_column_distribution():
  rng = np.random.default_rng(0)
  gt = _table([f'g{i}' for i in range(6)], rng.uniform(size=(6, 2)),
              rng.integers(0, 3, (6, 1)), rng.integers(0, 2, (6, 1)),
              rng.integers(0, 2, (6, 2)))
  shuffled = gt.shuffled(np.random.default_rng(1))
  for field in ('continuous', 'discrete', 'coarse', 'fine'):
    a, b = getattr(gt, field), getattr(shuffled, field)
    np.testing.assert_array_equal(np.sort(a, axis=0), np.sort(b, axis=0))
  assert not np.array_equal(gt.continuous, shuffled.continuous)


def test_a_perfect_model_beats_the_random_baseline():
  rng = np.random.default_rng(0)
  num_gms = 8
  gt = _table([f'g{i}' for i in range(num_gms)],
              rng.uniform(size=(num_gms, 2)),
              np.arange(num_gms)[:, None] % 3, np.arange(num_gms)[:, None] % 2,
              np.stack([np.arange(num_gms) % 2, 1 - np.arange(num_gms) % 2], 1))
  rows = np.repeat(np.arange(num_gms), 3)
  perfect = {
      'continuous': gt.continuous[rows],
      'discrete': (np.eye(3)[gt.discrete[rows, 0]],),
      'coarse': gt.coarse[rows].astype(float),
      'fine': gt.fine[rows].astype(float),
  }
  model = metrics.parsing_metrics(perfect, metrics.Labels.of(gt, rows),
                                  SCHEMA)
  mean, std = metrics.random_baseline(perfect, gt, rows, num_shuffles=20,
                                      seed=0)
  assert model['continuous_l1'] == 0 and model['discrete_accuracy'] == 1
  assert model['loss_auc'] == 1
  for key, _ in metrics.HEADLINE:
    assert metrics.beats(key, model[key], mean[key])
    assert std[key] >= 0
  table = metrics.markdown_table(model, mean, std)
  assert '| **continuous_l1** | 0.0000 |' in table
  assert table.count('| yes |') >= 3


def test_f1_scores_match_hand_computation():
  gt = _table(['g0', 'g1'], [[0.5, 0.5], [1.0, np.nan]], [[0], [2]],
              [[1], [0]], [[0, 1], [1, -1]])
  rows = np.array([0, 1, 1])
  out = metrics.parsing_metrics(_predictions(), metrics.Labels.of(gt, rows),
                                SCHEMA)
  # norm: truth 0, 2, 2; predicted 0, 1, 1. Class 0: F1 1; class 1 (only
  # predicted): 0; class 2 (never predicted): 0 -> macro (1 + 0 + 0) / 3.
  assert out['discrete_f1/norm'] == pytest.approx(1 / 3)
  assert out['discrete_f1'] == pytest.approx(1 / 3)
  # pixel: truth 1, 0, 0; P > 0.5 at 0.9, 0.6 -> TP 1, FP 1, FN 0: 2/3.
  assert out['loss_f1/pixel'] == pytest.approx(2 / 3)
  # l1: truth 0, 1, 1; predicted 0, 0, 1 -> TP 1, FN 1: 2/3. mse: one class
  # only, so no F1 either.
  assert out['loss_f1/l1'] == pytest.approx(2 / 3)
  assert 'loss_f1/mse' not in out
  assert out['loss_f1'] == pytest.approx(2 / 3)


def test_f1_agrees_with_sklearn():
  sk_metrics = pytest.importorskip('sklearn.metrics')
  rng = np.random.default_rng(3)
  for _ in range(20):
    truth = rng.integers(0, 4, 30)
    predicted = rng.integers(0, 4, 30)
    predicted[predicted == 3] = 2  # A class only in the truth.
    assert metrics.macro_f1(truth, predicted) == pytest.approx(
        sk_metrics.f1_score(truth, predicted, average='macro',
                            zero_division=0))
    binary_truth, binary_pred = truth % 2, predicted % 2
    assert metrics.binary_f1(binary_truth, binary_pred) == pytest.approx(
        sk_metrics.f1_score(binary_truth, binary_pred))
  assert np.isnan(metrics.binary_f1([0, 0], [0, 0]))


def test_baseline_covers_f1_and_tables_show_every_hyperparameter():
  rng = np.random.default_rng(0)
  num_gms = 6
  gt = _table([f'g{i}' for i in range(num_gms)],
              rng.uniform(size=(num_gms, 2)), np.arange(num_gms)[:, None] % 3,
              np.arange(num_gms)[:, None] % 2,
              np.stack([np.arange(num_gms) % 2, np.ones(num_gms, int)], 1))
  rows = np.repeat(np.arange(num_gms), 2)
  predictions = {
      'continuous': rng.uniform(size=(len(rows), 2)),
      'discrete': (rng.dirichlet(np.ones(3), len(rows)),),
      'coarse': rng.uniform(size=(len(rows), 1)),
      'fine': rng.uniform(size=(len(rows), 2)),
  }
  model = metrics.parsing_metrics(predictions, metrics.Labels.of(gt, rows),
                                  SCHEMA)
  mean, std = metrics.random_baseline(predictions, gt, rows, num_shuffles=5,
                                      seed=0)
  for key in ('discrete_f1', 'discrete_f1/norm', 'loss_f1', 'loss_f1/pixel'):
    assert key in mean and std[key] >= 0
  # mse is used by every GM: no AUC, no F1, shown as a dash.
  assert 'loss_auc/mse' not in model and 'loss_f1/mse' not in mean
  text = metrics.grouped_tables(model, mean, std, SCHEMA)
  for name in ('| a |', '| b |', '| norm | 3 |', '| pixel | coarse |',
               '| l1 | fine (pixel) |', '| mse | fine (pixel) | – | – |'):
    assert name in text
  for prefix, better in metrics.HEADLINE:
    assert f'{prefix} ({better} is better)' in text
  assert metrics.direction('continuous_l1/a') == 'lower'
  assert metrics.direction('loss_f1') == 'higher'
