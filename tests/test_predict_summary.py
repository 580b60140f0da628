"""jaxfp.predict --summary: one summary of a folder of images of one source."""

import json
import math

from absl import flags
import jax
import numpy as np
import pytest
from PIL import Image

from configs import fen as fen_config
from jaxfp import predict as predict_command
from jaxfp.core import schema as schema_lib
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.tasks import parsing as parsing_task

from test_predict import SIZE, _meta, _write_checkpoint

SCHEMA = schema_lib.Schema(
    continuous=('depth',),
    discrete=(schema_lib.DiscreteParam('norm', ('none', 'batch', 'layer')),),
    coarse=('pixel', 'adversarial'), fine=('l1',), fine_to_coarse=(0,))


def _strict(text):
  """JSON without NaN or Infinity tokens (Python's json accepts them)."""
  def refuse(token):
    raise AssertionError(f'{token} in JSON')
  return json.loads(text, parse_constant=refuse)


def _loaded(**kwargs):
  fields = dict(task='parsing', model=None, variables={}, meta={},
                image_size=SIZE, step=7, directory='/runs/x', schema=SCHEMA)
  fields.update(kwargs)
  return network.Loaded(**fields)


def test_a_parsing_summary_by_hand():
  ranges = np.array([[2.0, 12.0]], np.float32)  # depth = 2 + 10 x.
  gt = schema_lib.GroundTruth(
      schema=SCHEMA, gm_names=('g',), continuous=np.zeros((1, 1), np.float32),
      discrete=np.zeros((1, 1), np.int32), coarse=np.zeros((1, 2), np.int32),
      fine=np.zeros((1, 1), np.int32), continuous_range=ranges)
  loaded = _loaded(ground_truth=gt)
  out = {'continuous': np.array([[0.2], [0.4], [0.9]]),
         'discrete': (np.array([[0.1, 0.6, 0.3],
                                [0.2, 0.5, 0.3],
                                [0.5, 0.1, 0.4]]),),
         'coarse': np.array([[0.9, 0.1], [0.8, 0.6], [0.4, 0.2]]),
         'fine': np.array([[0.7], [0.2], [0.3]])}
  records = [{'file': f'{i}.png', 'task': 'parsing',
              'parse': predict.describe(loaded, out, i)}
             for i in range(3)]
  summary = predict.summarize(loaded, records, [('bad.png', 'empty file')])
  assert summary['num_images'] == 3 and summary['num_skipped'] == 1
  assert summary['skipped'] == [{'file': 'bad.png', 'reason': 'empty file'}]
  depth = summary['continuous']['depth']
  assert depth['normalized']['mean'] == pytest.approx(0.5)
  assert depth['normalized']['std'] == pytest.approx(np.std([0.2, 0.4, 0.9]))
  assert depth['value']['mean'] == pytest.approx(7.0)
  assert (depth['value']['min'], depth['value']['max']) == pytest.approx(
      (4.0, 11.0))
  norm = summary['discrete']['norm']
  assert norm['majority'] == 'batch' and norm['share'] == pytest.approx(2 / 3)
  assert norm['votes'] == {'none': 1, 'batch': 2, 'layer': 0}
  assert norm['mean_probability'] == pytest.approx(
      {'none': 0.8 / 3, 'batch': 1.2 / 3, 'layer': 1.0 / 3})
  loss = summary['loss_types']
  assert loss['pixel']['mean_probability'] == pytest.approx(0.7)
  assert loss['pixel']['share_used'] == pytest.approx(2 / 3)
  assert loss['adversarial']['share_used'] == pytest.approx(1 / 3)
  assert loss['l1']['level'] == 'fine (pixel)'
  text = predict.format_summary(summary, ['folder'])
  assert text.startswith('Summary of 3 images (1 skipped) under folder')
  assert '| norm | batch | 67% | batch 0.40, layer 0.33, none 0.27 |' in text
  assert '| depth | 0.500 ± 0.294 | 7 (4 to 11) |' in text
  assert '| pixel | coarse | 0.700 | 67% |' in text
  _strict(json.dumps(summary))


def test_a_tie_goes_to_the_higher_mean_probability():
  loaded = _loaded(ground_truth=None)
  out = {'continuous': np.array([[0.1], [0.3]]),
         'discrete': (np.array([[0.4, 0.0, 0.6], [0.9, 0.1, 0.0]]),),
         'coarse': np.zeros((2, 2)), 'fine': np.zeros((2, 1))}
  records = [{'parse': predict.describe(loaded, out, i)}
             for i in range(2)]
  summary = predict.summarize(loaded, records, [])
  assert summary['discrete']['norm']['majority'] == 'none'  # 0.65 vs 0.3.
  assert summary['discrete']['norm']['share'] == 0.5
  # No ground-truth ranges: no values, only normalised figures.
  assert 'value' not in summary['continuous']['depth']
  assert '| depth | 0.200 ± 0.100 | ? |' in predict.format_summary(
      summary, ['x'])


