"""What the internet does to images, as functions with a severity each.

Every perturbation takes a uint8 image [H, W, 3] and returns one of the same
shape; codecs, filters and resampling come from maintained libraries (Pillow
for JPEG and resampling, SciPy for the Gaussian filter), not our own code:

  jpeg    re-compression at `quality` (Pillow's encoder, 4:2:0 chroma)
  blur    Gaussian blur of standard deviation `sigma` pixels
  noise   additive Gaussian noise of standard deviation `std` (0-1 scale)
  resize  down to `scale` x the size and back up (bilinear both ways)
  crop    a random crop of `fraction` of each side, resized back (bilinear)

Severity 0 (sigma 0, std 0) and 1 (scale 1, fraction 1) are the identity;
JPEG has no identity quality. `combination` applies blur, JPEG, noise,
resize and crop in that fixed order, each with probability p and a severity
drawn uniformly from its range: the GANFingerprints robustness protocol.
`cnndetection` is the blur + JPEG augmentation of CNNDetection (Wang et al.
2020): each with probability p, sigma ~ U[0, 3], quality ~ U{30..100}.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from scipy import ndimage

# Severities of a robustness sweep, mildest first.
SEVERITIES = {
    'jpeg': (95, 75, 50, 30),
    'blur': (0.5, 1.0, 2.0, 3.0),
    'noise': (0.01, 0.02, 0.05, 0.1),
    'resize': (0.75, 0.5, 0.25),
    'crop': (0.9, 0.75, 0.5),
}
NAMES = tuple(SEVERITIES)
# Units of the severity, for table headers and plot axes.
UNITS = {'jpeg': 'quality', 'blur': 'sigma (px)', 'noise': 'std (0-1)',
         'resize': 'scale', 'crop': 'fraction kept'}
# (low, high) severity ranges of `combination`, mildest first.
COMBINATION_RANGES = {'blur': (0.0, 3.0), 'jpeg': (100, 30),
                      'noise': (0.0, 0.1), 'resize': (1.0, 0.25),
                      'crop': (1.0, 0.5)}


def _check(image: np.ndarray) -> np.ndarray:
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] != 3:
    raise ValueError(f'perturbations take uint8 [H, W, 3] images, got '
                     f'{image.dtype} {image.shape}')
  return image


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
  image = _check(image)
  if not 1 <= quality <= 100:
    raise ValueError(f'JPEG quality {quality} must lie in [1, 100]')
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='JPEG', quality=int(quality))
  buffer.seek(0)
  with Image.open(buffer) as decoded:
    return np.asarray(decoded.convert('RGB'), np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
  image = _check(image)
  if sigma < 0:
    raise ValueError(f'blur sigma {sigma} must be >= 0')
  if sigma == 0:
    return image.copy()
  out = ndimage.gaussian_filter(image.astype(np.float32), (sigma, sigma, 0),
                                mode='reflect')
  return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noise(image: np.ndarray, std: float,
          rng: np.random.Generator) -> np.ndarray:
  image = _check(image)
  if std < 0:
    raise ValueError(f'noise std {std} must be >= 0')
  if std == 0:
    return image.copy()
  noisy = image.astype(np.float32) + rng.normal(0.0, std * 255.0, image.shape)
  return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def _resample(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR),
                    np.uint8)


def resize(image: np.ndarray, scale: float) -> np.ndarray:
  image = _check(image)
  if not 0 < scale <= 1:
    raise ValueError(f'resize scale {scale} must lie in (0, 1]')
  if scale == 1:
    return image.copy()
  h, w = image.shape[:2]
  small = _resample(image, (max(1, round(w * scale)), max(1, round(h * scale))))
  return _resample(small, (w, h))


def crop(image: np.ndarray, fraction: float,
         rng: np.random.Generator) -> np.ndarray:
  image = _check(image)
  if not 0 < fraction <= 1:
    raise ValueError(f'crop fraction {fraction} must lie in (0, 1]')
  if fraction == 1:
    return image.copy()
  h, w = image.shape[:2]
  ch, cw = max(1, round(h * fraction)), max(1, round(w * fraction))
  top = int(rng.integers(0, h - ch + 1))
  left = int(rng.integers(0, w - cw + 1))
  return _resample(image[top:top + ch, left:left + cw], (w, h))


def apply(name: str, image: np.ndarray, severity: float,
          rng: np.random.Generator) -> np.ndarray:
  """Perturbation `name` at `severity` (the unit of UNITS[name])."""
  if name == 'jpeg':
    return jpeg(image, int(round(severity)))
  if name == 'blur':
    return blur(image, severity)
  if name == 'noise':
    return noise(image, severity, rng)
  if name == 'resize':
    return resize(image, severity)
  if name == 'crop':
    return crop(image, severity, rng)
  raise ValueError(f'unknown perturbation {name!r}; known: {NAMES}')


def combination(image: np.ndarray, rng: np.random.Generator,
                p: float) -> np.ndarray:
  """Each perturbation in a fixed order, with probability p, random severity."""
  for name, (low, high) in COMBINATION_RANGES.items():
    if rng.random() < p:
      image = apply(name, image, rng.uniform(min(low, high), max(low, high)),
                    rng)
  return image


def cnndetection(image: np.ndarray, rng: np.random.Generator,
                 p: float) -> np.ndarray:
  """Blur (sigma ~ U[0, 3]) then JPEG (quality ~ U{30..100}), each with p."""
  if rng.random() < p:
    image = blur(image, rng.uniform(0.0, 3.0))
  if rng.random() < p:
    image = jpeg(image, int(rng.integers(30, 101)))
  return image
