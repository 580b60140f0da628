"""Fingerprint Estimation Network: a DnCNN-style stack, image -> fingerprint.

conv(3->width) + ReLU, then (depth - 2) x [conv(width->width) + BatchNorm +
ReLU], then conv(width->3). The output has the image's size; no residual is
added (the published network returns the stack's output itself).
"""

import functools
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

# PyTorch's kaiming_normal_ (fan_in, gain sqrt(2), untruncated), which the
# published network uses for every conv kernel.
kaiming_normal = nn.initializers.variance_scaling(2.0, 'fan_in', 'normal')


class FingerprintEstimator(nn.Module):
  """Image [N, H, W, 3] -> fingerprint [N, H, W, 3]."""
  depth: int = 17
  width: int = 64
  dtype: Any = jnp.float32
  # Name of the pmap axis over which BatchNorm averages its batch statistics.
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool):
    if self.depth < 2:
      raise ValueError(f'FEN depth must be at least 2, got {self.depth}')
    conv = functools.partial(
        nn.Conv, kernel_size=(3, 3), padding=1, dtype=self.dtype,
        kernel_init=kaiming_normal)
    # PyTorch momentum 0.1 on the new batch is Flax momentum 0.9 on the old.
    norm = functools.partial(
        nn.BatchNorm, use_running_average=not train, momentum=0.9,
        epsilon=1e-5, dtype=self.dtype, axis_name=self.axis_name)
    x = nn.relu(conv(self.width, name='conv_0')(images))
    for i in range(1, self.depth - 1):
      x = conv(self.width, name=f'conv_{i}')(x)
      x = nn.relu(norm(name=f'norm_{i}')(x))
    fingerprint = conv(images.shape[-1], name=f'conv_{self.depth - 1}')(x)
    return fingerprint.astype(jnp.float32)
