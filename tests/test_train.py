"""Train step across devices, and the whole trainer: resume after a crash."""

import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time

from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from configs import fen as fen_config
from jaxfp import checkpoints
from jaxfp import steps
from jaxfp import train
from jaxfp.core import schema as schema_lib
from jaxfp.data import gm_folders as input_pipeline
from jaxfp.data import splits
from jaxfp.tasks import parsing as parsing_task
import subprocs

GLOBAL_BATCH = 8


def _batch(rng, gt, size):
  rows = rng.integers(0, len(gt), size)
  batch = {
      'image': rng.normal(size=(size, 64, 64, 3)).astype(np.float32),
      'continuous': gt.continuous[rows].copy(),
      'discrete': gt.discrete[rows], 'coarse': gt.coarse[rows],
      'fine': gt.fine[rows], 'gm': rows.astype(np.int32),
      'mask': np.ones(size, np.float32),
  }
  batch['continuous'][0, 2] = np.nan  # A missing label must be masked out.
  return batch


def _shard(batch, devices):
  return jax.tree.map(
      lambda x: x.reshape((devices, x.shape[0] // devices) + x.shape[1:]),
      batch)


def _first(tree):
  # flax's unreplicate keeps the device axis of a 1-device pmap when the
  # process has more local devices, as here; plain indexing does not.
  return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def _task(config, gt):
  info = splits.DataInfo(
      ground_truth=gt, train_gms=gt.gm_names, test_gms=(),
      num_train_images=0, num_test_images=0, skipped_files=())
  return parsing_task.ParsingTask(config, info=info)


def _run_steps(num_devices, task, state, batches):
  collection = steps.metrics_collection(task.train_metric_names)
  step = steps.pmapped(steps.train_step, donate_state=True,
                       devices=jax.devices()[:num_devices],
                       task=task,
                       learning_rate_fn=optax.constant_schedule(1.0),
                       collection=collection)
  state = jax_utils.replicate(state, devices=jax.devices()[:num_devices])
  keys = jax_utils.replicate(jax.random.key(0),
                             devices=jax.devices()[:num_devices])
  losses = []
  for batch in batches:
    state, update, _ = step(state, _shard(batch, num_devices), keys)
    losses.append(_first(update).compute())
  return _first(state), losses


def test_four_devices_match_one_device_on_the_same_global_batch():
  assert jax.local_device_count() >= 4, 'conftest sets 4 CPU devices'
  config = fen_config.get_config('test')
  config.model.dropout_rate = 0.0  # Dropout keys differ per device.
  schema = schema_lib.ZOO
  rng = np.random.default_rng(0)
  gt = schema_lib.random_ground_truth(schema, 5, rng)
  task = _task(config, gt)
  state = steps.create_train_state(
      jax.random.key(1), config, task.model, 64, optax.constant_schedule(1.0))
  # Plain SGD with step 1: updated parameters differ exactly by the gradient
  # difference (Adam's first step is sign(g), which hides magnitudes).
  state = state.replace(tx=optax.sgd(1e-2),
                        opt_state=optax.sgd(1e-2).init(state.params))
  batches = [_batch(rng, gt, GLOBAL_BATCH) for _ in range(2)]

  one, losses_one = _run_steps(1, task, state, batches)
  four, losses_four = _run_steps(4, task, state, batches)

  for a, b in zip(losses_one, losses_four):
    assert set(a) == set(b)
    for name in a:
      np.testing.assert_allclose(b[name], a[name], rtol=1e-5, atol=1e-6,
                                 err_msg=name)
  # Compare the updates (after - before). Float32 sums run in another order
  # on 4 devices, so each tensor's update must match to 1e-4 of its own scale
  # -- except tensors whose true gradient is zero (conv biases feeding
  # BatchNorm, which subtracts them again): their updates are rounding noise
  # and must only stay below 1e-3 of the largest update anywhere.
  def updates(after):
    return jax.tree.map(lambda b, a: np.asarray(b) - np.asarray(a),
                        (after.params, after.batch_stats),
                        (state.params, state.batch_stats))
  updates_one, updates_four = updates(one), updates(four)
  largest = max(float(np.abs(u).max()) for u in jax.tree.leaves(updates_one))
  for (path, a), b in zip(jax.tree.leaves_with_path(updates_one),
                          jax.tree.leaves(updates_four)):
    scale = float(np.abs(a).max())
    tolerance = (1e-4 * scale if scale > 1e-3 * largest else 1e-3 * largest)
    np.testing.assert_allclose(b, a, rtol=0, atol=tolerance,
                               err_msg=jax.tree_util.keystr(path))
  assert int(one.step) == int(four.step) == 2


def test_step_changes_the_parameters():
  # Guards the test above against comparing two no-op updates.
  config = fen_config.get_config('test')
  schema = schema_lib.ZOO
  rng = np.random.default_rng(1)
  gt = schema_lib.random_ground_truth(schema, 5, rng)
  task = _task(config, gt)
  state = steps.create_train_state(
      jax.random.key(1), config, task.model, 64, optax.constant_schedule(1e-3))
  after, _ = _run_steps(4, task, state, [_batch(rng, gt, GLOBAL_BATCH)])
  changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.params,
                         after.params)
  assert all(jax.tree.leaves(changed))


@pytest.fixture(scope='module')
def tiny_config(zoo_cache):
  config = fen_config.get_config('test')
  config.data.cache_dir = str(zoo_cache)
  config.num_train_steps = 8
  config.checkpoint_every_steps = 2
  config.eval_every_steps = 100
  return config


class _Crash(Exception):
  pass


def test_crash_and_resume_matches_an_uninterrupted_run(tiny_config, tmp_path,
                                                       monkeypatch):
  straight = train.train_and_evaluate(tiny_config, str(tmp_path / 'straight'))

  real_iterator = input_pipeline.train_iterator

  def crashing_iterator(*args, **kwargs):
    # Dies fetching batch 7. The trainer prefetches two batches ahead, so
    # that fetch comes right after step 4 (checkpointed) and before step 5.
    for i, batch in enumerate(real_iterator(*args, **kwargs)):
      if i == 6:
        raise _Crash('simulated crash mid-run')
      yield batch

  workdir = str(tmp_path / 'crashed')
  monkeypatch.setattr(input_pipeline, 'train_iterator', crashing_iterator)
  with pytest.raises(_Crash):
    train.train_and_evaluate(tiny_config, workdir)
  monkeypatch.setattr(input_pipeline, 'train_iterator', real_iterator)
  assert checkpoints.of_run(workdir).latest_step() == 4

  resumed = train.train_and_evaluate(tiny_config, workdir)
  a = _first(straight['state'])
  b = _first(resumed['state'])
  assert int(a.step) == int(b.step) == tiny_config.num_train_steps
  for x, y in zip(jax.tree.leaves((a.params, a.batch_stats, a.opt_state)),
                  jax.tree.leaves((b.params, b.batch_stats, b.opt_state))):
    np.testing.assert_allclose(np.asarray(y), np.asarray(x), rtol=1e-6,
                               atol=1e-7)
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  assert results['step'] == tiny_config.num_train_steps
  for key in ('continuous_l1', 'discrete_accuracy'):
    assert key in results['metrics'] and key in results['baseline_mean']


def test_the_published_schedule_is_epochs_resolved_by_the_training_set():
  config = fen_config.get_config()
  assert config.num_train_steps == 0 and config.num_epochs == 20
  # The zoo's 6,748 training images and RED116's 78,300 of one fold of
  # four (87 GMs x 1,000 images less the closed set), at batch 16.
  assert train.num_train_steps(config, 6748) == math.ceil(20 * 6748 / 16)
  assert train.num_train_steps(config, 78300) == 97875
  config.batch_size = 32
  assert train.num_train_steps(config, 100) == 63  # Rounded up.
  config.num_train_steps = 7  # An override wins over the epochs.
  assert train.num_train_steps(config, 6748) == 7
  for preset, steps in (('cpu', 1500), ('cpu_fen', 1500), ('test', 4)):
    assert fen_config.get_config(preset).num_train_steps == steps
  with pytest.raises(ValueError, match='needs the size of the training set'):
    train.num_train_steps(fen_config.get_config(), None)
  neither = fen_config.get_config('test')
  neither.num_train_steps, neither.num_epochs = 0, 0.0
  with pytest.raises(ValueError, match='set one of them above 0'):
    train.validate(neither, 4)
  train.validate(fen_config.get_config(), 4)  # Epochs alone are fine.


def test_epochs_resolve_in_the_trainer_which_projects_its_cpu_time(
    tiny_config, tmp_path, caplog, monkeypatch):
  config = tiny_config.copy_and_resolve_references()
  config.num_train_steps = 0
  config.num_epochs = 2.0
  monkeypatch.setattr(sys.stderr, 'isatty', lambda: False)  # Lines, no bar.
  caplog.set_level(logging.INFO)
  result = train.train_and_evaluate(config, str(tmp_path / 'epochs'))
  lines = [r.getMessage() for r in caplog.records]
  schedule = [re.fullmatch(r'Schedule: 2 epochs of (\d+) training images at '
                           r'batch 8 = (\d+) steps \(config.num_epochs; '
                           r'config.num_train_steps > 0 would override it\).',
                           line) for line in lines]
  images, steps = next(map(int, m.groups()) for m in schedule if m)
  assert steps == math.ceil(2 * images / 8) == result['num_train_steps']
  with open(tmp_path / 'epochs' / 'results.json') as f:
    assert json.load(f)['step'] == steps
  # The projection's shape, not its figure: the timing is the machine's.
  projected = [line for line in lines if line.startswith('projected:')]
  assert len(projected) == 1, lines
  assert re.fullmatch(
      rf'projected: ~[0-9.e+]+ (h|min|s) on this CPU for {steps:,} steps '
      r'\([0-9.e+-]+ s/step, timed over steps 2-\d+\); the CPU presets are '
      r'configs/fen.py:cpu .*, configs/fen.py:cpu_fen .*', projected[0])


def test_bad_batch_size_is_a_clear_error_before_any_work(tiny_config):
  config = tiny_config.copy_and_resolve_references()
  config.batch_size = 6  # Not divisible by 4 devices.
  with pytest.raises(ValueError, match='batch_size=6 is not divisible'):
    train.validate(config, 4)


@pytest.mark.parametrize('members', [0, -2, True])
def test_a_bad_ensemble_size_is_a_clear_error_before_any_work(tiny_config,
                                                              members):
  config = tiny_config.copy_and_resolve_references()
  with config.unlocked():
    config.model.pn_members = members
  with pytest.raises(ValueError, match=r'config.model.pn_members=.* must be '
                     'a whole number, 1 or more'):
    train.validate(config, 4)


def _error_of(config, workdir):
  """The error that stops train_and_evaluate, None if it finishes; what the
  run left behind is checked before its error, so that a run that saves
  NaN fails on that rather than on how it ended."""
  try:
    train.train_and_evaluate(config, str(workdir))
  except Exception as e:  # pylint: disable=broad-except
    return e
  return None


def _assert_finite(workdir):
  for step in subprocs.checkpoint_steps(workdir):
    variables = checkpoints.read(str(workdir), step).variables
    assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(variables)), (
        f'the checkpoint of step {step} holds NaN or infinite values')


