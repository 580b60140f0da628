"""The per-image answer: calibration maths, planted real / generated /
unknown images, and the abstention contract of predict's --output."""

import json

from absl import flags
import numpy as np
import pytest
from scipy import ndimage

from jaxfp import predict as predict_command
from jaxfp.core import schema as schema_lib
from jaxfp.inference import answer as answer_lib
from jaxfp.inference import calibration
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.report import metrics as metrics_lib

from test_predict import SIZE, _meta, _write_checkpoint, variables  # pylint: disable=unused-import


def _softmax(z):
  e = np.exp(z - z.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def test_a_known_temperature_is_recovered():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 2, (20000, 4))
  labels = np.array([rng.choice(4, p=p) for p in _softmax(logits)])
  # A model three times too confident: its logits are the truth's x 3.
  overconfident = _softmax(3.0 * logits)
  assert calibration.fit_temperature(overconfident, labels) == (
      pytest.approx(3.0, rel=0.08))
  z = rng.normal(0, 2, 20000)
  used = (rng.random(20000) < 1 / (1 + np.exp(-z))).astype(int)
  underconfident = 1 / (1 + np.exp(-0.5 * z))
  assert calibration.fit_temperature(underconfident, used) == (
      pytest.approx(0.5, rel=0.08))
  # Missing labels are left out; one class only teaches nothing.
  assert calibration.fit_temperature(overconfident[:5],
                                     np.full(5, -1)) == 1.0
  assert calibration.fit_temperature(underconfident[:5], np.ones(5)) == 1.0


def test_temperatures_lower_the_calibration_error_and_keep_the_ranking():
  rng = np.random.default_rng(1)
  logits = rng.normal(0, 1.5, (5000, 3))
  labels = np.array([rng.choice(3, p=p) for p in _softmax(logits)])
  p = _softmax(4.0 * logits)
  t = calibration.fit_temperature(p, labels)
  scaled = calibration.scale_classes(p, t)
  before, _ = calibration.expected_calibration_error(
      p.max(1), p.argmax(1) == labels)
  after, _ = calibration.expected_calibration_error(
      scaled.max(1), scaled.argmax(1) == labels)
  assert before > 0.15 and after < 0.03
  np.testing.assert_array_equal(scaled.argmax(1), p.argmax(1))


def test_expected_calibration_error_by_hand():
  ece, bins = calibration.expected_calibration_error(
      np.full(10, 0.8), np.arange(10) < 8)
  assert ece == pytest.approx(0.0)
  assert sum(bins['count']) == 10
  ece, _ = calibration.expected_calibration_error(
      np.array([1.0, 1.0, 0.55, 0.55]), np.array([1, 0, 1, 1]))
  assert ece == pytest.approx(0.5 * 0.5 + 0.5 * 0.45)


def test_conformal_half_width_is_the_rank_of_split_conformal():
  truth = np.zeros(9)
  predicted = np.arange(1, 10) / 10.0  # Residuals 0.1 .. 0.9.
  # ceil((9 + 1) x 0.9) = 9: the largest residual.
  assert calibration.conformal_half_width(predicted, truth, 0.9) == (
      pytest.approx(0.9))
  assert calibration.conformal_half_width(predicted, truth, 0.5) == (
      pytest.approx(0.5))
  assert np.isnan(calibration.conformal_half_width(predicted[:3], truth[:3],
                                                   0.9))
  rng = np.random.default_rng(2)
  q = calibration.conformal_half_width(rng.normal(size=2000),
                                       np.zeros(2000), 0.9)
  fresh = np.abs(rng.normal(size=20000))
  assert np.mean(fresh <= q) == pytest.approx(0.9, abs=0.02)


# ----------------------------------------------- planted images -------------

SCHEMA = schema_lib.Schema(
    continuous=('depth',),
    discrete=(schema_lib.DiscreteParam('norm', ('none', 'batch', 'layer')),),
    coarse=('pixel', 'adversarial'), fine=('l1',), fine_to_coarse=(0,))


def _photographs(rng, n):
  """Smooth random fields: the low-frequency content of photographs."""
  noise = rng.random((n, SIZE, SIZE, 3))
  smooth = ndimage.gaussian_filter(noise, sigma=(0, 3, 3, 0))
  low = smooth.min(axis=(1, 2, 3), keepdims=True)
  high = smooth.max(axis=(1, 2, 3), keepdims=True)
  smooth = (smooth - low) / (high - low)
  return np.uint8(np.clip(smooth * 255, 0, 255))


def _generated(rng, n, period=2, amplitude=48.0):
  """Photographs plus a periodic pattern: an upsampling layer's trace."""
  base = _photographs(rng, n).astype(np.float64)
  yy, xx = np.mgrid[:SIZE, :SIZE]
  grid = ((yy % period == 0) & (xx % period == 0)) * amplitude
  return np.uint8(np.clip(base + grid[None, :, :, None], 0, 255))


