"""Evaluating checkpoints: a trained run, one step, and the converted layout."""

import json
import os
import re
import shutil
import types

import jax
from matplotlib import image as mpl_image
import numpy as np
import orbax.checkpoint as ocp
import pytest

from configs import fen as fen_config
from jaxfp import checkpoints
from jaxfp import train
from jaxfp.core import schema
from jaxfp.tasks import parsing as parsing_task
from jaxfp.tools import evaluate


@pytest.fixture()
def trained(parsing_run):
  """A 2-step run of configs/fen.py:test, checkpointed at steps 1 and 2,
  with a closed set (tests/conftest.py: shared with tests/test_answer.py)."""
  config, workdir, result, results, _ = parsing_run
  return config, workdir, result, results


def _assert_same_metrics(a, b):
  assert set(a) == set(b)
  for key in a:
    assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


def test_evaluating_a_run_reproduces_its_final_metrics(trained, tmp_path):
  _, workdir, _, results = trained
  out = str(tmp_path / 'eval')
  result = evaluate.evaluate_checkpoint(workdir, workdir=out)
  assert result['step'] == 2
  _assert_same_metrics(result['metrics'], results['metrics'])
  _assert_same_metrics(result['baseline_mean'], results['baseline_mean'])
  _assert_same_metrics(result['train_prior'], results['train_prior'])
  # The closed set: the same held-back images of the training GMs.
  closed = results['closed_set']
  assert closed['num_images'] > 0 and closed['fraction'] == 0.3
  assert not set(closed['gms']) & set(results['test_gms'])
  _assert_same_metrics(result['closed_set']['metrics'], closed['metrics'])
  with open(os.path.join(out, 'results.json')) as f:
    written = json.load(f)
  assert written['test_gms'] == results['test_gms']
  assert written['significance'] == results['significance']
  assert set(written['significance']['by_kind']) == {'continuous',
                                                     'discrete', 'loss'}
  # The stricter count, the same from the checkpoint as from the run.
  assert written['parsed']['parsed'] == results['parsed']['parsed']
  assert written['parsed']['names'] == results['parsed']['names']
  assert "train prior from the checkpoint's 4 training GMs" == written[
      'notes']['held_out']
  saved = np.load(os.path.join(out, 'predictions.npz'))
  assert len(saved['gm']) == written['num_images']
  assert set(saved['gm']) == set(results['test_gms'])
  for key in ('discrete_f1', 'loss_f1'):
    assert key in written['metrics'] and key in written['baseline_std']
  with open(os.path.join(out, 'results.md')) as f:
    text = f.read()
  assert 'macro F1' in text and 'Bold: beats the random-GT baseline at ' \
      'z >= 2' in text
  assert '| hyperparameter | metric | held out | random GT | z | train ' \
      'prior | parsed | closed set |' in text
  # One row per held-out GM: image | fingerprint | spectrum.
  assert mpl_image.imread(os.path.join(out, 'fingerprints.png')).ndim == 3
  assert mpl_image.imread(os.path.join(out, 'baseline_bars.png')).ndim == 3
  assert len(result['examples'][2]) == len(results['test_gms'])


def test_every_gm_held_out(trained, tmp_path):
  """A split with no training GM (data the checkpoint never saw): the
  train prior comes from the checkpoint's own training GMs."""
  config, workdir, _, results = trained
  out = str(tmp_path / 'all')
  result = evaluate.evaluate_checkpoint(workdir, workdir=out,
                                        all_held_out=True)
  with open(os.path.join(out, 'results.json')) as f:
    written = json.load(f)
  gms = config.data.zoo.num_generators
  assert (written['num_gms'], len(written['test_gms'])) == (gms, gms)
  assert written['closed_set'] is None and 'closed_set' not in result
  assert 'no GM of this split is a training GM' in written['notes'][
      'closed_set']
  assert "checkpoint's 4 training GMs" in written['notes']['held_out']
  assert written['train_prior']['loss_auc'] == pytest.approx(0.5)
  assert set(written['train_prior_values']) == {
      'continuous_median', 'discrete_majority', 'loss_prevalence'}
  # The prior of the checkpoint's training GMs, as in its own run.
  with open(os.path.join(workdir, 'results.json')) as f:
    assert json.load(f)['train_prior_values'] == written[
        'train_prior_values']


