"""Builds a zoo into a directory: sample, train, generate, write the layout.

  <dir>/images/<gm>/<k>.png   RGB uint8, image_size x image_size
  <dir>/ground_truth.csv, <dir>/schema.json   (jaxfp.core.schema.write_csv, ZOO)
  <dir>/zoo.json   config and, per GM, architecture, task, loss recipe,
                   layer counts and early/late training losses; the trace
                   probe (`probe`) over all GMs

Everything a GM's ground truth holds is sampled up front from `config.seed`
alone, so it does not depend on training. GMs are trained by the zoo's
shared programs (`programs.shared`, one per `supernet.PROGRAMS` entry,
compiled once each), one worker thread per core (up to 4) so that the cores
stay busy and a program's compile overlaps another's training. Each GM's
work depends only on its own seed, so the images do not depend on the order
the threads take.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import itertools
import json
import os
import time

import ml_collections
import numpy as np
from absl import logging
from PIL import Image

from jaxfp.core import console
from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import config as config_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import host_init
from jaxfp.zoo import photos as photos_lib
from jaxfp.zoo import probe as probe_lib
from jaxfp.zoo import recipe as recipe_lib
from jaxfp.zoo import supernet
from jaxfp.zoo import targets as targets_lib
from jaxfp.zoo import programs as programs_lib

ZOO_JSON = 'zoo.json'
IMAGES_DIR = 'images'
# Seconds between progress lines away from a terminal (on one: a bar).
_LOG_EVERY = 60.0


def _num_workers() -> int:
  """GMs trained at once. A step's small kernels keep about one core busy,
  so one worker per core, up to 4."""
  return max(1, min(4, os.cpu_count() or 1))


@dataclasses.dataclass(frozen=True)
class GMSpec:
  """Everything sampled for one GM: its ground truth and its task."""
  name: str
  architecture: arch_lib.Architecture
  recipe: recipe_lib.Recipe
  task: targets_lib.Task


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
  families = arch_lib.deal_families(rng, tuple(config.families), n)
  archs = arch_lib.sample_architectures(rng, families)
  recipes = recipe_lib.sample_recipes(rng, families)
  tasks = targets_lib.sample_tasks(rng, archs)
  return [GMSpec(name, a, r, t)
          for name, a, r, t in zip(gm_names(n), archs, recipes, tasks)]


def sizes(config: ml_collections.ConfigDict) -> programs_lib.Sizes:
  return programs_lib.Sizes(
      batch=config.train_batch_size, crop=config_lib.crop_size(config),
      image=config.image_size,
      generation_batch=min(config.generation_batch_size,
                           config.images_per_generator))


def _data(config, spec: GMSpec, photos: photos_lib.Photos,
          rng: np.random.Generator):
  """(inputs, targets) of training, [steps, batch, ...], and the inputs of
  generation, all float32: images in [0, 1] or latent maps."""
  steps, batch = config.train_steps, config.train_batch_size
  crop, size = config_lib.crop_size(config), config.image_size
  n = config.images_per_generator
  targets = photos_lib.random_crops(rng, photos.train, steps * batch, crop)
  if spec.architecture.noise_input:
    inputs = rng.standard_normal(
        (steps * batch,) + arch_lib.input_shape(spec.architecture, crop),
        np.float32)
    generation = rng.standard_normal(
        (n,) + arch_lib.input_shape(spec.architecture, size), np.float32)
  else:
    inputs = targets_lib.degrade(spec.task, targets, rng)
    held_out = photos_lib.random_crops(rng, photos.held_out, n, size)
    generation = targets_lib.degrade(spec.task, held_out, rng)
  split = lambda a: a.reshape((steps, batch) + a.shape[1:])
  return split(inputs), split(targets), generation


def train_gm(config, index: int, spec: GMSpec, photos: photos_lib.Photos,
             program: programs_lib.Program | None = None):
  """Trains one GM and generates its images.

  With `program` (a `programs.shared` program of the GM's kind) this is the
  zoo's engine; without, the GM is trained alone, by a program compiled
  around its own flax module. Both start from the same weights and data.

  Returns (uint8 images [N, S, S, 3], counts read off the built network,
  {log name: [steps]}).
  """
  arch = spec.architecture
  rng = np.random.default_rng([config.seed, index])
  counts, shapes = generator_lib.inspect(arch, config.image_size)
  planned = arch_lib.planned_counts(arch)
  if counts != planned:
    raise RuntimeError(f'{spec.name}: counts read off the network {counts} '
                       f'differ from those its layout implies {planned}')
  variables = host_init.init_variables(shapes, rng)
  if program is None:
    program = programs_lib.alone(arch, shapes, sizes(config),
                                 config.learning_rate)
    params, stats = variables['params'], variables.get('batch_stats', {})
  else:
    params, stats = supernet.embed(arch, variables)
  carry = program.init(params, stats, rng)
  inputs, targets, generation = _data(config, spec, photos, rng)
  sw = supernet.switches(arch)
  rc = programs_lib.recipe_arrays(spec.recipe, arch.family)
  carry, history = program.fit(carry, sw, rc, inputs, targets)
  images = program.generate(carry, sw, generation)
  return images, counts, history


def _write_images(directory: str, images: np.ndarray) -> None:
  os.makedirs(directory)
  for name, image in zip(image_names(len(images)), images):
    # Lossless either way; level 1 writes several times faster than 6.
    Image.fromarray(image).save(os.path.join(directory, name),
                                compress_level=1)


def _history_summary(history: dict, steps: int) -> dict:
  """Means over the first and the last tenth of the steps (at least one)."""
  k = max(1, steps // 10)
  return {
      'early': {n: round(float(np.mean(v[:k])), 6) for n, v in
                history.items()},
      'late': {n: round(float(np.mean(v[-k:])), 6) for n, v in
               history.items()},
  }


def _build_gm(config, index, spec, photos, program, directory) -> dict:
  start = time.perf_counter()
  images, counts, history = train_gm(config, index, spec, photos, program)
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
          'training': {'steps': config.train_steps,
                       **_history_summary(history, config.train_steps)},
      },
      'seconds': time.perf_counter() - start,
  }


def _work_order(specs: list[GMSpec]) -> list[int]:
  """GM indices, programs taken in turn, so that the first GMs of each
  program start early: their compiles overlap other GMs' training."""
  queues = collections.defaultdict(list)
  for i, spec in enumerate(specs):
    queues[spec.architecture.program].append(i)
  return [i for turn in itertools.zip_longest(*queues.values())
          for i in turn if i is not None]


def build(config: ml_collections.ConfigDict, directory: str) -> None:
  """Writes a whole zoo into `directory` (created; should be fresh)."""
  config_lib.validate(config)
  start = time.perf_counter()
  specs = sample_specs(config)
  photos = photos_lib.load_photos(config.image_size)
  os.makedirs(os.path.join(directory, IMAGES_DIR), exist_ok=True)
  n = len(specs)
  per_program = collections.Counter(s.architecture.program for s in specs)
  programs = {
      k: programs_lib.shared(
          k, sizes(config), config.learning_rate,
          programs_lib.compiler_options(m * config.train_steps))
      for k, m in sorted(per_program.items())}
  logging.info('zoo: building %d generators (%s) x %d images of %dx%d, %d '
               'steps of %d crops of %dx%d, into %s', n,
               ', '.join(f'{c} {f}' for f, c in sorted(collections.Counter(
                   s.architecture.family for s in specs).items())),
               config.images_per_generator, config.image_size,
               config.image_size, config.train_steps,
               config.train_batch_size, config_lib.crop_size(config),
               config_lib.crop_size(config), directory)

  results = [None] * n
  with (concurrent.futures.ThreadPoolExecutor(_num_workers()) as pool,
        console.Progress(n, what='zoo', unit='generators',
                         every_s=_LOG_EVERY) as progress):
    futures = {pool.submit(_build_gm, config, i, specs[i], photos,
                           programs[specs[i].architecture.program],
                           directory): i for i in _work_order(specs)}
    try:
      for done, future in enumerate(
          concurrent.futures.as_completed(futures), start=1):
        results[futures[future]] = future.result()
        progress.update(done)
    except BaseException:
      for future in futures:
        future.cancel()
      raise

  for kind, program in programs.items():
    logging.info('zoo: %s program compiled in %.1fs', kind,
                 program.compile_seconds)
  entries = {s.name: r['entry'] for s, r in zip(specs, results)}
  schema_lib.write_csv(directory, schema_lib.ZOO, [s.name for s in specs],
                       [r['row'] for r in results])
  probe = probe_lib.trace_probe(entries)
  for line in probe_lib.describe(probe):
    logging.info('zoo: %s', line)
  # Written last: its presence marks a complete zoo.
  with open(os.path.join(directory, ZOO_JSON), 'w') as f:
    json.dump({
        'format_version': config_lib.FORMAT_VERSION,
        'config': config_lib.as_dict(config),
        'config_hash': config_lib.config_hash(config),
        'schema': 'jaxfp.core.schema.ZOO',
        'photos': list(photos.names),
        'probe': probe,
        'generators': entries,
    }, f, indent=1)
  logging.info('zoo: %d generators built in %.0fs', n,
               time.perf_counter() - start)
