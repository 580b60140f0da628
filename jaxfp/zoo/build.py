"""Builds a zoo into a directory: sample, train, generate, write the layout.

  <dir>/images/<gm>/<k>.png   RGB uint8, image_size x image_size
  <dir>/ground_truth.csv, <dir>/schema.json   (jaxfp.schema.write_csv, ZOO)
  <dir>/zoo.json   config and, per GM, architecture, task, loss recipe,
                   layer counts and first/final training losses

Everything a GM's ground truth holds is sampled up front from `config.seed`
alone, so it does not depend on training. The slow part of a GM, its XLA
compiles, overlaps with another GM's training: GMs are built by a few
worker threads and collected in order.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import time

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import config as config_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import photos as photos_lib
from jaxfp.zoo import recipe as recipe_lib
from jaxfp.zoo import tasks as tasks_lib
from jaxfp.zoo import train as train_lib

ZOO_JSON = 'zoo.json'
IMAGES_DIR = 'images'


def _num_workers() -> int:
  """GMs built at once. A GM's compile and its small kernels keep one core
  busy at a time, so two in flight fill a two-core machine."""
  return max(1, min(4, os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class GMSpec:
  """Everything sampled for one GM: its ground truth and its task."""
  name: str
  architecture: arch_lib.Architecture
  recipe: recipe_lib.Recipe
  task: tasks_lib.Task


def gm_names(n: int) -> list[str]:
  """gm_000, gm_001, ...: zero-padded so sorted order is index order."""
  width = max(3, len(str(n - 1)))
  return [f'gm_{i:0{width}d}' for i in range(n)]


def image_names(n: int) -> list[str]:
  width = max(4, len(str(n - 1)))
  return [f'{k:0{width}d}.png' for k in range(n)]


def sample_specs(config: ml_collections.ConfigDict) -> list[GMSpec]:
  """The zoo's GMs, from the seed alone."""
  rng = np.random.default_rng(config.seed)
  n = config.num_generators
  archs = arch_lib.sample_architectures(rng, n)
  recipes = recipe_lib.sample_recipes(rng, n)
  tasks = tasks_lib.sample_tasks(rng, archs)
  return [GMSpec(name, a, r, t)
          for name, a, r, t in zip(gm_names(n), archs, recipes, tasks)]


def _build_gm(config, index: int, spec: GMSpec, photos: photos_lib.Photos,
              directory: str) -> dict:
  """Trains one GM, writes its images; returns its row, entry and timings."""
  start = time.perf_counter()
  rng = np.random.default_rng([config.seed, index])
  size = config.image_size
  steps, batch = config.train_steps, config.train_batch_size
  targets = photos_lib.random_crops(rng, photos.train, steps * batch, size)
  inputs = tasks_lib.degrade(spec.task, targets, rng)
  held_out = photos_lib.random_crops(rng, photos.held_out,
                                     config.images_per_generator, size)
  generation_inputs = tasks_lib.degrade(spec.task, held_out, rng)
  counts = generator_lib.layer_counts(spec.architecture, size)

  trainer = train_lib.Trainer(
      spec.architecture, spec.recipe, config.learning_rate, batch, size,
      min(config.generation_batch_size, config.images_per_generator))
  trainer.compile()
  compiled = time.perf_counter()
  carry, history = trainer.fit(
      trainer.init(rng), inputs.reshape((steps, batch) + inputs.shape[1:]),
      targets.reshape((steps, batch) + targets.shape[1:]))
  images = trainer.generate(carry, generation_inputs)
  _write_images(os.path.join(directory, IMAGES_DIR, spec.name), images)

  labels = {**spec.architecture.labels(), **spec.recipe.labels()}
  return {
      'row': {**counts, **labels},
      'entry': {
          'architecture': spec.architecture.to_dict(),
          'task': spec.task.to_dict(),
          'loss': spec.recipe.to_dict(),
          'counts': counts,
          'labels': labels,
          'training': {'steps': steps, **_loss_summary(history)},
      },
      'compile_seconds': compiled - start,
      'train_seconds': time.perf_counter() - compiled,
  }


def _write_images(directory: str, images: np.ndarray) -> None:
  os.makedirs(directory)
  for name, image in zip(image_names(len(images)), images):
    Image.fromarray(image).save(os.path.join(directory, name))


def _loss_summary(history: dict) -> dict:
  return {
      'first': {k: round(float(v[0]), 6) for k, v in history.items()},
      'final': {k: round(float(v[-1]), 6) for k, v in history.items()},
  }


def build(config: ml_collections.ConfigDict, directory: str) -> None:
  """Writes a whole zoo into `directory` (created; should be fresh)."""
  config_lib.validate(config)
  start = time.perf_counter()
  specs = sample_specs(config)
  photos = photos_lib.load_photos(config.image_size)
  os.makedirs(os.path.join(directory, IMAGES_DIR), exist_ok=True)
  n = len(specs)
  logging.info('zoo: building %d generators x %d images of %dx%d into %s', n,
               config.images_per_generator, config.image_size,
               config.image_size, directory)

  rows, entries = [], {}
  with concurrent.futures.ThreadPoolExecutor(_num_workers()) as pool:
    futures = [pool.submit(_build_gm, config, i, spec, photos, directory)
               for i, spec in enumerate(specs)]
    try:
      for i, (spec, future) in enumerate(zip(specs, futures)):
        done = future.result()
        rows.append(done['row'])
        entries[spec.name] = done['entry']
        elapsed = time.perf_counter() - start
        logging.info(
            'zoo: GM %d/%d %s done (prepare+compile %.1fs, train+generate '
            '%.1fs); elapsed %.0fs, ETA %.0fs', i + 1, n, spec.name,
            done['compile_seconds'], done['train_seconds'], elapsed,
            elapsed / (i + 1) * (n - i - 1))
    except BaseException:
      for future in futures:
        future.cancel()
      raise

  schema_lib.write_csv(directory, schema_lib.ZOO, [s.name for s in specs],
                       rows)
  # Written last: its presence marks a complete zoo.
  with open(os.path.join(directory, ZOO_JSON), 'w') as f:
    json.dump({
        'format_version': config_lib.FORMAT_VERSION,
        'config': config_lib.as_dict(config),
        'config_hash': config_lib.config_hash(config),
        'schema': 'jaxfp.schema.ZOO',
        'photos': list(photos.names),
        'generators': entries,
    }, f, indent=1)
  logging.info('zoo: %d generators built in %.0fs', n,
               time.perf_counter() - start)
