"""Which images a run trains on and which it holds out. No TensorFlow.

Model parsing holds out whole GMs, by name: every image of a held-out GM is
unseen in training, which is what parsing an unknown generator measures.
GMs that share an architecture (every continuous and discrete column of the
ground truth equal) always fall on the same side of a random split or fold:
otherwise a "held-out" GM's architecture would be seen in training. A
fraction of each training GM's images, the closed set, is held back from
training (`jaxfp.data.gm_folders`) so that memorisation shows beside the
held-out figures. Classifiers hold out files, by a hash of their path
(`jaxfp.data.classes`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from absl import logging
import ml_collections
import numpy as np

from jaxfp.core import schema as schema_lib


@dataclasses.dataclass(frozen=True)
class DataInfo:
  """A model-parsing dataset: its ground truth and the GM split."""
  ground_truth: schema_lib.GroundTruth  # All GMs of the dataset.
  train_gms: tuple[str, ...]
  test_gms: tuple[str, ...]
  num_train_images: int  # Over all processes; without the closed set.
  num_test_images: int
  skipped_files: tuple[tuple[str, str], ...]  # (file, reason).
  # Images of training GMs held back from training (the closed set).
  num_closed_images: int = 0
  closed_gms: tuple[str, ...] = ()  # Training GMs with closed-set images.
  closed_set_fraction: float = 0.0  # That chose them (jaxfp.data.gm_folders).


@dataclasses.dataclass(frozen=True)
class ClassInfo:
  """A folder-per-class dataset: its classes and the file split."""
  class_names: tuple[str, ...]
  root: str
  num_train_images: int  # Over all processes.
  num_test_images: int
  class_counts: dict[str, int]  # Readable images per class, both splits.
  skipped_files: tuple[tuple[str, str], ...]


# The paper's four hand-chosen test sets of RED116, 12 GMs each, by folder
# name (docs/published.md: from the authors' follow-up repository,
# RED116 members only). `config.data.test_set=k` holds out set k.
PAPER_TEST_SETS = {
    1: ('ADV_FACES', 'BETA_B', 'BETA_TCVAE', 'BIGGAN_128', 'DAGAN_C', 'DRGAN',
        'FGAN', 'PIXELCNN', 'PIXELCNN_PP', 'RSGAN_HALF', 'STARGAN', 'VAE_GAN'),
    2: ('AAE', 'ADAGAN_C', 'BEGAN', 'BETA_H', 'BIGGAN_256', 'COCO_GAN',
        'CRAMER_GAN', 'DEEPFOOL', 'DRIT', 'FASTPIXEL', 'FVBN', 'SRFLOW'),
    3: ('BICYCLE_GAN', 'BIGGAN_512', 'CRGAN_C', 'FACTOR_VAE', 'FGSM',
        'ICRGAN_C', 'LOGAN', 'MUNIT', 'PIXELSNAIL', 'STARGAN_2',
        'SURVAE_FLOW_MAXPOOL', 'VAE_FIELD'),
    4: ('GFLM', 'IMAGE_GPT', 'LSGAN', 'MADE', 'PIX2PIX', 'PROG_GAN',
        'RSGAN_REG', 'SEAN', 'STYLEGAN', 'SURVAE_FLOW_NONPOOL', 'WGAN_DRA',
        'YLG'),
}


def paper_test_set(number: int, dataset: str) -> tuple[str, ...]:
  """The 12 GM names of the paper's test set `number` (1 to 4)."""
  if number not in PAPER_TEST_SETS:
    raise ValueError(f'config.data.test_set is {number!r}; the paper\'s test '
                     f'sets are {", ".join(map(str, PAPER_TEST_SETS))} (0: '
                     'none)')
  if dataset != 'model_parsing':
    raise ValueError(f'config.data.test_set={number} names GMs of RED116, '
                     'the published dataset; it needs '
                     f'config.data.name=model_parsing, not {dataset!r}')
  return PAPER_TEST_SETS[number]


def gm_list(value) -> tuple[str, ...]:
  """GM names from a config value: a tuple of names, or a comma-separated
  string. The command line's --config.data.test_gms=a,b,c arrives as the
  one-element tuple ('a,b,c',), so every element is split at commas too."""
  if isinstance(value, str):
    value = (value,)
  return tuple(name.strip() for item in (value or ())
               for name in str(item).split(',') if name.strip())


def architecture_groups(ground_truth: schema_lib.GroundTruth,
                        gms: Sequence[str]) -> dict[str, tuple]:
  """GM -> its architecture: every continuous and discrete column of its
  row (continuous rounded to 6 decimals, so float noise does not split
  equals; a missing value is equal to a missing value)."""
  out = {}
  for gm in gms:
    row = ground_truth.index(gm)
    continuous = tuple(None if np.isnan(v) else round(float(v), 6)
                       for v in ground_truth.continuous[row])
    out[gm] = continuous + tuple(int(v) for v in ground_truth.discrete[row])
  return out


def _grouped(gms: Sequence[str], groups: dict[str, tuple] | None,
             seed: int) -> list[list[str]]:
  """The GMs as groups of one architecture each (in first-seen order of
  `gms`), shuffled in an order that depends only on `seed` and the GMs."""
  by_key = {}
  for gm in gms:
    key = groups[gm] if groups is not None else gm
    by_key.setdefault(key, []).append(gm)
  members = list(by_key.values())
  order = np.random.default_rng(seed).permutation(len(members))
  return [members[i] for i in order]


