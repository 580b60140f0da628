"""The non-deep reference parser: its features, a planted trace it must
recover on unseen generators, and the command on the test preset."""

import json

from absl import flags
import numpy as np
import pytest

from configs import fen as fen_config
from jaxfp import reference as reference_command
from jaxfp.core import image_features
from jaxfp.core import schema as schema_lib
from jaxfp.report import metrics
from jaxfp.tasks import common as tasks_common
from jaxfp.tools import reference

SCHEMA = schema_lib.Schema(
    continuous=('strength',),
    discrete=(schema_lib.DiscreteParam('period', ('two', 'four', 'eight')),),
    coarse=('pixel',), fine=('l1', 'mse'), fine_to_coarse=(0, 0))


def _wave(size, cycles):
  """cos(2 pi cycles (x + 1/2) / size) along x, [size, size] in [-1, 1].

  The half-pixel phase makes the wave mirror-symmetric about both image
  edges, so the blur's 'reflect' border continues it exactly: the residual
  is then a pure wave too, with no border leaking into other frequencies.
  """
  xx = np.mgrid[:size, :size][1]
  return np.cos(2 * np.pi * cycles * (xx + 0.5) / size)


def _uint8(x):
  return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def test_a_sinusoid_residual_peaks_at_its_frequency():
  size, cycles, amplitude = 64, 20, 0.3
  image = (0.5 + amplitude * _wave(size, cycles))[None, :, :, None]
  image = np.repeat(image, 3, axis=-1).astype(np.float32)
  spectrum, residual = image_features.residual_log_spectrum(image)
  assert spectrum.shape == (1, size, size)
  assert residual.shape == image.shape
  centre = size // 2
  peaks = [(centre, centre + cycles), (centre, centre - cycles)]
  # The residual keeps the part of the wave that the blur's kernel (scipy's
  # sampled Gaussian, radius 4 sigma) does not pass: 1 - H(f). Each peak of
  # the FFT of A cos over s x s pixels has magnitude A s^2 / 2.
  taps = np.arange(-4, 5)
  kernel = np.exp(-taps ** 2 / 2)
  kernel /= kernel.sum()
  passed = np.sum(kernel * np.cos(2 * np.pi * cycles / size * taps))
  expected = np.log1p(amplitude * (1 - passed) * size * size / 2)
  for peak in peaks:
    assert spectrum[0][peak] == pytest.approx(expected, rel=1e-4)
  rest = spectrum[0].copy()
  for peak in peaks:
    rest[peak] = 0
  assert rest.max() < 1e-3  # Nothing else, the mean included.
  profile = image_features.radial_profile(spectrum)
  assert profile.shape == (1, size // 2)
  assert np.argmax(profile[0]) == cycles
  ring = image_features.rings(size) == cycles
  assert profile[0, cycles] == pytest.approx(2 * expected / ring.sum(),
                                             rel=1e-3)
  pooled = image_features.avg_pool(spectrum, image_features.POOL)
  k = size // image_features.POOL
  cell = np.unravel_index(np.argmax(pooled[0]), pooled[0].shape)
  assert cell in [(y // k, x // k) for y, x in peaks]


def test_a_flat_image_has_no_residual_and_exact_statistics():
  image = np.full((2, 32, 32, 3), 51, np.uint8)  # 51 / 255 = 0.2
  image[1] = 255
  spectrum, residual = image_features.residual_log_spectrum(image)
  np.testing.assert_allclose(residual, 0, atol=1e-6)
  np.testing.assert_allclose(spectrum, 0, atol=1e-5)
  stats = image_features.colour_statistics(image, residual)
  assert stats.shape == (2, 3 * (10 + image_features.HIST_BINS))
  np.testing.assert_allclose(stats[0, 0:3], 0.2, atol=1e-5)  # Mean.
  np.testing.assert_allclose(stats[0, 3:6], 0, atol=1e-6)  # Std.
  np.testing.assert_allclose(stats[0, 6:21], 0.2, atol=1e-5)  # Quantiles.
  np.testing.assert_array_equal(stats[:, 21:24], 0)  # No pixel at 0.
  np.testing.assert_array_equal(stats[:, 24:27], [[0] * 3, [1] * 3])  # 255.
  hist = stats[:, 27:27 + 3 * image_features.HIST_BINS].reshape(
      2, image_features.HIST_BINS, 3)
  assert hist[0, 3].tolist() == [1, 1, 1]  # 0.2 is in bin [0.1875, 0.25).
  assert hist[1, -1].tolist() == [1, 1, 1]
  np.testing.assert_allclose(hist.sum(axis=1), 1)


def test_features_shape_and_finite():
  images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3),
                                              dtype=np.uint8)
  f = image_features.features(images, chunk=2)  # Chunks join in order.
  assert f.shape == (5, image_features.num_features(32))
  assert np.isfinite(f).all()
  # 16x16 pooled spectrum + 16 rings + 3 x (10 + 16) colour statistics.
  assert f.shape[1] == 16 * 16 + 16 + 3 * (10 + image_features.HIST_BINS)
  np.testing.assert_allclose(f, image_features.features(images), rtol=1e-6)
  with pytest.raises(ValueError, match='not divisible'):
    image_features.features(images[:, :24, :24])
  with pytest.raises(ValueError, match=r'\[N, s, s, 3\]'):
    image_features.features(images[..., 0])


def _planted(rng, num_gms, per_gm, size=32):
  """Noisy flat images; each GM adds a faint periodic pattern.

  The pattern's period (2, 4 or 8 pixels) is the discrete label, its
  amplitude the continuous one; the loss labels are random (no trace).
  """
  period = rng.integers(0, 3, num_gms)
  strength = rng.uniform(0, 1, num_gms)
  yy, xx = np.mgrid[:size, :size]
  images, rows = [], []
  for g in range(num_gms):
    base = rng.uniform(0.3, 0.7, (per_gm, 1, 1, 3))
    base = base + rng.normal(0, 0.02, (per_gm, size, size, 3))
    wave = np.cos(2 * np.pi * (xx + yy) / 2 ** (1 + period[g]))
    base = base + (0.01 + 0.05 * strength[g]) * wave[None, :, :, None]
    images.append(_uint8(base))
    rows += [g] * per_gm
  gt = schema_lib.GroundTruth(
      schema=SCHEMA, gm_names=tuple(f'g{i}' for i in range(num_gms)),
      continuous=strength[:, None].astype(np.float32),
      discrete=period[:, None].astype(np.int32),
      coarse=rng.integers(0, 2, (num_gms, 1)).astype(np.int32),
      fine=rng.integers(0, 2, (num_gms, 2)).astype(np.int32),
      continuous_range=np.array([[0, 1]], np.float32))
  return np.concatenate(images), np.array(rows), gt


def _z(key, result):
  """How many baseline standard deviations better than its mean."""
  m, b, s = (result['metrics'][key], result['baseline_mean'][key],
             result['baseline_std'][key])
  return (b - m if metrics.direction(key) == 'lower' else m - b) / s


def test_the_reference_recovers_a_planted_trace_on_unseen_gms():
  rng = np.random.default_rng(0)
  images, rows, gt = _planted(rng, num_gms=30, per_gm=8)
  train = rows < 20
  feats = image_features.features(images)
  model = reference.fit(feats[train], metrics.Labels.of(gt, rows[train]),
                        SCHEMA)
  preds = model.predict(feats[~train])
  assert preds['continuous'].shape == (int((~train).sum()), 1)
  assert preds['coarse'].shape == preds['fine'][:, :1].shape
  result = reference.score(preds, gt, rows[~train], num_shuffles=30, seed=0)
  assert result['num_gms'] == 10
  assert result['metrics']['discrete_accuracy/period'] > 0.9
  assert _z('discrete_f1/period', result) >= 2
  assert _z('continuous_l1/strength', result) >= 2
  # The loss labels were drawn at random: nothing to recover there.
  assert abs(_z('loss_auc/pixel', result)) < 3


def test_by_generator_pools_each_gms_images_in_order():
  feats = np.array([[1.], [3.], [10.], [5.], [20.]])
  rows = np.array([7, 7, 2, 7, 2])
  pooled, gm_rows, index = reference.by_generator(feats, rows)
  assert gm_rows.tolist() == [7, 2] and index.tolist() == [0, 0, 1, 0, 1]
  np.testing.assert_allclose(pooled, [[3, np.std([1, 3, 5])], [15, 5]])


def test_the_per_generator_kernel_probe_parses_a_planted_strength():
  """One example per GM (mean and std of its images' features), an RBF
  kernel ridge: on unseen GMs the planted strength is parsed (random GT at
  z >= 2 and below the training median's L1)."""
  rng = np.random.default_rng(0)
  images, rows, gt = _planted(rng, num_gms=100, per_gm=4)
  train = rows < 60
  pooled, gm_rows, _ = reference.by_generator(
      image_features.features(images[train]), rows[train])
  model = reference.fit(pooled, metrics.Labels.of(gt, gm_rows), SCHEMA,
                        pca_dim=16, kernel=True)
  test_pooled, _, index = reference.by_generator(
      image_features.features(images[~train]), rows[~train])
  each = reference.each_image(model.predict(test_pooled), index)
  result = reference.score(each, gt, rows[~train], num_shuffles=30, seed=0,
                           train_truth=gt.select(gt.gm_names[:60]))
  assert _z('continuous_l1/strength', result) >= 2
  assert 'strength' in result['parsed']['names']


def test_predict_has_every_class_even_if_training_lacks_one():
  rng = np.random.default_rng(1)
  images, rows, gt = _planted(rng, num_gms=6, per_gm=4)
  gt = schema_lib.GroundTruth(
      schema=SCHEMA, gm_names=gt.gm_names, continuous=gt.continuous,
      discrete=np.array([[0], [1], [0], [1], [0], [1]], np.int32),
      coarse=np.ones((6, 1), np.int32), fine=gt.fine,
      continuous_range=gt.continuous_range)
  feats = image_features.features(images)
  preds = reference.fit(feats, metrics.Labels.of(gt, rows), SCHEMA,
                        pca_dim=8).predict(feats)
  assert preds['discrete'][0].shape == (len(rows), 3)
  np.testing.assert_allclose(preds['discrete'][0].sum(axis=1), 1.0)
  np.testing.assert_array_equal(preds['discrete'][0][:, 2], 0.0)
  np.testing.assert_array_equal(preds['coarse'], 1.0)  # Constant in training.
  assert preds['continuous'].min() >= 0 and preds['continuous'].max() <= 1


def test_comparison_counts_hand_made_results():
  # x: parser z = -5, reference z = +5; p: parser +2 (counts), reference +1;
  # q: undefined for the parser; the aggregate is not a hyperparameter.
  parser = {'test_gms': ['a', 'b'],
            'metrics': {'continuous_l1': 0.3, 'continuous_l1/x': 0.3,
                        'loss_auc/p': 0.7, 'loss_auc/q': None},
            'baseline_mean': {'continuous_l1': 0.25, 'continuous_l1/x': 0.25,
                              'loss_auc/p': 0.5, 'loss_auc/q': None},
            'baseline_std': {'continuous_l1': 0.01, 'continuous_l1/x': 0.01,
                             'loss_auc/p': 0.1, 'loss_auc/q': None}}
  ref = {'metrics': {'continuous_l1': 0.2, 'continuous_l1/x': 0.2,
                     'loss_auc/p': 0.6, 'loss_auc/q': 0.9},
         'baseline_mean': {'continuous_l1': 0.25, 'continuous_l1/x': 0.25,
                           'loss_auc/p': 0.5, 'loss_auc/q': 0.5},
         'baseline_std': {'continuous_l1': 0.01, 'continuous_l1/x': 0.01,
                          'loss_auc/p': 0.1, 'loss_auc/q': 0.1}}
  text = reference.comparison(parser, ref)
  assert ('Parsed (z >= 2 and better than its own train prior): – for the '
          'parser, – for the reference.') in text
  assert ('Of the 2 hyperparameters defined for both, 1 are at z >= 2 for '
          'the parser, 1 for the reference; the parser is better than the '
          'reference on 1, the reference on 1.') in text
  lines = text.splitlines()
  assert ('| x | continuous_l1 | 0.300 | -5.0 | **0.200** | +5.0 | reference '
          '| – |') in lines
  assert '| p | loss_auc | **0.700** | +2.0 | 0.600 | +1.0 | parser | – |' \
      in lines
  assert '| q | loss_auc | – | – | – | – | – | – |' in lines
  # With the parsed counts of both (results.json's 'parsed'): first.
  def parsed(names):
    return {'parsed': len(names), 'defined': 2, 'hyperparameters': {
        n: {'parsed': n in names} for n in ('x', 'p', 'q')}}
  text = reference.comparison({**parser, 'parsed': parsed({'p'})},
                              {**ref, 'parsed': parsed({'x', 'p'})})
  assert ('prior): 1 of 2 for the parser, 2 of 2 for the reference.'
          in text)
  lines = text.splitlines()
  assert lines[-3].endswith('| reference | reference |')
  assert lines[-2].endswith('| parser | both |')
  assert not any(line.startswith('| continuous_l1 |') for line in lines)
  assert 'NaN' not in text and 'nan' not in text


def _run_command(args):
  if 'pca_dim' not in flags.FLAGS:
    reference_command.define_flags()
  argv = ['reference'] + args
  flags.FLAGS(argv)
  try:
    return reference_command.main(argv[:1])
  finally:
    flags.FLAGS.unparse_flags()


def test_the_command_writes_the_trainers_results_on_the_test_preset(
    zoo_cache, tmp_path, capsys, monkeypatch):
  # Through the environment: --config.<field> overrides need the program's
  # own flag parsing, which a test calling main does not run.
  cache = str(zoo_cache)
  monkeypatch.setenv('JAXFP_CACHE', cache)
  config = fen_config.get_config('test')
  workdir = tmp_path / 'ref'
  status = _run_command(['--config=configs/fen.py:test',
                         f'--workdir={workdir}', '--pca_dim=8'])
  assert status == 0
  results = json.loads((workdir / 'results.json').read_text())
  info = tasks_common.gm_folder_data().load_info(config.data)
  assert results['test_gms'] == list(info.test_gms)
  assert results['train_gms'] == list(info.train_gms)
  assert results['num_images'] == info.num_test_images
  assert results['num_train_images'] == info.num_train_images
  assert results['num_baseline_shuffles'] == config.num_baseline_shuffles
  keys = {f'discrete_f1/{p.name}' for p in info.ground_truth.schema.discrete}
  assert keys <= set(results['metrics']) <= set(results['baseline_mean'])
  assert results['reference']['pca_dim'] == 8
  text = (workdir / 'results.md').read_text()
  assert 'non-deep reference' in text and 'z >= 2' in text
  assert '### closed set: every metric' in text
  assert set(results['significance']) >= {'significant', 'defined'}
  assert results['closed_set']['num_images'] == info.num_closed_images
  assert 'NaN' not in (workdir / 'results.json').read_text()
  out = capsys.readouterr().out
  assert 'deciding metric' in out and 'every metric' not in out

  # Side by side with a run of the same split (the reference's own results
  # stand in for a parser's: same form), then one of another split.
  status = _run_command(['--config=configs/fen.py:test',
                         f'--workdir={tmp_path / "side"}', '--pca_dim=8',
                         f'--compare={workdir}'])
  assert status == 0
  side = (tmp_path / 'side' / 'comparison.md').read_text()
  assert f'on the same {len(info.test_gms)} held-out GMs' in side
  other = dict(results, test_gms=['gm_999'])
  (tmp_path / 'other.json').write_text(json.dumps(other))
  status = _run_command(['--config=configs/fen.py:test',
                         f'--workdir={tmp_path / "side"}',
                         f'--compare={tmp_path / "other.json"}'])
  assert status == 2
  err = capsys.readouterr().err
  assert err.startswith('error: --compare: ') and 'same GMs' in err


def test_a_classifier_config_is_a_user_error(tmp_path):
  config = fen_config.get_config('test')
  config.task = 'detection'
  with pytest.raises(ValueError, match="config.task is 'detection'"):
    reference.run(config, str(tmp_path))
