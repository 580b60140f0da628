"""Parsing Network: fingerprint -> architecture and loss-type logits.

Five [conv3x3 (padding 2) + ReLU + maxpool 2] blocks, 3->32->...->512
channels (narrower in the CPU preset), flattened in PyTorch's (C, H, W) order
(so published Linear weights load unchanged), dropout, fc1 -> 512,
fc2 -> 256, fc3 -> 64 with ReLUs, then one linear head per predicted
quantity. Heads emit logits: probabilities and the loss-type hierarchy are
applied by `jaxfp.losses.parsing`.

Side features (`SideFeatures`, off in the published network): fixed,
parameter-free summaries that a stack of 3x3 convs and max-pools does not
compute easily from 64x64 pixels, standardised by a BatchNorm and joined to
the flattened conv features before the dropout and the hidden layers:
  * a log-magnitude spectrum (of the fingerprint, or of the image's
    high-pass residual: image minus a Gaussian blur of sigma 1), averaged
    over channels and average-pooled to `pool` x `pool`, so that every
    frequency band keeps its position (periodic upsampling traces are peaks
    at fixed frequencies), and its radial profile;
  * colour statistics of the image: per channel mean, std, the fractions of
    pixels at either end of the range, and a histogram;
  * stage statistics (`stage_stats`): the share of the residual's power that
    repeats with periods 2, 4, ..., 32 pixels, and its log spectrum sampled
    on the lattice of period `pool` rather than pooled: each x2 upsampling
    stage leaves its trace there, so they speak to a generator's depth.
With `channels=()` the PN has no conv trunk and reads the side features only
(docs/parsing.md measures both).
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfp.core import normalization
from jaxfp.core import schema as schema_lib
from jaxfp.core import spectrum as spectrum_lib
from jaxfp.models.fen import FingerprintEstimator

CHANNELS = (32, 64, 128, 256, 512)
HIDDEN = (512, 256, 64)
SPECTRUM_SOURCES = ('', 'fingerprint', 'residual')
HIST_BINS = 16
# The residual's blur, in pixels: the reference parser's choice
# (jaxfp.tools.reference), so both read the same band.
HIGHPASS_SIGMA = 1.0
STAGE_PERIODS = (2, 4, 8, 16, 32)


def max_pool_2x2(x):
  """2x2 max pooling, stride 2, odd edges dropped (PyTorch's MaxPool2d(2)):
  nn.max_pool's values as a reshape and max, whose gradient is faster on a
  CPU (docs/performance.md)."""
  n, h, w, c = x.shape
  x = x[:, :h // 2 * 2, :w // 2 * 2]
  return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def average_pool_to(maps, size: int):
  """[N, H, W] average-pooled to [N, size, size] (H and W divisible)."""
  n, h, w = maps.shape
  if h % size or w % size:
    raise ValueError(f'a {h}x{w} spectrum cannot be pooled to {size}x{size}: '
                     'model.spectrum_pool must divide the image size')
  return maps.reshape(n, size, h // size, size, w // size).mean(axis=(2, 4))


def colour_statistics(unit):
  """Per-channel statistics of images in [0, 1]: [N, H, W, c] -> [N, 20 c].

  Mean, std, the fractions of pixels at 0 and at 255 (saturation) and a
  16-bin histogram: a generator's output layer (tanh, sigmoid, clipping) and
  its loss shape these, whatever the image shows.
  """
  n, h, w, c = unit.shape
  flat = unit.reshape(n, h * w, c).astype(jnp.float32)
  edges = jnp.linspace(0.0, 1.0, HIST_BINS + 1)
  lower, upper = edges[:-1], edges[1:].at[-1].set(1.0 + 1e-6)
  inside = (flat[..., None] >= lower) & (flat[..., None] < upper)
  parts = [flat.mean(axis=1), flat.std(axis=1),
           (flat <= 0.5 / 255).mean(axis=1),
           (flat >= 254.5 / 255).mean(axis=1),
           inside.mean(axis=1).reshape(n, -1)]
  return jnp.concatenate(parts, axis=-1)


def stage_statistics(unit, pool: int, residual_maps=None):
  """The stage statistics of images in [0, 1] (module docstring): a list of
  [N, p] and [N, pool^2] arrays. Periods above half the image, or that do
  not divide it, are left out. `residual_maps`: the residual's log spectrum
  where the caller has it already.
  """
  n, h, w, _ = unit.shape
  periods = tuple(p for p in STAGE_PERIODS
                  if 2 * p <= min(h, w) and not h % p and not w % p)
  energy = spectrum_lib.lattice_energy(unit, periods, HIGHPASS_SIGMA)
  maps = (spectrum_lib.log_channel_spectrum(unit, HIGHPASS_SIGMA)
          if residual_maps is None else residual_maps)
  if h % pool or w % pool:
    raise ValueError(f'a {h}x{w} spectrum has no lattice of {pool}x{pool} '
                     'frequencies: model.spectrum_pool must divide the '
                     'image size')
  lattice = maps[:, ::h // pool, ::w // pool]
  return [jnp.log(energy + 1e-8), lattice.reshape(n, -1)]


def side_vector(unit, fingerprint=None, *, spectrum: str = 'residual',
                pool: int = 16, colour_stats: bool = True,
                stage_stats: bool = False):
  """The side features of images in [0, 1], before any standardisation:
  [N, H, W, c] -> [N, d] float32, or None when nothing is asked for.

  One computation for the PN's `SideFeatures`, the detector and the
  out-of-distribution score of `jaxfp.inference.answer`, so that all of them
  read the same traces. `fingerprint` is needed only for
  spectrum='fingerprint'.
  """
  if spectrum not in SPECTRUM_SOURCES:
    raise ValueError(f'model.spectrum {spectrum!r}: use one of '
                     f'{SPECTRUM_SOURCES}')
  parts = []
  residual = (spectrum_lib.log_channel_spectrum(unit, HIGHPASS_SIGMA)
              if spectrum == 'residual' or stage_stats else None)
  if spectrum:
    maps = (spectrum_lib.log_channel_spectrum(fingerprint)
            if spectrum == 'fingerprint' else residual)
    parts += [average_pool_to(maps, pool).reshape(maps.shape[0], -1),
              spectrum_lib.radial_profile(maps)]
  if colour_stats:
    parts.append(colour_statistics(unit))
  if stage_stats:
    parts += stage_statistics(unit, pool, residual)
  return jnp.concatenate(parts, axis=-1) if parts else None


class SideFeatures(nn.Module):
  """Fixed summaries of an image and its fingerprint, standardised: [N, d].

  `spectrum`: '' (none), 'fingerprint' or 'residual'; `colour_stats`: the
  image's colour statistics (`side_vector`). Images arrive normalised;
  `mean` and `std` undo that for the statistics. Returns None when nothing
  is asked for.
  """
  spectrum: str = ''
  pool: int = 16
  colour_stats: bool = False
  stage_stats: bool = False
  mean: float = 0.0
  std: float = 1.0
  axis_name: str | None = None

  @nn.compact
  def __call__(self, images, fingerprint, *, train: bool):
    # The image's summaries are fixed functions of the input: no gradient to
    # carry (the fingerprint's spectrum does carry one, into the FEN).
    unit = jax.lax.stop_gradient(
        images.astype(jnp.float32) * self.std + self.mean)
    features = side_vector(unit, fingerprint, spectrum=self.spectrum,
                           pool=self.pool, colour_stats=self.colour_stats,
                           stage_stats=self.stage_stats)
    if features is None:
      return None
    return nn.BatchNorm(use_running_average=not train, momentum=0.9,
                        axis_name=self.axis_name, name='norm')(features)


def fingerprint_and_side(m: nn.Module, images, *, train: bool):
  """The front end the parser and the source embedder share, called inside
  `m`'s compact `__call__` so that its submodules are `m`'s own ('fen',
  'side'; the parameter names checkpoints hold). `m` has the fields
  use_fen, fen_depth, fen_width, spectrum, spectrum_pool, colour_stats,
  stage_stats, dtype and axis_name.

  Returns (fingerprint: the FEN's output, or the image without a FEN;
  side: `SideFeatures` of both, or None).
  """
  if m.use_fen:
    fingerprint = FingerprintEstimator(
        m.fen_depth, m.fen_width, dtype=m.dtype, axis_name=m.axis_name,
        name='fen')(images, train=train)
  else:
    fingerprint = images
  side = SideFeatures(
      m.spectrum, m.spectrum_pool, m.colour_stats, m.stage_stats,
      mean=normalization.MEAN, std=normalization.STD,
      axis_name=m.axis_name, name='side')(images, fingerprint, train=train)
  return fingerprint, side


class ParsingNetwork(nn.Module):
  """Fingerprint [N, H, W, c] -> dict of logits shaped by the schema.

  Returns {'continuous': [N, C], 'discrete': tuple of [N, k_d],
  'coarse': [N, K, 2], 'fine': [N, F, 2]} (fine logits are conditional on
  their coarse group).
  """
  schema: schema_lib.Schema
  dropout_rate: float = 0.5
  # Conv widths of the five blocks; the published network uses CHANNELS.
  # Empty: no conv trunk, the side features alone feed the hidden layers.
  channels: tuple[int, ...] = CHANNELS
  dtype: Any = jnp.float32
  hidden: tuple[int, ...] = HIDDEN

  @nn.compact
  def __call__(self, fingerprint, *, train: bool, side=None):
    """`side`: [N, d] features joined to the trunk's (SideFeatures), or None."""
    if not self.channels and side is None:
      raise ValueError('a PN without conv channels needs side features '
                       '(model.spectrum or model.colour_stats)')
    x = fingerprint.astype(self.dtype)
    for i, channels in enumerate(self.channels):
      # Padding 2 as published, padded explicitly: XLA's CPU convolution
      # takes a slow generic path for it (docs/performance.md).
      x = jnp.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
      x = nn.Conv(channels, (3, 3), padding='VALID', dtype=self.dtype,
                  name=f'conv_{i}')(x)
      x = max_pool_2x2(nn.relu(x))
    if self.channels:
      x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1)
    else:
      x = jnp.zeros((x.shape[0], 0), self.dtype)
    if side is not None:
      x = jnp.concatenate([x, side.astype(self.dtype)], axis=-1)
    x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
    for i, features in enumerate(self.hidden):
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
