"""Fixed features of an image's traces, in numpy (no network, no JAX):
what the non-deep reference parser and the per-image detector read.

Features of one image (uint8 RGB, any square size s divisible by `pool`;
`features`):
  * the log-magnitude spectrum of the high-pass residual (image minus a
    Gaussian blur of sigma 1 with mirrored edges, per channel; |FFT|
    averaged over the channels, zero frequency at the centre),
    average-pooled to `pool` x `pool`;
  * its radial profile: the mean of that log spectrum over rings of equal
    |frequency| (s / 2 rings; the corners beyond s / 2 join the last ring);
  * colour statistics per channel: mean, std, 1/5/50/95/99 % quantiles,
    the fraction of pixels at 0 and at 255, a 16-bin histogram, and the std
    of the residual.
"""

from __future__ import annotations

import numpy as np
from scipy import fft
from scipy import ndimage

POOL = 16
HIST_BINS = 16
QUANTILES = (1, 5, 50, 95, 99)
SIGMA = 1.0


def residual_log_spectrum(images: np.ndarray, sigma: float = SIGMA
                          ) -> tuple[np.ndarray, np.ndarray]:
  """The residual's log-magnitude spectrum [N, s, s] and the residual.

  Spectrum: log(1 + mean over channels |fftshift(fft2(x - blur(x)))|),
  zero frequency at [s // 2, s // 2]. Residual: x - blur(x), [N, s, s, 3].

  Args:
    images: uint8 [N, s, s, 3] (scaled to [0, 1]) or float in [0, 1].
    sigma: the Gaussian blur's sigma in pixels.
  """
  x = np.asarray(images, np.float32)
  if np.asarray(images).dtype == np.uint8:
    x = x / 255.0
  blurred = ndimage.gaussian_filter(x, sigma=(0, sigma, sigma, 0),
                                    mode='reflect')
  residual = x - blurred
  # Channels first, so the transform runs over the contiguous last axes:
  # over axes (1, 2) of NHWC it ran ~20x slower.
  planes = np.ascontiguousarray(np.moveaxis(residual, -1, 1), np.float64)
  magnitude = np.abs(fft.fft2(planes, workers=-1)).mean(axis=1)
  return np.log1p(np.fft.fftshift(magnitude, axes=(1, 2))), residual


def rings(size: int) -> np.ndarray:
  """Ring index of every frequency of an s x s centred spectrum, [s, s]:
  int(|frequency|), the corners beyond s // 2 - 1 in the last ring."""
  yy, xx = np.mgrid[:size, :size] - size // 2
  return np.minimum(np.sqrt(xx ** 2 + yy ** 2).astype(np.int64),
                    size // 2 - 1)


def radial_profile(spectrum: np.ndarray) -> np.ndarray:
  """Mean of [N, s, s] (zero frequency at s // 2) over s // 2 rings."""
  n, s, _ = spectrum.shape
  onehot = np.eye(s // 2)[rings(s).ravel()]  # [s * s, s // 2]
  return spectrum.reshape(n, -1) @ onehot / onehot.sum(axis=0)


def avg_pool(maps: np.ndarray, size: int) -> np.ndarray:
  """[N, s, s] average-pooled to [N, size, size] (s divisible by size)."""
  n, s, _ = maps.shape
  if s % size:
    raise ValueError(f'image size {s} is not divisible by the reference\'s '
                     f'pool size {size}')
  k = s // size
  return maps.reshape(n, size, k, size, k).mean(axis=(2, 4))


def colour_statistics(images: np.ndarray, residual: np.ndarray) -> np.ndarray:
  """Per-channel intensity statistics, [N, 3 * (10 + HIST_BINS)]."""
  u8 = np.asarray(images)
  # float64: float32 sums over a whole image drift visibly (a flat image's
  # std would not be 0).
  x = u8.astype(np.float64) / 255.0
  flat = x.reshape(len(x), -1, x.shape[-1])  # [N, pixels, 3]
  raw = u8.reshape(flat.shape)
  parts = [flat.mean(axis=1), flat.std(axis=1)]
  parts += list(np.percentile(flat, QUANTILES, axis=1))
  # Clipping at the ends of the range is a trace of the last nonlinearity.
  parts += [(raw == 0).mean(axis=1), (raw == 255).mean(axis=1)]
  # Bin b holds [b, b + 1) / HIST_BINS, the last one 1.0 too.
  bins = np.minimum((flat * HIST_BINS).astype(np.int64), HIST_BINS - 1)
  n, pixels, channels = flat.shape
  slot = (bins + HIST_BINS * np.arange(channels) +
          HIST_BINS * channels * np.arange(n)[:, None, None])
  counts = np.bincount(slot.ravel(), minlength=n * channels * HIST_BINS)
  hist = counts.reshape(n, channels, HIST_BINS).transpose(0, 2, 1) / pixels
  parts.append(hist.reshape(n, -1))  # [N, HIST_BINS * 3], bin-major.
  parts.append(residual.reshape(flat.shape).std(axis=1))
  return np.concatenate(parts, axis=1)


def num_features(size: int, pool: int = POOL) -> int:
  """Length of `features` of s x s images."""
  return pool * pool + size // 2 + 3 * (10 + HIST_BINS)


def features(images: np.ndarray, *, pool: int = POOL, sigma: float = SIGMA,
             chunk: int = 512) -> np.ndarray:
  """Reference features of uint8 images [N, s, s, 3] -> float32 [N, d]."""
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3 or (
      images.shape[1] != images.shape[2]):
    raise ValueError(f'images must be [N, s, s, 3], got {images.shape}')
  out = []
  # In chunks: the complex spectra of a whole zoo would not fit in memory.
  for start in range(0, len(images), chunk):
    batch = images[start:start + chunk]
    spectrum, residual = residual_log_spectrum(batch, sigma)
    out.append(np.concatenate([
        avg_pool(spectrum, pool).reshape(len(batch), -1),
        radial_profile(spectrum),
        colour_statistics(batch, residual)], axis=1).astype(np.float32))
  if not out:
    return np.zeros((0, num_features(images.shape[1], pool)), np.float32)
  return np.concatenate(out)
