"""Parsing Network: fingerprint -> architecture and loss-type logits.

Five [conv3x3 (padding 2) + ReLU + maxpool 2] blocks, 3->32->...->512
channels (narrower in the CPU preset), flattened in PyTorch's (C, H, W) order
(so published Linear weights load unchanged), dropout, fc1 -> 512,
fc2 -> 256, fc3 -> 64 with ReLUs, then one linear head per predicted quantity. Heads emit logits: probabilities and the
loss-type hierarchy are applied by `jaxfp.losses.parsing`.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxfp.core import schema as schema_lib

CHANNELS = (32, 64, 128, 256, 512)
HIDDEN = (512, 256, 64)


def max_pool_2x2(x):
  """2x2 max pooling, stride 2, odd edges dropped (PyTorch's MaxPool2d(2)).

  Written as a reshape and max: the same values as nn.max_pool, with a
  gradient that XLA's CPU backend runs about 3x faster than select-and-scatter.
  """
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


class ParsingNetwork(nn.Module):
  """Fingerprint [N, H, W, c] -> dict of logits shaped by the schema.

  Returns {'continuous': [N, C], 'discrete': tuple of [N, k_d],
  'coarse': [N, K, 2], 'fine': [N, F, 2]} (fine logits are conditional on
  their coarse group).
  """
  schema: schema_lib.Schema
  dropout_rate: float = 0.5
  # Conv widths of the five blocks; the published network uses CHANNELS.
  channels: tuple[int, ...] = CHANNELS
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, fingerprint, *, train: bool):
    x = fingerprint.astype(self.dtype)
    for i, channels in enumerate(self.channels):
      # Padding 2 as published. Padded explicitly: XLA's CPU convolution
      # with an asymmetric-to-kernel padding of 2 takes a generic path that
      # measured 6-8x slower than the same pad followed by a VALID conv.
      x = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
      x = nn.Conv(channels, (3, 3), padding='VALID', dtype=self.dtype,
                  name=f'conv_{i}')(x)
      x = max_pool_2x2(nn.relu(x))
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    for i, features in enumerate(HIDDEN):
      x = nn.relu(nn.Dense(features, dtype=self.dtype, name=f'fc_{i}')(x))
    x = x.astype(jnp.float32)

    s = self.schema
    def head(features, name):
      return nn.Dense(features, name=f'head_{name}')(x)
    return {
        'continuous': head(len(s.continuous), 'continuous'),
        'discrete': tuple(head(p.num_classes, p.name) for p in s.discrete),
        'coarse': jnp.stack([head(2, name) for name in s.coarse], axis=1),
        'fine': jnp.stack([head(2, name) for name in s.fine], axis=1),
    }