def fold_test_gms(gms: Sequence[str], num_folds: int, fold: int,
                  seed: int, groups: dict[str, tuple] | None = None
                  ) -> tuple[str, ...]:
  """The test GMs of fold `fold` when `gms` are dealt into `num_folds` folds.

  The folds partition `gms` in an order that depends only on `seed` and the
  GMs, so every fold of one cross-validation sees the same partition.
  `groups` (GM -> architecture, `architecture_groups`): GMs of one
  architecture always share a fold. Groups are dealt one by one, largest
  first and in a seeded random order among equal sizes, to the fold with
  the fewest GMs so far: fold sizes differ by at most one when no two GMs
  share an architecture, and by at most the largest group otherwise.
  """
  if not 2 <= num_folds <= len(gms):
    raise ValueError(f'config.data.num_folds is {num_folds}; need 2 to '
                     f'{len(gms)} (the number of GMs with images)')
  if not 0 <= fold < num_folds:
    raise ValueError(f'config.data.fold is {fold}; need 0 to {num_folds - 1}')
  folds = [[] for _ in range(num_folds)]
  for members in sorted(_grouped(gms, groups, seed), key=len, reverse=True):
    smallest = min(range(num_folds), key=lambda k: len(folds[k]))
    folds[smallest].extend(members)
  position = {gm: i for i, gm in enumerate(gms)}
  return tuple(sorted(folds[fold], key=position.get))


def fraction_test_gms(gms: Sequence[str], count: int, seed: int,
                      groups: dict[str, tuple] | None = None) -> set[str]:
  """At least `count` GMs picked at random (seeded), whole architecture
  groups at a time."""
  chosen = []
  for members in _grouped(gms, groups, seed):
    if len(chosen) >= count:
      break
    chosen.extend(members)
  return set(chosen)


def choose_test_gms(c: ml_collections.ConfigDict, names: Sequence[str],
                    usable: Sequence[str],
                    ground_truth: schema_lib.GroundTruth | None = None
                    ) -> set[str]:
  """Held-out GMs, from the first of these that is set:

    config.data.test_set      the paper's test set 1..4 (model_parsing)
    config.data.test_gms      names (a tuple, or 'a,b,c')
    config.data.num_folds     fold `fold` of num_folds
    config.data.num_test_gms  that many GMs at random (split_seed)
    config.data.test_fraction that fraction of the GMs at random, rounded,
                              at least one (1.0: every GM, for evaluation)

  With `ground_truth`, random picks and folds keep the GMs of one
  architecture together (`architecture_groups`).
  """
  test_set = c.get('test_set', 0) or 0
  requested = gm_list(c.get('test_gms', ()))
  num_folds = c.get('num_folds', 0)
  chosen_by = [what for what, on in (('test_set', test_set),
                                     ('test_gms', requested),
                                     ('num_folds', num_folds)) if on]
  if len(chosen_by) > 1:
    raise ValueError(f'config.data.{chosen_by[0]} and config.data.'
                     f'{chosen_by[1]} both choose the test GMs; set one of '
                     'them')
  source = 'config.data.test_gms'
  if test_set:
    requested = paper_test_set(test_set, c.get('name', ''))
    source = f'config.data.test_set={test_set}'
  if requested:
    test = set(requested)
    unknown = sorted(test - set(names))
    if unknown:
      raise ValueError(f'{source} names unknown GMs {unknown}; the valid '
                       f'ones are {list(names)}')
    unusable = sorted(test - set(usable))
    if unusable:
      raise ValueError(f'test GMs {unusable} have no readable image')
    _warn_split_groups(test, usable, ground_truth)
    return test
  groups = (architecture_groups(ground_truth, usable)
            if ground_truth is not None else None)
  if num_folds:
    return set(fold_test_gms(tuple(usable), num_folds, c.get('fold', 0),
                             c.split_seed, groups))
  n = c.get('num_test_gms', 0)
  if n:
    if not 0 < n < len(usable):
      raise ValueError(
          f'config.data.num_test_gms is {n}, but there are {len(usable)} GMs '
          'with images; need at least one test and one train GM')
    return fraction_test_gms(usable, n, c.split_seed, groups)
  fraction = c.get('test_fraction', 0.25)
  if not 0 < fraction <= 1:
    raise ValueError(f'config.data.test_fraction is {fraction}; need a '
                     'fraction of the GMs above 0 and at most 1')
  count = max(1, int(round(fraction * len(usable))))
  if fraction < 1:  # Below 1 a run also trains: keep a training GM.
    count = min(count, len(usable) - 1)
  return fraction_test_gms(usable, count, c.split_seed, groups)


def limit_train_gms(train_gms: Sequence[str], count: int, seed: int
                    ) -> tuple[str, ...]:
  """`count` of the training GMs at random (seeded), in their order; 0 or
  at least all of them: all. For curves of held-out metrics against the
  number of training generators, on one fixed held-out set."""
  if count < 0:
    raise ValueError(f'config.data.num_train_gms is {count}; need 0 (all) '
                     'or more')
  if not count or count >= len(train_gms):
    return tuple(train_gms)
  # Another stream than the test pick's, so the curve's subsets are not
  # tied to which GMs happened to be held out.
  keep = set(np.random.default_rng([seed, 1]).permutation(
      len(train_gms))[:count])
  return tuple(gm for i, gm in enumerate(train_gms) if i in keep)


def _warn_split_groups(test: set[str], usable: Sequence[str],
                       ground_truth: schema_lib.GroundTruth | None) -> None:
  """A named test set that splits an architecture is the user's choice,
  but worth a warning: that architecture is also seen in training."""
  if ground_truth is None:
    return
  groups = architecture_groups(ground_truth, usable)
  split = sorted({gm for gm in test for other in usable
                  if other not in test and groups[other] == groups[gm]})
  if split:
    logging.warning('Held-out GMs %s share their architecture with training '
                    'GMs.', split)
