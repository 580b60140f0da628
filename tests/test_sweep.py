"""Sweeps: shipped sweep files expand; a tiny sweep runs, resumes, tables."""

import csv
import glob
import importlib
import json
import os
import re
import shutil
import types

import numpy as np
import pytest

from configs import data as data_config
from configs import fen as fen_config
from jaxfp import train
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.report import metrics as metrics_lib
from jaxfp.report import results as results_lib
from jaxfp.tools import sweep

REAL_TRAIN = train.train_and_evaluate
SWEEP_FILES = sorted(p for p in glob.glob('configs/sweeps/*.py')
                     if not p.endswith('__init__.py'))


def test_every_shipped_sweep_expands_into_valid_configs():
  assert {'constraints', 'components', 'folds', 'learning_rate',
          'loss_weights'} <= {os.path.basename(p)[:-3] for p in SWEEP_FILES}
  for path in SWEEP_FILES:
    module = importlib.import_module(
        'configs.sweeps.' + os.path.basename(path)[:-3])
    runs, average = sweep.load_sweep(f'{path}:test')
    assert len(runs) >= 2, path
    for name, _, config in sweep.expand(module.get_config('test'), runs):
      train.validate(config, 4)
      assert name
    assert average == path.endswith('folds.py')


def test_sweeps_that_vary_the_fen_default_to_a_preset_with_one():
  # The CPU preset trains no FEN (docs/parsing.md): an ablation of the FEN's
  # constraints or of the FEN itself on it would compare identical runs.
  for name in ('constraints', 'components', 'loss_weights'):
    config = importlib.import_module(f'configs.sweeps.{name}').get_config()
    assert config.model.use_fen and config.model.pn_channels, name
  assert not importlib.import_module(
      'configs.sweeps.folds').get_config().model.use_fen


def test_constraint_ablation_zeroes_one_weight_per_run():
  module = importlib.import_module('configs.sweeps.constraints')
  base = module.get_config('test')
  runs = dict((n, c) for n, _, c in sweep.expand(base, module.get_sweep()))
  published = dict(base.loss.fingerprint_weights)
  for term in published:
    weights = dict(runs[f'no_{term}'].loss.fingerprint_weights)
    assert weights == {**published, term: 0.0}
  assert dict(runs['all'].loss.fingerprint_weights) == published


def test_bad_overrides_and_names_fail_before_running():
  base = fen_config.get_config('test')
  with pytest.raises(ValueError, match='config.loss.no_such_field'):
    sweep.expand(base, [('a', {'loss.no_such_field': 1.0})])
  with pytest.raises(ValueError, match='more than once'):
    sweep.expand(base, [('a', {}), ('a', {'seed': 1})])
  with pytest.raises(ValueError, match='folder names'):
    sweep.expand(base, [('a/b', {})])


def test_folds_partition_the_gms_deterministically():
  gms = tuple(f'gm_{i:02d}' for i in range(10))
  folds = [splits.fold_test_gms(gms, 4, k, seed=3) for k in range(4)]
  assert sorted(sum(folds, ())) == list(gms)  # Every GM in exactly one fold.
  assert sorted(len(f) for f in folds) == [2, 2, 3, 3]
  assert folds[1] == splits.fold_test_gms(gms, 4, 1, seed=3)
  assert folds != [splits.fold_test_gms(gms, 4, k, seed=4)
                   for k in range(4)]
  with pytest.raises(ValueError, match='fold is 4'):
    splits.fold_test_gms(gms, 4, 4, seed=0)
  with pytest.raises(ValueError, match='num_folds is 11'):
    splits.fold_test_gms(gms, 11, 0, seed=0)
  c = data_config.parsing()
  c.num_folds, c.fold, c.split_seed = 4, 1, 3
  assert splits.choose_test_gms(c, gms, gms) == set(folds[1])
  c.test_gms = ('gm_00',)
  with pytest.raises(ValueError, match='test_gms and config.data.num_folds'):
    splits.choose_test_gms(c, gms, gms)


TINY_SWEEP = '''
AVERAGE_RUNS = True

def get_sweep(arg=None):
  return [(f'fold_{k}', {'data.num_folds': 2, 'data.fold': k})
          for k in range(2)]
'''


