"""tf.data pipeline for detection and attribution: folder-per-class images.

Batches are dicts of numpy arrays shaped [local_device_count, per_device, ...]:

  'image'  float32 [..., s, s, 3]  (x / 255 - MEAN) / STD, as published
  'label'  int32   [...]           class index (sorted class folder names)
  'mask'   float32 [...]           1 real example, 0 padding (label -1)

Train and test images are split by a hash of each file's path inside the
tree, so the split is fixed for a tree whatever the process count or order.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxfp import augment
from jaxfp import input_pipeline
from jaxfp import normalization
from jaxfp.datasets import builtin_classes
from jaxfp.datasets import folder
from jaxfp.datasets import image_classes

SOURCES = ('builtin', 'folder')
_BUCKETS = 10_000


def default_data_config(layout: str,
                        image_size: int = 128) -> ml_collections.ConfigDict:
  """`config.data` for a classifier; the built-in images by default."""
  from jaxfp import zoo  # pylint: disable=g-import-not-at-top
  c = ml_collections.ConfigDict()
  c.source = 'builtin'  # 'builtin' | 'folder'.
  c.root = ''  # source='folder': root/<class>/*.png.
  c.layout = layout  # Built-in tree: 'detection' | 'attribution'.
  c.cache_dir = ''  # '' = $JAXFP_CACHE or ~/.cache/jaxfp.
  c.image_size = image_size
  c.zoo = zoo.default_config()
  c.zoo.image_size = image_size
  c.zoo.num_generators = 8 if layout == 'detection' else 4
  c.zoo.images_per_generator = 100
  c.num_real = 400 if layout == 'detection' else 100
  c.test_fraction = 0.25
  c.shuffle_buffer = 0  # 0 = the whole training set.
  return c


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  class_names: tuple[str, ...]
  root: str
  num_train_images: int  # Over all processes.
  num_test_images: int
  class_counts: dict[str, int]  # Readable images per class, both splits.
  skipped_files: tuple[tuple[str, str], ...]


def _root(c: ml_collections.ConfigDict) -> str:
  cache = c.cache_dir or folder.default_cache_dir()
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
  cache = c.cache_dir or folder.default_cache_dir()
  return image_classes.ImageClasses(
      root=root, image_size=c.image_size,
      data_dir=os.path.join(cache, 'tfds'))


def _is_test(c: ml_collections.ConfigDict):
  threshold = int(round(c.test_fraction * _BUCKETS))
  return lambda file: tf.strings.to_hash_bucket_fast(file, _BUCKETS) < threshold


def _records(c, root) -> tf.data.Dataset:
  return _builder(c, root).as_dataset(
      split='train', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding()})


def load_info(c: ml_collections.ConfigDict) -> ClassInfo:
  """Builds the images and records if needed; returns classes and split."""
  if not 0 < c.test_fraction < 1:
    raise ValueError(f'config.data.test_fraction={c.test_fraction} must lie '
                     'strictly between 0 and 1')
  root = _root(c)
  builder = _builder(c, root)
  builder.download_and_prepare()
  meta = folder.read_metadata(builder)
  names = tuple(builder.info.features['gm'].names)
  skipped = tuple((str(f), str(r)) for f, r in meta['skipped_files'])
  counts = {n: int(meta['gm_counts'].get(n, 0)) for n in names}
  folder.log_summary(f'{builder.name}/{builder.builder_config.name}', counts,
                     skipped)
  is_test = _is_test(c)
  flags = _records(c, root).map(lambda ex: is_test(ex['file']))
  num_test = int(sum(1 for t in flags.as_numpy_iterator() if t))
  total = sum(counts.values())
  if not 0 < num_test < total:
    raise ValueError(f'{root}: {total} images give {num_test} test images '
                     f'with test_fraction={c.test_fraction}; need both splits')
  info = ClassInfo(class_names=names, root=root,
                   num_train_images=total - num_test,
                   num_test_images=num_test, class_counts=counts,
                   skipped_files=skipped)
  logging.info('Classes %s in %s: %d train, %d test images.', list(names),
               root, info.num_train_images, info.num_test_images)
  return info


def _examples(c, info: ClassInfo, test: bool) -> tf.data.Dataset:
  builder = _builder(c, info.root)
  image_feature = builder.info.features['image']
  is_test = _is_test(c)
  ds = _records(c, info.root).filter(
      lambda ex: tf.equal(is_test(ex['file']), test))
  ds = ds.shard(jax.process_count(), jax.process_index())
  return ds.map(lambda ex: {'image': image_feature.decode_example(ex['image']),
                            'label': tf.cast(ex['gm'], tf.int32)},
                num_parallel_calls=tf.data.AUTOTUNE)


def _to_batch_element(ex):
  image = (tf.cast(ex['image'], tf.float32) / 255.0 -
           normalization.MEAN) / normalization.STD
  return {'image': image, 'label': ex['label'],
          'mask': tf.constant(1.0, tf.float32)}


def train_iterator(c: ml_collections.ConfigDict, info: ClassInfo, *,
                   global_batch_size: int, local_device_count: int, seed: int,
                   start_step: int = 0,
                   augmentation: ml_collections.ConfigDict | None = None
                   ) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of the training images; resumable by step.

  `augmentation`: a `jaxfp.augment` config, applied before normalisation.
  """
  per_process = input_pipeline.per_process_batch(global_batch_size,
                                                 local_device_count)
  local = input_pipeline.local_count(info.num_train_images)
  ds = input_pipeline.shuffled_stream(
      _examples(c, info, test=False), local, buffer=c.shuffle_buffer,
      seed=seed, start_step=start_step, per_process=per_process,
      augmentation=augmentation)
  ds = ds.map(_to_batch_element, num_parallel_calls=tf.data.AUTOTUNE)
  return input_pipeline.device_batches(ds, per_process, local_device_count)


def eval_iterator(c: ml_collections.ConfigDict, info: ClassInfo, *,
                  global_batch_size: int, local_device_count: int,
                  perturb=None) -> Iterator[dict[str, np.ndarray]]:
  """One padded pass over the test images in a fixed order.

  `perturb`: a map over {'image' uint8, 'index'} (`jaxfp.augment.fixed`)
  applied before normalisation, for robustness evaluation.
  """
  per_process = input_pipeline.per_process_batch(global_batch_size,
                                                 local_device_count)
  ds = _examples(c, info, test=True)
  if perturb is not None:
    ds = augment.with_index(ds).map(perturb,
                                    num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(_to_batch_element, num_parallel_calls=tf.data.AUTOTUNE)
  ds = input_pipeline.padded_pass(ds, info.num_test_images, per_process)
  return input_pipeline.device_batches(ds, per_process, local_device_count)
