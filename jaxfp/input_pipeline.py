"""tf.data input pipeline: TFDS records -> batches of numpy arrays.

The held-out (test) GMs are chosen here, by name, not by the dataset: every
image of a test GM is unseen in training, which is what model parsing
measures. Batches are dicts of numpy arrays shaped
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
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Iterator, Sequence

from absl import logging
import jax
import ml_collections
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from jaxfp import augment
from jaxfp import normalization
from jaxfp import schema as schema_lib
from jaxfp.datasets import folder
from jaxfp.datasets import model_parsing
from jaxfp.datasets import zoo_dataset

MEAN = normalization.MEAN
STD = normalization.STD
LABEL_KEYS = ('continuous', 'discrete', 'coarse', 'fine')
DATASETS = ('zoo', 'model_parsing')


def default_data_config() -> ml_collections.ConfigDict:
  """`config.data` with defaults: the default zoo at 64x64."""
  c = ml_collections.ConfigDict()
  c.name = 'zoo'  # 'zoo' | 'model_parsing'.
  c.cache_dir = ''  # '' = $JAXFP_CACHE or ~/.cache/jaxfp.
  c.image_size = 64
  c.zoo = zoo_dataset.default_zoo_config()
  # model_parsing: the published images; ground truth in ground_truth_dir
  # ('' = the manual dir): ground_truth.csv + schema.json, else these tables.
  c.manual_dir = ''
  c.ground_truth_dir = ''
  c.ground_truth_files = ml_collections.ConfigDict(
      dict(folder.PUBLISHED_NPY_FILES))
  # Held-out GMs: these names; else, with num_folds > 0, fold number `fold`
  # of num_folds that partition the GMs at random (split_seed); else
  # num_test_gms picked at random with split_seed.
  c.test_gms = ()
  c.num_folds = 0
  c.fold = 0
  c.num_test_gms = 8
  c.split_seed = 0
  c.shuffle_buffer = 0  # 0 = the whole training set (a uniform shuffle).
  return c


@dataclasses.dataclass(frozen=True)
class DataInfo:
  ground_truth: schema_lib.GroundTruth  # All GMs of the dataset.
  train_gms: tuple[str, ...]
  test_gms: tuple[str, ...]
  num_train_images: int  # Over all processes.
  num_test_images: int
  skipped_files: tuple[tuple[str, str], ...]  # (file, reason).


def _cache_dir(c: ml_collections.ConfigDict) -> str:
  return c.cache_dir or folder.default_cache_dir()


def _builder(c: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  data_dir = os.path.join(_cache_dir(c), 'tfds')
  if c.name == 'zoo':
    return zoo_dataset.ZooDataset(
        zoo_config=c.zoo, image_size=c.image_size,
        zoo_cache_dir=os.path.join(_cache_dir(c), 'zoo'), data_dir=data_dir)
  if c.name == 'model_parsing':
    files = c.ground_truth_files
    return model_parsing.ModelParsing(
        image_size=c.image_size, ground_truth_dir=c.ground_truth_dir,
        ground_truth_files=dict(files.to_dict() if hasattr(files, 'to_dict')
                                else files),
        data_dir=data_dir)
  raise ValueError(f'config.data.name is {c.name!r}; expected one of '
                   f'{DATASETS}')


def _prepare(c: ml_collections.ConfigDict, builder) -> None:
  """Builds the records if they are not there yet."""
  manual_dir = os.path.expanduser(c.manual_dir) if c.manual_dir else ''
  if c.name == 'model_parsing':
    exists = bool(manual_dir) and os.path.isdir(manual_dir)
    if not builder.is_prepared():
      if not exists:
        raise FileNotFoundError(
            f'config.data.manual_dir {c.manual_dir!r} does not exist (it must '
            'hold the model-parsing images, see '
            'jaxfp.datasets.model_parsing)')
      builder.download_and_prepare(
          download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
      return
    built_from = os.path.abspath(
        folder.read_metadata(builder).get('source', ''))
    if manual_dir and os.path.commonpath(
        [built_from, os.path.abspath(manual_dir)]) != os.path.abspath(
            manual_dir):
      logging.warning('Records in %s were built from %s, not manual_dir %s; '
                      'delete them to rebuild.', builder.data_dir, built_from,
                      manual_dir)
    return
  builder.download_and_prepare()
  # 'default' is a fixed name: make sure its records are of this zoo.
  meta = folder.read_metadata(builder)
  built = meta.get('zoo_fingerprint')
  wanted = zoo_dataset.zoo_fingerprint(builder.zoo_config())
  if built != wanted:
    raise ValueError(
        f'Records in {builder.data_dir} were built from another zoo '
        f'({meta.get("zoo_config")}, fingerprint {built}) '
        f'than {zoo_dataset.zoo_json(builder.zoo_config())} (fingerprint '
        f'{wanted}); delete that directory to rebuild them.')


def load_info(data_config: ml_collections.ConfigDict) -> DataInfo:
  """Builds the dataset if needed; returns its ground truth and split."""
  c = data_config
  if c.name not in DATASETS:
    raise ValueError(f'config.data.name is {c.name!r}; expected one of '
                     f'{DATASETS}')
  builder = _builder(c)
  _prepare(c, builder)
  meta = folder.read_metadata(builder)
  table = schema_lib.GroundTruth.from_dict(meta['ground_truth'])
  names = tuple(builder.info.features['gm'].names)
  if table.gm_names != names:
    raise ValueError(f'{builder.data_dir}: ground truth names GMs '
                     f'{table.gm_names}, the records {names}')
  counts = {gm: int(meta['gm_counts'].get(gm, 0)) for gm in names}
  skipped = tuple((str(f), str(r)) for f, r in meta['skipped_files'])
  folder.log_summary(f'{builder.name}/{builder.builder_config.name}', counts,
                     skipped)

  empty = [gm for gm in names if not counts[gm]]
  if empty:
    logging.warning('GMs with no readable image, left out: %s', empty)
  usable = [gm for gm in names if counts[gm]]
  test = choose_test_gms(c, names, usable)
  train_gms = tuple(gm for gm in usable if gm not in test)
  test_gms = tuple(gm for gm in usable if gm in test)
  if not train_gms:
    raise ValueError(f'every GM ({len(usable)}) is a test GM; too few GMs '
                     'left to train on')
  info = DataInfo(
      ground_truth=table, train_gms=train_gms, test_gms=test_gms,
      num_train_images=sum(counts[gm] for gm in train_gms),
      num_test_images=sum(counts[gm] for gm in test_gms),
      skipped_files=skipped)
  logging.info('Train: %d GMs, %d images. Test: %d GMs, %d images: %s.',
               len(train_gms), info.num_train_images, len(test_gms),
               info.num_test_images, list(test_gms))
  return info


def fold_test_gms(gms: Sequence[str], num_folds: int, fold: int,
                  seed: int) -> tuple[str, ...]:
  """The test GMs of fold `fold` when `gms` are dealt into `num_folds` folds.

  The folds partition `gms` (sizes differ by at most one) in an order that
  depends only on `seed` and the GMs, so every fold of one cross-validation
  sees the same partition.
  """
  if not 2 <= num_folds <= len(gms):
    raise ValueError(f'config.data.num_folds is {num_folds}; need 2 to '
                     f'{len(gms)} (the number of GMs with images)')
  if not 0 <= fold < num_folds:
    raise ValueError(f'config.data.fold is {fold}; need 0 to {num_folds - 1}')
  order = np.random.default_rng(seed).permutation(len(gms))
  chosen = np.sort(np.array_split(order, num_folds)[fold])
  return tuple(gms[i] for i in chosen)


def choose_test_gms(c: ml_collections.ConfigDict, names: Sequence[str],
                    usable: Sequence[str]) -> set[str]:
  """Held-out GMs: config.data.test_gms, a fold, or num_test_gms at random."""
  requested = c.test_gms
  if isinstance(requested, str):  # 'gm_a,gm_b' from a command line.
    requested = [n.strip() for n in requested.split(',') if n.strip()]
  num_folds = c.get('num_folds', 0)
  if requested and num_folds:
    raise ValueError('config.data.test_gms and config.data.num_folds='
                     f'{num_folds} both choose the test GMs; set one of them')
  if requested:
    test = set(requested)
    unknown = sorted(test - set(names))
    if unknown:
      raise ValueError(f'config.data.test_gms names unknown GMs {unknown}; '
                       f'the valid ones are {list(names)}')
    unusable = sorted(test - set(usable))
    if unusable:
      raise ValueError(f'test GMs {unusable} have no readable image')
    return test
  if num_folds:
    return set(fold_test_gms(tuple(usable), num_folds, c.get('fold', 0),
                             c.split_seed))
  n = c.num_test_gms
  if not 0 < n < len(usable):
    raise ValueError(
        f'config.data.num_test_gms is {n}, but there are {len(usable)} GMs '
        'with images; need at least one test and one train GM')
  rng = np.random.default_rng(c.split_seed)
  return set(rng.choice(usable, size=n, replace=False).tolist())


def per_process_batch(global_batch_size: int, local_device_count: int) -> int:
  processes = jax.process_count()
  if global_batch_size <= 0 or local_device_count <= 0:
    raise ValueError(f'global batch size {global_batch_size} and local device '
                     f'count {local_device_count} must be positive')
  if global_batch_size % (processes * local_device_count):
    raise ValueError(
        f'global batch size {global_batch_size} is not divisible by '
        f'{processes} processes x {local_device_count} local devices '
        f'= {processes * local_device_count}')
  return global_batch_size // processes


def local_count(total: int) -> int:
  """Examples this process gets from ds.shard(process_count, index)."""
  p, i = jax.process_count(), jax.process_index()
  return total // p + (1 if i < total % p else 0)


def _examples(c: ml_collections.ConfigDict, info: DataInfo,
              gms: Sequence[str]) -> tf.data.Dataset:
  """This process's share of the images of `gms`: {'image' uint8, 'row'}."""
  builder = _builder(c)
  if not builder.is_prepared():
    raise ValueError(f'{builder.data_dir} is not built; call load_info first')
  label_names = builder.info.features['gm'].names
  wanted = set(gms)
  # Record label -> row of info.ground_truth (by name), -1 = not wanted.
  rows = tf.constant([info.ground_truth.index(n) if n in wanted else -1
                      for n in label_names], tf.int32)
  image_feature = builder.info.features['image']
  # Records are read in their stored order (fixed); images are decoded only
  # after the GM filter and the per-process shard.
  ds = builder.as_dataset(
      split='train', shuffle_files=False,
      decoders={'image': tfds.decode.SkipDecoding(),
                'file': tfds.decode.SkipDecoding()})
  ds = ds.map(lambda ex: {'image': ex['image'],
                          'row': tf.gather(rows, tf.cast(ex['gm'], tf.int32))})
  ds = ds.filter(lambda ex: ex['row'] >= 0)
  ds = ds.shard(jax.process_count(), jax.process_index())
  return ds.map(lambda ex: {'image': image_feature.decode_example(ex['image']),
                            'row': ex['row']},
                num_parallel_calls=tf.data.AUTOTUNE)


