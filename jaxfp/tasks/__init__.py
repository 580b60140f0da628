"""Tasks: what is predicted, from which data, scored how.

The trainer (`jaxfp.train`) owns the loop, the optimiser, devices and
checkpoints; a task owns everything that depends on what is learned. The
contract, with its defaults, is `jaxfp.tasks.common.Task`.

The registry: each module named in `MODULES` defines `TASKS`, a dict of
task name -> task class; a task is looked up by `config.task`. Adding a
task is one module here, its name in `MODULES` and its config file.
Importing a task module needs no TensorFlow: tasks read data through
`jaxfp.data` only when their iterators are asked for.
"""

from __future__ import annotations

import importlib

import ml_collections

# The modules that define tasks; imported when a task is looked up.
MODULES = ('parsing', 'classification', 'source')


def registry() -> dict[str, type]:
  """Task name -> task class, from every module of `MODULES`."""
  found = {}
  for name in MODULES:
    found.update(importlib.import_module(f'{__name__}.{name}').TASKS)
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
