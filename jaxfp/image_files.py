"""Image files for inference: finding them, reading them, batching them.

Size policies: 'resize' (as published) scales the whole image to the input
size, ignoring its aspect ratio; 'center_crop' first cuts the largest centred
square, then scales it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from jaxfp.datasets import folder

RESIZE_POLICIES = ('resize', 'center_crop')


def find_images(paths: Sequence[str]) -> tuple[list[str], list[tuple]]:
  """Image files under `paths`, and (path, reason) for unusable paths."""
  files, problems = [], []
  for path in paths:
    if os.path.isfile(path):
      files.append(path)
    elif os.path.isdir(path):
      found = []
      for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
        found += [os.path.join(dirpath, n) for n in sorted(filenames)
                  if not n.startswith('.') and
                  os.path.splitext(n)[1].lower() in folder.IMAGE_EXTENSIONS]
      if found:
        files += found
      else:
        problems.append((path, 'folder holds no image ('
                         + ', '.join(folder.IMAGE_EXTENSIONS) + ')'))
    else:
      problems.append((path, 'no such file or folder'))
  return files, problems


def load_image(path: str, size: int, policy: str = 'resize') -> np.ndarray:
  """uint8 [size, size, 3]; raises folder.ImageError if unusable."""
  try:
    if os.path.getsize(path) == 0:
      raise folder.ImageError('empty file (0 bytes)')
    with Image.open(path) as img:
      img.load()  # Decodes fully, so a truncated file fails here.
      img = folder.to_rgb(img)
    if policy == 'center_crop':
      w, h = img.size
      side = min(w, h)
      left, top = (w - side) // 2, (h - side) // 2
      img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
      img = img.resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)
  except folder.ImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types for bad files; all mean "skip this one".
    raise folder.ImageError(f'{type(e).__name__}: {e}') from e


def batches(files, loaded, policy, batch_size, failures) -> Iterator:
  """(paths, normalised images padded to batch_size) of readable files.

  `loaded` gives the input size and normalisation (inference.Loaded);
  unreadable files are appended to `failures` as (path, reason).
  """
  if policy not in RESIZE_POLICIES:
    raise ValueError(f'resize policy {policy!r}: use one of {RESIZE_POLICIES}')
  paths, images = [], []
  for path in files:
    try:
      image = load_image(path, loaded.image_size, policy)
    except folder.ImageError as e:
      failures.append((path, str(e)))
      continue
    paths.append(path)
    images.append((image.astype(np.float32) / 255.0 - loaded.mean) /
                  loaded.std)
    if len(paths) == batch_size:
      yield paths, np.stack(images)
      paths, images = [], []
  if paths:
    pad = batch_size - len(paths)
    # A full batch always: one compiled shape for every call.
    images += [np.zeros_like(images[0])] * pad
    yield paths, np.stack(images)
