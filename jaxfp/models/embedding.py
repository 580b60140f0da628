"""Source embedding: image -> unit vector, close for images of one generator.

`SourceEmbedder` reads fixed summaries of the image (the PN's
`parsing_network.SideFeatures`: the log spectrum of the high-pass residual or
of the fingerprint, colour statistics; and `trace_statistics`: what the
residual's pixels do that a channel-averaged spectrum does not show),
optionally a FEN's fingerprint through the same summaries, and maps them
through an MLP to an L2-normalised embedding.
With `num_sources > 0` it also holds one unit "proxy" vector per training
source and returns the cosine of each image's embedding with each proxy:
what a margin softmax (`jaxfp.losses.embedding`) trains on. The proxies are
training-only; inference reads 'embedding'.

The summaries come first because they are what carries a generator's
traces to unseen generators: on the parsing side they beat the conv PN, and
a conv trunk over 64x64 pixels costs ~10x more per step on a CPU
(docs/embeddings.md).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfp.core import normalization
from jaxfp.models import parsing_network

HIDDEN = (512, 512)
EMBED_DIM = 128
# The residual: the image minus its Gaussian blur of this sigma (pixels),
# as the side features' residual spectrum.
SIGMA = 1.0
# Residual correlations between each pixel and its neighbour at these
# (row, column) offsets: the footprint of upsampling and of the last layers.
LAGS = ((0, 1), (1, 0), (1, 1), (0, 2), (2, 0))
QUANTILES = (0.01, 0.05, 0.5, 0.95, 0.99)
CHROMA_POOL = 8


def gaussian_blur(x, sigma: float = SIGMA):
  """[N, H, W, c] blurred per channel by a separable Gaussian of `sigma`,
  edges mirrored (scipy.ndimage's 'reflect'; circular edges would add the
  image's own borders to the residual)."""
  radius = int(4.0 * sigma + 0.5)
  taps = jnp.exp(-0.5 * (jnp.arange(-radius, radius + 1) / sigma) ** 2)
  taps = taps / taps.sum()
  h, w = x.shape[1], x.shape[2]
  x = jnp.pad(x, ((0, 0), (radius, radius), (0, 0), (0, 0)), mode='symmetric')
  x = sum(taps[i] * x[:, i:i + h] for i in range(2 * radius + 1))
  x = jnp.pad(x, ((0, 0), (0, 0), (radius, radius), (0, 0)), mode='symmetric')
  return sum(taps[i] * x[:, :, i:i + w] for i in range(2 * radius + 1))


def trace_statistics(unit):
  """Statistics of images in [0, 1] [N, s, s, 3] -> [N, 27 + 2 * 8^2 + 15].

  Of the high-pass residual (image minus `gaussian_blur`), per channel: log
  std, skewness, kurtosis; the correlations between channels and between
  neighbours (`LAGS`); the log spectrum of its two colour differences (R - G,
  B - G) pooled to 8x8, which the side features' channel-averaged spectrum
  cancels. Of the image: per-channel quantiles (`QUANTILES`).
  """
  n = unit.shape[0]
  residual = unit - gaussian_blur(unit)
  flat = residual.reshape(n, -1, 3)
  std = flat.std(axis=1) + 1e-8
  z = (flat - flat.mean(axis=1, keepdims=True)) / std[:, None]
  parts = [jnp.log(std), (z ** 3).mean(axis=1), (z ** 4).mean(axis=1),
           jnp.stack([(z[..., a] * z[..., b]).mean(axis=1)
                      for a, b in ((0, 1), (0, 2), (1, 2))], axis=-1)]
  h, w = residual.shape[1:3]
  for dy, dx in LAGS:
    product = residual[:, dy:, dx:] * residual[:, :h - dy, :w - dx]
    parts.append(product.mean(axis=(1, 2)) / std ** 2)
  chroma = jnp.stack([residual[..., 0] - residual[..., 1],
                      residual[..., 2] - residual[..., 1]], axis=-1)
  spectrum = jnp.log1p(jnp.abs(jnp.fft.fftshift(
      jnp.fft.fft2(chroma, axes=(1, 2)), axes=(1, 2))))
  k = CHROMA_POOL
  parts.append(spectrum.reshape(n, k, h // k, k, w // k, 2).mean(
      axis=(2, 4)).reshape(n, -1))
  parts.append(jnp.quantile(unit.reshape(n, -1, 3), jnp.array(QUANTILES),
                            axis=1).transpose(1, 0, 2).reshape(n, -1))
  return jnp.concatenate(parts, axis=-1)


def l2_normalize(x, eps: float = 1e-12):
  """Rows of x scaled to unit length (a zero row stays zero)."""
  return x / jnp.maximum(jnp.linalg.norm(x, axis=-1, keepdims=True), eps)


class SourceEmbedder(nn.Module):
  """Image [N, H, W, 3] (normalised) -> {'fingerprint', 'embedding',
  'cosines' (with num_sources)}.

  'fingerprint' is the FEN's output with `use_fen`, else the image (the
  trainer shows it); 'embedding' [N, embed_dim] has unit rows; 'cosines'
  [N, num_sources] are the embeddings' cosines with the source proxies.
  """
  embed_dim: int = EMBED_DIM
  hidden: tuple[int, ...] = HIDDEN
  dropout_rate: float = 0.5
  spectrum: str = 'residual'
  spectrum_pool: int = 16
  colour_stats: bool = True
  stage_stats: bool = False
  # Off unless asked (configs/source.py asks): a checkpoint whose fields
  # predate it builds the network it was trained as.
  trace_stats: bool = False
  use_fen: bool = False
  fen_depth: int = 5
  fen_width: int = 16
  num_sources: int = 0
  dtype: Any = jnp.float32
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, *, train: bool):
    if self.spectrum == 'fingerprint' and not self.use_fen:
      raise ValueError("model.spectrum='fingerprint' needs model.use_fen")
    fingerprint, x = parsing_network.fingerprint_and_side(self, images,
                                                            train=train)
    parts = [] if x is None else [x]
    if self.trace_stats:
      # Fixed functions of the input, like the side features.
      unit = jax.lax.stop_gradient(normalization.unit_range(
          images.astype(jnp.float32)))
      parts.append(nn.BatchNorm(
          use_running_average=not train, momentum=0.9,
          axis_name=self.axis_name, name='trace_norm')(
              trace_statistics(unit)))
    if not parts:
      raise ValueError('a source embedding needs input features: set '
                       'model.spectrum, model.colour_stats or '
                       'model.trace_stats')
    x = jnp.concatenate(parts, axis=-1).astype(self.dtype)
    for i, width in enumerate(self.hidden):
      x = nn.Dense(width, dtype=self.dtype, name=f'fc_{i}')(x)
      # LayerNorm, not BatchNorm: an embedding must not depend on which
      # other images share its batch at inference.
      x = nn.gelu(nn.LayerNorm(dtype=self.dtype, name=f'norm_{i}')(x))
      x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    embedding = l2_normalize(
        nn.Dense(self.embed_dim, name='embed')(x).astype(jnp.float32))
    out = {'fingerprint': fingerprint, 'embedding': embedding}
    if self.num_sources:
      proxies = self.param('proxies', nn.initializers.normal(1.0),
                           (self.num_sources, self.embed_dim), jnp.float32)
      out['cosines'] = embedding @ l2_normalize(proxies).T
    return out
