"""Evaluates a checkpoint on held-out data, without training
(`python -m jaxfp.evaluate`; docs/evaluation.md, "Commands").

Writes what training writes at its end (for parsing: results.md,
results.json, fingerprints.png, baseline_bars.png) to --workdir, and prints
the table. The checkpoint is a `jaxfp.checkpoints` directory, as the trainer
or `jaxfp.convert_torch` writes it; only its parameters and BatchNorm
statistics are read, never the optimizer state.

Which config (`config_for`): the network (config.model, and
config.loss.hierarchical, which decides how fine loss types are scored)
always comes from the checkpoint; the rest (data, batch size, baseline
shuffles) from --config when it is given, else from the config saved with
the checkpoint. The held-out GMs (meta 'test_gms') and the closed set
(`config.data.closed_set_fraction` of the checkpoint's config) are the
checkpoint's own, so a run is scored on exactly the images it never saw,
unless --split=config. `all_held_out` holds out every GM of the dataset (a
zoo of another seed); the training prior then comes from the checkpoint's
meta, and a checkpoint without it (converted weights) is scored without
that baseline, which the table says.
"""

from __future__ import annotations

import functools
import json
import os
from typing import NamedTuple

from absl import logging
from flax import jax_utils
from flax import traverse_util
import jax
import ml_collections
import numpy as np
import optax

from jaxfp import checkpoints
from jaxfp import steps
from jaxfp import tasks
from jaxfp import train
from jaxfp.core import files
from jaxfp.models import fields

# config.model fields a checkpoint's 'model' meta (jaxfp.convert_torch) sets;
# the task and class count come from the data.
MODEL_FIELDS = tuple(f for f in fields.RECORDED
                     if f not in ('task', 'num_classes')) + ('dtype',)


def _merge(base: dict, update: dict) -> dict:
  """`base` with `update`'s values, recursively for nested dicts."""
  out = dict(base)
  for key, value in update.items():
    if isinstance(value, dict) and isinstance(out.get(key), dict):
      out[key] = _merge(out[key], value)
    else:
      out[key] = value
  return out


# config.data fields that choose the held-out GMs (jaxfp.data.splits), and
# their values when every GM is held out.
ALL_HELD_OUT = {'test_set': 0, 'test_gms': (), 'num_folds': 0,
                'num_test_gms': 0, 'test_fraction': 1.0}


def config_for(meta: dict, config: ml_collections.ConfigDict | None = None,
               *, use_checkpoint_split: bool = True,
               all_held_out: bool = False,
               directory: str = 'the checkpoint') -> ml_collections.ConfigDict:
  """The config to evaluate a checkpoint with (see the module docstring).

  A --config of another task than the checkpoint's is refused, naming both:
  the network comes from the checkpoint, the rest of the task's fields
  (losses, heads) from --config, and the two would not fit together."""
  saved = meta.get('config')
  if config is None and saved is None:
    raise ValueError('the checkpoint has no saved config (a converted '
                     'published checkpoint?): pass --config, e.g. '
                     '--config=configs/fen.py with the dataset overrides')
  task = meta.get('task') or (saved or {}).get('task') or 'parsing'
  given = config.get('task', 'parsing') if config is not None else task
  if given != task:
    raise ValueError(f'{directory} is a {task} checkpoint, but --config is '
                     f"of task '{given}' (config.task); pass a {task} config")
  base = config.to_dict() if config is not None else saved
  merged = _merge(base, {'task': task})
  network = {}
  if saved is not None:
    network = {'model': saved.get('model', {})}
    if 'hierarchical' in saved.get('loss', {}):
      network['loss'] = {'hierarchical': saved['loss']['hierarchical']}
  if 'model' in meta:
    network = _merge(network, {'model': {
        k: v for k, v in meta['model'].items() if k in MODEL_FIELDS}})
  for key, value in traverse_util.flatten_dict(network, sep='.').items():
    old = traverse_util.flatten_dict(merged, sep='.').get(key)
    if old is not None and _normal(old) != _normal(value):
      logging.warning('config.%s=%r replaced by the checkpoint\'s %r', key,
                      old, value)
  merged = _merge(merged, network)
  # Which images of its training GMs the checkpoint never trained on: its
  # own config says; without one (converted weights) none is known.
  closed = ((saved or {}).get('data') or {}).get('closed_set_fraction', 0.0)
  merged['data'] = _merge(merged['data'], {'closed_set_fraction': closed})
  if all_held_out:
    merged['data'] = _merge(merged['data'], ALL_HELD_OUT)
  elif use_checkpoint_split and meta.get('test_gms'):
    merged['data'] = _merge(merged['data'], {
        'test_gms': tuple(meta['test_gms']), 'num_folds': 0, 'test_set': 0})
  return ml_collections.ConfigDict(merged)


def _normal(value):
  return list(value) if isinstance(value, tuple) else value


def check_variables(model, image_size: int, variables: dict) -> None:
  """Raises naming the first mismatches if `variables` do not fit `model`."""
  images = jax.ShapeDtypeStruct((1, image_size, image_size, 3), np.float32)
  expected = jax.eval_shape(
      functools.partial(model.init, train=False), jax.random.key(0), images)
  problems = checkpoints.mismatches(
      {'params': expected['params'],
       'batch_stats': expected.get('batch_stats', {})}, variables)
  if problems:
    raise ValueError('the checkpoint does not fit the configured model '
                     f'({len(problems)} problems): ' + '; '.join(problems[:8]))