@pytest.fixture(scope='module')
def tiny_sweep(tmp_path_factory, zoo_cache):
  cache = zoo_cache
  sweep_file = tmp_path_factory.mktemp('sweep_file') / 'tiny.py'
  sweep_file.write_text(TINY_SWEEP)
  runs, average = sweep.load_sweep(str(sweep_file))
  base = fen_config.get_config('test')
  base.data.cache_dir = str(cache)
  base.num_train_steps = 2
  base.eval_every_steps = 100
  base.checkpoint_every_steps = 2
  workdir = str(tmp_path_factory.mktemp('sweep'))
  text, _ = sweep.run_sweep(base, runs, workdir, average=average)
  return base, runs, workdir, text


def _read_csv(workdir):
  with open(os.path.join(workdir, 'sweep.csv'), newline='') as f:
    return list(csv.DictReader(f))


def test_tiny_sweep_tables_every_run_and_the_mean(tiny_sweep):
  _, _, workdir, text = tiny_sweep
  with open(os.path.join(workdir, 'sweep.md')) as f:
    assert f.read().strip() == text.strip()
  assert '2 of 2 runs finished' in text
  assert '| fold_0 | data.num_folds=2, data.fold=0 | 2 |' in text
  assert '| fold_1 | data.num_folds=2, data.fold=1 | 2 |' in text
  assert '| mean ± std over 2 runs |' in text
  assert '| **continuous_l1** |' in text  # The per-metric average table.
  assert 'bold: better than the baseline at z >= 2' in text
  # The parsed count first, the random-GT count beside it.
  assert ('| held out: parsed | held out: z >= 2 | closed set: parsed | '
          'closed set: z >= 2 |') in text
  rows = _read_csv(workdir)
  assert list(rows[0])[5:11] == list(sweep.COUNT_COLUMNS)
  assert int(rows[0]['parsed']) <= int(rows[0]['random_gt_z2']) <= int(
      rows[0]['defined'])
  assert [r['run'] for r in rows] == ['fold_0', 'fold_1', 'mean', 'std']
  results = []
  for name in ('fold_0', 'fold_1'):
    with open(os.path.join(workdir, name, 'results.json')) as f:
      results.append(json.load(f))
  for key in ('continuous_l1', 'discrete_f1', 'loss_f1'):
    values = [r['metrics'][key] for r in results]
    for row, value in zip(rows, values):
      assert float(row[key]) == pytest.approx(value)
      assert row[f'{key}:baseline_std'] != ''
    assert float(rows[2][key]) == pytest.approx(np.mean(values))
    assert float(rows[3][key]) == pytest.approx(np.std(values))
  assert results[0]['metrics'] != results[1]['metrics']  # Folds differ.


def test_the_folds_pool_into_one_table_where_every_gm_is_tested_once(
    tiny_sweep):
  base, _, workdir, text = tiny_sweep
  results = []
  for name in ('fold_0', 'fold_1'):
    with open(os.path.join(workdir, name, 'results.json')) as f:
      results.append(json.load(f))
  gms = results[0]['test_gms'] + results[1]['test_gms']
  assert len(gms) == len(set(gms)) == base.data.zoo.num_generators
  with open(os.path.join(workdir, 'pooled.json')) as f:
    pooled = json.load(f)
  assert pooled['runs'] == ['fold_0', 'fold_1']
  assert sorted(pooled['gms']) == sorted(gms)
  assert pooled['num_images'] == sum(r['num_images'] for r in results)
  assert pooled['num_gms'] == len(gms)
  counted = pooled['significance']
  total = len(metrics_lib.deciding_keys(schema_lib.ZOO))
  assert counted['total'] == total and counted['defined'] <= total
  parsed = pooled['parsed']  # Each image with its own fold's prior.
  assert parsed['total'] == total and parsed['defined'] == counted['defined']
  assert parsed['parsed'] <= counted['significant']
  # Scored once on the concatenated predictions, not averaged over folds.
  parts = [results_lib.read_predictions(os.path.join(
      workdir, name, results_lib.PREDICTIONS)) for name in pooled['runs']]
  predictions, rows, truth, prior = results_lib.pool(parts)
  again = metrics_lib.score_split(
      predictions, rows, truth, prior=prior,
      num_shuffles=base.num_baseline_shuffles, seed=base.seed)
  assert again['metrics'] == pytest.approx(pooled['metrics'])
  # JSON keeps an undefined z (NaN) as null.
  assert again['z'] == pytest.approx(
      {k: np.nan if v is None else v for k, v in pooled['z'].items()},
      nan_ok=True)
  assert f'Pooled held-out table: 2 runs pooled: {len(gms)} GMs' in text
  assert re.search(r'\| hyperparameters parsed .*\| parsed: \*\*\d+ of', text)
  with open(os.path.join(workdir, 'pooled.md')) as f:
    assert 'Bold: beats the random-GT baseline at z >= 2' in f.read()


