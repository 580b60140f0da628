"""Training and evaluation of FEN + PN for model parsing.

Read top to bottom: the model, the learning-rate schedule, the losses, the
pmapped train and eval steps, the train state, checkpoints, evaluation, and
last `train_and_evaluate`, the only function with a loop and side effects.
"""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from absl import logging
from clu import metric_writers
from clu import metrics as clu_metrics
from clu import periodic_actions
import flax
from flax import jax_utils
from flax.training import train_state
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from jaxfp import input_pipeline
from jaxfp import metrics as parsing_metrics
from jaxfp import models
from jaxfp import schema as schema_lib
from jaxfp import summaries
from jaxfp.losses import fingerprint as fingerprint_losses
from jaxfp.losses import parsing as parsing_losses

AXIS = 'batch'
FINGERPRINT_TERMS = ('magnitude', 'spectrum', 'repetitive', 'symmetry')
PARSING_TERMS = ('continuous', 'discrete', 'coarse', 'fine')


def create_model(config: ml_collections.ConfigDict,
                 schema: schema_lib.Schema) -> models.FingerprintParser:
  m = config.model
  return models.FingerprintParser(
      schema, fen_depth=m.fen_depth, fen_width=m.fen_width,
      use_fen=m.use_fen, dropout_rate=m.dropout_rate,
      pn_channels=tuple(m.pn_channels), dtype=jnp.dtype(m.dtype),
      axis_name=AXIS)


def create_learning_rate_fn(config: ml_collections.ConfigDict):
  if config.lr_schedule == 'constant':
    return optax.constant_schedule(config.learning_rate)
  if config.lr_schedule == 'warmup_cosine':
    return optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, config.warmup_steps,
        max(config.num_train_steps, config.warmup_steps + 1))
  raise ValueError(f'config.lr_schedule={config.lr_schedule!r}: use '
                   "'constant' or 'warmup_cosine'")


def compute_losses(outputs, batch, class_weights, config, schema):
  """Total loss and its named terms for one device's share of the batch."""
  terms = {}
  total = 0.0
  if config.model.use_fen:
    fp_total, fp_terms = fingerprint_losses.fingerprint_losses(
        outputs['fingerprint'], config.loss.fingerprint_weights,
        low_freq_radius=config.loss.low_freq_radius,
        batch_global_max=config.loss.batch_global_max, axis_name=AXIS)
    total += fp_total
    terms.update({f'fingerprint_{k}': v for k, v in fp_terms.items()})
  parse_total, parse_terms = parsing_losses.parsing_loss(
      outputs, batch, class_weights, schema,
      head_weight=config.loss.head_weight,
      hierarchical=config.loss.hierarchical,
      published_sigmoid_ce=config.loss.published_sigmoid_ce, axis_name=AXIS)
  total += parse_total
  terms.update({f'parsing_{k}': v for k, v in parse_terms.items()})
  return total, terms


def metric_names(config) -> tuple[str, ...]:
  names = ['loss'] + [f'parsing_{t}' for t in PARSING_TERMS]
  if config.model.use_fen:
    names += [f'fingerprint_{t}' for t in FINGERPRINT_TERMS]
  return tuple(names)


def metrics_collection(names):
  return clu_metrics.Collection.create(
      **{n: clu_metrics.Average.from_output(n) for n in names})


class TrainState(train_state.TrainState):
  batch_stats: Any


def train_step(state, batch, dropout_key, *, class_weights, config, schema,
               learning_rate_fn, collection):
  """One optimiser step on this device's share; gradients pmean-ed."""
  key = jax.random.fold_in(jax.random.fold_in(dropout_key, state.step),
                           jax.lax.axis_index(AXIS))

  def loss_fn(params):
    outputs, updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats}, batch['image'],
        train=True, mutable=['batch_stats'], rngs={'dropout': key})
    loss, terms = compute_losses(outputs, batch, class_weights, config,
                                 schema)
    return loss, (updates['batch_stats'], terms)

  (loss, (batch_stats, terms)), grads = jax.value_and_grad(
      loss_fn, has_aux=True)(state.params)
  grads = jax.lax.pmean(grads, AXIS)
  # BatchNorm already averaged its statistics over AXIS, so every device
  # holds the same running statistics and no extra sync is needed.
  state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
  update = collection.gather_from_model_output(loss=loss, **terms)
  return state, update, learning_rate_fn(state.step)


