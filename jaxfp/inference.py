"""A checkpoint ready for inference: its model, variables and what it predicts.

Reads both kinds of checkpoint directory jaxfp writes:
  - training runs (`jaxfp.train`): <workdir>/checkpoints/<step>/{state,meta},
    meta holding the run's config and the task's facts;
  - converted published weights (`jaxfp.convert_torch`): the same layout,
    meta holding the module's fields ('model') instead of a config.
Only params and batch statistics are read; optimiser states are ignored.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any

from absl import logging
import jax
import ml_collections
import numpy as np

from jaxfp import convert_torch
from jaxfp import evaluate
from jaxfp import normalization
from jaxfp import schema as schema_lib
from jaxfp.losses import fingerprint as fingerprint_losses
from jaxfp.losses import parsing as parsing_losses
from jaxfp.tasks import classification
from jaxfp.tasks import parsing

TASKS = ('parsing', 'detection', 'attribution')


class CheckpointError(ValueError):
  """A checkpoint directory that cannot be used; the message says why."""


@dataclasses.dataclass(frozen=True)
class Loaded:
  task: str
  model: Any  # A Flax module built with axis_name=None.
  variables: dict  # {'params', 'batch_stats'}.
  meta: dict
  image_size: int
  step: int
  directory: str
  schema: schema_lib.Schema | None = None  # Parsing only.
  ground_truth: schema_lib.GroundTruth | None = None  # Parsing, if saved.
  class_names: tuple[str, ...] = ()  # Detection and attribution.
  mean: float = normalization.MEAN
  std: float = normalization.STD


def _restore(path: str):
  """(directory, step, numpy variables, meta) of the latest checkpoint."""
  try:
    directory, step = evaluate.find_checkpoint(
        os.path.expanduser(path))
    variables, meta = evaluate.read_checkpoint(directory, step)
  except (FileNotFoundError, ValueError) as e:
    raise CheckpointError(str(e)) from e
  return directory, step, jax.tree.map(np.asarray, variables), meta


def _schema_of(meta: dict):
  ground_truth = None
  if 'ground_truth' in meta:
    ground_truth = schema_lib.GroundTruth.from_dict(meta['ground_truth'])
  if 'schema' in meta:
    return schema_lib.Schema.from_dict(meta['schema']), ground_truth
  if ground_truth is not None:
    return ground_truth.schema, ground_truth
  raise CheckpointError('a parsing checkpoint needs a schema or ground truth '
                        'in its meta')


def load(path: str) -> Loaded:
  """The latest checkpoint under `path` (a workdir or checkpoints dir)."""
  directory, step, variables, meta = _restore(path)
  if 'config' in meta:
    config = ml_collections.ConfigDict(meta['config'])
    task = meta.get('task', config.get('task', 'parsing'))
    image_size = int(config.data.image_size)
  elif 'model' in meta:
    config, task = None, meta.get('task')
    image_size = int(meta.get('preprocessing', {}).get('image_size', 0))
  else:
    raise CheckpointError(f'{directory}/{step}/meta has neither a run config '
                          f'nor model fields (keys: {sorted(meta)})')
  if task not in TASKS:
    raise CheckpointError(f'{directory}: unknown task {task!r}')
  schema = ground_truth = None
  class_names = ()
  if task == 'parsing':
    schema, ground_truth = _schema_of(meta)
    model = (parsing.create_model(config, schema, axis_name=None) if config
             else convert_torch.module_from_meta(meta))
  else:
    class_names = tuple(meta.get('class_names', ()))
    if not class_names:
      raise CheckpointError(f'{directory}: a {task} checkpoint needs '
                            'class_names in its meta')
    model = (classification.create_model(config, len(class_names),
                                         axis_name=None) if config
             else convert_torch.module_from_meta(meta))
  pre = meta.get('preprocessing', {})
  return Loaded(task=task, model=model, variables=variables, meta=meta,
                image_size=image_size, step=step, directory=directory,
                schema=schema, ground_truth=ground_truth,
                class_names=class_names,
                mean=float(pre.get('mean', normalization.MEAN)),
                std=float(pre.get('std', normalization.STD)))


def predict_fn(loaded: Loaded):
  """A jitted function: normalised images [N, s, s, 3] -> numpy outputs.

  Outputs: 'fingerprint' [N, s, s, 3], 'spectrum' [N, s, s], 'features'
  [N, D] (the head's last hidden layer, for grouping images), and the task's
  probabilities: parsing 'continuous', 'discrete', 'coarse', 'fine' (see
  losses.parsing.head_probabilities); detection/attribution 'probabilities'
  [N, classes]. Compiled once per batch shape.
  """
  hierarchical = True
  if 'config' in loaded.meta:
    hierarchical = bool(loaded.meta['config'].get('loss', {}).get(
        'hierarchical', True))
  feature_layer = 'fc_2' if loaded.task == 'parsing' else None

  def keep(module, method_name):
    del method_name
    name = module.name or ''
    return name == feature_layer or (feature_layer is None and
                                     name.startswith('fc_'))

  @jax.jit
  def run(variables, images):
    outputs, state = loaded.model.apply(
        variables, images, train=False, capture_intermediates=keep,
        mutable=['intermediates'])
    captured = state['intermediates']
    features = jax.tree.leaves(captured)
    out = {'fingerprint': outputs['fingerprint'],
           'spectrum': fingerprint_losses.magnitude_spectrum(
               outputs['fingerprint']),
           # The first captured hidden layer: fc_2 of the PN (64 wide), or
           # fc_0 of a classifier head.
           'features': features[0].reshape(images.shape[0], -1)}
    if loaded.task == 'parsing':
      out.update(parsing_losses.head_probabilities(
          outputs, loaded.schema.fine_to_coarse, hierarchical=hierarchical))
    else:
      out['probabilities'] = jax.nn.softmax(outputs['logits'])
    return out

  return lambda images: jax.device_get(run(loaded.variables, images))


def load_for_command_line(path: str) -> Loaded | None:
  """`load`, quietly: library INFO logs off, a bad checkpoint one line.

  Returns None (after printing `error: ...` to stderr) if unusable.
  """
  # Checkpoint I/O logs at INFO would drown a command's table.
  logging.set_verbosity(logging.WARNING)
  try:
    return load(path)
  except CheckpointError as e:
    print(f'error: {e}', file=sys.stderr)
    return None
