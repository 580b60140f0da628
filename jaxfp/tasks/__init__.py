"""Tasks: what is predicted, from which data, scored how.

The trainer (`jaxfp.train`) owns the loop, the optimiser, devices and
checkpoints; a task owns everything that depends on what is learned:

  headline              (metric, 'lower' | 'higher') pairs: the few figures
                        an evaluation line and a robustness table show
  model                 a Flax module built with axis_name=AXIS
  train_metric_names    names of the per-step scalars `loss` returns
  eval_metric_names     names of the per-batch scalars `eval_outputs` returns
  id_keys               batch keys kept per image for `score`
  example_key           batch key whose distinct values get one picture each
  loss(outputs, batch)          -> (total, terms)        inside pmap
  eval_outputs(outputs, batch)  -> (predictions, terms)  inside pmap
  train_iterator(...), eval_iterator(...)                host batches
  score(predictions, ids)       -> result dict with 'metrics'   host
  report(result, workdir, step) -> text; writes results.{md,json}, pictures
  scalars(result)               -> dict of summary scalars
  meta()                        -> JSON-able facts saved with checkpoints

and optionally

  eval_splits()                 -> names of other splits the final
                                   evaluation also scores (parsing: the
                                   closed set), passed as eval_iterator's
                                   `split`
  use_checkpoint_meta(meta)     jaxfp.evaluate hands over the checkpoint's
                                meta (parsing: its training GMs' truth)
  info.num_train_images         the training-set size that resolves
                                config.num_epochs to steps
  cpu_presets                   the config presets sized for a CPU, named
                                by the trainer's projection on a CPU

A task class takes (config, info=None, *, evaluation_only=False); with
evaluation_only its data may hold out everything (jaxfp.evaluate).

The registry: every module of this package that defines `TASKS`, a dict of
task name -> task class, adds its tasks; a task is looked up by
`config.task`. Adding a task is one module here and its config file.
Importing a task module needs no TensorFlow: tasks read data through
`jaxfp.data` only when their iterators are asked for.
"""

from __future__ import annotations

import importlib
import pkgutil

import ml_collections


def registry() -> dict[str, type]:
  """Task name -> task class, from every module of this package."""
  found = {}
  for module_info in pkgutil.iter_modules(__path__):
    module = importlib.import_module(f'{__name__}.{module_info.name}')
    found.update(getattr(module, 'TASKS', {}))
  return found


def names() -> tuple[str, ...]:
  return tuple(registry())


def get(name: str) -> type:
  """The class of task `name`; a ValueError names the known ones."""
  found = registry()
  if name not in found:
    raise ValueError(f'config.task={name!r}: use one of {tuple(found)}')
  return found[name]


def create(config: ml_collections.ConfigDict, *,
           evaluation_only: bool = False):
  """The task named by config.task, with its data prepared;
  `evaluation_only`: for evaluating a checkpoint, not for training."""
  return get(config.get('task', 'parsing'))(
      config, evaluation_only=evaluation_only)
