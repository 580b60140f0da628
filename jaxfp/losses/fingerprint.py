"""The four fingerprint constraints on the FEN output, as pure JAX functions.

A fingerprint `f` is a float array [N, H, W, 3] (NHWC). Every constraint works
on its gray image, 0.299 R + 0.587 G + 0.114 B, or on the magnitude spectrum
of that gray image, |fftshift(fft2(gray))| with the zero frequency at
(H // 2, W // 2):

  magnitude   mean(gray^2)                    F is small
  spectrum    mean(low^2)                     little low-frequency energy
  repetitive  -max(S with the low window 0)   a strong high-frequency peak
  symmetry    mean((S - S^T)^2)               S symmetric

`low` is the (2r + 1) x (2r + 1) window of S around the centre (r = 25 as
published). The published repetitive term takes ONE max over the whole batch;
`batch_global=True` keeps that (and makes it global across devices when an
`axis_name` is given), `batch_global=False` averages each image's own max.

Multi-device use: every term except the batch-global max is a mean over the
local batch, so with equal per-device batch sizes the mean (pmean) over
devices of per-device gradients already equals the global-batch gradient. The
batch-global max gathers the per-device maxima (`lax.all_gather`), whose
transpose sends the cotangent of every device's copy of the loss to the device
holding the max; after the trainer's pmean of gradients that is exactly the
single-device gradient.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

# ITU-R BT.601 luma weights, as published.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)

LOSS_NAMES = ('magnitude', 'spectrum', 'repetitive', 'symmetry')

# The published weights of the four constraints for each task.
PUBLISHED_WEIGHTS = {
    'parsing': {'magnitude': 0.1, 'spectrum': 0.05, 'repetitive': 0.001,
                'symmetry': 1.0},
    'detection': {'magnitude': 0.01, 'spectrum': 0.05, 'repetitive': 0.001,
                  'symmetry': 0.1},
    'attribution': {'magnitude': 0.01, 'spectrum': 0.05, 'repetitive': 0.001,
                    'symmetry': 0.1},
}

DEFAULT_LOW_FREQ_RADIUS = 25


def to_gray(f: jax.Array) -> jax.Array:
  """Gray image of an RGB fingerprint.

  Args:
    f: [..., H, W, 3] fingerprint (channels last).

  Returns:
    [..., H, W] gray image, 0.299 R + 0.587 G + 0.114 B, in f's dtype.
  """
  if f.shape[-1] != 3:
    raise ValueError(f'a fingerprint needs 3 channels last (NHWC), got shape '
                     f'{f.shape}')
  r, g, b = GRAY_WEIGHTS
  return r * f[..., 0] + g * f[..., 1] + b * f[..., 2]


def magnitude_spectrum(f: jax.Array) -> jax.Array:
  """|fftshift(fft2(gray))| over the two spatial axes, always in float32.

  Args:
    f: [N, H, W, 3] fingerprint, any float dtype (bfloat16 included).

  Returns:
    [N, H, W] float32 magnitude spectrum, zero frequency at (H//2, W//2).
  """
  # float32 even under bfloat16 training: spectral peaks are ~H*W times the
  # pixel values and bfloat16 keeps only 8 bits of mantissa.
  gray = to_gray(jnp.asarray(f).astype(jnp.float32))
  spectrum = jnp.fft.fftshift(jnp.fft.fft2(gray, axes=(-2, -1)),
                              axes=(-2, -1))
  # jnp.abs of a complex zero has gradient 0 (not NaN), so empty frequency
  # bins (constant or zero fingerprints) keep gradients finite.
  return jnp.abs(spectrum).astype(jnp.float32)


def _window_bounds(shape: tuple[int, ...], radius: int
                   ) -> tuple[slice, slice]:
  """Static slices of the (2r+1)^2 window around (H//2, W//2)."""
  if radius < 0 or int(radius) != radius:
    raise ValueError(f'low-frequency radius must be an integer >= 0, got '
                     f'{radius!r}')
  if len(shape) < 2:
    raise ValueError(f'a spectrum needs two spatial axes, got shape {shape}')
  h, w = shape[-2], shape[-1]
  slices = []
  for size, axis in ((h, 'height'), (w, 'width')):
    centre = size // 2
    if centre - radius < 0 or centre + radius >= size:
      raise ValueError(
          f'a low-frequency window of radius {radius} ({2 * radius + 1} '
          f'bins) around index {centre} does not fit a spectrum of {axis} '
          f'{size}; use a radius <= {min((size - 1) - size // 2, size // 2)}')
    slices.append(slice(centre - radius, centre + radius + 1))
  return slices[0], slices[1]


def low_frequency_window(spectrum: jax.Array, radius: int) -> jax.Array:
  """The (2r+1) x (2r+1) window of a centred spectrum around (H//2, W//2).

  Args:
    spectrum: [..., H, W] centred (fftshifted) spectrum.
    radius: r >= 0; the window must fit inside H x W.

  Returns:
    [..., 2r+1, 2r+1] window.

  Raises:
    ValueError: the window does not fit.
  """
  rows, cols = _window_bounds(spectrum.shape, radius)
  return spectrum[..., rows, cols]


def _high_frequency(spectrum: jax.Array, radius: int) -> jax.Array:
  """The spectrum with its low-frequency window set to zero, [..., H, W]."""
  rows, cols = _window_bounds(spectrum.shape, radius)
  # A static numpy mask: the window is fixed by shapes, not data.
  mask = np.zeros(spectrum.shape[-2:], dtype=bool)
  mask[rows, cols] = True
  return jnp.where(mask, jnp.zeros((), spectrum.dtype), spectrum)


def magnitude_loss(f: jax.Array) -> jax.Array:
  """mean(gray^2) over the batch, scalar float32. f: [N, H, W, 3]."""
  gray = to_gray(jnp.asarray(f).astype(jnp.float32))
  return jnp.mean(jnp.square(gray))


def spectrum_loss(spectrum: jax.Array,
                  radius: int = DEFAULT_LOW_FREQ_RADIUS) -> jax.Array:
  """mean(low^2) of the low-frequency window, scalar. spectrum: [N, H, W]."""
  return jnp.mean(jnp.square(low_frequency_window(spectrum, radius)))


def repetitive_loss(spectrum: jax.Array,
                    radius: int = DEFAULT_LOW_FREQ_RADIUS,
                    batch_global: bool = True,
                    axis_name: str | None = None) -> jax.Array:
  """Minus the largest high-frequency magnitude, scalar.

  Args:
    spectrum: [N, H, W] centred magnitude spectrum.
    radius: radius of the low-frequency window excluded from the max.
    batch_global: True (published): one max over the whole batch, over the
      global batch across devices when `axis_name` is given. False: the mean
      over images of each image's own max (no collective needed).
    axis_name: pmap / shard_map axis over which the batch is split.

  Returns:
    Scalar; -max (batch_global) or -mean_i max_i.
  """
  high = _high_frequency(spectrum, radius)
  per_image = jnp.max(high, axis=(-2, -1))  # [N]
  if not batch_global:
    return -jnp.mean(per_image)
  local = jnp.max(per_image)
  if axis_name is not None:
    # all_gather (not pmax) so the max stays differentiable: its transpose
    # routes every device's cotangent to the device that holds the max.
    local = jnp.max(jax.lax.all_gather(local, axis_name))
  return -local


def symmetry_loss(spectrum: jax.Array) -> jax.Array:
  """mean((S - S^T)^2), transpose over the two spatial axes, scalar.

  Args:
    spectrum: [N, H, H] centred magnitude spectrum (square: S^T must have S's
      shape).
  """
  if spectrum.shape[-1] != spectrum.shape[-2]:
    raise ValueError(f'the symmetry constraint needs a square spectrum, got '
                     f'shape {spectrum.shape}')
  return jnp.mean(jnp.square(spectrum - jnp.swapaxes(spectrum, -1, -2)))


def fingerprint_losses(
    f: jax.Array,
    weights: Mapping[str, float],
    *,
    low_freq_radius: int = DEFAULT_LOW_FREQ_RADIUS,
    batch_global_max: bool = True,
    axis_name: str | None = None,
    spectrum: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """All four constraints from one spectrum, and their weighted sum.

  Args:
    f: [N, H, W, 3] fingerprint.
    weights: exactly the keys 'magnitude', 'spectrum', 'repetitive',
      'symmetry' (e.g. PUBLISHED_WEIGHTS['parsing']); a weight 0 removes the
      constraint from the total (ablations) but its term is still reported.
    low_freq_radius: r of the (2r+1)^2 low-frequency window (published 25).
    batch_global_max: see `repetitive_loss(batch_global=...)`.
    axis_name: pmap / shard_map batch axis, for the batch-global max.
    spectrum: [N, H, W] `magnitude_spectrum(f)` if the caller already has it
      (the attribution head reads it too); computed here otherwise.

  Returns:
    (total, terms): total is the float32 scalar sum of weight * term; terms
    maps each of the four names to its unweighted float32 scalar.
  """
  unknown = sorted(set(weights) - set(LOSS_NAMES))
  absent = [k for k in LOSS_NAMES if k not in weights]
  if unknown or absent:
    raise ValueError(f'fingerprint loss weights need exactly the keys '
                     f'{list(LOSS_NAMES)}; missing {absent}, unknown {unknown}')
  if spectrum is None:
    spectrum = magnitude_spectrum(f)
  elif spectrum.shape != f.shape[:-1]:
    raise ValueError(f'spectrum shape {spectrum.shape} does not match the '
                     f'fingerprint shape {f.shape}')
  terms = {
      'magnitude': magnitude_loss(f),
      'spectrum': spectrum_loss(spectrum, low_freq_radius),
      'repetitive': repetitive_loss(spectrum, low_freq_radius,
                                    batch_global=batch_global_max,
                                    axis_name=axis_name),
      'symmetry': symmetry_loss(spectrum),
  }
  total = sum(jnp.asarray(weights[k], jnp.float32) * terms[k]
              for k in LOSS_NAMES)
  return total, terms
