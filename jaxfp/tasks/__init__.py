"""Tasks: what is predicted, from which data, scored how.

The trainer (`jaxfp.train`) owns the loop, the optimiser, devices and
checkpoints; a task owns everything that depends on what is learned:

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

Tasks are looked up by `config.task`.
"""

from __future__ import annotations

import ml_collections

AXIS = 'batch'
TASKS = ('parsing', 'detection', 'attribution')


def create(config: ml_collections.ConfigDict):
  """The task named by config.task, with its data prepared."""
  # Imported here so that `import jaxfp.tasks` stays light.
  from jaxfp.tasks import classification  # pylint: disable=g-import-not-at-top
  from jaxfp.tasks import parsing  # pylint: disable=g-import-not-at-top
  name = config.get('task', 'parsing')
  if name == 'parsing':
    return parsing.ParsingTask(config)
  if name in ('detection', 'attribution'):
    return classification.ClassificationTask(config)
  raise ValueError(f'config.task={name!r}: use one of {TASKS}')
