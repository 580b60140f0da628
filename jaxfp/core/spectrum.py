"""The spectrum maths that models and losses share.

A fingerprint `f` is a float array [N, H, W, 3] (NHWC). Its gray image is
0.299 R + 0.587 G + 0.114 B; its magnitude spectrum |fftshift(fft2(gray))|
has the zero frequency at (H // 2, W // 2). The low-frequency window is the
(2r + 1) x (2r + 1) square of the spectrum around that centre.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxfp.core import image_features

# ITU-R BT.601 luma weights, as published.
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


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


def window_bounds(shape: tuple[int, ...], radius: int
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
  rows, cols = window_bounds(spectrum.shape, radius)
  return spectrum[..., rows, cols]


def high_frequency(spectrum: jax.Array, radius: int) -> jax.Array:
  """The spectrum with its low-frequency window set to zero, [..., H, W]."""
  rows, cols = window_bounds(spectrum.shape, radius)
  # A static numpy mask: the window is fixed by shapes, not data.
  mask = np.zeros(spectrum.shape[-2:], dtype=bool)
  mask[rows, cols] = True
  return jnp.where(mask, jnp.zeros((), spectrum.dtype), spectrum)


def log_channel_spectrum(x: jax.Array, highpass_sigma: float = 0.0
                         ) -> jax.Array:
  """log(1 + |fftshift(fft2(x))| averaged over channels), float32.

  Args:
    x: [N, H, W, c] maps (an image or a fingerprint).
    highpass_sigma: > 0: the spectrum of x minus its Gaussian blur of this
      sigma in pixels (circular edges), i.e. |FFT(x)| times the blur's
      complement 1 - exp(-2 pi^2 sigma^2 |f|^2); image content sits at low
      frequencies, a generator's traces mostly do not.

  Returns:
    [N, H, W], zero frequency at (H // 2, W // 2).
  """
  x = jnp.asarray(x).astype(jnp.float32)
  magnitude = jnp.mean(jnp.abs(jnp.fft.fft2(x, axes=(1, 2))), axis=-1)
  if highpass_sigma > 0:
    magnitude = magnitude * jnp.asarray(
        highpass_gain(x.shape[1], x.shape[2], highpass_sigma), jnp.float32)
  return jnp.log1p(jnp.fft.fftshift(magnitude, axes=(1, 2)))


def radial_profile(spectrum: jax.Array) -> jax.Array:
  """Mean of centred square maps [N, S, S] over S // 2 rings: [N, S // 2].

  Ring r holds the frequencies whose distance from the centre rounds down
  to r; the corners beyond S // 2 join the outermost ring.
  """
  size = spectrum.shape[-1]
  ring = image_features.rings(size)
  weights = np.eye(size // 2, dtype=np.float32)[ring.ravel()]
  weights /= weights.sum(axis=0, keepdims=True)
  return spectrum.reshape(spectrum.shape[0], -1) @ jnp.asarray(weights)


def highpass_gain(height: int, width: int, sigma: float) -> np.ndarray:
  """1 - exp(-2 pi^2 sigma^2 |f|^2) on the unshifted fft2 grid [H, W]: the
  gain of "x minus its Gaussian blur of `sigma` pixels" (circular edges)."""
  fy = np.fft.fftfreq(height)[:, None]
  fx = np.fft.fftfreq(width)[None, :]
  return 1.0 - np.exp(-2 * np.pi ** 2 * sigma ** 2 * (fx ** 2 + fy ** 2))


def lattice_energy(x: jax.Array, periods: tuple[int, ...],
                   highpass_sigma: float) -> jax.Array:
  """The share of the high-pass residual's power (of x itself when
  highpass_sigma is 0) that repeats with each period, [N, H, W, c] ->
  [N, len(periods)], float32.

  A signal with period p in both axes has its power on the frequencies that
  are multiples of H / p: upsampling x2 leaves such a trace at p = 2, a
  second stage before it at p = 4, and so on, so the shares say how many
  stages an image went through. White noise puts p^2 / (H W) there.
  Every period must divide H and W.
  """
  x = jnp.asarray(x).astype(jnp.float32)
  _, h, w, _ = x.shape
  for p in periods:
    if h % p or w % p:
      raise ValueError(f'period {p} does not divide the image size {h}x{w}')
  power = jnp.sum(jnp.abs(jnp.fft.fft2(x, axes=(1, 2))) ** 2, axis=-1)
  if highpass_sigma > 0:
    power = power * jnp.asarray(highpass_gain(h, w, highpass_sigma) ** 2,
                                jnp.float32)
  total = power.sum(axis=(1, 2)) + 1e-12
  return jnp.stack([power[:, ::h // p, ::w // p].sum(axis=(1, 2)) / total
                    for p in periods], axis=-1)
