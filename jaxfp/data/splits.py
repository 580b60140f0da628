"""Which images a run trains on and which it holds out. No TensorFlow.

Model parsing holds out whole GMs, by name: every image of a held-out GM is
unseen in training, which is what parsing an unknown generator measures.
Classifiers hold out files, by a hash of their path (`jaxfp.data.classes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import ml_collections
import numpy as np

from jaxfp.core import schema as schema_lib


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """A model-parsing dataset: its ground truth and the GM split."""
  ground_truth: schema_lib.GroundTruth  # All GMs of the dataset.
  train_gms: tuple[str, ...]
  test_gms: tuple[str, ...]
  num_train_images: int  # Over all processes.
  num_test_images: int
  skipped_files: tuple[tuple[str, str], ...]  # (file, reason).


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  """A folder-per-class dataset: its classes and the file split."""
  class_names: tuple[str, ...]
  root: str
  num_train_images: int  # Over all processes.
  num_test_images: int
  class_counts: dict[str, int]  # Readable images per class, both splits.
  skipped_files: tuple[tuple[str, str], ...]


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
