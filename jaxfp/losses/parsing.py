"""Parsing-network losses: one per predicted hyperparameter, as pure JAX.

The parsing network (PN) outputs LOGITS, in a dict:
  'continuous': [N, C]          prediction = sigmoid(logit), targets in [0, 1]
  'discrete':   tuple of D arrays [N, k_d]
  'coarse':     [N, K, 2]       2-way logits (not used, used) per coarse group
  'fine':       [N, F, 2]       2-way logits per fine loss type, CONDITIONAL on
                                its coarse group (`schema.fine_to_coarse`)
Labels (a batch) mirror them: 'continuous' [N, C] float (NaN missing),
'discrete' [N, D] int, 'coarse' [N, K] int, 'fine' [N, F] int (-1 missing).

Every head loss is a mean over the non-missing samples: MSE for continuous
parameters, weighted cross-entropy (torch-style: sum_i w[y_i] nll_i /
sum_i w[y_i]) for the others, times `head_weight` (published 10, set in
configs/fen.py).

Hierarchy: P(fine type used) = P(coarse group used) * P(fine used | group).
Its loss is the binary cross-entropy of that product, computed in log space.

Multi-device: with `axis_name`, every normaliser (sum of class weights, count
of valid continuous entries) is the pmean over devices of the local one, so a
device's loss is (local numerator) / (mean normaliser) and the pmean over
devices of per-device gradients is exactly the gradient of the global-batch
loss, whatever the spread of classes and missing labels across devices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxfp.core import published
from jaxfp.core import schema as schema_lib


def parsing_class_weights(ground_truth: schema_lib.GroundTruth
                          ) -> dict[str, object]:
  """Inverse-frequency class weights of every classification head.

  Args:
    ground_truth: the training GMs, one row each (weights count GMs, as
      published, not images).

  Returns:
    {'discrete': tuple of D float32 arrays [k_d], 'coarse': float32 [K, 2],
     'fine': float32 [F, 2]}, from `schema.class_weights` (missing labels
    ignored, a class absent from training weighs 0).
  """
  s = ground_truth.schema
  discrete = tuple(
      schema_lib.class_weights(ground_truth.discrete[:, d], k)
      for d, k in enumerate(s.num_classes))

  def binary(table, count):
    rows = [schema_lib.class_weights(table[:, j], 2) for j in range(count)]
    return np.stack(rows).reshape(count, 2).astype(np.float32)

  return {
      'discrete': discrete,
      'coarse': binary(ground_truth.coarse, len(s.coarse)),
      'fine': binary(ground_truth.fine, len(s.fine)),
  }


def uniform_class_weights(schema: schema_lib.Schema) -> dict[str, object]:
  """All-ones class weights in the layout of `parsing_class_weights`."""
  return {
      'discrete': tuple(np.ones(k, np.float32) for k in schema.num_classes),
      'coarse': np.ones((len(schema.coarse), 2), np.float32),
      'fine': np.ones((len(schema.fine), 2), np.float32),
  }


def _gated_coarse(coarse: jax.Array, fine_to_coarse: Sequence[int],
                  num_fine: int) -> jax.Array:
  """coarse[:, fine_to_coarse]: each fine type's coarse group, [N, F, ...]."""
  index = np.asarray(fine_to_coarse, dtype=np.int32)
  if index.shape != (num_fine,):
    raise ValueError(f'fine_to_coarse has {index.shape[0]} entries for '
                     f'{num_fine} fine heads')
  return jnp.take(coarse, index, axis=1)


def fine_probabilities(coarse_logits: jax.Array, fine_logits: jax.Array,
                       fine_to_coarse: Sequence[int], *,
                       hierarchical: bool = True) -> jax.Array:
  """P(fine loss type used), [N, F].

  Args:
    coarse_logits: [N, K, 2] logits (not used, used) of the coarse groups.
    fine_logits: [N, F, 2] logits of the fine types, conditional on the group.
    fine_to_coarse: F coarse-group indices.
    hierarchical: True: P(group used) * P(fine used | group); False: the fine
      head's own softmax probability P(fine used | .).

  Returns:
    [N, F] float32 probabilities in [0, 1].
  """
  fine_p = jax.nn.softmax(fine_logits.astype(jnp.float32), axis=-1)[..., 1]
  if not hierarchical:
    return fine_p
  coarse_p = jax.nn.softmax(coarse_logits.astype(jnp.float32), axis=-1)[..., 1]
  return _gated_coarse(coarse_p, fine_to_coarse, fine_logits.shape[1]) * fine_p


