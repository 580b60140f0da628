"""The trainer of every task: config checks, the schedule, checkpoints and
the loop (`train_and_evaluate`, the only function with a loop and side
effects). The steps it runs are `jaxfp.steps`'.

What is learned (model, losses, data, scores) comes from the task named by
`config.task` (`jaxfp.tasks`). Data parallel over every device of every
process (pmap over `AXIS`); see `jaxfp.core.distributed` for multi-host
start-up.

TensorFlow (tf.data, TensorBoard files) is imported only when a run reads
data or writes summaries, so the steps run on hosts without it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time

from absl import logging
from flax import jax_utils
from flax import traverse_util
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxfp import checkpoints
from jaxfp import steps
from jaxfp import tasks
from jaxfp.core import console
from jaxfp.core import distributed
from jaxfp.core import files
from jaxfp.core import lock
from jaxfp.core import preemption
from jaxfp.report import summaries
from jaxfp.tasks import common

AXIS = steps.AXIS
# Accepted config.data.image_size: the published sizes are 64 and 128.
IMAGE_SIZES = (8, 1024)


def validate(config, local_device_count: int):
  """Checks that fail fast, before any dataset build or compilation."""
  total_devices = local_device_count * jax.process_count()
  for field in ('batch_size', 'log_every_steps', 'eval_every_steps',
                'checkpoint_every_steps'):
    if config[field] < 1:
      raise ValueError(f'config.{field}={config[field]} must be at least 1')
  for field, value in _floats(config.to_dict()):
    # A NaN weight or rate trains to NaN minutes later; say so now.
    if not math.isfinite(value):
      raise ValueError(f'config.{field}={value} must be a finite number')
  if not (math.isfinite(config.learning_rate) and config.learning_rate >= 0):
    raise ValueError(f'config.learning_rate={config.learning_rate} must be a '
                     'finite number, 0 or more')
  if config.batch_size % total_devices:
    raise ValueError(
        f'config.batch_size={config.batch_size} is not divisible by the '
        f'{total_devices} devices in use; choose a multiple of {total_devices}')
  epochs = config.get('num_epochs', 0.0)
  if config.num_train_steps < 0 or not math.isfinite(epochs) or epochs < 0:
    raise ValueError(f'config.num_train_steps={config.num_train_steps} and '
                     f'config.num_epochs={epochs} must not be negative')
  if config.num_train_steps < 1 and epochs <= 0:
    raise ValueError(f'config.num_train_steps={config.num_train_steps} and '
                     f'config.num_epochs={epochs}: set one of them above 0 '
                     '(num_train_steps wins when both are)')
  size, radius = config.data.image_size, config.loss.low_freq_radius
  # Before anything is built: a huge size fills memory while the records
  # are written (the process is killed, saying nothing), a negative one
  # would be blamed on the window below.
  zoo = config.data.get('zoo') or {}
  for field, value in (('data.image_size', size),
                       ('data.zoo.image_size', zoo.get('image_size', 64))):
    if (isinstance(value, bool) or not isinstance(value, int) or
        not IMAGE_SIZES[0] <= value <= IMAGE_SIZES[1]):
      raise ValueError(f'config.{field}={value} must be a whole number from '
                       f'{IMAGE_SIZES[0]} to {IMAGE_SIZES[1]} (pixels)')
  if config.model.get('use_fen', True) and 2 * radius + 1 > size:
    raise ValueError(f'config.loss.low_freq_radius={radius} gives a '
                     f'{2 * radius + 1}-pixel window, larger than '
                     f'config.data.image_size={size}')
  terms = common.FINGERPRINT_TERMS
  unknown = set(config.loss.fingerprint_weights) - set(terms)
  if unknown:
    raise ValueError(f'config.loss.fingerprint_weights has unknown keys '
                     f'{sorted(unknown)}; known: {list(terms)}')
  members = config.model.get('pn_members', 1)
  if isinstance(members, bool) or not isinstance(members, int) or members < 1:
    raise ValueError(f'config.model.pn_members={members} must be a whole '
                     'number, 1 or more (1: one PN)')
  jnp.dtype(config.model.dtype)  # Raises on an unknown dtype name.
  tasks.get(config.get('task', 'parsing'))  # Raises on an unknown task.


def num_train_steps(config: ml_collections.ConfigDict,
                    num_train_images: int | None) -> int:
  """The steps to train: config.num_train_steps when > 0 (it wins), else
  config.num_epochs passes over `num_train_images` at config.batch_size
  (the global batch), rounded up."""
  if config.num_train_steps > 0:
    return int(config.num_train_steps)
  if not num_train_images:
    raise ValueError(f'config.num_epochs={config.num_epochs} needs the size '
                     'of the training set, which this task does not know '
                     '(or it is empty); set config.num_train_steps instead')
  return max(1, math.ceil(config.num_epochs * num_train_images /
                          config.batch_size))


def resolve_schedule(config: ml_collections.ConfigDict, task
                     ) -> ml_collections.ConfigDict:
  """`config` with num_train_steps resolved from the task's training set
  (`num_train_steps`), unchanged when it is already set. The copy is what
  runs: the learning-rate schedule, the loop, the checkpoint's config."""
  if config.num_train_steps > 0:
    return config
  images = getattr(getattr(task, 'info', None), 'num_train_images', None)
  resolved = config.copy_and_resolve_references()
  resolved.num_train_steps = num_train_steps(config, images)
  logging.info('Schedule: %g epochs of %d training images at batch %d = %d '
               'steps (config.num_epochs; config.num_train_steps > 0 would '
               'override it).', config.num_epochs, images, config.batch_size,
               resolved.num_train_steps)
  return resolved


