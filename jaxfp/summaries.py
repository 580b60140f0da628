"""Pictures for people: an image beside its fingerprint and its spectrum."""

import numpy as np

from jaxfp import normalization
from jaxfp.losses import fingerprint as fingerprint_losses


def _unit_range(x: np.ndarray) -> np.ndarray:
  """Each image stretched to [0, 1] on its own (fingerprints are tiny)."""
  axes = tuple(range(1, x.ndim))
  lo = x.min(axis=axes, keepdims=True)
  hi = x.max(axis=axes, keepdims=True)
  return (x - lo) / np.maximum(hi - lo, 1e-12)


def fingerprint_panels(images: np.ndarray,
                       fingerprints: np.ndarray) -> np.ndarray:
  """[N, H, W, 3] normalised images and fingerprints -> [N, H, 3W, 3] panels.

  Left to right: the image, its fingerprint (stretched per image), and the
  log magnitude spectrum of the fingerprint (zero frequency at the centre).
  """
  images = np.asarray(images, np.float32)
  fingerprints = np.asarray(fingerprints, np.float32)
  shown = np.clip(images * normalization.STD + normalization.MEAN, 0.0,
                  1.0)
  spectrum = np.asarray(fingerprint_losses.magnitude_spectrum(fingerprints))
  log_spectrum = _unit_range(np.log1p(spectrum))[..., None].repeat(3, axis=-1)
  return np.concatenate([shown, _unit_range(fingerprints), log_spectrum],
                        axis=2)
