"""Metric-learning losses for source embeddings; pure functions.

  margin_softmax   additive-margin softmax (CosFace, Wang et al. 2018) on the
                   cosines between embeddings and per-source proxies: the
                   true source's cosine must win by `margin`;
  supervised_contrastive
                   Khosla et al. 2020 over the images of a batch: every
                   other image of the same source is a positive.

Labels are source indices; a negative label (a padding row, or an image of a
source the proxies do not cover) is left out of the mean.
"""

import jax
import jax.numpy as jnp


def margin_softmax(cosines, labels, *, margin: float = 0.35,
                   scale: float = 30.0):
  """Mean CosFace loss over rows with labels >= 0.

  Args:
    cosines: [N, S] cosines of unit embeddings with unit source proxies.
    labels: [N] int source index, negative = ignore.
    margin: subtracted from the true source's cosine before the softmax.
    scale: the softmax's inverse temperature (cosines live in [-1, 1]).
  """
  valid = labels >= 0
  onehot = jax.nn.one_hot(jnp.where(valid, labels, 0), cosines.shape[-1])
  logits = scale * (cosines - margin * onehot)
  per_row = -jnp.sum(onehot * jax.nn.log_softmax(logits), axis=-1)
  return jnp.sum(jnp.where(valid, per_row, 0.0)) / jnp.maximum(
      jnp.sum(valid), 1)


def supervised_contrastive(embeddings, labels, *, temperature: float = 0.1):
  """Mean SupCon loss over rows with labels >= 0 and a positive in the batch.

  Args:
    embeddings: [N, D] unit rows.
    labels: [N] int source index, negative = ignore (neither anchor nor
      contrast).
    temperature: of the softmax over cosine similarities.
  """
  n = embeddings.shape[0]
  valid = labels >= 0
  others = valid[None, :] & ~jnp.eye(n, dtype=bool)
  # A large finite value, not -inf: a row with nothing to contrast (all
  # masked) must keep finite gradients.
  logits = jnp.where(others, embeddings @ embeddings.T / temperature, -1e9)
  log_prob = logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)
  positive = others & (labels[:, None] == labels[None, :]) & valid[:, None]
  count = jnp.sum(positive, axis=1)
  per_row = -jnp.sum(jnp.where(positive, log_prob, 0.0), axis=1) / jnp.maximum(
      count, 1)
  anchors = count > 0
  return jnp.sum(jnp.where(anchors, per_row, 0.0)) / jnp.maximum(
      jnp.sum(anchors), 1)
