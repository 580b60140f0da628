"""Detection and attribution data: folder-per-class images -> batches.

`config.data` (configs/data.py) names the source: the built-in real-vs-zoo
trees (`jaxfp.data.builtin_classes`) or a folder of one's own. Batches are
dicts of numpy arrays shaped [local_device_count, per_device, ...]:

  'image'  float32 [..., s, s, 3]  (x / 255 - MEAN) / STD, as published
  'label'  int32   [...]           class index (sorted class folder names)
  'mask'   float32 [...]           1 real example, 0 padding (label -1)

Train and test images are split by a hash of each file's path inside the
tree, so the split is fixed for a tree whatever the process count or order.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from jaxfp.data import batching
from jaxfp.data import builtin_classes
from jaxfp.data import splits
from jaxfp.data import trees
from jaxfp.data.builders import folder
from jaxfp.data.builders import image_classes

SOURCES = ('builtin', 'folder')


def _root(c: ml_collections.ConfigDict) -> str:
  cache = c.cache_dir or trees.default_cache_dir()
  if c.source == 'builtin':
    if c.zoo.image_size != c.image_size:
      raise ValueError(f'config.data.zoo.image_size={c.zoo.image_size} must '
                       f'equal config.data.image_size={c.image_size}')
    return builtin_classes.cached(c.layout, c.zoo, c.num_real, cache)
  if c.source == 'folder':
    if not c.root or not os.path.isdir(os.path.expanduser(c.root)):
      raise FileNotFoundError(f'config.data.root={c.root!r} is not a '
                              'directory; it must hold one folder per class')
    return os.path.expanduser(c.root)
  raise ValueError(f'config.data.source={c.source!r}: use one of {SOURCES}')


def _builder(c: ml_collections.ConfigDict, root: str):
  cache = c.cache_dir or trees.default_cache_dir()
  return image_classes.ImageClasses(
      root=root, image_size=c.image_size,
      data_dir=os.path.join(cache, 'tfds'))


def load_info(c: ml_collections.ConfigDict) -> splits.ClassInfo:
  """Builds the images and records if needed; returns classes and split."""
  if not 0 < c.test_fraction < 1:
    raise ValueError(f'config.data.test_fraction={c.test_fraction} must lie '
                     'strictly between 0 and 1')
  root = _root(c)
  builder = folder.prepare(lambda: _builder(c, root))
  meta = folder.read_metadata(builder)
  names = tuple(builder.info.features['gm'].names)
  skipped = tuple((str(f), str(r)) for f, r in meta['skipped_files'])
  counts = {n: int(meta['gm_counts'].get(n, 0)) for n in names}
  trees.log_summary(f'{builder.name}/{builder.builder_config.name}', counts,
                    skipped)
  is_test = batching.in_hashed_share(c.test_fraction)
  # Readable images per class and split: [training, test].
  per_split = {n: [0, 0] for n in names}
  for label, test in folder.records(builder).map(
      lambda ex: (ex['gm'], is_test(ex['file']))).as_numpy_iterator():
    per_split[names[label]][int(test)] += 1
  for name, (num_train, num_test) in per_split.items():
    empty = [split for split, n in (('training', num_train),
                                    ('test', num_test)) if not n]
    if empty:
      unreadable = sum(f.startswith(f'{name}/') for f, _ in skipped)
      raise ValueError(
          f'class {name!r} ({os.path.join(meta["source"], name)}) has no '
          f'readable image in the {" or the ".join(empty)} split '
          f'({counts[name]} readable, '
          f'{unreadable} skipped as unreadable): every class needs a '
          'readable image in each split (add images, or change '
          f'config.data.test_fraction={c.test_fraction})')
  total = sum(counts.values())
  num_test = sum(n for _, n in per_split.values())
  return splits.ClassInfo(class_names=names, root=root,
                          num_train_images=total - num_test,
                          num_test_images=num_test, class_counts=counts,
                          skipped_files=skipped)


def _examples(c, info: splits.ClassInfo, test: bool) -> tf.data.Dataset:
  builder = _builder(c, info.root)
  image_feature = builder.info.features['image']
  is_test = batching.in_hashed_share(c.test_fraction)
  ds = folder.records(builder).filter(
      lambda ex: tf.equal(is_test(ex['file']), test))
  ds = ds.shard(jax.process_count(), jax.process_index())
  return ds.map(lambda ex: {'image': image_feature.decode_example(ex['image']),
                            'label': tf.cast(ex['gm'], tf.int32)},
                num_parallel_calls=tf.data.AUTOTUNE)


def _to_element(ex):
  return batching.element(ex['image'], label=ex['label'])


def train_iterator(c: ml_collections.ConfigDict, info: splits.ClassInfo, *,
                   global_batch_size: int, local_device_count: int, seed: int,
                   start_step: int = 0,
                   augmentation: ml_collections.ConfigDict | None = None
                   ) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of the training images, resumable by step
  (`batching.train_batches`); `augmentation`: a `jaxfp.data.augment`
  config."""
  return batching.train_batches(
      _examples(c, info, test=False), info.num_train_images, _to_element,
      global_batch_size=global_batch_size,
      local_device_count=local_device_count, seed=seed,
      start_step=start_step, buffer=c.shuffle_buffer,
      augmentation=augmentation)


def eval_iterator(c: ml_collections.ConfigDict, info: splits.ClassInfo, *,
                  global_batch_size: int, local_device_count: int,
                  perturb=None) -> Iterator[dict[str, np.ndarray]]:
  """One padded pass over the test images in a fixed order
  (`batching.eval_batches`)."""
  return batching.eval_batches(
      _examples(c, info, test=True), info.num_test_images, _to_element,
      global_batch_size=global_batch_size,
      local_device_count=local_device_count, perturb=perturb)
