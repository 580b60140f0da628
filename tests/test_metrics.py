"""Held-out parsing metrics against hand-computed values."""

import json
import re

import numpy as np
import pytest

from jaxfp.core import files
from jaxfp.core import schema as schema_lib
from jaxfp.report import metrics
from jaxfp.report import results

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
  z = metrics.z_scores(model, mean, std)
  for key, _ in metrics.HEADLINE:
    assert z[key] > 0 and std[key] >= 0


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
  scored = metrics.score_split(predictions, rows, gt, prior=None,
                               num_shuffles=5, seed=0)
  text = results.report([('held out', scored, '')], SCHEMA, 5)
  for name in ('| a |', '| b |', '| norm | 3 |', '| pixel | coarse |',
               '| l1 | fine (pixel) |',
               '| mse | fine (pixel) | – | – | – | – | – | – | – | – |'):
    assert name in text
  for prefix, better in metrics.HEADLINE:
    assert f'{prefix} ({better} is better)' in text
  assert metrics.direction('continuous_l1/a') == 'lower'
  assert metrics.direction('loss_f1') == 'higher'


def test_z_scores_against_hand_computation():
  model = {'continuous_l1/a': 0.2, 'discrete_f1/norm': 0.8,
           'loss_auc/pixel': 0.5, 'loss_auc/l1': 0.9, 'loss_f1/l1': 0.4}
  mean = {'continuous_l1/a': 0.3, 'discrete_f1/norm': 0.5,
          'loss_auc/pixel': 0.5, 'loss_auc/l1': 0.6, 'loss_f1/l1': 0.5}
  std = {'continuous_l1/a': 0.05, 'discrete_f1/norm': 0.1,
         'loss_auc/pixel': 0.0, 'loss_auc/l1': 0.2, 'loss_f1/l1': 0.05}
  z = metrics.z_scores(model, mean, std)
  # L1 is lower-is-better: 0.1 below the mean is +2 stds.
  assert z['continuous_l1/a'] == pytest.approx(2.0)
  assert z['discrete_f1/norm'] == pytest.approx(3.0)
  assert np.isnan(z['loss_auc/pixel'])  # Shuffles never moved it.
  assert z['loss_auc/l1'] == pytest.approx(1.5)
  assert z['loss_f1/l1'] == pytest.approx(-2.0)
  assert np.isnan(metrics.z_score('loss_auc/l1', np.nan, 0.5, 0.1))


def test_significance_counts_only_defined_deciding_metrics():
  # Six hyperparameters: a, b (continuous), norm (discrete), pixel, l1, mse
  # (loss types), each decided by L1, macro F1 or AUC.
  model = {'continuous_l1/a': 0.1, 'continuous_l1/b': 0.4,
           'discrete_f1/norm': 0.9, 'discrete_accuracy/norm': 0.9,
           'loss_auc/pixel': 0.7, 'loss_auc/l1': 0.99}
  z = {'continuous_l1/a': 2.0, 'continuous_l1/b': 1.9,
       'discrete_f1/norm': 5.0, 'discrete_accuracy/norm': -1.0,
       'loss_auc/pixel': np.nan, 'loss_auc/l1': 2.5}
  out = metrics.significance(model, z, SCHEMA)
  # mse has no AUC (absent) and pixel's z is NaN: 4 defined of 6.
  assert (out['significant'], out['defined'], out['total']) == (3, 4, 6)
  assert out['significant_keys'] == ['continuous_l1/a', 'discrete_f1/norm',
                                     'loss_auc/l1']
  assert out['by_kind']['continuous'] == {
      'significant': 1, 'defined': 2, 'total': 2}
  assert out['by_kind']['loss'] == {
      'significant': 1, 'defined': 1, 'total': 3}