def test_a_non_finite_loss_stops_training_before_it_is_checkpointed(
    tiny_config, tmp_path):
  """Issue 14, case 3: the loss blows up; no NaN checkpoint, one message."""
  config = tiny_config.copy_and_resolve_references()
  config.learning_rate = 1e30
  config.num_train_steps = 6
  config.checkpoint_every_steps = 1
  config.log_every_steps = 3  # Checked before each save all the same.
  config.eval_every_steps = 1000
  workdir = tmp_path / 'run'
  error = _error_of(config, workdir)
  _assert_finite(workdir)
  assert isinstance(error, train.NonFiniteLoss), repr(error)
  assert re.match(r'training stopped at step \d+: the loss went non-finite '
                  r'\(loss = nan', str(error)), str(error)
  stopped = int(re.search(r'step (\d+)', str(error)).group(1))
  assert all(step < stopped for step in subprocs.checkpoint_steps(workdir))
  assert not (workdir / 'jaxfp.lock').exists()


def test_a_state_that_went_non_finite_is_never_checkpointed(
    tiny_config, tmp_path, monkeypatch):
  """The parameters turn NaN at step 3, whose loss (computed before the
  update) is still finite: the save of step 3 is refused."""
  monkeypatch.setattr(steps, 'create_learning_rate_fn', lambda config: (
      lambda count: jnp.where(count >= 2, jnp.nan, 1e-3)))
  config = tiny_config.copy_and_resolve_references()
  config.num_train_steps = 4
  config.checkpoint_every_steps = 3
  config.eval_every_steps = 1000
  workdir = tmp_path / 'run'
  error = _error_of(config, workdir)
  _assert_finite(workdir)
  assert subprocs.checkpoint_steps(workdir) == []
  assert isinstance(error, checkpoints.CheckpointError), repr(error)
  assert re.match(r'refusing to checkpoint step 3: the state holds '
                  r'non-finite values \(params/', str(error)), str(error)


