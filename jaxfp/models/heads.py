"""Classifier heads of the detection and attribution tasks.

Both are a few [conv (padding 2) + ReLU + maxpool 2] blocks, flattened in
PyTorch's (C, H, W) order (so published Linear weights load unchanged),
dropout, a hidden Dense + ReLU and an output Dense. They return logits;
the published sigmoid (or a softmax) is applied by the caller.

  DetectionHead    fingerprint [N, 128, 128, 3] -> [N, 2]: four 5x5 blocks
                   3->32->64->128->256, one 3x3 block 256->512, 12800 -> 512.
  AttributionHead  spectrum [N, 128, 128, 1] -> [N, 5]: two 5x5 blocks
                   1->32->64, 65536 -> 512.
"""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from jaxfp.models.parsing_network import max_pool_2x2

DETECTION_CHANNELS = (32, 64, 128, 256, 512)
ATTRIBUTION_CHANNELS = (32, 64)
HIDDEN = 512
PADDING = 2


class ConvClassifier(nn.Module):
  """Conv blocks, then dropout, Dense + ReLU, Dense: [N, H, W, c] -> logits.

  Block i has `channels[i]` filters of size `kernel_sizes()[i]`, padding 2.
  """
  num_classes: int
  dropout_rate: float = 0.5
  channels: tuple[int, ...] = ()
  hidden: int = HIDDEN
  dtype: Any = jnp.float32

  def kernel_sizes(self) -> tuple[int, ...]:
    return (5,) * len(self.channels)

  @nn.compact
  def __call__(self, x, *, train: bool):
    if not self.channels:
      raise ValueError(f'{type(self).__name__} needs at least one conv block')
    x = x.astype(self.dtype)
    for i, (features, k) in enumerate(zip(self.channels, self.kernel_sizes())):
      # Explicit pad + VALID conv: faster on a CPU (docs/performance.md).
      x = jnp.pad(x, ((0, 0), (PADDING, PADDING), (PADDING, PADDING), (0, 0)))
      x = nn.Conv(features, (k, k), padding='VALID', dtype=self.dtype,
                  name=f'conv_{i}')(x)
      x = max_pool_2x2(nn.relu(x))
    x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    x = nn.relu(nn.Dense(self.hidden, dtype=self.dtype, name='fc_0')(x))
    logits = nn.Dense(self.num_classes, dtype=self.dtype, name='fc_1')(x)
    return logits.astype(jnp.float32)


class DetectionHead(ConvClassifier):
  """Fingerprint [N, H, W, 3] -> real/fake logits [N, num_classes].

  Every block but the last uses 5x5 kernels; the last one 3x3, as published.
  """
  num_classes: int = 2
  channels: tuple[int, ...] = DETECTION_CHANNELS

  def kernel_sizes(self) -> tuple[int, ...]:
    return (5,) * (len(self.channels) - 1) + (3,)


class AttributionHead(ConvClassifier):
  """Magnitude spectrum [N, H, W, 1] -> source logits [N, num_classes]."""
  num_classes: int = 5
  channels: tuple[int, ...] = ATTRIBUTION_CHANNELS
