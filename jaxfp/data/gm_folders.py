"""Model-parsing data: GM folders with a ground-truth table -> batches.

`config.data` (configs/data.py) names the dataset: the built-in zoo or the
published model-parsing images. Records are built once (TFDS), and again
when the tree changes (`folder.prepare`); the held-out GMs are chosen here,
by name (`jaxfp.data.splits`). Batches are dicts of numpy arrays shaped
[local_device_count, per_device_batch, ...]:

  'image'       float32 [..., s, s, 3]  (x / 255 - MEAN) / STD
  'continuous'  float32 [..., C]        normalised, NaN where missing
  'discrete'    int32   [..., D]        class index, -1 where missing
  'coarse'      int32   [..., K]        0/1, -1 where missing
  'fine'        int32   [..., F]        0/1, -1 where missing
  'gm'          int32   [...]           row in DataInfo.ground_truth
  'mask'        float32 [...]           1 real example, 0 padding

Labels are looked up through the example's GM row, so they are the ground
truth of that GM by construction. Eval padding rows have mask 0, gm -1 and
all labels missing.

The closed set: `config.data.closed_set_fraction` of each training GM's
images, chosen by a hash of the file's path (so the same images in every
run and process), never enter the training stream; `eval_iterator(...,
split='closed_set')` scores them. A training GM whose every image would be
held back keeps them all for training.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxfp.core import schema as schema_lib
from jaxfp.data import batching
from jaxfp.data import splits
from jaxfp.data import trees
from jaxfp.data.builders import folder
from jaxfp.data.builders import model_parsing
from jaxfp.data.builders import zoo as zoo_builder

LABEL_KEYS = ('continuous', 'discrete', 'coarse', 'fine')
DATASETS = ('zoo', 'model_parsing')
SPLITS = ('test', 'closed_set', 'train')


def _cache_dir(c: ml_collections.ConfigDict) -> str:
  return c.cache_dir or trees.default_cache_dir()


def _builder(c: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  data_dir = os.path.join(_cache_dir(c), 'tfds')
  if c.name == 'zoo':
    return zoo_builder.ZooDataset(
        zoo_config=c.zoo, image_size=c.image_size,
        zoo_cache_dir=os.path.join(_cache_dir(c), 'zoo'), data_dir=data_dir)
  if c.name == 'model_parsing':
    files = c.ground_truth_files
    return model_parsing.ModelParsing(
        image_size=c.image_size, ground_truth_dir=c.ground_truth_dir,
        ground_truth_files=dict(files.to_dict() if hasattr(files, 'to_dict')
                                else files),
        manual_dir=c.manual_dir or None, data_dir=data_dir)
  raise ValueError(f'config.data.name is {c.name!r}; expected one of '
                   f'{DATASETS}')


def _prepare(c: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The dataset's builder, its records built, or rebuilt if the source
  tree changed since they were built (`folder.prepare`)."""
  if c.name != 'model_parsing':
    return folder.prepare(lambda: _builder(c))
  manual_dir = os.path.expanduser(c.manual_dir) if c.manual_dir else ''
  if manual_dir and os.path.exists(manual_dir) and not os.path.isdir(
      manual_dir):
    raise NotADirectoryError(f'config.data.manual_dir {c.manual_dir!r} is a '
                             'file, not a folder')
  if manual_dir and not os.path.isdir(manual_dir):
    raise FileNotFoundError(
        f'config.data.manual_dir {c.manual_dir!r} does not exist (it must '
        'hold the model-parsing images, see '
        'jaxfp.data.builders.model_parsing)')
  if not manual_dir and not _builder(c).is_prepared():
    raise FileNotFoundError(
        'config.data.manual_dir is not set and no records are built yet: '
        'point it at the model-parsing images (see '
        'jaxfp.data.builders.model_parsing)')
  return folder.prepare(
      lambda: _builder(c), manual_dir,
      download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))


def load_info(data_config: ml_collections.ConfigDict, *,
              require_train_gms: bool = True) -> splits.DataInfo:
  """Builds the dataset if needed; returns its ground truth and split.

  `require_train_gms=False` accepts a split that holds out every GM (an
  evaluation of a checkpoint on data it never saw).
  """
  c = data_config
  if c.name not in DATASETS:
    raise ValueError(f'config.data.name is {c.name!r}; expected one of '
                     f'{DATASETS}')
  fraction = float(c.get('closed_set_fraction', 0.0))
  if not 0 <= fraction < 1:
    raise ValueError(f'config.data.closed_set_fraction is {fraction}; need '
                     '0 (no closed set) or more, and below 1')
  builder = _prepare(c)
  meta = folder.read_metadata(builder)
  table = schema_lib.GroundTruth.from_dict(meta['ground_truth'])
  names = tuple(builder.info.features['gm'].names)
  if table.gm_names != names:
    raise ValueError(f'{builder.data_dir}: ground truth names GMs '
                     f'{table.gm_names}, the records {names}')
  counts = {gm: int(meta['gm_counts'].get(gm, 0)) for gm in names}
  skipped = tuple((str(f), str(r)) for f, r in meta['skipped_files'])
  trees.log_summary(f'{builder.name}/{builder.builder_config.name}', counts,
                    skipped)

  empty = [gm for gm in names if not counts[gm]]
  if empty:
    logging.warning('GMs with no readable image, left out: %s', empty)
  usable = [gm for gm in names if counts[gm]]
  test = splits.choose_test_gms(c, names, usable, table)
  train_gms = splits.limit_train_gms(
      [gm for gm in usable if gm not in test], c.get('num_train_gms', 0),
      c.split_seed)
  test_gms = tuple(gm for gm in usable if gm in test)
  if not train_gms and require_train_gms:
    raise ValueError(f'every GM ({len(usable)}) is a test GM: nothing to '
                     'train on (only jaxfp.evaluate takes such a split)')
  closed = _closed_counts(builder, fraction, train_gms)
  # A GM whose every image hashed into the closed set keeps them all for
  # training: a training GM must have a training image.
  closed = {gm: n for gm, n in closed.items() if 0 < n < counts[gm]}
  return splits.DataInfo(
      ground_truth=table, train_gms=train_gms, test_gms=test_gms,
      num_train_images=sum(counts[gm] for gm in train_gms) - sum(
          closed.values()),
      num_test_images=sum(counts[gm] for gm in test_gms),
      skipped_files=skipped, num_closed_images=sum(closed.values()),
      closed_gms=tuple(gm for gm in train_gms if gm in closed),
      closed_set_fraction=fraction)


