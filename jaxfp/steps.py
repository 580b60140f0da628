"""The step library every loop shares: the learning-rate schedule and
optimizer, the train state, the train and eval steps, and `pmapped`, which
assembles either as a pmapped program; `evaluate`, one pass over a task's
held-out images. `jaxfp.train` runs the loop, `jaxfp.tools.evaluate` scores
checkpoints, `jaxfp.bench` times the steps: all with these functions.

What is learned comes from the task (`jaxfp.tasks`); data parallel over
every device of every process (pmap over `AXIS`).
"""

from __future__ import annotations

import functools
from typing import Any

from clu import metrics as clu_metrics
from flax.training import train_state
import jax
from jax.experimental import multihost_utils
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from jaxfp.core import distributed

AXIS = distributed.AXIS


def create_learning_rate_fn(config: ml_collections.ConfigDict):
  if config.lr_schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps,
        max(config.num_train_steps, config.warmup_steps + 1))
  raise ValueError(f'config.lr_schedule={config.lr_schedule!r}: use '
                   "'constant' or 'warmup_cosine'")


def metrics_collection(names):
  return clu_metrics.Collection.create(
      **{n: clu_metrics.Average.from_output(n) for n in names})


class TrainState(train_state.TrainState):
  batch_stats: Any


def train_step(state, batch, dropout_key, *, task, learning_rate_fn,
               collection):
  """One optimiser step on this device's share; gradients pmean-ed."""
  key = jax.random.fold_in(jax.random.fold_in(dropout_key, state.step),
                           jax.lax.axis_index(AXIS))

  def loss_fn(params):
    outputs, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        train=True, mutable=['batch_stats'], rngs={'dropout': key})
    loss, terms = task.loss(outputs, batch)
    return loss, (updates['batch_stats'], terms)

  (loss, (batch_stats, terms)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  # BatchNorm already averaged its statistics over AXIS, so every device
  # holds the same running statistics and no extra sync is needed.
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  update = collection.gather_from_model_output(loss=loss, **terms)
  return state, update, learning_rate_fn(state.step)


def eval_step(state, batch, *, task, collection):
  """The task's predictions and losses, and the fingerprints to show."""
  outputs = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats},
      batch['image'], train=False)
  predictions, terms = task.eval_outputs(outputs, batch)
  predictions['fingerprint'] = outputs['fingerprint']
  return predictions, collection.gather_from_model_output(**terms)


def optimizer(config, learning_rate_fn) -> optax.GradientTransformation:
  """Adam as published; AdamW (decoupled decay) if config.weight_decay > 0."""
  if config.weight_decay > 0:
    return optax.adamw(learning_rate_fn, weight_decay=config.weight_decay)
  return optax.adam(learning_rate_fn)


def create_train_state(key, config, model, image_size, learning_rate_fn):
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  # Initialised outside pmap: BatchNorm's axis name is unbound there, so
  # init runs the model in inference mode, which needs no cross-device mean.

  def create(key):
    variables = model.init({'params': key}, images, train=False)
    return TrainState.create(
        apply_fn=model.apply, params=variables['params'],
        batch_stats=variables.get('batch_stats', {}),
        tx=optimizer(config, learning_rate_fn))
  # One program, since eager optax init compiles one per parameter shape;
  # unoptimised, since it runs once and optimising the initialisers costs
  # far more compile time than it saves (docs/performance.md).
  return jax.jit(create, compiler_options={
      'xla_backend_optimization_level': 0})(key)


def evaluate(p_eval_step, state, task, config, collection, perturb=None,
             split=None):
  """One pass over the held-out images: the task's score and examples.

  Predictions of every process are gathered, so every process scores the
  whole held-out set. `examples` holds (images, fingerprints, ids) of the
  first image of each distinct `task.example_key` value. `perturb` (a
  `jaxfp.data.augment.fixed` map) perturbs the held-out images first.
  `split`: another of the task's evaluation splits (`task.eval_splits()`).
  """
  extra = {} if perturb is None else {'perturb': perturb}
  if split is not None:
    extra['split'] = split
  batches = task.eval_iterator(global_batch_size=config.batch_size,
                               local_device_count=jax.local_device_count(),
                               **extra)
  flat = lambda x: np.asarray(x).reshape((-1,) + np.shape(x)[2:])
  gathered, losses = [], None
  examples = {}
  for batch in batches:
    predictions, update = p_eval_step(state, batch)
    update = jax.tree.map(lambda x: x[0], update)
    losses = update if losses is None else losses.merge(update)
    predictions = jax.tree.map(flat, jax.device_get(predictions))
    fingerprints = predictions.pop('fingerprint')
    keys = {k: flat(batch[k]) for k in task.id_keys + ('mask',)}
    gathered.append((predictions, keys))
    ids = flat(batch[task.example_key])
    for i in np.flatnonzero(keys['mask'] > 0):
      if ids[i] not in examples:
        examples[ids[i]] = (flat(batch['image'])[i], fingerprints[i])
  if not gathered:
    raise ValueError('the held-out split has no images')
  merged = jax.tree.map(lambda *xs: np.concatenate(xs), *gathered)
  if jax.process_count() > 1:  # Every process's rows, in process order.
    merged = jax.tree.map(np.asarray, multihost_utils.process_allgather(
        merged, tiled=True))
  predictions, keys = merged
  real = keys.pop('mask') > 0
  result = task.score(jax.tree.map(lambda x: x[real], predictions),
                      {k: v[real] for k, v in keys.items()})
  order = sorted(examples)
  result['loss'] = losses.compute()
  result['examples'] = (np.stack([examples[k][0] for k in order]),
                        np.stack([examples[k][1] for k in order]),
                        np.asarray(order))
  return result


def evaluate_splits(p_eval_step, state, task, config, collection):
  """The final evaluation: `evaluate` on the held-out images, and on each
  of the task's other splits (parsing: the closed set), whose results go
  under their names (without pictures)."""
  result = evaluate(p_eval_step, state, task, config, collection)
  for split in task.eval_splits():
    extra = evaluate(p_eval_step, state, task, config, collection,
                     split=split)
    extra.pop('examples')
    result[split] = extra
  return result


def pmapped(step, *, donate_state: bool = False, devices=None, **bound):
  """`step` (`train_step` or `eval_step`) with its keyword arguments bound,
  pmapped over `AXIS`; `donate_state`: the state argument's buffers go to the
  output (a train step, whose returned state replaces it)."""
  return jax.pmap(functools.partial(step, **bound), axis_name=AXIS,
                  donate_argnums=(0,) if donate_state else (),
                  devices=devices)