def masked_labels(batch):
  """Padding rows of an eval batch marked missing, so losses ignore them."""
  real = batch['mask'] > 0
  def hide(x, missing):
    shape = real.shape + (1,) * (x.ndim - real.ndim)
    return jnp.where(real.reshape(shape), x, missing)
  return {**batch,
          'continuous': hide(batch['continuous'], jnp.nan),
          'discrete': hide(batch['discrete'], schema_lib.MISSING),
          'coarse': hide(batch['coarse'], schema_lib.MISSING),
          'fine': hide(batch['fine'], schema_lib.MISSING)}


def eval_step(state, batch, *, class_weights, config, schema, collection):
  """Probabilities for every head, the parsing loss, and spectra to show."""
  outputs = state.apply_fn(
      {'params': state.params, 'batch_stats': state.batch_stats},
      batch['image'], train=False)
  loss, terms = parsing_losses.parsing_loss(
      outputs, masked_labels(batch), class_weights, schema,
      head_weight=config.loss.head_weight,
      hierarchical=config.loss.hierarchical,
      published_sigmoid_ce=config.loss.published_sigmoid_ce, axis_name=AXIS)
  update = collection.gather_from_model_output(
      loss=loss, **{f'parsing_{k}': v for k, v in terms.items()})
  predictions = {
      'continuous': jax.nn.sigmoid(outputs['continuous']),
      'discrete': tuple(jax.nn.softmax(d) for d in outputs['discrete']),
      'coarse': jax.nn.softmax(outputs['coarse'])[..., 1],
      'fine': parsing_losses.fine_probabilities(
          outputs['coarse'], outputs['fine'], schema.fine_to_coarse,
          hierarchical=config.loss.hierarchical),
      'fingerprint': outputs['fingerprint'],
  }
  return predictions, update


def create_train_state(key, config, model, image_size, learning_rate_fn):
  images = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  # Initialised outside pmap: BatchNorm's axis name is unbound there, so
  # init runs the model in inference mode, which needs no cross-device mean.
  variables = jax.jit(functools.partial(model.init, train=False))(
      {'params': key}, images)
  return TrainState.create(
      apply_fn=model.apply, params=variables['params'],
      batch_stats=variables.get('batch_stats', {}),
      tx=optax.adam(learning_rate_fn))


def checkpoint_manager(workdir: str, config) -> ocp.CheckpointManager:
  return ocp.CheckpointManager(
      os.path.join(os.path.abspath(workdir), 'checkpoints'),
      options=ocp.CheckpointManagerOptions(
          max_to_keep=config.keep_checkpoints, create=True),
      item_names=('state', 'meta'))


def restore_latest(manager, state):
  """The latest checkpoint's state, or `state` unchanged if there is none."""
  step = manager.latest_step()
  if step is None:
    return state
  logging.info('Resuming from the checkpoint of step %d in %s', step,
               manager.directory)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
  restored = manager.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
  return restored.state


def save_checkpoint(manager, state, step, meta):
  manager.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(jax_utils.unreplicate(state)),
      meta=ocp.args.JsonSave(meta)))


