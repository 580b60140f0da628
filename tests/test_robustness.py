"""jaxfp.robustness: one compiled evaluation, clean and perturbed."""

import json
import os

import pytest

from configs import detection as detection_config
from jaxfp import train
from jaxfp.tools import robustness


@pytest.fixture(scope='module')
def run(tmp_path_factory):
  config = detection_config.get_config('test')
  config.data.cache_dir = str(tmp_path_factory.mktemp('cache'))
  config.num_train_steps = 2
  workdir = str(tmp_path_factory.mktemp('run'))
  train.train_and_evaluate(config, workdir)
  return workdir


def test_table_and_plots_cover_every_perturbation_and_severity(run, tmp_path):
  severities = {'jpeg': (90, 30), 'blur': (0.0, 2.0)}
  result = robustness.run(run, names=('jpeg', 'blur'), severities=severities)
  assert result['task'] == 'detection'
  assert [(r['perturbation'], r['severity']) for r in result['rows']] == [
      ('jpeg', 90), ('jpeg', 30), ('blur', 0.0), ('blur', 2.0)]
  with open(os.path.join(run, 'results.json')) as f:
    trained = json.load(f)
  # The clean pass reproduces the trainer's own final evaluation, and blur
  # with sigma 0 (the identity) gives the clean figures again.
  assert result['clean']['metrics'] == pytest.approx(trained['metrics'])
  assert result['rows'][2]['metrics'] == pytest.approx(
      result['clean']['metrics'])
  text = robustness.write(result, str(tmp_path / 'out'))
  assert '| clean |' in text and 'quality 30' in text
  for name in ('robustness.md', 'robustness.json', 'jpeg.png', 'blur.png'):
    assert os.path.getsize(tmp_path / 'out' / name) > 0
