"""A checkpoint's network ready for inference: model, variables, outputs.

Reads both kinds of checkpoint directory jaxfp writes (`jaxfp.checkpoints`):
  - training runs (`jaxfp.train`): meta holding the run's config and the
    task's facts (a schema and ground truth, or class names);
  - converted published weights (`jaxfp.convert_torch`): meta holding the
    module's fields ('model') instead of a config.
Either way the network is built from its model fields
(`jaxfp.models.fields`): a parser when the meta has a schema, a classifier
when it has class names, a source embedder for the 'source' task. Only
params and batch statistics are read; optimiser states are ignored.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from jaxfp import checkpoints
from jaxfp import models
from jaxfp.core import console
from jaxfp.core import normalization
from jaxfp.core import schema as schema_lib
from jaxfp.core import spectrum as spectrum_lib
from jaxfp.data import images as images_lib
from jaxfp.losses import parsing as parsing_losses
from jaxfp.models import fields


# A checkpoint directory that cannot be used; the message says why.
CheckpointError = checkpoints.CheckpointError
# The task whose network is a source embedding (jaxfp.tasks.source).
SOURCE_TASK = 'source'


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


def load(path: str, *, published_outputs: bool = False) -> Loaded:
  """The latest checkpoint under `path` (a workdir or checkpoints dir).

  `published_outputs`: the model returns the published sigmoid outputs
  (`jaxfp.models.published`) instead of logits; same variables. `predict_fn`
  needs the logits model.
  """
  checkpoint = checkpoints.read(path)
  meta, directory, step = checkpoint.meta, checkpoint.directory, checkpoint.step
  if 'config' in meta:
    config = meta['config']
    model_fields = config.get('model', {})
    task = meta.get('task', config.get('task', 'parsing'))
    image_size = int(config['data']['image_size'])
  elif 'model' in meta:
    model_fields, task = meta['model'], meta.get('task')
    image_size = int(meta.get('preprocessing', {}).get('image_size', 0))
  else:
    raise CheckpointError(f'{directory}/{step}/meta has neither a run config '
                          f'nor model fields (keys: {sorted(meta)})')
  schema = ground_truth = None
  class_names = ()
  if task == SOURCE_TASK:
    model = fields.embedder(model_fields,
                            num_sources=int(meta.get('num_sources', 0)))
  elif 'schema' in meta or 'ground_truth' in meta:
    if 'ground_truth' in meta:
      ground_truth = schema_lib.GroundTruth.from_dict(meta['ground_truth'])
    schema = (schema_lib.Schema.from_dict(meta['schema']) if 'schema' in meta
              else ground_truth.schema)
    model = fields.parser(schema, model_fields, published=published_outputs)
  elif task in models.HEADS:
    class_names = tuple(meta.get('class_names', ()))
    if not class_names:
      raise CheckpointError(f'{directory}: a {task} checkpoint needs '
                            'class_names in its meta')
    model = fields.classifier(task, len(class_names), model_fields,
                              published=published_outputs)
  else:
    raise CheckpointError(f'{directory}: a {task!r} checkpoint needs a schema '
                          'or ground truth (parsing) or a classifier head of '
                          f'{tuple(models.HEADS)} in its meta')
  pre = meta.get('preprocessing', {})
  return Loaded(task=task, model=model, variables=checkpoint.variables,
                meta=meta, image_size=image_size, step=step,
                directory=directory, schema=schema, ground_truth=ground_truth,
                class_names=class_names,
                mean=float(pre.get('mean', normalization.MEAN)),
                std=float(pre.get('std', normalization.STD)))


def predict_fn(loaded: Loaded):
  """A jitted function: normalised images [N, s, s, 3] -> numpy outputs.

  Outputs: 'fingerprint' [N, s, s, 3], 'spectrum' [N, s, s], 'features'
  [N, D] (the head's last hidden layer, for grouping images), and the task's
  probabilities: parsing 'continuous', 'discrete', 'coarse', 'fine' (see
  losses.parsing.head_probabilities); detection/attribution 'probabilities'
  [N, classes]. Compiled once per batch shape. A source embedder gives
  'embedding' [N, D] (unit rows), which is also its 'features'.
  """
  if has_embedding(loaded):
    return _embedding_fn(loaded)
  hierarchical = bool(loaded.meta.get('config', {}).get('loss', {}).get(
      'hierarchical', True))
  parser = loaded.schema is not None
  feature_layer = 'fc_2' if parser else None

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
           'spectrum': spectrum_lib.magnitude_spectrum(
               outputs['fingerprint']),
           # The first captured hidden layer: fc_2 of the PN (64 wide), or
           # fc_0 of a classifier head.
           'features': features[0].reshape(images.shape[0], -1)}
    if parser:
      out.update(parsing_losses.head_probabilities(
          outputs, loaded.schema.fine_to_coarse, hierarchical=hierarchical))
    else:
      out['probabilities'] = jax.nn.softmax(outputs['logits'])
    return out

  return lambda images: jax.device_get(run(loaded.variables, images))


def has_embedding(loaded: Loaded) -> bool:
  """Whether `predict_fn(loaded)` gives a source embedding."""
  return loaded.task == SOURCE_TASK


def require_embedding(loaded: Loaded, what: str) -> None:
  """Raises CheckpointError, saying what the checkpoint is, when `what` (a
  command or flag) needs a source embedding that `loaded` has not."""
  if not has_embedding(loaded):
    raise CheckpointError(
        f'{what} needs a source-embedding checkpoint; {loaded.directory} is '
        f'a {loaded.task!r} checkpoint (train one with '
        '--config=configs/source.py)')


def embedding_dim(loaded: Loaded) -> int:
  return int(loaded.model.embed_dim) if has_embedding(loaded) else 0


def _embedding_fn(loaded: Loaded):
  @jax.jit
  def run(variables, images):
    outputs = loaded.model.apply(variables, images, train=False)
    return {'fingerprint': outputs['fingerprint'],
            'spectrum': spectrum_lib.magnitude_spectrum(
                outputs['fingerprint']),
            'features': outputs['embedding'],
            'embedding': outputs['embedding']}

  return lambda images: jax.device_get(run(loaded.variables, images))


def vectors_of_files(loaded: Loaded, paths, vector, *, batch_size: int = 32,
                     policy: str = 'resize', progress: bool = False):
  """One vector per image file: `vector(outputs of predict_fn)` -> [n, D].

  Returns (kept paths, [N, D] float64 vectors, (path, reason) failures):
  unreadable images and images whose vector is not finite are failures,
  named and left out, so that no NaN reaches a grouping or a gallery.
  """
  run_batch = predict_fn(loaded)
  kept, vectors, failures = [], [], []
  with console.Progress(len(paths), what='embed', unit='images',
                        enabled=progress) as bar:
    for batch_paths, images in images_lib.batches(
        paths, loaded.image_size, policy, batch_size, failures,
        mean=loaded.mean, std=loaded.std):
      out = np.asarray(vector(run_batch(images)))[:len(batch_paths)]
      finite = np.isfinite(out).all(axis=1)
      failures += [(p, 'the network gave NaN or infinite outputs')
                   for p, ok in zip(batch_paths, finite) if not ok]
      kept += [p for p, ok in zip(batch_paths, finite) if ok]
      vectors.append(out[finite])
      bar.update(len(kept) + len(failures))
  if not kept:
    return [], np.zeros((0, 0), np.float64), failures
  return kept, np.concatenate(vectors).astype(np.float64), failures