def test_paired_bootstrap_finds_a_planted_difference():
  rng = np.random.default_rng(0)
  shifted = metrics.paired_bootstrap(-0.1 + rng.normal(0, 0.02, 60))
  low, high = shifted['interval']
  assert low < -0.1 < high < 0 and shifted['num_gms'] == 60
  assert shifted['difference'] == pytest.approx(-0.1, abs=0.01)
  # No difference: the interval straddles 0. Same input, same interval.
  none = rng.normal(0, 0.05, 60)
  low, high = metrics.paired_bootstrap(none)['interval']
  assert low < 0 < high
  assert metrics.paired_bootstrap(none) == metrics.paired_bootstrap(none)
  # Each GM counts once: g0's three images are one mean, g1's one image.
  np.testing.assert_allclose(
      metrics.per_gm_means(np.array([1.0, 2.0, 3.0, 10.0]),
                           np.array([4, 4, 4, 7])), [2.0, 10.0])
  # Images of the model closer to the truth than the prior, on every GM.
  test = metrics.l1_against_prior(np.array([0.45, 0.1, 0.9, 0.3]),
                                  np.full(4, 0.5),
                                  np.array([0.4, 0.0, 1.0, np.nan]),
                                  np.array([0, 1, 2, 3]))
  assert test['beats_prior'] and test['num_gms'] == 3


def _skewed_zoo(rng, names, num_gms):
  """GMs whose column a is 0 (80%) or 1 (20%), jittered: a mean of 0.2 far
  from the median near 0, the training prior's L1-optimal constant."""
  a = (rng.uniform(size=num_gms) < 0.2) + rng.uniform(0, 0.02, num_gms)
  return _table([f'{names}{i}' for i in range(num_gms)],
                np.stack([a, rng.uniform(size=num_gms)], 1),
                rng.integers(0, 3, (num_gms, 1)),
                rng.integers(0, 2, (num_gms, 1)),
                rng.integers(0, 2, (num_gms, 2)))


def _parsed_of(column_a, held, rows, train):
  rng = np.random.default_rng(1)
  predictions = {'continuous': np.stack(
                     [column_a, rng.uniform(size=len(rows))], 1),
                 'discrete': (rng.dirichlet(np.ones(3), len(rows)),),
                 'coarse': rng.uniform(size=(len(rows), 1)),
                 'fine': rng.uniform(size=(len(rows), 2))}
  prior = metrics.prior_predictions(metrics.train_prior(train), len(rows))
  return metrics.parsed_hyperparameters(predictions, rows, held, prior,
                                        num_shuffles=20, seed=0)


def test_a_predictor_of_the_training_mean_beats_chance_but_is_not_parsed():
  rng = np.random.default_rng(0)
  train, held = _skewed_zoo(rng, 't', 300), _skewed_zoo(rng, 'h', 100)
  rows = np.repeat(np.arange(100), 2)
  truth = held.continuous[rows, 0]
  assert metrics.train_prior(train)['continuous'][0] < 0.05  # The median.
  # The training mean, moved a tenth of the way towards each GM's truth:
  # informative enough for z >= 2, yet worse on L1 than the median.
  mean = float(np.mean(train.continuous[:, 0]))
  near_mean = _parsed_of(mean + 0.1 * (truth - mean), held, rows, train)
  a = near_mean['hyperparameters']['a']
  assert a['z'] >= 2 and a['beats_random_gt']
  assert a['beats_prior'] is False and a['parsed'] is False
  assert a['prior_test']['interval'][0] > 0  # Worse than the prior.
  assert 'a' not in near_mean['names']
  # An informative predictor: the truth, with noise.
  informative = _parsed_of(truth + rng.normal(0, 0.05, len(rows)), held,
                           rows, train)
  a = informative['hyperparameters']['a']
  assert a['parsed'] and a['prior_test']['interval'][1] < 0
  assert 'a' in informative['names']
  assert informative['by_kind']['continuous']['parsed'] >= 1
  assert informative['parsed'] == len(informative['names'])