def _to_batch_element(info: DataInfo):
  gt = info.ground_truth
  tables = {k: tf.constant(getattr(gt, k)) for k in LABEL_KEYS}

  def fn(ex):
    image = (tf.cast(ex['image'], tf.float32) / 255.0 - MEAN) / STD
    out = {'image': image, 'gm': ex['row'],
           'mask': tf.constant(1.0, tf.float32)}
    out.update({k: tf.gather(t, ex['row']) for k, t in tables.items()})
    return out
  return fn


def device_batches(ds: tf.data.Dataset, per_process: int,
                   local_device_count: int) -> Iterator[dict[str, np.ndarray]]:
  """Numpy batches shaped [local_device_count, per_device, ...], prefetched."""
  per_device = per_process // local_device_count
  ds = ds.batch(per_process, drop_remainder=True)
  ds = ds.map(lambda b: tf.nest.map_structure(
      lambda x: tf.reshape(
          x, [local_device_count, per_device] + x.shape[1:].as_list()), b))
  return iter(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())


def train_iterator(
    data_config: ml_collections.ConfigDict, info: DataInfo, *,
    global_batch_size: int, local_device_count: int, seed: int,
    start_step: int = 0, augmentation: ml_collections.ConfigDict | None = None
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of the train GMs' images.

  The order depends only on `seed` (and the process), so a run resumed with
  `start_step=k` sees exactly the batches k, k+1, ... of an uninterrupted run.
  """
  per_process = per_process_batch(global_batch_size, local_device_count)
  if start_step < 0:
    raise ValueError(f'start_step is {start_step}; must be >= 0')
  local = local_count(info.num_train_images)
  if not local:
    raise ValueError(f'process {jax.process_index()} has no training image '
                     f'({info.num_train_images} images, '
                     f'{jax.process_count()} processes)')
  ds = shuffled_stream(_examples(data_config, info, info.train_gms), local,
                       buffer=data_config.shuffle_buffer, seed=seed,
                       start_step=start_step, per_process=per_process,
                       augmentation=augmentation)
  ds = ds.map(_to_batch_element(info), num_parallel_calls=tf.data.AUTOTUNE)
  return device_batches(ds, per_process, local_device_count)


def shuffled_stream(ds: tf.data.Dataset, size: int, *, buffer: int, seed: int,
                    start_step: int, per_process: int,
                    augmentation: ml_collections.ConfigDict | None = None
                    ) -> tf.data.Dataset:
  """Cached, endlessly reshuffled `ds` (of `size` elements) from a step on.

  The order depends only on `seed`, so `start_step=k` continues exactly where
  an uninterrupted stream would be after k batches of `per_process`. With an
  `augmentation` config (`jaxfp.augment`) images are perturbed, with random
  draws fixed by the seed and each element's position in the stream.
  """
  # Decoded uint8 images are small; cache them once, normalise on the fly.
  ds = ds.cache()
  ds = ds.shuffle(min(buffer or size, size), seed=seed,
                  reshuffle_each_iteration=True).repeat()
  ds = augment.with_index(ds)
  # Batches are consecutive runs of this stream (drop_remainder on an endless
  # stream), so skipping elements skips whole batches exactly; skipping
  # before any decoding map keeps it cheap.
  ds = ds.skip(start_step * per_process)
  if augment.is_on(augmentation):
    ds = ds.map(augment.training(augmentation, seed),
                num_parallel_calls=tf.data.AUTOTUNE)
  return ds


def eval_iterator(
    data_config: ml_collections.ConfigDict, info: DataInfo, *,
    global_batch_size: int, local_device_count: int, perturb=None,
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over the test GMs' images in a fixed order.

  The last batch is padded (mask 0). Every process yields the same number of
  batches, so collectives over processes stay in step. `perturb`: a map over
  {'image' uint8, 'index'} (`jaxfp.augment.fixed`) applied before
  normalisation, for robustness evaluation.
  """
  per_process = per_process_batch(global_batch_size, local_device_count)
  ds = _examples(data_config, info, info.test_gms)
  if perturb is not None:
    ds = augment.with_index(ds).map(perturb,
                                    num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(_to_batch_element(info), num_parallel_calls=tf.data.AUTOTUNE)
  ds = padded_pass(ds, info.num_test_images, per_process)
  return device_batches(ds, per_process, local_device_count)


def padded_pass(ds: tf.data.Dataset, total: int,
                per_process: int) -> tf.data.Dataset:
  """`ds` (this process's share of `total` elements) padded to whole batches.

  Every process gets the same number of batches, so collectives over
  processes stay in step. Padding elements have mask 0 (see _padding_value).
  """
  num_batches = math.ceil(math.ceil(total / jax.process_count()) / per_process)
  pad = num_batches * per_process - local_count(total)
  if pad:
    padding = {k: _padding_value(k, spec)
               for k, spec in ds.element_spec.items()}
    ds = ds.concatenate(tf.data.Dataset.from_tensors(padding).repeat(pad))
  return ds


def _padding_value(key: str, spec: tf.TensorSpec) -> tf.Tensor:
  """Zeros for the image and mask; missing (NaN / -1) for labels and gm."""
  shape = spec.shape.as_list()
  if key == 'continuous':
    return tf.fill(shape, tf.constant(np.nan, spec.dtype))
  if spec.dtype.is_floating:
    return tf.zeros(shape, spec.dtype)
  return tf.fill(shape, tf.constant(schema_lib.MISSING, spec.dtype))
