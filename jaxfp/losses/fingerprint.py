"""The four fingerprint constraints on the FEN output, as pure JAX functions.

A fingerprint `f` is a float array [N, H, W, 3] (NHWC). Every constraint works
on its gray image, 0.299 R + 0.587 G + 0.114 B, or on the magnitude spectrum
of that gray image, |fftshift(fft2(gray))| with the zero frequency at
(H // 2, W // 2) (`jaxfp.core.spectrum`):

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
devices of per-device gradients already equals the global-batch gradient; so
does the batch-global max's, after the trainer's pmean (`repetitive_loss`).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from jaxfp.core import spectrum as spectrum_lib

LOSS_NAMES = ('magnitude', 'spectrum', 'repetitive', 'symmetry')


def magnitude_loss(f: jax.Array) -> jax.Array:
  """mean(gray^2) over the batch, scalar float32. f: [N, H, W, 3]."""
  gray = spectrum_lib.to_gray(jnp.asarray(f).astype(jnp.float32))
  return jnp.mean(jnp.square(gray))


def spectrum_loss(spectrum: jax.Array, radius: int) -> jax.Array:
  """mean(low^2) of the low-frequency window, scalar. spectrum: [N, H, W]."""
  return jnp.mean(jnp.square(spectrum_lib.low_frequency_window(spectrum,
                                                               radius)))


def repetitive_loss(spectrum: jax.Array,
                    radius: int,
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
  high = spectrum_lib.high_frequency(spectrum, radius)
  per_image = jnp.max(high, axis=(-2, -1))  # [N]
  if not batch_global:
    return -jnp.mean(per_image)
  local = jnp.max(per_image)
  if axis_name is not None:
    # all_gather (not pmax) so the max stays differentiable: its transpose
    # routes every device's cotangent to the device that holds the max, so
    # the pmean of gradients is the single-device gradient.
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
    low_freq_radius: int,
    batch_global_max: bool = True,
    axis_name: str | None = None,
    spectrum: jax.Array | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
  """All four constraints from one spectrum, and their weighted sum.

  Args:
    f: [N, H, W, 3] fingerprint.
    weights: exactly the keys 'magnitude', 'spectrum', 'repetitive',
      'symmetry' (configs/common.py has the published ones); a weight 0
      removes the constraint from the total (ablations) but its term is
      still reported.
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
    spectrum = spectrum_lib.magnitude_spectrum(f)
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