def test_parsed_needs_both_chance_and_the_prior_beaten():
  model = {'continuous_l1/a': 0.1, 'continuous_l1/b': 0.4,
           'discrete_f1/norm': 0.4, 'loss_auc/pixel': 0.7,
           'loss_auc/l1': 0.5}
  z = {'continuous_l1/a': 1.0, 'continuous_l1/b': 2.5,
       'discrete_f1/norm': 3.0, 'loss_auc/pixel': 2.0, 'loss_auc/l1': 2.0}
  # The discrete column only equals the prior's macro F1: not parsed.
  prior_metrics = {'continuous_l1/a': 0.3, 'continuous_l1/b': 0.5,
                   'discrete_f1/norm': 0.4, 'loss_auc/pixel': 0.5,
                   'loss_auc/l1': 0.5}
  rows = np.repeat(np.arange(4), 2)
  truth = np.tile([[0.0, 0.0], [1.0, 1.0]], (4, 1))
  predictions = {'continuous': truth.copy()}  # b: exact, so beats 0.5.
  prior = {'continuous': np.full((8, 2), 0.5)}
  labels = metrics.Labels(truth, None, None, None)
  out = metrics.parsed_count(model, z, prior_metrics, predictions, prior,
                             labels, rows, SCHEMA)
  per = out['hyperparameters']
  assert per['a']['beats_prior'] and not per['a']['parsed']  # z 1.
  assert per['b']['parsed']
  assert per['norm']['beats_random_gt'] and not per['norm']['beats_prior']
  assert not per['norm']['parsed']
  assert per['pixel']['parsed'] and not per['l1']['parsed']  # AUC 0.5.
  assert not per['mse']['defined'] and not per['mse']['parsed']
  assert out['names'] == ['b', 'pixel']
  assert (out['parsed'], out['beats_random_gt'], out['defined'],
          out['total']) == (2, 4, 5, 6)
  assert out['by_kind']['discrete'] == {
      'parsed': 0, 'beats_random_gt': 1, 'beats_prior': 0, 'defined': 1,
      'total': 1}


def _train_truth():
  """Three training GMs."""
  return _table(['t0', 't1', 't2'], [[0.0, 0.2], [0.6, np.nan], [0.3, 0.8]],
                [[2], [2], [0]], [[1], [0], [1]], [[0, 1], [1, -1], [1, 1]])


def test_train_prior_against_hand_computation():
  prior = metrics.train_prior(_train_truth())
  np.testing.assert_allclose(prior['continuous'], [0.3, 0.5])
  # The median, not the mean: 0, 0.1, 0.8 -> 0.1 (mean 0.3).
  skewed = _table(['t0', 't1', 't2'], [[0.0, 0.0], [0.1, 0.0], [0.8, 0.0]],
                  [[0]] * 3, [[1]] * 3, [[1, 1]] * 3)
  np.testing.assert_allclose(metrics.train_prior(skewed)['continuous'],
                             [0.1, 0.0])
  assert prior['discrete'].tolist() == [2]
  np.testing.assert_allclose(prior['coarse'], [2 / 3])
  np.testing.assert_allclose(prior['fine'], [2 / 3, 1.0])
  # Held out: h0 (a 0.5, b 0.1, class 2, pixel 1, l1 0, mse 1) x 2 images,
  # h1 (a 0.0, b 1.0, class 1, pixel 0, l1 1, mse 0) x 1 image.
  held = _table(['h0', 'h1'], [[0.5, 0.1], [0.0, 1.0]], [[2], [1]],
                [[1], [0]], [[0, 1], [1, 0]])
  rows = np.array([0, 0, 1])
  constant = metrics.prior_predictions(prior, len(rows))
  scored = metrics.score_split(_predictions(), rows, held, prior=constant,
                               num_shuffles=4, seed=0)
  p = scored['train_prior']
  # a: |0.3-0.5| x2, |0.3-0| -> 0.7/3; b: |0.5-0.1| x2, |0.5-1| -> 1.3/3.
  assert p['continuous_l1/a'] == pytest.approx(0.7 / 3)
  assert p['continuous_l1/b'] == pytest.approx(1.3 / 3)
  # Always class 2, against 2, 2, 1: accuracy 2/3; macro F1 over classes
  # 1 (F1 0) and 2 (precision 2/3, recall 1: F1 0.8) -> 0.4.
  assert p['discrete_accuracy/norm'] == pytest.approx(2 / 3)
  assert p['discrete_f1/norm'] == pytest.approx(0.4)
  # A constant score ranks nothing: AUC 0.5. P(used) 2/3 > 0.5 predicts
  # "used" for every image: pixel (truth 1, 1, 0) F1 = 2*2 / (2*2 + 1).
  assert p['loss_auc/pixel'] == pytest.approx(0.5)
  assert p['loss_auc/l1'] == pytest.approx(0.5)
  assert p['loss_f1/pixel'] == pytest.approx(0.8)
  assert p['continuous_l1'] == pytest.approx((0.7 + 1.3) / 6)
  # The parsed count comes first in the summary, the random-GT count beside.
  text = results.report([('held out', scored, '')], SCHEMA, 4)
  counts = next(line for line in text.splitlines()
                if line.startswith('| hyperparameters parsed'))
  assert re.search(r'\| parsed: \*\*\d+ of \d+\*\* \(6\); z >= 2: \d+ \|$',
                   counts), counts
  assert '| parsed |' in text  # The deciding table's column.
  written = json.loads(files.dumps(results.json_split(scored)))
  assert set(written['parsed']['hyperparameters']) == {
      'a', 'b', 'norm', 'pixel', 'l1', 'mse'}
  values = metrics.prior_values(prior, SCHEMA)
  assert values['continuous_median'] == {'a': pytest.approx(0.3),
                                         'b': pytest.approx(0.5)}
  assert values['discrete_majority'] == {'norm': 'z'}
  assert values['loss_prevalence']['mse'] == pytest.approx(1.0)


