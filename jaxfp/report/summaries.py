"""What a run shows people: image | fingerprint | spectrum panels, and the
TensorBoard writer its scalars and panels go to."""

import numpy as np

from jaxfp.core import console
from jaxfp.core import normalization
from jaxfp.core import spectrum as spectrum_lib


def _unit_range(x: np.ndarray) -> np.ndarray:
  """Each image stretched to [0, 1] on its own (fingerprints are tiny)."""
  axes = tuple(range(1, x.ndim))
  lo = x.min(axis=axes, keepdims=True)
  hi = x.max(axis=axes, keepdims=True)
  return (x - lo) / np.maximum(hi - lo, 1e-12)


def fingerprint_panels(images: np.ndarray, fingerprints: np.ndarray,
                       mean: float = normalization.MEAN,
                       std: float = normalization.STD) -> np.ndarray:
  """[N, H, W, 3] normalised images and fingerprints -> [N, H, 3W, 3] panels.

  Left to right: the image (its normalisation, `mean` and `std`, undone),
  its fingerprint (stretched per image), and the log magnitude spectrum of
  the fingerprint (zero frequency at the centre).
  """
  images = np.asarray(images, np.float32)
  fingerprints = np.asarray(fingerprints, np.float32)
  shown = np.clip(normalization.unit_range(images, mean, std), 0.0, 1.0)
  spectrum = np.asarray(spectrum_lib.magnitude_spectrum(fingerprints))
  log_spectrum = _unit_range(np.log1p(spectrum))[..., None].repeat(3, axis=-1)
  return np.concatenate([shown, _unit_range(fingerprints), log_spectrum],
                        axis=2)


def writer(workdir: str, *, chief: bool):
  """clu's writer: TensorBoard files in `workdir` (process 0), else logs.

  clu's writers import TensorFlow, so they are imported here, when a run
  starts, and the trainer's step imports without TensorFlow.
  """
  with console.native_output_hushed():
    from clu import metric_writers  # pylint: disable=g-import-not-at-top
  return metric_writers.create_default_writer(workdir, just_logging=not chief)
