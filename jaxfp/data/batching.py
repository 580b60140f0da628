"""tf.data batching that every pipeline shares: per-process shards, endless
resumable shuffles, padded evaluation passes, device-shaped numpy batches.

A pipeline hands over this process's share of decoded examples
({'image' uint8, ...}) and a map to its batch element (`element`); batches
come out as dicts of numpy arrays shaped [local_device_count, per_device,
...], with 'mask' 1 for real examples and 0 for padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import jax
import ml_collections
import numpy as np
import tensorflow as tf

from jaxfp.core import normalization
from jaxfp.core import schema as schema_lib
from jaxfp.data import augment


# Hash buckets of `in_hashed_share`: fractions to 1e-4.
_BUCKETS = 10_000


def in_hashed_share(fraction: float) -> Callable[[tf.Tensor], tf.Tensor]:
  """file path -> whether it falls in a `fraction` of all paths, chosen by a
  hash of the path: the same in every run and process."""
  threshold = int(round(fraction * _BUCKETS))
  return lambda file: tf.strings.to_hash_bucket_fast(file, _BUCKETS) < threshold


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


def element(image: tf.Tensor, **keys) -> dict[str, tf.Tensor]:
  """A real example's batch element: the normalised image, mask 1, `keys`."""
  return {'image': normalization.normalize(tf.cast(image, tf.float32)),
          'mask': tf.constant(1.0, tf.float32), **keys}


def device_batches(ds: tf.data.Dataset, per_process: int,
                   local_device_count: int) -> Iterator[dict[str, np.ndarray]]:
  """Numpy batches shaped [local_device_count, per_device, ...], prefetched."""
  per_device = per_process // local_device_count
  ds = ds.batch(per_process, drop_remainder=True)
  ds = ds.map(lambda b: tf.nest.map_structure(
      lambda x: tf.reshape(
          x, [local_device_count, per_device] + x.shape[1:].as_list()), b))
  return iter(ds.prefetch(tf.data.AUTOTUNE).as_numpy_iterator())


def shuffled_stream(ds: tf.data.Dataset, size: int, *, buffer: int, seed: int,
                    start_step: int, per_process: int,
                    augmentation: ml_collections.ConfigDict | None = None
                    ) -> tf.data.Dataset:
  """Cached, endlessly reshuffled `ds` (of `size` elements) from a step on.

  The order depends only on `seed`, so `start_step=k` continues exactly where
  an uninterrupted stream would be after k batches of `per_process`. With an
  `augmentation` config (`jaxfp.data.augment`) images are perturbed, with
  random draws fixed by the seed and each element's position in the stream.
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


def train_batches(
    examples: tf.data.Dataset, num_images: int, to_element: Callable, *,
    global_batch_size: int, local_device_count: int, seed: int,
    start_step: int = 0, buffer: int = 0,
    augmentation: ml_collections.ConfigDict | None = None
) -> Iterator[dict[str, np.ndarray]]:
  """Endless shuffled batches of `examples`, this process's share of
  `num_images` training images; resumable at `start_step`.

  The order depends only on `seed` (and the process), so a run resumed with
  `start_step=k` sees exactly the batches k, k+1, ... of an uninterrupted
  run. `buffer`: shuffle buffer, 0 = every image (a uniform shuffle).
  """
  per_process = per_process_batch(global_batch_size, local_device_count)
  if start_step < 0:
    raise ValueError(f'start_step is {start_step}; must be >= 0')
  local = local_count(num_images)
  if not local:
    raise ValueError(f'process {jax.process_index()} has no training image '
                     f'({num_images} images, {jax.process_count()} '
                     'processes)')
  ds = shuffled_stream(examples, local, buffer=buffer, seed=seed,
                       start_step=start_step, per_process=per_process,
                       augmentation=augmentation)
  ds = ds.map(to_element, num_parallel_calls=tf.data.AUTOTUNE)
  return device_batches(ds, per_process, local_device_count)


def eval_batches(
    examples: tf.data.Dataset, num_images: int, to_element: Callable, *,
    global_batch_size: int, local_device_count: int, perturb=None
) -> Iterator[dict[str, np.ndarray]]:
  """One pass over `examples` (this process's share of `num_images`) in a
  fixed order, padded to whole batches (`padded_pass`).

  `perturb`: a map over {'image' uint8, 'index'} (`jaxfp.data.augment.fixed`)
  applied before normalisation, for robustness evaluation.
  """
  per_process = per_process_batch(global_batch_size, local_device_count)
  ds = examples
  if perturb is not None:
    ds = augment.with_index(ds).map(perturb,
                                    num_parallel_calls=tf.data.AUTOTUNE)
  ds = ds.map(to_element, num_parallel_calls=tf.data.AUTOTUNE)
  ds = padded_pass(ds, num_images, per_process)
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
  """Zeros for the image and mask; missing (NaN / -1) for labels and ids."""
  shape = spec.shape.as_list()
  if key == 'continuous':
    return tf.fill(shape, tf.constant(np.nan, spec.dtype))
  if spec.dtype.is_floating:
    return tf.zeros(shape, spec.dtype)
  return tf.fill(shape, tf.constant(schema_lib.MISSING, spec.dtype))