def test_a_step_folder_and_the_checkpoint_split(trained, tmp_path):
  config, workdir, _, results = trained
  step_dir = os.path.join(workdir, 'checkpoints', '1')
  assert checkpoints.find(step_dir) == (
      os.path.join(workdir, 'checkpoints'), [1])
  assert checkpoints.find(workdir)[1] == [2, 1]  # Newest first.
  with pytest.raises(checkpoints.CheckpointError,
                     match=r'no step 7.*\[1, 2\]'):
    checkpoints.find(workdir, step=7)
  # A config that would hold out other GMs: the checkpoint's split wins,
  # unless asked for the config's.
  other = config.copy_and_resolve_references()
  other.data.num_folds, other.data.fold = 3, 2
  result = evaluate.evaluate_checkpoint(step_dir, workdir=str(tmp_path / 'a'),
                                        config=other)
  assert result['step'] == 1
  assert list(result['config'].data.test_gms) == results['test_gms']
  as_config = evaluate.config_for({'config': json.loads(config.to_json())},
                                  other, use_checkpoint_split=False)
  assert as_config.data.num_folds == 3 and not as_config.data.test_gms


def test_the_network_comes_from_the_checkpoint(trained):
  config, _, _, _ = trained
  meta = {'config': json.loads(config.to_json())}
  wider = config.copy_and_resolve_references()
  wider.model.fen_width = 16
  wider.loss.hierarchical = not config.loss.hierarchical
  merged = evaluate.config_for(meta, wider)
  assert merged.model.fen_width == config.model.fen_width
  assert merged.loss.hierarchical == config.loss.hierarchical
  # Variables that do not fit the configured network: a clear error.
  task_model = parsing_task.create_model(wider, _schema())
  with pytest.raises(ValueError, match='does not fit.*fen'):
    evaluate.check_variables(task_model, 64, _variables(trained))


def _schema():
  return schema.ZOO


def _variables(trained):
  state = jax.tree.map(lambda x: np.asarray(x)[0], trained[2]['state'])
  return {'params': state.params, 'batch_stats': state.batch_stats}


def test_converted_checkpoint_layout(trained, tmp_path):
  """{'step', 'params', 'batch_stats'} + meta 'model' (jaxfp.convert_torch)."""
  config, _, _, results = trained
  m = config.model
  meta = {'task': 'parsing', 'source': 'test',
          'model': {'fen_depth': m.fen_depth, 'fen_width': m.fen_width,
                    'use_fen': True, 'dropout_rate': 0.5,
                    'pn_channels': list(m.pn_channels), 'dtype': 'float32'},
          'schema': _schema().to_dict()}
  directory = str(tmp_path / 'converted' / 'checkpoints')
  manager = ocp.CheckpointManager(directory, item_names=('state', 'meta'),
                                  options=ocp.CheckpointManagerOptions(
                                      create=True))
  manager.save(0, args=ocp.args.Composite(
      state=ocp.args.StandardSave({'step': 0, **_variables(trained)}),
      meta=ocp.args.JsonSave(meta)))
  manager.wait_until_finished()
  manager.close()
  with pytest.raises(ValueError, match='pass --config'):
    evaluate.evaluate_checkpoint(str(tmp_path / 'converted'))
  data_config = config.copy_and_resolve_references()
  data_config.data.test_gms = tuple(results['test_gms'])
  result = evaluate.evaluate_checkpoint(str(tmp_path / 'converted'),
                                        config=data_config)
  assert result['step'] == 0
  _assert_same_metrics(result['metrics'], results['metrics'])
  assert os.path.exists(tmp_path / 'converted' / 'results.md')


def _copy_with_step_2_damaged(workdir, tmp_path):
  """A copy of the run whose newest step (2) lost its data files."""
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  state = run / 'checkpoints' / '2' / 'state'
  for name in ('d', 'ocdbt.process_0'):
    shutil.rmtree(state / name)
  return run