def test_finished_runs_are_not_run_again_and_interrupted_ones_resume(
    tiny_sweep, monkeypatch):
  base, runs, workdir, text = tiny_sweep

  def must_not_run(config, workdir):
    raise AssertionError(f'{workdir} ran again')
  monkeypatch.setattr(train, 'train_and_evaluate', must_not_run)
  assert sweep.run_sweep(base, runs, workdir, average=True).table == text

  # fold_1 lost its results (stopped after its last checkpoint): only it
  # runs, from that checkpoint, so it only evaluates and gives the same row.
  calls = []
  def counting(config, run_dir):
    calls.append(os.path.basename(run_dir))
    return REAL_TRAIN(config, run_dir)
  monkeypatch.setattr(train, 'train_and_evaluate', counting)
  os.remove(os.path.join(workdir, 'fold_1', 'results.json'))
  assert 'not pooled yet: 1 of 2 runs' in sweep.write_tables(
      workdir, runs, average=True, config=base)
  again, _ = sweep.run_sweep(base, runs, workdir, average=True)
  assert calls == ['fold_1']
  assert _strip_wall(again) == _strip_wall(text)


def test_a_run_stopped_by_ctrl_c_stops_the_sweep_with_status_130(
    tiny_sweep, tmp_path, monkeypatch):
  """A Ctrl-C that saved a run stops the sweep there, tables written: the
  runs after it are not started, and the command exits 130, not 0."""
  from jaxfp import sweep as sweep_command  # pylint: disable=g-import-not-at-top
  base, runs, finished_sweep, _ = tiny_sweep
  workdir = str(tmp_path / 'sweep')
  shutil.copytree(finished_sweep, workdir)
  for run in ('fold_0', 'fold_1'):
    os.remove(os.path.join(workdir, run, 'results.json'))
  calls = []
  def interrupted(config, run_dir):
    del config
    calls.append(os.path.basename(run_dir))
    return {'preempted': True, 'step': 1, 'signal': 'SIGINT'}
  monkeypatch.setattr(train, 'train_and_evaluate', interrupted)
  outcome = sweep.run_sweep(base, runs, workdir, average=True)
  assert calls == ['fold_0'] and outcome.signal == 'SIGINT'
  assert 'No run of the 2 has finished yet' in outcome.table

  class Flags(types.SimpleNamespace):
    def __getitem__(self, name):
      return name
  monkeypatch.setattr(sweep_command, 'FLAGS', Flags(
      config=base, list=False, workdir=workdir, runs=()))
  monkeypatch.setattr(sweep_command.config_flags, 'get_config_filename',
                      lambda flag: 'tiny.py')
  monkeypatch.setattr(sweep, 'run_file', lambda *a, **k: outcome)
  assert sweep_command.main(['sweep']) == 130


def _strip_wall(text):
  return [line.rsplit('|', 2)[0] for line in text.splitlines()]


def test_a_finished_run_with_another_config_is_an_error(tiny_sweep):
  base, runs, workdir, _ = tiny_sweep
  changed = base.copy_and_resolve_references()
  changed.num_train_steps = 3
  with pytest.raises(ValueError, match='num_train_steps: 2 -> 3'):
    sweep.run_sweep(changed, runs, workdir)


def test_results_that_do_not_parse_or_fit_are_not_a_finished_run(
    tiny_sweep, monkeypatch):
  """Issue 14, case 6: an empty (or foreign) results.json runs again."""
  base, runs, workdir, text = tiny_sweep
  calls = []
  def counting(config, run_dir):
    calls.append(os.path.basename(run_dir))
    return REAL_TRAIN(config, run_dir)
  monkeypatch.setattr(train, 'train_and_evaluate', counting)
  results = os.path.join(workdir, 'fold_1', 'results.json')
  for stale in ('', '{"step": 1, "metrics": {"continuous_l1": 0.5}}'):
    with open(results, 'w') as f:
      f.write(stale)
    again, _ = sweep.run_sweep(base, runs, workdir, average=True)
    assert _strip_wall(again) == _strip_wall(text)
  assert calls == ['fold_1', 'fold_1']