# Steps timed after the first (which compiles) for the CPU projection.
PROJECTION_STEPS = 5


def _approx(seconds: float) -> str:
  """'~14 h', '~35 min', '~20 s': a projection's precision."""
  if seconds >= 3600:
    return f'~{seconds / 3600:.2g} h'
  if seconds >= 60:
    return f'~{seconds / 60:.2g} min'
  return f'~{seconds:.2g} s'


def projection_line(num_steps: int, seconds_per_step: float,
                    timed: tuple[int, int], presets: tuple[str, ...]) -> str:
  """What the whole schedule takes on this CPU at the timed rate, and the
  presets sized for one."""
  line = (f'projected: {_approx(num_steps * seconds_per_step)} on this CPU '
          f'for {num_steps:,} steps ({seconds_per_step:.3g} s/step, timed '
          f'over steps {timed[0]}-{timed[1]})')
  if presets:
    line += '; the CPU presets are ' + ', '.join(presets)
  return line


class _Projection:
  """Times PROJECTION_STEPS steps after the first of this launch, on a CPU
  only, and gives `projection_line` once (None before and after)."""

  def __init__(self, start_step: int, num_steps: int, presets, enabled):
    self.first = start_step + 1  # Compiles: the timing starts after it.
    self.last = min(num_steps, self.first + PROJECTION_STEPS)
    self.num_steps, self.presets = num_steps, tuple(presets)
    self.enabled = enabled and self.last > self.first
    self.start = None

  def after(self, step: int, state) -> str | None:
    if not self.enabled or step not in (self.first, self.last):
      return None
    jax.block_until_ready(state)  # Steps run asynchronously: wait for them.
    if step == self.first:
      self.start = time.monotonic()
      return None
    rate = (time.monotonic() - self.start) / (self.last - self.first)
    return projection_line(self.num_steps, rate,
                           (self.first + 1, self.last), self.presets)