def fine_log_probabilities(coarse_logits: jax.Array, fine_logits: jax.Array,
                           fine_to_coarse: Sequence[int], *,
                           hierarchical: bool = True) -> jax.Array:
  """Stable log-probabilities (not used, used) of each fine type, [N, F, 2].

  [..., 1] = log p = log P(group) + log P(fine | group);
  [..., 0] = log(1 - p). 1 - p = (1 - P(group)) + P(group) (1 - P(fine|group))
  is a sum of two products that are each exact in log space, so log(1 - p) is
  a logaddexp of log-softmax terms: finite and accurate even where p rounds
  to 1 in float32 (where log1mexp(log p) would return -inf).

  Args: as `fine_probabilities`.

  Returns:
    [N, F, 2] float32; exp of [..., 1] equals `fine_probabilities`.
  """
  fine_log = jax.nn.log_softmax(fine_logits.astype(jnp.float32), axis=-1)
  if not hierarchical:
    return fine_log
  coarse_log = jax.nn.log_softmax(coarse_logits.astype(jnp.float32), axis=-1)
  group_log = _gated_coarse(coarse_log, fine_to_coarse, fine_logits.shape[1])
  log_used = group_log[..., 1] + fine_log[..., 1]
  log_unused = jnp.logaddexp(group_log[..., 0],
                             group_log[..., 1] + fine_log[..., 0])
  return jnp.stack([log_unused, log_used], axis=-1)


def _global_mean(x: jax.Array, axis_name: str | None) -> jax.Array:
  """Mean over devices (identity without an axis); no gradient flows.

  Normalisers depend on labels only; stop_gradient keeps it that way if a
  caller ever passes traced class weights.
  """
  x = jax.lax.stop_gradient(x)
  return x if axis_name is None else jax.lax.pmean(x, axis_name)


def _safe_divide(numerator: jax.Array, denominator: jax.Array) -> jax.Array:
  """numerator / denominator, 0 where the denominator is 0 (no NaN grads)."""
  positive = denominator > 0
  return jnp.where(positive,
                   numerator / jnp.where(positive, denominator, 1.0), 0.0)


def weighted_cross_entropy(log_probs: jax.Array, labels: jax.Array,
                           class_weights: jax.Array, *,
                           axis_name: str | None = None) -> jax.Array:
  """Class-weighted mean NLL over the batch, torch CrossEntropyLoss style.

  loss[h] = sum_i w[h, y_ih] nll_ih / sum_i w[h, y_ih] over the samples i
  whose label is not missing (< 0), for every head h. With `axis_name` the
  denominator is the pmean over devices of the local one (see module doc).
  All-missing (or all zero-weight) heads give 0.

  Args:
    log_probs: [N, *H, k] log-probabilities (log_softmax of the logits).
    labels: [N, *H] int class index, -1 (MISSING) where unknown.
    class_weights: [*H, k] (or broadcastable to it) weight of each class.
    axis_name: pmap / shard_map batch axis.

  Returns:
    [*H] float32 loss of each head.
  """
  labels = jnp.asarray(labels)
  if log_probs.shape[:-1] != labels.shape:
    raise ValueError(f'log-probabilities {log_probs.shape} and labels '
                     f'{labels.shape} disagree')
  valid = labels >= 0
  safe = jnp.where(valid, labels, 0).astype(jnp.int32)
  nll = -jnp.take_along_axis(log_probs, safe[..., None], axis=-1)[..., 0]
  weights = jnp.broadcast_to(jnp.asarray(class_weights, jnp.float32),
                             log_probs.shape)
  w = jnp.take_along_axis(weights, safe[..., None], axis=-1)[..., 0]
  w = jnp.where(valid, w, 0.0)
  # where, not multiply: a missing sample's nll may be inf (published mode
  # never, but -inf log-probs for a masked label must not leak NaN).
  numerator = jnp.sum(jnp.where(valid, w * nll, 0.0), axis=0)
  denominator = _global_mean(jnp.sum(w, axis=0), axis_name)
  return _safe_divide(numerator, denominator)