def test_a_classifier_summary_and_an_empty_one():
  loaded = _loaded(task='detection', schema=None,
                   class_names=('fake', 'real'))
  out = {'probabilities': np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]])}
  records = [{'prediction': predict.describe(loaded, out, i)}
             for i in range(3)]
  summary = predict.summarize(loaded, records, [])
  assert summary['classes']['majority'] == 'fake'
  assert summary['classes']['votes'] == {'fake': 2, 'real': 1}
  assert summary['classes']['mean_probability'] == pytest.approx(
      {'fake': 0.6, 'real': 0.4})
  assert '| fake | 0.600 | 2 |' in predict.format_summary(summary, ['x'])
  empty = predict.summarize(_loaded(), [], [('a', 'no such file')])
  assert empty['num_images'] == 0 and empty['discrete'] == {}
  assert 'No image to summarise' in predict.format_summary(empty, ['a'])


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
  """A parsing checkpoint of random weights (as tests/test_predict.py)."""
  config = fen_config.get_config('test')
  model = parsing_task.create_model(config, schema_lib.ZOO, axis_name=None)
  variables = jax.device_get(jax.jit(lambda k: model.init(
      k, np.zeros((1, SIZE, SIZE, 3), np.float32), train=False))(
          jax.random.key(0)))
  return _write_checkpoint(tmp_path_factory.mktemp('run'), variables,
                           _meta())


def _run_predict(args):
  if 'summary' not in flags.FLAGS:
    predict_command.define_flags()
  flags.FLAGS(['predict'] + [a for a in args if a.startswith('--')])
  try:
    return predict_command.main(['predict'] + [a for a in args
                                               if not a.startswith('--')])
  finally:
    flags.FLAGS.unparse_flags()


def test_the_command_summarises_a_folder(checkpoint, tmp_path, capsys):
  folder = tmp_path / 'source'
  folder.mkdir()
  rng = np.random.default_rng(0)
  for i in range(5):
    Image.fromarray(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
                    ).save(folder / f'{i}.png')
  (folder / 'broken.png').write_bytes(b'')
  out = tmp_path / 'out' / 'source_a.jsonl'
  out.parent.mkdir()
  assert _run_predict([f'--checkpoint={checkpoint}', f'--output={out}',
                       '--summary', '--quiet', str(folder)]) == 1
  printed = capsys.readouterr().out
  assert printed.startswith('Summary of 5 images (1 skipped) under ')
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == 5
  summary = _strict((tmp_path / 'out' / 'source_a.summary.json').read_text())
  assert summary['inputs'] == [str(folder)]
  assert (summary['num_images'], summary['num_skipped']) == (5, 1)
  assert summary['skipped'][0]['file'] == str(folder / 'broken.png')
  assert summary['step'] == 3
  # The summary is the mean of the per-image lines.
  for name in schema_lib.ZOO.continuous:
    assert summary['continuous'][name]['normalized']['mean'] == (
        pytest.approx(np.mean([r['parse']['continuous'][name]
                               ['normalized'] for r in records])))
  for param in schema_lib.ZOO.discrete:
    votes = summary['discrete'][param.name]['votes']
    assert sum(votes.values()) == 5
    chosen = [r['parse']['discrete'][param.name]['class']
              for r in records]
    assert votes[summary['discrete'][param.name]['majority']] == max(
        chosen.count(c) for c in param.classes)
    assert math.fsum(summary['discrete'][param.name]['mean_probability']
                     .values()) == pytest.approx(1.0, abs=1e-5)
  assert set(summary['loss_types']) == set(schema_lib.ZOO.coarse +
                                           schema_lib.ZOO.fine)
  md = (tmp_path / 'out' / 'source_a.summary.md').read_text()
  assert md.strip() == printed.strip()
  assert '| parameter | majority | votes | mean probabilities |' in md

  # Nothing readable: status 2, and a summary that says so, without NaN.
  assert _run_predict([f'--checkpoint={checkpoint}', f'--output={out}',
                       '--summary', str(folder / 'broken.png')]) == 2
  empty = _strict((tmp_path / 'out' / 'source_a.summary.json').read_text())
  assert empty['num_images'] == 0 and empty['num_skipped'] == 1
  assert 'No image to summarise' in capsys.readouterr().out