def evaluate(p_eval_step, state, config, info, collection):
  """One pass over the held-out GMs: metrics, random baseline, examples."""
  device_count = jax.local_device_count()
  batches = input_pipeline.eval_iterator(
      config.data, info, global_batch_size=config.batch_size,
      local_device_count=device_count)
  gathered, losses, examples = [], None, None
  for batch in batches:
    predictions, update = p_eval_step(state, batch)
    update = update.unreplicate()
    losses = update if losses is None else losses.merge(update)
    predictions = jax.device_get(predictions)
    flat = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), predictions)
    real = batch['mask'].reshape(-1) > 0
    fingerprints = flat.pop('fingerprint')
    if examples is None:
      examples = (batch['image'].reshape((-1,) + batch['image'].shape[2:])[:4],
                  fingerprints[:4])
    gathered.append((jax.tree.map(lambda x, r=real: x[r], flat),
                     batch['gm'].reshape(-1)[real]))
  if not gathered:
    raise ValueError('the held-out split has no images; check '
                     'config.data.test_gms / num_test_gms')
  predictions = jax.tree.map(lambda *xs: np.concatenate(xs),
                             *[p for p, _ in gathered])
  rows = np.concatenate([r for _, r in gathered])
  gt = info.ground_truth
  model_metrics = parsing_metrics.parsing_metrics(
      predictions, parsing_metrics.Labels.of(gt, rows), gt.schema)
  base_mean, base_std = parsing_metrics.random_baseline(
      predictions, gt, rows, num_shuffles=config.num_baseline_shuffles,
      seed=config.seed)
  return {
      'metrics': model_metrics, 'baseline_mean': base_mean,
      'baseline_std': base_std, 'loss': losses.compute(),
      'num_images': int(len(rows)), 'examples': examples,
  }


def validate(config, local_device_count: int):
  """Checks that fail fast, before any dataset build or compilation."""
  total_devices = local_device_count * jax.process_count()
  if config.batch_size % total_devices:
    raise ValueError(
        f'config.batch_size={config.batch_size} is not divisible by the '
        f'{total_devices} devices in use; choose a multiple of {total_devices}')
  if config.num_train_steps < 1:
    raise ValueError(f'config.num_train_steps={config.num_train_steps} must be '
                     'at least 1')
  size, radius = config.data.image_size, config.loss.low_freq_radius
  if config.model.use_fen and 2 * radius + 1 > size:
    raise ValueError(f'config.loss.low_freq_radius={radius} gives a '
                     f'{2 * radius + 1}-pixel window, larger than '
                     f'config.data.image_size={size}')
  unknown = set(config.loss.fingerprint_weights) - set(FINGERPRINT_TERMS)
  if unknown:
    raise ValueError(f'config.loss.fingerprint_weights has unknown keys '
                     f'{sorted(unknown)}; known: {list(FINGERPRINT_TERMS)}')
  jnp.dtype(config.model.dtype)  # Raises on an unknown dtype name.


def _report(result, workdir, step) -> str:
  table = parsing_metrics.markdown_table(
      result['metrics'], result['baseline_mean'], result['baseline_std'])
  header = (f'Held-out parsing metrics at step {step} on '
            f'{result["num_images"]} images (random GT baseline: mean ± std '
            'over shuffles)')
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write(f'{header}\n\n{table}\n')
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump({'step': step, 'num_images': result['num_images'],
               'metrics': result['metrics'],
               'baseline_mean': result['baseline_mean'],
               'baseline_std': result['baseline_std']}, f, indent=2)
  return f'{header}\n{table}'