def _floats(tree, prefix: str = ''):
  """(dotted field, value) of every float in a config dict, nested ones
  and those in lists included."""
  items = (tree.items() if isinstance(tree, dict) else
           enumerate(tree) if isinstance(tree, (list, tuple)) else ())
  for key, value in items:
    name = (f'{prefix}{key}' if isinstance(tree, dict) else
            f'{prefix[:-1]}[{key}]')
    if isinstance(value, float):
      yield name, value
    else:
      yield from _floats(value, f'{name}.')


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict:
  """Trains the task of `config`, evaluates on held-out data, checkpoints.

  Resumes from the latest checkpoint in `workdir` if there is one. A SIGTERM
  (preemption), SIGINT (Ctrl-C) or SIGHUP (closed terminal) saves a
  checkpoint at the current step and returns early with result['preempted']
  = True and result['signal'] its name; the next launch resumes from it (a
  signal before or after the loop stops at once: 'preempted' True, 'step'
  None).
  Returns the final evaluation: the task's score ('metrics', ...), 'loss',
  'examples', 'state' and 'preempted'.
  """
  local_devices = jax.local_device_count()
  validate(config, local_devices)
  held = distributed.chief_decides(lambda: _lock(workdir, config),
                                   'workdir_lock')
  try:
    with preemption.interrupt_on_signal():
      return _train_and_evaluate(config, workdir, local_devices)
  except preemption.Interrupted as e:
    logging.warning('Received %s outside the training loop; stopped. Launch '
                    'again to resume from the last checkpoint.', e)
    return {'preempted': True, 'step': None, 'state': None,
            'signal': str(e)}
  finally:
    if held is not None:
      held.release()


def _lock(workdir: str, config) -> lock.Lock:
  """The workdir, created, checked and locked for this run (process 0); one
  inside the data's tree is refused (its pictures would become images)."""
  inputs = [config.data.get(k) for k in ('manual_dir', 'root',
                                         'ground_truth_dir')]
  return lock.acquire(files.check_output_folder(
      workdir, 'workdir', inputs=[p for p in inputs if p]))


class NonFiniteLoss(ValueError):
  """Training produced a NaN or infinite loss term; nothing of it is saved."""


def _check_finite(pending) -> list:
  """The metric updates of `pending` ((step, update on device) pairs) as
  device 0's host copies; raises NonFiniteLoss naming the first step whose
  loss terms are not all finite."""
  updates = [jax.tree.map(lambda x: x[0], u)
             for u in jax.device_get([u for _, u in pending])]
  for (step, _), update in zip(pending, updates):
    bad = {k: float(v) for k, v in update.compute().items()
           if not np.isfinite(v)}
    if bad:
      terms = ', '.join(f'{k} = {v}' for k, v in bad.items())
      raise NonFiniteLoss(
          f'training stopped at step {step}: the loss went non-finite '
          f'({terms}); nothing of this step or later was checkpointed. '
          'Lower config.learning_rate, or check the data')
  return updates