CONTINUOUS_LOSSES = ('mse', 'l1')


def masked_mse(predictions: jax.Array, targets: jax.Array, *,
               axis_name: str | None = None, kind: str = 'mse') -> jax.Array:
  """Mean squared (kind 'mse') or absolute ('l1') error over the non-NaN
  targets, scalar float32.

  Args:
    predictions: [N, C].
    targets: [N, C], NaN where missing.
    axis_name: pmap / shard_map batch axis; the count of valid entries is the
      pmean over devices of the local count.
    kind: 'mse' (published) or 'l1' (the metric reported for continuous
      hyperparameters; its gradient does not fade near the target).
  """
  if kind not in CONTINUOUS_LOSSES:
    raise ValueError(f'loss.continuous {kind!r}: use one of '
                     f'{CONTINUOUS_LOSSES}')
  targets = jnp.asarray(targets, jnp.float32)
  valid = ~jnp.isnan(targets)
  error = jnp.where(valid, predictions - jnp.where(valid, targets, 0.0), 0.0)
  count = _global_mean(jnp.sum(valid.astype(jnp.float32)), axis_name)
  per_entry = jnp.square(error) if kind == 'mse' else jnp.abs(error)
  return _safe_divide(jnp.sum(per_entry), count)


def _check_shapes(outputs: Mapping[str, object],
                  labels: Mapping[str, object],
                  schema: schema_lib.Schema) -> None:
  """Clear errors for outputs / labels that do not follow the schema."""
  n = outputs['continuous'].shape[0]
  c, k, f = len(schema.continuous), len(schema.coarse), len(schema.fine)
  expected = {
      ('outputs', 'continuous'): (outputs['continuous'].shape, (n, c)),
      ('outputs', 'coarse'): (outputs['coarse'].shape, (n, k, 2)),
      ('outputs', 'fine'): (outputs['fine'].shape, (n, f, 2)),
      ('labels', 'continuous'): (jnp.shape(labels['continuous']), (n, c)),
      ('labels', 'discrete'): (jnp.shape(labels['discrete']),
                               (n, len(schema.discrete))),
      ('labels', 'coarse'): (jnp.shape(labels['coarse']), (n, k)),
      ('labels', 'fine'): (jnp.shape(labels['fine']), (n, f)),
  }
  discrete = tuple(outputs['discrete'])
  if len(discrete) != len(schema.discrete):
    raise ValueError(f'outputs have {len(discrete)} discrete heads, the '
                     f'schema has {len(schema.discrete)}')
  for p, head in zip(schema.discrete, discrete):
    expected[('outputs', f'discrete {p.name}')] = (head.shape,
                                                   (n, p.num_classes))
  for (where, name), (found, want) in expected.items():
    if tuple(found) != want:
      raise ValueError(f'{where} {name} has shape {tuple(found)}, the schema '
                       f'and batch {n} need {want}')