def test_a_second_trainer_refuses_to_start_naming_the_lock(tmp_path,
                                                           zoo_cache):
  """Issue 14, case 5: two trainers on one workdir."""
  workdir = tmp_path / 'run'
  cache = zoo_cache
  args = [sys.executable, '-m', 'jaxfp.main', '--config=configs/fen.py:test',
          f'--workdir={workdir}', f'--config.data.cache_dir={cache}',
          '--config.num_train_steps=100000']
  first = subprocs.Child(args, subprocs.child_env(), tmp_path / 'first.log')
  try:
    # Running: it holds the workdir (or, without a lock, has checkpointed).
    subprocs.wait_for(lambda: ((workdir / 'jaxfp.lock').exists() or
                               bool(subprocs.checkpoint_steps(workdir))),
                      [first], 300, 'the first trainer to start')
    # The second asks for 2 steps: were the workdir not locked, it would
    # resume past them and end at once, not train on for minutes.
    second = subprocess.run(args[:-1] + ['--config.num_train_steps=2'],
                            env=subprocs.child_env(),
                            cwd=subprocs.REPO, capture_output=True,
                            text=True, timeout=300, check=False)
  finally:
    subprocs.kill_all([first])
  assert second.returncode == 2, second.stderr[-2000:]
  assert second.stderr.strip().splitlines()[-1].startswith(
      f'error: workdir {workdir} is in use by process {first.popen.pid} on '
      'host'), second.stderr[-2000:]
  assert f'lock file {workdir / "jaxfp.lock"}' in second.stderr


def test_sigterm_during_start_up_unwinds_and_releases_the_lock(
    tmp_path, zoo_cache, monkeypatch):
  """A SIGTERM before the training loop (a zoo or dataset build can take
  minutes) stops the run with nothing to save: exit 0 from main, the
  workdir's lock released, the SIGTERM handler given back."""
  config = fen_config.get_config('test')
  config.data.cache_dir = str(zoo_cache)
  workdir = tmp_path / 'run'

  def create(config):
    del config
    assert (workdir / 'jaxfp.lock').exists()
    os.kill(os.getpid(), signal.SIGTERM)
    # The handler raises at the next bytecode the main thread runs.
    for _ in range(1000):
      time.sleep(0.01)
    raise AssertionError('SIGTERM did not stop the start-up')

  handler = signal.getsignal(signal.SIGTERM)
  monkeypatch.setattr(train.tasks, 'create', create)
  result = train.train_and_evaluate(config, str(workdir))
  assert result['preempted'] and result['step'] is None
  assert not (workdir / 'jaxfp.lock').exists()
  assert not list(workdir.glob('events.out.tfevents*'))
  assert signal.getsignal(signal.SIGTERM) is handler