def _closed_counts(builder, fraction: float,
                   train_gms: Sequence[str]) -> dict[str, int]:
  """Closed-set images per training GM: one pass over the records' GM
  labels and file names (images are not decoded)."""
  if fraction <= 0 or not train_gms:
    return {}
  names = builder.info.features['gm'].names
  # A file is in the closed set if its GM is a training GM that keeps one.
  is_closed = batching.in_hashed_share(fraction)
  counts = np.zeros(len(names), np.int64)
  labels = folder.records(builder).map(
      lambda ex: (ex['gm'], is_closed(ex['file']))).batch(4096)
  for gm, closed in labels.as_numpy_iterator():
    np.add.at(counts, gm[closed], 1)
  wanted = set(train_gms)
  return {n: int(counts[i]) for i, n in enumerate(names) if n in wanted}


def _examples(c: ml_collections.ConfigDict, info: splits.DataInfo,
              gms: Sequence[str], images: str = 'all') -> tf.data.Dataset:
  """This process's share of the images of `gms`: {'image' uint8, 'row'}.

  `images`: 'all' of them, those 'kept' for training (the closed set left
  out), or only the 'closed' set.
  """
  builder = _builder(c)
  if not builder.is_prepared():
    raise ValueError(f'{builder.data_dir} is not built; call load_info first')
  label_names = builder.info.features['gm'].names
  wanted = set(gms)
  # Record label -> row of info.ground_truth (by name), -1 = not wanted.
  rows = tf.constant([info.ground_truth.index(n) if n in wanted else -1
                      for n in label_names], tf.int32)
  image_feature = builder.info.features['image']
  ds = folder.records(builder)
  ds = ds.filter(lambda ex: tf.gather(rows, tf.cast(ex['gm'], tf.int32)) >= 0)
  if images != 'all' and info.closed_gms:
    has_closed = tf.constant([n in set(info.closed_gms)
                              for n in label_names])
    is_closed = batching.in_hashed_share(info.closed_set_fraction)
    keep_closed = images == 'closed'
    ds = ds.filter(lambda ex: tf.equal(
        tf.logical_and(tf.gather(has_closed, tf.cast(ex['gm'], tf.int32)),
                       is_closed(ex['file'])), keep_closed))
  elif images == 'closed':
    raise ValueError('this split has no closed set')
  # Records are read in their stored order (fixed); images are decoded only
  # after the GM filter and the per-process shard.
  ds = ds.shard(jax.process_count(), jax.process_index())
  return ds.map(lambda ex: {
      'image': image_feature.decode_example(ex['image']),
      'row': tf.gather(rows, tf.cast(ex['gm'], tf.int32))},
                num_parallel_calls=tf.data.AUTOTUNE)


def _to_element(info: splits.DataInfo):
  gt = info.ground_truth
  tables = {k: tf.constant(getattr(gt, k)) for k in LABEL_KEYS}
  return lambda ex: batching.element(
      ex['image'], gm=ex['row'],
      **{k: tf.gather(t, ex['row']) for k, t in tables.items()})


def train_iterator(
    data_config: ml_collections.ConfigDict, info: splits.DataInfo, *,
    global_batch_size: int, local_device_count: int, seed: int,
    start_step: int = 0, augmentation: ml_collections.ConfigDict | None = None
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of the train GMs' images (the closed set left
  out), resumable by step (`batching.train_batches`); `augmentation`: a
  `jaxfp.data.augment` config."""
  if not info.train_gms:
    raise ValueError('every GM is a test GM: nothing to train on')
  return batching.train_batches(
      _examples(data_config, info, info.train_gms, 'kept'),
      info.num_train_images, _to_element(info),
      global_batch_size=global_batch_size,
      local_device_count=local_device_count, seed=seed,
      start_step=start_step, buffer=data_config.shuffle_buffer,
      augmentation=augmentation)


def eval_iterator(
    data_config: ml_collections.ConfigDict, info: splits.DataInfo, *,
    global_batch_size: int, local_device_count: int, perturb=None,
    split: str = 'test') -> Iterator[dict[str, np.ndarray]]:
  """One padded pass in a fixed order (`batching.eval_batches`) over the
  test GMs' images; split='closed_set': over the closed set; 'train': over
  the images training reads (the closed set left out), once, unshuffled."""
  passes = {'test': (info.test_gms, 'all', info.num_test_images),
            'closed_set': (info.closed_gms, 'closed', info.num_closed_images),
            'train': (info.train_gms, 'kept', info.num_train_images)}
  if split not in passes:
    raise ValueError(f'split {split!r}: use one of {SPLITS}')
  gms, images, total = passes[split]
  return batching.eval_batches(
      _examples(data_config, info, gms, images), total, _to_element(info),
      global_batch_size=global_batch_size,
      local_device_count=local_device_count, perturb=perturb)