def train_and_evaluate(config: ml_collections.ConfigDict,
                       workdir: str) -> dict:
  """Trains on the training GMs, evaluates on held-out GMs, checkpoints.

  Resumes from the latest checkpoint in `workdir` if there is one. Returns the
  final evaluation (metrics, baseline and losses).
  """
  local_devices = jax.local_device_count()
  validate(config, local_devices)
  os.makedirs(workdir, exist_ok=True)
  is_chief = jax.process_index() == 0
  writer = metric_writers.create_default_writer(
      workdir, just_logging=not is_chief)
  info = input_pipeline.load_info(config.data)
  schema = info.ground_truth.schema
  class_weights = parsing_losses.parsing_class_weights(
      info.ground_truth.select(info.train_gms))
  logging.info('Training on %d GMs (%d images), holding out %d GMs (%d '
               'images); %d images skipped as unreadable at build time.',
               len(info.train_gms), info.num_train_images,
               len(info.test_gms), info.num_test_images,
               len(info.skipped_files))
  writer.write_hparams(dict(flax.traverse_util.flatten_dict(
      config.to_dict(), sep='.')))

  model = create_model(config, schema)
  learning_rate_fn = create_learning_rate_fn(config)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  state = create_train_state(init_key, config, model, config.data.image_size,
                             learning_rate_fn)
  manager = checkpoint_manager(workdir, config)
  state = restore_latest(manager, state)
  start_step = int(state.step)
  state = jax_utils.replicate(state)
  meta = {'config': json.loads(config.to_json_best_effort()),
          'train_gms': list(info.train_gms), 'test_gms': list(info.test_gms),
          'ground_truth': info.ground_truth.to_dict()}

  train_collection = metrics_collection(metric_names(config))
  eval_collection = metrics_collection(
      ('loss',) + tuple(f'parsing_{t}' for t in PARSING_TERMS))
  p_train_step = jax.pmap(
      functools.partial(train_step, class_weights=class_weights,
                        config=config, schema=schema,
                        learning_rate_fn=learning_rate_fn,
                        collection=train_collection),
      axis_name=AXIS, donate_argnums=(0,))
  p_eval_step = jax.pmap(
      functools.partial(eval_step, class_weights=class_weights, config=config,
                        schema=schema, collection=eval_collection),
      axis_name=AXIS)
  dropout_keys = jax_utils.replicate(dropout_key)

  num_steps = config.num_train_steps
  train_iter = input_pipeline.train_iterator(
      config.data, info, global_batch_size=config.batch_size,
      local_device_count=local_devices, seed=config.seed,
      start_step=start_step)
  train_iter = jax_utils.prefetch_to_device(train_iter, 2)
  report_progress = periodic_actions.ReportProgress(
      num_train_steps=num_steps, writer=writer, every_secs=30)
  train_metrics = None
  try:
    for step in range(start_step + 1, num_steps + 1):
      with jax.profiler.StepTraceAnnotation('train', step_num=step):
        batch = next(train_iter)
        state, update, lr = p_train_step(state, batch, dropout_keys)
      report_progress(step)
      update = update.unreplicate()
      train_metrics = (update if train_metrics is None
                       else train_metrics.merge(update))
      last = step == num_steps
      if step % config.log_every_steps == 0 or last:
        scalars = train_metrics.compute()
        scalars['learning_rate'] = float(lr[0])
        writer.write_scalars(step, scalars)
        train_metrics = None
      if (step % config.eval_every_steps == 0 and not last):
        with report_progress.timed('eval'):
          result = evaluate(p_eval_step, state, config, info, eval_collection)
        _write_eval(writer, step, result)
      if step % config.checkpoint_every_steps == 0 or last:
        with report_progress.timed('checkpoint'):
          save_checkpoint(manager, state, step, meta)
  finally:
    # A crash mid-run still finishes the checkpoint being written, so the
    # next launch resumes from it.
    manager.wait_until_finished()

  result = evaluate(p_eval_step, state, config, info, eval_collection)
  _write_eval(writer, num_steps, result)
  writer.flush()
  manager.close()
  if is_chief:
    # Last, so the table is not buried under the libraries' closing logs.
    print('\n' + _report(result, workdir, num_steps), flush=True)
  result['state'] = state
  return result


def _write_eval(writer, step, result):
  scalars = {f'eval_{k}': v for k, v in result['loss'].items()}
  scalars.update({f'heldout/{k}': v for k, v in result['metrics'].items()})
  scalars.update({f'baseline/{k}': v
                  for k, v in result['baseline_mean'].items()})
  writer.write_scalars(step, scalars)
  images, fingerprints = result['examples']
  writer.write_images(step, {
      'heldout/fingerprint_spectrum': summaries.fingerprint_panels(
          images, fingerprints)})
