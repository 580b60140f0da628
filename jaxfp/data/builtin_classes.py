"""Built-in real-vs-generated images for detection and attribution.

Real class: random crops of the colour photographs bundled with scikit-image,
at the same scale as the zoo's training photos. Generated classes: images of
zoo generators (`jaxfp.zoo`), built at the requested image size. Written once
into the cache as a folder-per-class tree:

  detection    real/, fake/<gm>/          (binary, every generator is 'fake')
  attribution  real/, <gm_00>/, <gm_01>/  (one class per generator)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid

from absl import logging
import ml_collections
import numpy as np
from PIL import Image

from jaxfp.data import trees

LAYOUTS = ('detection', 'attribution')
REAL = 'real'
FAKE = 'fake'
_DONE = '.complete'


def _key(layout: str, zoo_config: ml_collections.ConfigDict,
         num_real: int) -> str:
  payload = json.dumps({'layout': layout, 'num_real': num_real,
                        'zoo': zoo_config.to_dict()}, sort_keys=True)
  return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _real_crops(num: int, image_size: int, seed: int) -> np.ndarray:
  from jaxfp.zoo import photos as photos_lib  # pylint: disable=g-import-not-at-top
  photos = photos_lib.load_photos(image_size)
  rng = np.random.default_rng(seed)
  crops = photos_lib.random_crops(rng, photos.train + photos.held_out, num,
                                  image_size)
  return np.clip(np.rint(crops * 255.0), 0, 255).astype(np.uint8)


def _fill(tree: str, layout: str, zoo_root: str, num_real: int,
          image_size: int, seed: int) -> None:
  found = trees.scan(zoo_root)
  os.makedirs(os.path.join(tree, REAL))
  for i, crop in enumerate(_real_crops(num_real, image_size, seed)):
    Image.fromarray(crop).save(os.path.join(tree, REAL, f'{i:05d}.png'))
  for gm in found.gm_names:
    target = (os.path.join(tree, FAKE, gm) if layout == 'detection'
              else os.path.join(tree, gm))
    os.makedirs(target)
    for rel in found.files[gm]:
      shutil.copy(os.path.join(found.images_root, rel),
                  os.path.join(target, os.path.basename(rel)))


def cached(layout: str, zoo_config: ml_collections.ConfigDict, num_real: int,
           cache_root: str) -> str:
  """The folder-per-class tree for `layout`, built first if needed.

  Args:
    layout: 'detection' (real/ and fake/) or 'attribution' (real/ and one
      folder per generator).
    zoo_config: the zoo whose generators make the fake images; its
      image_size is the images' size.
    num_real: how many real crops to write.
    cache_root: where zoos and trees are kept.
  """
  if layout not in LAYOUTS:
    raise ValueError(f'layout {layout!r}: use one of {LAYOUTS}')
  if num_real < 1:
    raise ValueError(f'num_real={num_real} must be at least 1')
  path = os.path.join(cache_root, 'classes',
                      f'{layout}-{_key(layout, zoo_config, num_real)}')
  if os.path.exists(os.path.join(path, _DONE)):
    logging.info('built-in %s images: using cached %s', layout, path)
    return path
  zoo_root = trees.zoo_tree(zoo_config, os.path.join(cache_root, 'zoo'))
  partial = f'{path}.partial-{uuid.uuid4().hex[:8]}'
  try:
    _fill(partial, layout, zoo_root, num_real, zoo_config.image_size,
          zoo_config.seed)
    open(os.path.join(partial, _DONE), 'w').close()
    if os.path.exists(path):
      shutil.rmtree(path)
    os.replace(partial, path)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  logging.info('built-in %s images written to %s', layout, path)
  return path
