"""Real colour photographs shipped inside scikit-image, and random crops.

The files are read straight from the installed package's data directory:
`skimage.data` loaders for other images fetch over the network (pooch), and
the zoo must build offline.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import skimage
from PIL import Image

# Colour photographs (not drawings or synthetic patterns) bundled in the wheel.
PHOTO_FILES = (
    'astronaut.png', 'chelsea.png', 'coffee.png', 'hubble_deep_field.jpg',
    'ihc.png', 'motorcycle_left.png', 'motorcycle_right.png', 'retina.jpg',
    'rocket.jpg')


def photo_directory() -> str:
  return os.path.join(os.path.dirname(skimage.__file__), 'data')


@dataclasses.dataclass(frozen=True)
class Photos:
  """Each photo split into a training region (top) and a held-out one."""
  names: tuple[str, ...]
  train: tuple[np.ndarray, ...]  # [H, W, 3] float32 in [0, 1].
  held_out: tuple[np.ndarray, ...]


def load_photos(image_size: int) -> Photos:
  """The bundled photos, rescaled so that a crop shows a region, not texture.

  The shorter side becomes 4 x image_size. The bottom 1.5 x image_size rows
  are held out for generation, so generated images come from unseen crops.
  """
  directory = photo_directory()
  names = [n for n in PHOTO_FILES if os.path.isfile(os.path.join(directory, n))]
  if not names:
    raise FileNotFoundError(
        f'none of the photos {list(PHOTO_FILES)} is in the scikit-image data '
        f'directory {directory}')
  short = 4 * image_size
  held_rows = (3 * image_size) // 2
  train, held_out = [], []
  for name in names:
    with Image.open(os.path.join(directory, name)) as im:
      im = im.convert('RGB')
      scale = short / min(im.size)
      size = (max(short, round(im.size[0] * scale)),
              max(short, round(im.size[1] * scale)))
      pixels = np.asarray(im.resize(size, Image.Resampling.LANCZOS),
                          dtype=np.float32) / 255.0
    train.append(pixels[:-held_rows])
    held_out.append(pixels[-held_rows:])
  return Photos(tuple(names), tuple(train), tuple(held_out))


def random_crops(rng: np.random.Generator, images, n: int,
                 size: int) -> np.ndarray:
  """n random size x size crops, each from a random image, half mirrored."""
  out = np.empty((n, size, size, 3), np.float32)
  which = rng.integers(len(images), size=n)
  flips = rng.random(n) < 0.5
  for k in range(n):
    image = images[which[k]]
    y = rng.integers(image.shape[0] - size + 1)
    x = rng.integers(image.shape[1] - size + 1)
    crop = image[y:y + size, x:x + size]
    out[k] = crop[:, ::-1] if flips[k] else crop
  return out