def test_train_prior_ties_missing_labels_and_other_units():
  # Classes 0 and 1 tie: the lower index wins. Column b has no label at
  # all: no prior, so its metric is dropped rather than scored.
  truth = _table(['t0', 't1'], [[0.2, np.nan], [0.4, np.nan]], [[1], [0]],
                 [[-1], [-1]], [[1, 0], [1, 0]])
  prior = metrics.train_prior(truth)
  assert prior['discrete'].tolist() == [0]
  assert np.isnan(prior['continuous'][1]) and np.isnan(prior['coarse'][0])
  held = _table(['h0', 'h1'], [[0.5, 0.1], [0.0, 1.0]], [[2], [1]],
                [[1], [0]], [[0, 1], [1, 0]])
  rows = np.array([0, 1])
  scored = metrics.score_split(
      {k: (v[:2] if k != 'discrete' else (v[0][:2],))
       for k, v in _predictions().items()}, rows, held,
      prior=metrics.prior_predictions(prior, 2), num_shuffles=2, seed=0)
  assert 'continuous_l1/b' not in scored['train_prior']
  assert 'loss_auc/pixel' not in scored['train_prior']
  # a: mean 0.3 against 0.5 and 0.0.
  assert scored['train_prior']['continuous_l1/a'] == pytest.approx(0.25)
  # The training table spans raw 0..10, the other 0..5 (column a): the
  # mean 0.3 (raw 3) is 0.6 there. Column b's ranges agree: unchanged.
  ranges = np.array([[0, 5], [0, 1]], np.float32)
  np.testing.assert_allclose(
      metrics.renormalize(np.array([[0.3, 0.7]]), truth.continuous_range,
                          ranges), [[0.6, 0.7]])
  moved = metrics.train_prior(_train_truth(), ranges)
  np.testing.assert_allclose(moved['continuous'], [0.6, 0.5])