def test_a_damaged_latest_step_falls_back_to_the_step_before(trained,
                                                             tmp_path,
                                                             caplog):
  """Issue 14, case 4: evaluation and training go on from step 1."""
  config, workdir, _, _ = trained
  run = _copy_with_step_2_damaged(workdir, tmp_path)
  result = evaluate.evaluate_checkpoint(str(run),
                                        workdir=str(tmp_path / 'eval'))
  assert result['step'] == 1
  assert re.search(r'Skipping the unusable checkpoint of step 2 in .*'
                   r'\(ValueError: NOT_FOUND: .*\); using step 1', caplog.text)
  # Asked for by number, the damaged step is an error saying why.
  with pytest.raises(ValueError,
                     match=r'checkpoints/2 cannot be used: .*NOT_FOUND') as e:
    checkpoints.read(str(run), step=2)
  assert isinstance(e.value, checkpoints.CheckpointError)
  # The trainer resumes from step 1 and sets step 2 aside to save it anew.
  train.train_and_evaluate(config, str(run))
  assert 'The checkpoint of step 2' in caplog.text
  assert (run / 'checkpoints' / '2.unusable').is_dir()
  assert checkpoints.read(str(run)).step == 2


def test_a_config_that_does_not_fit_the_checkpoint_is_named(trained,
                                                            tmp_path):
  """Issue 14, case 10: resuming with another model width."""
  config, workdir, _, _ = trained
  run = tmp_path / 'run'
  shutil.copytree(workdir, run)
  wider = config.copy_and_resolve_references()
  wider.model.fen_width = 2 * config.model.fen_width
  width = config.model.fen_width
  events = set(run.glob('events.out.tfevents*'))
  with pytest.raises(ValueError,
                     match=r'step 2 .* does not fit the configured model '
                     rf'.*fen/conv_0/kernel: checkpoint \(3, 3, 3, {width}\), '
                     rf'model \(3, 3, 3, {2 * width}\)') as e:
    train.train_and_evaluate(wider, str(run))
  assert isinstance(e.value, checkpoints.CheckpointError)
  # The refused run leaves no empty TensorBoard events file behind.
  assert set(run.glob('events.out.tfevents*')) == events


def test_gm_names_of_another_dataset_are_not_the_checkpoints(caplog):
  """Every zoo names its GMs gm_000...: a held-out GM of another zoo that
  shares a training GM's name is no GM the checkpoint saw."""
  trained = schema.random_ground_truth(schema.ZOO, 4, np.random.default_rng(0))
  meta = {'ground_truth': trained.to_dict(),
          'train_gms': list(trained.gm_names[:3]),
          'test_gms': [trained.gm_names[3]]}
  def task_on(truth):
    return types.SimpleNamespace(info=types.SimpleNamespace(
        ground_truth=truth, test_gms=truth.gm_names, closed_gms=()))
  evaluate._check_split(meta, task_on(trained))
  assert 'trained on 3 of the held-out GMs' in caplog.text
  caplog.clear()
  other = schema.random_ground_truth(schema.ZOO, 4, np.random.default_rng(1))
  assert other.gm_names == trained.gm_names
  evaluate._check_split(meta, task_on(other))
  assert 'these metrics are not held-out metrics' not in caplog.text
  assert 'every GM is unseen' in caplog.text


def test_a_checkpoint_of_another_task_than_the_config_is_named(tmp_path):
  """Issue 22, case 4: a source-embedding checkpoint evaluated with a
  parsing --config, and the reverse, is one `error:` line naming both
  tasks (exit 2), not a traceback."""
  from configs import source as source_config  # pylint: disable=g-import-not-at-top
  import subprocs  # pylint: disable=g-import-not-at-top
  state = {'step': 0, 'params': {'dense': {'kernel': np.zeros((2, 2))}},
           'batch_stats': {}}
  cases = {}
  env = dict(subprocs.child_env(), JAXFP_CACHE=str(tmp_path / 'cache'))
  for task, saved, other in (
      ('source', source_config.get_config('test'), 'configs/fen.py:test'),
      ('parsing', fen_config.get_config('test'), 'configs/source.py:test')):
    run = tmp_path / task
    checkpoints.write(str(run), state, {
        'task': task, 'config': json.loads(saved.to_json_best_effort())})
    cases[task] = ('jaxfp.evaluate', [
        f'--checkpoint={run}', f'--config={other}',
        f'--workdir={tmp_path / ("eval_" + task)}'])
  # Each in a process of its own, side by side (tests/forked_commands.py).
  results = subprocs.run_forked(cases, tmp_path / 'commands', env, 600)
  for task, (code, output) in results.items():
    other = 'parsing' if task == 'source' else 'source'
    assert code == 2, output[-3000:]
    assert 'Traceback' not in output
    assert output.strip().splitlines()[-1].startswith(
        f'error: {tmp_path / task}'), output[-1000:]
    assert f"is a {task} checkpoint, but --config is of task '{other}'" in (
        output)
