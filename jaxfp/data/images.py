"""Image files: finding them, reading them, batching them. No TensorFlow.

The one image loader of jaxfp: dataset builds, inference and the benchmark
read files through `load_image`. Images are decoded with PIL, converted to
8-bit RGB and resized with PIL's bilinear filter, which is what the
published torchvision `Resize((s, s))` does on PIL images. Size policies:
'resize' (as published) scales the whole image to the input size, ignoring
its aspect ratio; 'center_crop' first cuts the largest centred square, then
scales it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image

from jaxfp.core import normalization

IMAGE_EXTENSIONS = ('.png', '.jpg', '.jpeg', '.webp', '.bmp')
RESIZE_POLICIES = ('resize', 'center_crop')


class ImageError(Exception):
  """An image file that cannot be used; the message says why."""


def visible(name: str) -> bool:
  return not name.startswith('.')


def shown(path: str) -> str:
  """`path` as printable text: bytes of a file name that are not UTF-8
  (kept by Python as lone surrogates, which cannot be printed or written
  as strict JSON) appear as backslash escapes (\\xff)."""
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


def one_line(path: str) -> str:
  """`shown(path)` with control characters (a newline, a tab, an escape) as
  Python writes them in a string literal (\\n), so that a name prints on
  the one line it is promised; JSON values keep `shown`."""
  return ''.join(c if c.isprintable() else repr(c)[1:-1]
                 for c in shown(path))


def files_under(directory: str) -> list[str]:
  """Image files below `directory` (links followed, hidden ones skipped),
  in sorted order.

  Each real folder is visited once, whatever the links to it: a link to a
  folder already seen (a loop back to a parent, a second way in) is not
  followed again, so a link loop cannot make the walk endless.
  """
  found = []
  seen = set()
  for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
    seen.add(os.path.realpath(dirpath))
    kept = []
    for name in sorted(filter(visible, dirnames)):
      real = os.path.realpath(os.path.join(dirpath, name))
      if real not in seen:
        seen.add(real)
        kept.append(name)
    dirnames[:] = kept
    found += [os.path.join(dirpath, n) for n in sorted(filter(visible,
                                                              filenames))
              if os.path.splitext(n)[1].lower() in IMAGE_EXTENSIONS]
  return found


def find_images(paths: Sequence[str]) -> tuple[list[str], list[tuple]]:
  """Image files under `paths`, and (path, reason) for unusable paths."""
  files, problems = [], []
  for path in paths:
    if os.path.isfile(path):
      files.append(path)
    elif os.path.isdir(path):
      found = files_under(path)
      if found:
        files += found
      else:
        problems.append((path, 'folder holds no image ('
                         + ', '.join(IMAGE_EXTENSIONS) + ')'))
    else:
      problems.append((path, 'no such file or folder'))
  return files, problems


def to_rgb(img: Image.Image) -> Image.Image:
  """8-bit RGB; high-bit-depth images are rescaled, not clipped."""
  if img.mode in ('I', 'F') or img.mode.startswith('I;16'):
    a = np.asarray(img, dtype=np.float64)
    if img.mode.startswith('I;16') or (img.mode == 'I' and a.max() > 255):
      a = a / 257.0  # 16-bit range onto 8-bit.
    elif img.mode == 'F' and a.max() <= 1.0:
      a = a * 255.0  # Floats in [0, 1].
    img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), 'L')
  # Alpha is dropped, not composited: what PIL's (and torchvision's loader's)
  # convert('RGB') does, so pixels match the published preprocessing.
  return img if img.mode == 'RGB' else img.convert('RGB')


def load_image(path: str, size: int, policy: str = 'resize') -> np.ndarray:
  """uint8 [size, size, 3]; raises ImageError if the file is unusable."""
  if policy not in RESIZE_POLICIES:
    raise ValueError(f'resize policy {policy!r}: use one of {RESIZE_POLICIES}')
  try:
    if os.path.getsize(path) == 0:
      raise ImageError('empty file (0 bytes)')
    with Image.open(path) as img:
      img.load()  # Decodes fully, so a truncated file fails here.
      img = to_rgb(img)
    if policy == 'center_crop':
      w, h = img.size
      side = min(w, h)
      left, top = (w - side) // 2, (h - side) // 2
      img = img.crop((left, top, left + side, top + side))
    if img.size != (size, size):
      img = img.resize((size, size), Image.BILINEAR)
    array = np.asarray(img, dtype=np.uint8)
  except ImageError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    # PIL raises many types (OSError, SyntaxError, ValueError, struct.error,
    # DecompressionBombError...) for bad files; all mean "skip this one".
    raise ImageError(f'{type(e).__name__}: {e}') from e
  if array.shape != (size, size, 3):
    raise ImageError(f'decoded to shape {array.shape}')
  return array


def batches(files: Sequence[str], size: int, policy: str, batch_size: int,
            failures: list, *, mean: float = normalization.MEAN,
            std: float = normalization.STD) -> Iterator:
  """(paths, normalised images padded to batch_size) of readable files.

  Unreadable files are appended to `failures` as (path, reason). Every batch
  is full (zeros pad the last one), so one compiled shape serves any number
  of images.
  """
  paths, images = [], []
  for path in files:
    try:
      image = load_image(path, size, policy)
    except ImageError as e:
      failures.append((path, str(e)))
      continue
    paths.append(path)
    images.append(normalization.normalize(image.astype(np.float32), mean, std))
    if len(paths) == batch_size:
      yield paths, np.stack(images)
      paths, images = [], []
  if paths:
    images += [np.zeros_like(images[0])] * (batch_size - len(paths))
    yield paths, np.stack(images)