def test_tables_bold_only_at_z_two_and_say_so():
  gt = _table(['g0', 'g1'], [[0.5, 0.5], [1.0, 0.0]], [[0], [2]],
              [[1], [0]], [[0, 1], [1, 0]])
  scored = metrics.score_split(_predictions(), np.array([0, 1, 1]), gt,
                               prior=None, num_shuffles=3, seed=0)
  # Hand-set figures: a at z = +2 (bold), b above the mean but at z = +1.
  scored['metrics'].update({'continuous_l1/a': 0.2, 'continuous_l1/b': 0.25})
  scored['baseline_mean'].update({'continuous_l1/a': 0.3,
                                  'continuous_l1/b': 0.3})
  scored['baseline_std'].update({'continuous_l1/a': 0.05,
                                 'continuous_l1/b': 0.05})
  scored['z'] = metrics.z_scores(scored['metrics'], scored['baseline_mean'],
                                 scored['baseline_std'])
  assert results.cells(scored, 'continuous_l1/a') == [
      '**0.200**', '0.300 ± 0.050', '+2.0', '–']
  assert results.cells(scored, 'continuous_l1/b') == [
      '0.250', '0.300 ± 0.050', '+1.0', '–']
  text = results.report([('held out', scored, ''),
                         ('closed set', None, 'none: no training GM')],
                        SCHEMA, 3)
  assert 'Bold: beats the random-GT baseline at z >= 2' in text
  assert '- closed set: none: no training GM' in text
  assert 'parsed: – (no train prior); z >= 2: ' in text
  assert '| a | continuous_l1 | **0.200** | 0.300 ± 0.050 | +2.0 | – |' in text
  # The console's version: the same summary, without every metric's table.
  assert '### held out: every metric' in text
  short = results.report([('held out', scored, '')], SCHEMA, 3, full=False)
  assert 'every metric' not in short
  assert '| a | continuous_l1 | **0.200** |' in short


def test_predictions_file_round_trip_and_pooling(tmp_path):
  rng = np.random.default_rng(0)
  gt = _table([f'g{i}' for i in range(4)], rng.uniform(size=(4, 2)),
              [[0], [1], [2], [0]], [[1], [0], [1], [0]],
              [[0, 1], [1, 0], [1, 1], [0, 0]])
  parts = []
  for fold, rows in enumerate((np.array([0, 0, 2]), np.array([1, 3, 3]))):
    preds = {'continuous': rng.uniform(size=(3, 2)),
             'discrete': (rng.dirichlet(np.ones(3), 3),),
             'coarse': rng.uniform(size=(3, 1)),
             'fine': rng.uniform(size=(3, 2))}
    prior = metrics.prior_predictions(
        metrics.train_prior(gt.select([n for i, n in enumerate(gt.gm_names)
                                       if i not in rows])), 3)
    path = str(tmp_path / f'fold_{fold}.npz')
    results.write_predictions(path, preds, rows, gt, prior, step=7)
    part = results.read_predictions(path)
    assert part['step'] == 7
    assert part['gm'].tolist() == [gt.gm_names[r] for r in rows]
    np.testing.assert_allclose(part['predictions']['continuous'],
                               preds['continuous'], rtol=1e-6)
    parts.append(part)
  predictions, rows, truth, prior = results.pool(parts)
  assert truth.gm_names == ('g0', 'g2', 'g1', 'g3')
  assert [truth.gm_names[r] for r in rows] == ['g0', 'g0', 'g2', 'g1', 'g3',
                                               'g3']
  np.testing.assert_array_equal(truth.discrete[rows],
                                gt.discrete[[0, 0, 2, 1, 3, 3]])
  assert predictions['continuous'].shape == (6, 2)
  assert prior['discrete'][0].shape == (6, 3)
  with pytest.raises(ValueError, match="GM 'g0' is held out by runs 0 and 1"):
    results.pool([parts[0], parts[0]])


def test_a_spread_of_float_rounding_is_no_spread():
  # Shuffles that leave an L1 alone can differ in the last bits of a sum.
  assert np.isnan(metrics.z_score('continuous_l1/a', 0.248, 0.3, 1.4e-8))
  # Nearly constant predictions: a shuffle spread in the fifth decimal.
  assert np.isnan(metrics.z_score('continuous_l1/a', 0.11291, 0.11300, 3.6e-5))
  assert metrics.z_score('continuous_l1/a', 0.29, 0.3, 1e-3) == (
      pytest.approx(10.0))