def _train_and_evaluate(config, workdir: str, local_devices: int) -> dict:
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  task = distributed.chief_first(lambda: tasks.create(config))
  logging.info('Task %s', task.describe())
  config = resolve_schedule(config, task)

  learning_rate_fn = steps.create_learning_rate_fn(config)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  state = steps.create_train_state(init_key, config, task.model,
                                   config.data.image_size, learning_rate_fn)
  manager = checkpoints.of_run(workdir, config.keep_checkpoints)
  state = checkpoints.restore_latest(manager, state)
  # Only now, once the data and the workdir's checkpoint are accepted: a
  # refused run leaves no empty events file behind.
  writer = summaries.writer(workdir, chief=is_chief)
  writer.write_hparams(traverse_util.flatten_dict(config.to_dict(), sep='.'))
  start_step = int(state.step)
  # Host copies placed on a mesh named AXIS: flax's default mesh name differs
  # from that of the pmapped step's outputs, which recompiled step 2.
  state = jax_utils.replicate(jax.device_get(state), axis_name=AXIS)
  meta = {'config': json.loads(config.to_json_best_effort()), **task.meta()}

  train_collection = steps.metrics_collection(task.train_metric_names)
  eval_collection = steps.metrics_collection(task.eval_metric_names)
  p_train_step = steps.pmapped(steps.train_step, donate_state=True, task=task,
                               learning_rate_fn=learning_rate_fn,
                               collection=train_collection)
  p_eval_step = steps.pmapped(steps.eval_step, task=task,
                              collection=eval_collection)
  dropout_keys = jax_utils.replicate(jax.device_get(dropout_key),
                                     axis_name=AXIS)

  num_steps = config.num_train_steps
  train_iter = task.train_iterator(
      global_batch_size=config.batch_size, local_device_count=local_devices,
      seed=config.seed, start_step=start_step)
  train_iter = jax_utils.prefetch_to_device(train_iter, 2, axis_name=AXIS)
  progress = console.Progress(num_steps, initial=start_step,
                              enabled=is_chief)
  projection = _Projection(
      start_step, num_steps, task.cpu_presets,
      enabled=is_chief and jax.default_backend() == 'cpu')
  pending = []
  stopped_at = None
  with preemption.StopOnSignal() as stop, progress:
    try:
      for step in range(start_step + 1, num_steps + 1):
        with jax.profiler.StepTraceAnnotation('train', step_num=step):
          batch = next(train_iter)
          state, update, lr = p_train_step(state, batch, dropout_keys)
        # Stays on device; fetched once per log, and checked for NaN
        # before anything reads or saves the state.
        pending.append((step, update))
        projected = projection.after(step, state)
        if projected:
          progress.note(projected)
        last = step == num_steps
        if step % config.log_every_steps == 0 or last:
          scalars = functools.reduce(lambda a, b: a.merge(b),
                                     _check_finite(pending)).compute()
          scalars['learning_rate'] = float(lr[0])
          progress.update(step, loss=float(scalars['loss']))
          scalars['steps_per_sec'] = progress.rate
          writer.write_scalars(step, scalars)
          pending = []
        else:
          progress.update(step)
        if stop.requested(step):
          logging.warning('Stop requested (%s): saving step %d and exiting; '
                          'launch again to resume.', stop.reason, step)
          _check_finite(pending)
          checkpoints.save(manager, state, step, meta)
          stopped_at = step
          break
        if step % config.eval_every_steps == 0 and not last:
          _check_finite(pending)
          with progress.paused():
            result = steps.evaluate(p_eval_step, state, task, config,
                                    eval_collection)
          progress.note(eval_line(task, step, result))
          _write_eval(writer, task, step, result)
        if step % config.checkpoint_every_steps == 0 or last:
          _check_finite(pending)
          with progress.paused():
            checkpoints.save(manager, state, step, meta)
    finally:
      # A crash mid-run still finishes the checkpoint being written, so the
      # next launch resumes from it.
      manager.wait_until_finished()

  if stopped_at is not None:
    writer.flush()
    manager.close()
    return {'preempted': True, 'step': stopped_at, 'state': state,
            'signal': stop.reason}
  result = steps.evaluate_splits(p_eval_step, state, task, config,
                                 eval_collection)
  _write_eval(writer, task, num_steps, result)
  writer.flush()
  manager.close()
  if is_chief:
    # Last, so the table is not buried under the libraries' closing logs.
    print('\n' + task.report(result, workdir, num_steps), flush=True)
    finished = task.finish(result, workdir, num_steps)
    if finished:
      print('\n' + finished, flush=True)
  result.update(state=state, preempted=False, num_train_steps=num_steps)
  return result


def eval_line(task, step: int, result: dict) -> str:
  """One line of the task's headline metrics (and baselines, if any)."""
  metrics, baseline = result['metrics'], result.get('baseline_mean', {})
  parts = []
  for key, _ in task.headline:
    if key in metrics:
      part = f'{key} {metrics[key]:.3f}'
      if key in baseline:
        part += f' (baseline {baseline[key]:.3f})'
      parts.append(part)
  counted, parsed = result.get('significance'), result.get('parsed')
  if parsed:  # The stricter count first: chance and the prior beaten.
    parts.append(f'parsed: {parsed["parsed"]} of {parsed["defined"]} '
                 'hyperparameters')
  if counted:
    parts.append(f'{counted["significant"]} of {counted["defined"]} '
                 f'at random-GT z >= {counted["threshold"]:g}')
  return f'step {step}: held-out ' + ', '.join(parts)


def _write_eval(writer, task, step, result):
  scalars = {f'eval_{k}': v for k, v in result['loss'].items()}
  scalars.update(task.scalars(result))
  writer.write_scalars(step, scalars)
  images, fingerprints, _ = result['examples']
  writer.write_images(step, {
      'heldout/fingerprint_spectrum': summaries.fingerprint_panels(
          images[:8], fingerprints[:8])})
