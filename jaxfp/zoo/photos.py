"""Real photographs shipped inside installed wheels, and random crops.

The files are read straight from the installed packages' data directories:
`skimage.data` loaders for other images fetch over the network (pooch), and
the zoo must build offline.

The zoo's generators train on scikit-image's colour photographs
(`PHOTO_FILES`); the detector's real class on every photograph scikit-image
ships (`PHOTO_SETS['train']`); the photographs of other packages
(`PHOTO_SETS['test']`) are never fitted on: a run shows them at its end and
`jaxfp.answers` measures false positives on them.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

import numpy as np
import skimage
from PIL import Image

# Colour photographs (not drawings or synthetic patterns) bundled in the wheel.
PHOTO_FILES = (
    'astronaut.png', 'chelsea.png', 'coffee.png', 'hubble_deep_field.jpg',
    'ihc.png', 'motorcycle_left.png', 'motorcycle_right.png', 'retina.jpg',
    'rocket.jpg')


# Photographs beyond the zoo's: (package, path inside it). Grayscale ones
# are read as RGB; every one has a shorter side of at least 256 pixels.
MORE_PHOTOS = {
    'camera': ('skimage', 'data/camera.png'),
    'coins': ('skimage', 'data/coins.png'),
    'moon': ('skimage', 'data/moon.png'),
    'grass': ('skimage', 'data/grass.png'),
    'gravel': ('skimage', 'data/gravel.png'),
    'brick': ('skimage', 'data/brick.png'),
    'clock_motion': ('skimage', 'data/clock_motion.png'),
    'china': ('sklearn', 'datasets/images/china.jpg'),
    'flower': ('sklearn', 'datasets/images/flower.jpg'),
    'grace_hopper': ('matplotlib', 'mpl-data/sample_data/grace_hopper.jpg'),
}
# Split by photograph and by camera: other packages' photographs come from
# other cameras and pipelines.
PHOTO_SETS = {
    'train': PHOTO_FILES + ('camera', 'coins', 'moon', 'grass', 'gravel',
                            'brick', 'clock_motion'),
    'test': ('china', 'flower', 'grace_hopper'),
}


def photo_directory() -> str:
  return os.path.join(os.path.dirname(skimage.__file__), 'data')


def photo_path(name: str) -> str:
  """The file of a photograph of `PHOTO_SETS`."""
  if name in PHOTO_FILES:
    return os.path.join(photo_directory(), name)
  package, inside = MORE_PHOTOS[name]
  module = importlib.import_module(package)
  return os.path.join(os.path.dirname(module.__file__), inside)


def rescaled(path: str, short: int) -> np.ndarray:
  """A photograph as float32 [H, W, 3] in [0, 1], its shorter side `short`."""
  return rescalings(path, (short,))[0]


def rescalings(path: str, shorts) -> list[np.ndarray]:
  """`rescaled` at each of `shorts`, the file decoded once."""
  with Image.open(path) as im:
    im = im.convert('RGB')
  out = []
  for short in shorts:
    scale = short / min(im.size)
    size = (max(short, round(im.size[0] * scale)),
            max(short, round(im.size[1] * scale)))
    out.append(np.asarray(im.resize(size, Image.Resampling.LANCZOS),
                          dtype=np.float32) / 255.0)
  return out


def load_set(which: str, image_size: int, scale: int = 4
             ) -> dict[str, np.ndarray]:
  """The photographs of PHOTO_SETS[which] that are installed, by name,
  their shorter side `scale` x image_size (4: the zoo's scale)."""
  out = {}
  for name in PHOTO_SETS[which]:
    path = photo_path(name)
    if os.path.isfile(path):
      out[name] = rescaled(path, scale * image_size)
  if not out:
    raise FileNotFoundError(f'none of the {which} photographs '
                            f'{list(PHOTO_SETS[which])} is installed')
  return out


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
    pixels = rescaled(os.path.join(directory, name), short)
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