class Prepared(NamedTuple):
  """A checkpoint ready to evaluate: task, replicated state, compiled step."""
  task: object
  state: steps.TrainState
  p_eval_step: object
  collection: object
  config: ml_collections.ConfigDict
  step: int
  directory: str


def prepare(checkpoint: str, *, config: ml_collections.ConfigDict | None = None,
            step: int | None = None,
            use_checkpoint_split: bool = True,
            all_held_out: bool = False) -> Prepared:
  """Reads a checkpoint and builds what `steps.evaluate` needs.

  Args:
    checkpoint: a run directory, its `checkpoints` folder, or one step's.
    config: overrides the checkpoint's saved config except for the network
      (see the module docstring); needed for converted checkpoints.
    step: which step; default the latest.
    use_checkpoint_split: hold out the checkpoint's own test GMs.
    all_held_out: hold out every GM of the dataset (it may be one the
      checkpoint never saw).
  """
  read = checkpoints.read(checkpoint, step)
  directory, step, variables, meta = (read.directory, read.step,
                                      read.variables, read.meta)
  config = config_for(meta, config, use_checkpoint_split=use_checkpoint_split,
                      all_held_out=all_held_out, directory=directory)
  train.validate(config, jax.local_device_count())
  task = tasks.create(config, evaluation_only=True)
  task.use_checkpoint_meta(meta)
  logging.info('Evaluating step %d of %s: %s', step, directory,
               task.describe())
  _check_split(meta, task)
  _check_schema(meta, task)
  check_variables(task.model, config.data.image_size, variables)
  state = steps.TrainState.create(
      apply_fn=task.model.apply, params=variables['params'],
      batch_stats=variables['batch_stats'], tx=optax.set_to_zero())
  state = jax_utils.replicate(state.replace(step=step))
  collection = steps.metrics_collection(task.eval_metric_names)
  p_eval_step = steps.pmapped(steps.eval_step, task=task,
                              collection=collection)
  return Prepared(task, state, p_eval_step, collection, config, step,
                  directory)


def evaluate_checkpoint(checkpoint: str, *, workdir: str | None = None,
                        config: ml_collections.ConfigDict | None = None,
                        step: int | None = None,
                        use_checkpoint_split: bool = True,
                        all_held_out: bool = False) -> dict:
  """Scores one checkpoint; writes the task's report to `workdir`.

  Arguments as `prepare`; `workdir` is where the report goes, by default
  the run directory (the parent of `checkpoints`). Returns the task's result
  (as `steps.evaluate`), plus 'step', 'config', 'text'.
  """
  directory, _ = checkpoints.find(checkpoint, step)  # Fails fast if absent.
  if workdir is None:  # The run directory, parent of `checkpoints`.
    workdir = os.path.dirname(directory)
  # Checked before any work: a report that cannot be written is known now.
  workdir = files.check_output_folder(workdir, 'workdir')
  p = prepare(checkpoint, config=config, step=step,
              use_checkpoint_split=use_checkpoint_split,
              all_held_out=all_held_out)
  result = steps.evaluate_splits(p.p_eval_step, p.state, p.task, p.config,
                                 p.collection)
  result['text'] = ''
  if jax.process_index() == 0:
    result['text'] = p.task.report(result, workdir, p.step)
  result.update(step=p.step, config=p.config)
  return result


def _check_split(meta: dict, task) -> None:
  """Warns when the held-out GMs include GMs the checkpoint trained on, or
  the closed set GMs it held out. GMs are matched by name, and names repeat
  across datasets (every zoo has a gm_000): on a dataset whose ground truth
  differs from the checkpoint's, no GM is one it saw."""
  saved = meta.get('ground_truth')
  truth = getattr(getattr(task, 'info', None), 'ground_truth', None)
  if saved and truth is not None and saved != truth.to_dict():
    logging.info('The dataset is not the one the checkpoint was trained on '
                 '(the ground truth differs): every GM is unseen.')
    return
  trained = set(meta.get('train_gms') or ())
  seen = sorted(trained & set(getattr(task.info, 'test_gms', ())))
  if seen:
    logging.warning('The checkpoint was trained on %d of the held-out GMs: '
                    '%s; these metrics are not held-out metrics.', len(seen),
                    seen)
  held_out = set(meta.get('test_gms') or ())
  unseen = sorted(held_out & set(getattr(task.info, 'closed_gms', ())))
  if unseen:
    logging.warning('The closed set holds images of %d GMs the checkpoint '
                    'held out: %s; its metrics are not closed-set metrics.',
                    len(unseen), unseen)


def _check_schema(meta: dict, task) -> None:
  saved = meta.get('schema') or (meta.get('ground_truth') or {}).get('schema')
  schema = getattr(task, 'schema', None)
  if saved and schema is not None and saved != schema.to_dict():
    # Head sizes may agree while names differ (e.g. the published tables'
    # generic class names); outputs are read by position, so only warn.
    logging.warning('The checkpoint was trained with the schema %s; the '
                    'dataset has %s. Heads are matched by position.',
                    json.dumps(saved), json.dumps(schema.to_dict()))