def _unknown(rng, n):
  """Generated, but of a kind no training generator made: a coarse,
  saturated pattern."""
  return _generated(rng, n, period=8, amplitude=200.0)


def _answerer(rng):
  n = 120
  labels = metrics_lib.Labels(
      continuous=rng.random((n, 1)), discrete=rng.integers(0, 3, (n, 1)),
      coarse=rng.integers(0, 2, (n, 2)), fine=rng.integers(0, 2, (n, 1)))
  predictions = {
      'continuous': np.clip(labels.continuous + rng.normal(0, 0.1, (n, 1)),
                            0, 1),
      'discrete': [_softmax(5 * np.eye(3)[labels.discrete[:, 0]] +
                            rng.normal(0, 2, (n, 3)))],
      'coarse': rng.random((n, 2)), 'fine': rng.random((n, 1))}
  return answer_lib.fit(
      schema=SCHEMA, generated_train=_generated(rng, 800),
      real_train=_photographs(rng, 800),
      held_out_images=_generated(rng, 100), held_out_predictions=predictions,
      held_out_truth=labels, identifiable=['depth', 'norm', 'pixel'],
      image_size=SIZE)


@pytest.fixture(scope='module')
def planted():
  return _answerer(np.random.default_rng(3))


def test_planted_real_generated_and_unknown_images(planted):
  rng = np.random.default_rng(4)
  real, generated, unknown = (_photographs(rng, 40), _generated(rng, 40),
                              _unknown(rng, 40))
  p = {name: answer_lib.p_generated(planted,
                                   answer_lib.detector_features(x))
       for name, x in (('real', real), ('generated', generated),
                       ('unknown', unknown))}
  inside = {name: answer_lib.ood_p_value(planted, answer_lib.features(x))
            for name, x in (('generated', generated), ('unknown', unknown))}
  assert np.mean(p['real'] < 0.5) >= 0.95
  assert np.mean(p['generated'] >= 0.5) >= 0.95
  assert np.mean(inside['generated'] >= planted.ood_alpha) >= 0.8
  assert np.mean(inside['unknown'] < planted.ood_alpha) >= 0.95
  reasons = [answer_lib.decide(planted, a, b)
             for a, b in zip(p['unknown'], inside['unknown'])]
  assert sum(r is not None and r.startswith('outside') for r in reasons) >= 30
  assert answer_lib.decide(planted, 0.1, 1.0).startswith('looks real')
  assert answer_lib.decide(planted, 0.9, 0.5) is None


def test_a_parse_shows_only_identifiable_hyperparameters_with_intervals(
    planted):
  outputs = {'continuous': np.array([[0.5]]),
             'discrete': [np.array([[0.2, 0.7, 0.1]])],
             'coarse': np.array([[0.9, 0.2]]), 'fine': np.array([[0.6]])}
  probs = answer_lib.calibrated(planted, SCHEMA, outputs)
  parse = answer_lib.parse_of(planted, SCHEMA, None, probs, 0)
  assert set(parse['continuous']) == {'depth'}
  lo, hi = parse['continuous']['depth']['interval_normalized']
  assert lo < 0.5 < hi and parse['continuous']['depth']['coverage'] == 0.9
  assert parse['discrete']['norm']['class'] == 'batch'
  assert set(parse['loss_type_probability']) == {'pixel'}
  assert parse['not_identifiable'] == ['adversarial', 'l1']


def test_an_answer_file_round_trips_and_a_damaged_one_is_named(planted,
                                                               tmp_path):
  path = answer_lib.save(planted, str(tmp_path))
  again = answer_lib.load(path)
  images = _generated(np.random.default_rng(5), 8)
  x = answer_lib.detector_features(images)
  np.testing.assert_allclose(answer_lib.p_generated(again, x),
                             answer_lib.p_generated(planted, x))
  side = answer_lib.features(images)
  np.testing.assert_allclose(answer_lib.ood_p_value(again, side),
                             answer_lib.ood_p_value(planted, side))
  assert again.identifiable == planted.identifiable
  assert again.temperatures == planted.temperatures
  (tmp_path / 'bad').mkdir()
  (tmp_path / 'bad' / answer_lib.FILENAME).write_bytes(b'not an npz')
  with pytest.raises(answer_lib.AnswerError, match='bad/answer.npz cannot'):
    answer_lib.load(str(tmp_path / 'bad' / answer_lib.FILENAME))


# ------------------------------------- the contract of predict's output ------


def _run_predict(argv):
  if 'checkpoint' not in flags.FLAGS:
    predict_command.define_flags()
  flags.FLAGS(['predict'] + argv)
  try:
    return predict_command.main(['predict'] + [a for a in argv
                                               if not a.startswith('--')])
  finally:
    flags.FLAGS.unparse_flags()