def parsing_loss(
    outputs: Mapping[str, object],
    labels: Mapping[str, object],
    class_weights: Mapping[str, object] | None,
    schema: schema_lib.Schema,
    *,
    head_weight: float,
    hierarchical: bool = True,
    published_sigmoid_ce: bool = False,
    axis_name: str | None = None,
    continuous: str = 'mse',
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Total parsing loss and its per-group terms.

  Args:
    outputs: PN logits {'continuous': [N, C], 'discrete': D x [N, k_d],
      'coarse': [N, K, 2], 'fine': [N, F, 2]}.
    labels: {'continuous': [N, C] float (NaN missing), 'discrete': [N, D],
      'coarse': [N, K], 'fine': [N, F]} ints, -1 missing.
    class_weights: `parsing_class_weights(...)` layout; None = all ones.
    schema: the head layout (counts and fine_to_coarse).
    head_weight: factor of every head loss (published 10).
    hierarchical: fine losses on P(group) * P(fine | group); False: on the
      fine heads alone.
    published_sigmoid_ce: reproduce the published quirk: each head's logits go
      through a sigmoid, each fine output is multiplied by
      sigmoid(coarse)[..., g, 1] of its group (if hierarchical), and the
      cross-entropy treats those sigmoid outputs as logits (log_softmax of
      them). Continuous heads are the same in both modes.
    axis_name: pmap / shard_map batch axis; normalisers become global.
    continuous: the continuous heads' error, 'mse' (published) or 'l1'.

  Returns:
    (total, terms): total float32 scalar; terms {'continuous', 'discrete',
    'coarse', 'fine'}: float32 scalars, each the sum of its heads' losses
    times head_weight, summing to total.
  """
  _check_shapes(outputs, labels, schema)
  if class_weights is None:
    class_weights = uniform_class_weights(schema)
  f32 = lambda x: jnp.asarray(x).astype(jnp.float32)  # noqa: E731

  continuous = masked_mse(jax.nn.sigmoid(f32(outputs['continuous'])),
                          labels['continuous'], axis_name=axis_name,
                          kind=continuous)

  discrete_labels = jnp.asarray(labels['discrete'])
  discrete_logits = [f32(x) for x in outputs['discrete']]
  coarse = f32(outputs['coarse'])
  fine = f32(outputs['fine'])
  if published_sigmoid_ce:
    # The published heads end in a sigmoid and torch's CrossEntropyLoss then
    # takes those outputs as logits; kept for parity only.
    discrete_logits = [jax.nn.sigmoid(x) for x in discrete_logits]
    coarse, fine = published.sigmoid_loss_heads(
        coarse, fine, schema.fine_to_coarse, gated=hierarchical)
    fine_log = jax.nn.log_softmax(fine, axis=-1)
  else:
    fine_log = fine_log_probabilities(coarse, fine, schema.fine_to_coarse,
                                      hierarchical=hierarchical)
  discrete_log = [jax.nn.log_softmax(x, axis=-1) for x in discrete_logits]
  coarse_log = jax.nn.log_softmax(coarse, axis=-1)

  discrete = sum(
      (weighted_cross_entropy(log_p, discrete_labels[:, d],
                              class_weights['discrete'][d],
                              axis_name=axis_name)
       for d, log_p in enumerate(discrete_log)),
      jnp.zeros((), jnp.float32))
  coarse_loss = jnp.sum(weighted_cross_entropy(
      coarse_log, labels['coarse'], class_weights['coarse'],
      axis_name=axis_name))
  fine_loss = jnp.sum(weighted_cross_entropy(
      fine_log, labels['fine'], class_weights['fine'], axis_name=axis_name))

  terms = {
      'continuous': head_weight * continuous,
      'discrete': head_weight * discrete,
      'coarse': head_weight * coarse_loss,
      'fine': head_weight * fine_loss,
  }
  return sum(terms.values()), terms


def head_probabilities(outputs: dict, fine_to_coarse: Sequence[int], *,
                       hierarchical: bool = True) -> dict:
  """Probabilities of every parsing head from the PN's logits.

  Returns {'continuous': [N, C] in [0, 1], 'discrete': tuple of [N, k_d]
  class probabilities, 'coarse': [N, K] and 'fine': [N, F] probabilities that
  the loss type was used}.
  """
  return {
      'continuous': jax.nn.sigmoid(outputs['continuous']),
      'discrete': tuple(jax.nn.softmax(d) for d in outputs['discrete']),
      'coarse': jax.nn.softmax(outputs['coarse'])[..., 1],
      'fine': fine_probabilities(outputs['coarse'], outputs['fine'],
                                 fine_to_coarse, hierarchical=hierarchical),
  }
