"""Perturbations inside tf.data: training augmentation and robustness tests.

`config.augment` (configs/common.py: off by default) says which training
perturbations apply. Images are perturbed as decoded uint8 arrays, before
normalisation. Each element's random draws come from (seed, its position in
the stream), so a run resumed at step k perturbs exactly as an
uninterrupted one would.
"""

from __future__ import annotations

import ml_collections
import numpy as np
import tensorflow as tf

from jaxfp.data import perturbations


def is_on(config: ml_collections.ConfigDict | None) -> bool:
  return bool(config) and (config.blur_jpeg_prob > 0 or
                           config.combination_prob > 0)


def _tf_map(fn, seed: int):
  """Wraps fn(image, rng) -> image as a map over {'image', 'index'}."""
  def numpy_fn(image, index):
    rng = np.random.default_rng([seed, int(index)])
    return fn(image, rng)

  def map_fn(ex):
    image = tf.numpy_function(numpy_fn, [ex['image'], ex['index']], tf.uint8,
                              stateful=False)
    image.set_shape(ex['image'].shape)
    return {**ex, 'image': image}
  return map_fn


def training(config: ml_collections.ConfigDict, seed: int):
  """The training augmentation of `config.augment` as a tf.data map."""
  def fn(image, rng):
    if config.blur_jpeg_prob > 0:
      image = perturbations.cnndetection(image, rng, config.blur_jpeg_prob)
    if config.combination_prob > 0:
      image = perturbations.combination(image, rng, config.combination_prob)
    return image
  return _tf_map(fn, seed)


def fixed(name: str, severity: float, seed: int = 0):
  """One perturbation at one severity, for robustness evaluation."""
  if name not in perturbations.NAMES:
    raise ValueError(f'unknown perturbation {name!r}; known: '
                     f'{perturbations.NAMES}')
  return _tf_map(
      lambda image, rng: perturbations.apply(name, image, severity, rng), seed)


def with_index(ds: tf.data.Dataset) -> tf.data.Dataset:
  """Adds each element's position in `ds` as 'index' (int64)."""
  return ds.enumerate().map(lambda i, ex: {**ex, 'index': i})