def test_predict_output_carries_the_answer_and_abstains_on_photographs(
    variables, tmp_path):
  from jaxfp.core import schema as s  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  run = _write_checkpoint(tmp_path / 'run', variables, _meta())
  rng = np.random.default_rng(6)
  n = 150
  zoo = s.ZOO
  labels = metrics_lib.Labels(
      continuous=rng.random((n, len(zoo.continuous))),
      discrete=np.stack([rng.integers(0, p.num_classes, n)
                         for p in zoo.discrete], 1),
      coarse=rng.integers(0, 2, (n, len(zoo.coarse))),
      fine=rng.integers(0, 2, (n, len(zoo.fine))))
  predictions = {
      'continuous': rng.random((n, len(zoo.continuous))),
      'discrete': [_softmax(rng.normal(size=(n, p.num_classes)))
                   for p in zoo.discrete],
      'coarse': rng.random((n, len(zoo.coarse))),
      'fine': rng.random((n, len(zoo.fine)))}
  fitted = answer_lib.fit(
      schema=zoo, generated_train=_generated(rng, 200),
      real_train=_photographs(rng, 200),
      held_out_images=_generated(rng, 60), held_out_predictions=predictions,
      held_out_truth=labels, identifiable=[zoo.continuous[0]],
      image_size=SIZE)
  answer_lib.save(fitted, run)
  folder = tmp_path / 'images'
  folder.mkdir()
  for i, image in enumerate(_photographs(rng, 4)):
    Image.fromarray(image).save(folder / f'photo_{i}.png')
  for i, image in enumerate(_generated(rng, 4)):
    Image.fromarray(image).save(folder / f'generated_{i}.png')
  out = tmp_path / 'out.jsonl'
  assert _run_predict([f'--checkpoint={run}', f'--output={out}', '--quiet',
                       str(folder)]) == 0
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == 8
  for r in records:
    assert isinstance(r['p_generated'], float)
    assert (r['parse'] is None) == (r['abstain_reason'] is not None)
    if r['parse'] is not None:
      assert set(r['parse']['continuous']) <= {zoo.continuous[0]}
      assert r['parse']['discrete'] == {}
      assert len(r['parse']['not_identifiable']) >= len(zoo.discrete)
  photos = [r for r in records if 'photo_' in r['file']]
  assert all(r['parse'] is None for r in photos), photos
  loaded = network.load(run)
  assert predict.load_answer(loaded) is not None
  text = predict.format_record('parsing', photos[0])
  assert 'no parse: looks real' in text


# ------------------------------------------------ at the end of training ----


def test_a_parsing_run_fits_its_answer_and_shows_it(parsing_run):
  import os  # pylint: disable=g-import-not-at-top
  import pathlib  # pylint: disable=g-import-not-at-top
  # A 2-step run of configs/fen.py:test (tests/conftest.py), shared with
  # tests/test_evaluate.py; `printed` is what its trainer printed.
  _, workdir, _, _, printed = parsing_run
  workdir = pathlib.Path(workdir)
  assert (workdir / answer_lib.FILENAME).is_file()
  examples = sorted(os.listdir(workdir / 'answer_examples'))
  assert sum(n.startswith('photograph_') for n in examples) == 2
  assert len(examples) >= 3
  assert 'The per-image answer' in printed and 'P(generated)' in printed
  loaded = network.load(str(workdir))
  records, failures = predict.predict(
      loaded, [str(workdir / 'answer_examples')], progress=False,
      answerer=predict.load_answer(loaded))
  assert not failures and len(records) == len(examples)
  for r in records:
    assert isinstance(r['p_generated'], float)
    assert (r['parse'] is None) == (r['abstain_reason'] is not None)


def test_the_answers_report_of_a_run_on_a_zoo(parsing_run, tmp_path):
  """`jaxfp.answers` end to end on the run's own (tiny) zoo: detection in
  every condition, the reference beside it, abstentions and calibration."""
  from jaxfp.tools import answers  # pylint: disable=g-import-not-at-top
  _, workdir, _, _, _ = parsing_run
  tree = answers.zoo_tree(network.load(workdir))
  result = answers.run(workdir, tree, str(tmp_path / 'report'),
                       num_photographs=12)
  conditions = [name for name, _ in answers.CONDITIONS]
  assert list(result['detection']) == list(result['reference']) == conditions
  for scored in (*result['detection'].values(),
                 *result['reference'].values()):
    assert 0.0 <= scored['auc'] <= 1.0
    assert 0.0 <= scored['false_positive_rate'] <= 1.0
    assert set(scored['families']) <= {'gan', 'image_to_image', 'vae'}
  assert result['num_photograph_crops'] == 12
  assert 0.0 <= result['answer']['photographs_abstained'] <= 1.0
  assert set(result['answer']['outside_by_family']) >= {'photograph'}
  assert {'discrete_raw', 'loss_raw'} <= set(result['calibration'])
  written = json.loads((tmp_path / 'report' / 'answers.json').read_text())
  assert written['detection'] == result['detection']
  assert '**Detection**' in (tmp_path / 'report' / 'answers.md').read_text()
