"""Sampled training-loss recipes and their coarse/fine ground-truth labels.

A recipe is a weighted sum of fine loss types (the names of `schema.ZOO`).
Each recipe uses at least one coarse group, one or two fine types of each
group it uses, and exactly one adversarial type if it is adversarial. What a
family can use:

  image_to_image  any non-empty set of pixel, feature, adversarial groups
  gan             one adversarial type [+ spectral and/or total variation,
                  the target-free feature terms]
  vae             KL + pixel [+ one feature type] [+ one adversarial type:
                  a VAE-GAN], one time in three each
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib

GROUP_TYPES = {
    'pixel': ('pixel_l1', 'pixel_mse'),
    'feature': ('gradient', 'spectral', 'total_variation'),
    'adversarial': ('adv_non_saturating', 'adv_least_squares', 'adv_hinge'),
    'latent': ('kl',),
}
# Typical scale of each term's weight; a recipe jitters it by up to 2x.
BASE_WEIGHTS = {
    'pixel_l1': 1.0,
    'pixel_mse': 1.0,
    'gradient': 1.0,
    'spectral': 0.5,
    'total_variation': 0.05,
    'adv_non_saturating': 0.1,
    'adv_least_squares': 0.1,
    'adv_hinge': 0.1,
    'kl': 0.1,
}

# Terms blind to a constant offset of the output (and so to its colours).
_OFFSET_BLIND = frozenset({'gradient', 'total_variation'})


@dataclasses.dataclass(frozen=True)
class Recipe:
  """Fine loss types and their weights, in `schema.ZOO.fine` order."""
  weights: tuple[tuple[str, float], ...]

  def __post_init__(self):
    known = set(schema_lib.ZOO.fine)
    unknown = [t for t, _ in self.weights if t not in known]
    if unknown or not self.weights:
      raise ValueError(f'recipe loss types {unknown or "(none)"} are not a '
                       f'non-empty subset of {list(schema_lib.ZOO.fine)}')

  @property
  def types(self) -> tuple[str, ...]:
    return tuple(t for t, _ in self.weights)

  @property
  def groups(self) -> tuple[str, ...]:
    return tuple(g for g, members in GROUP_TYPES.items()
                 if any(t in members for t in self.types))

  @property
  def adversarial(self) -> str | None:
    found = [t for t in self.types if t in GROUP_TYPES['adversarial']]
    return found[0] if found else None

  def labels(self) -> dict[str, int]:
    """The coarse and fine columns of `schema.ZOO`, 0 or 1."""
    used = set(self.types) | set(self.groups)
    return {c: int(c in used)
            for c in schema_lib.ZOO.coarse + schema_lib.ZOO.fine}

  def to_dict(self) -> dict:
    return {'groups': list(self.groups), 'weights': dict(self.weights)}


def _subsets(members, sizes):
  return [c for size in sizes for c in itertools.combinations(members, size)]


def _jittered(rng: np.random.Generator, types, unit_adversarial: bool,
              scale: float = 1.0):
  """Weights in `schema.ZOO.fine` order, each BASE_WEIGHTS x 2^U(-1, 1).

  The adversarial weight is 1 where no pixel term sets the scale (it is
  then what ties the output to the data); `scale` multiplies the others.
  """
  order = schema_lib.ZOO.fine
  weights = []
  for t in sorted(types, key=order.index):
    w = scale * BASE_WEIGHTS[t] * 2.0 ** rng.uniform(-1.0, 1.0)
    if unit_adversarial and t in GROUP_TYPES['adversarial']:
      w = 1.0
    weights.append((t, round(float(w), 4)))
  return Recipe(tuple(weights))


def _image_to_image(rng, n: int) -> list[Recipe]:
  groups = tuple(g for g in GROUP_TYPES if g != 'latent')
  group_sets = arch_lib.deal(rng, _subsets(groups, (1, 2)) + [groups], n)
  per_group = {
      'pixel': arch_lib.deal(rng, _subsets(GROUP_TYPES['pixel'], (1, 2)), n),
      'feature': arch_lib.deal(rng, _subsets(GROUP_TYPES['feature'], (1, 2)),
                               n),
      'adversarial': arch_lib.deal(
          rng, _subsets(GROUP_TYPES['adversarial'], (1,)), n),
  }
  recipes = []
  for i in range(n):
    types = [t for g in group_sets[i] for t in per_group[g][i]]
    if set(types) <= _OFFSET_BLIND:
      # Nothing ties the output's colours to the target: a few dozen steps
      # end in flat grey images. Swap in a feature set with the spectral
      # loss, whose zero frequency carries the mean colour.
      with_spectral = [s for s in _subsets(GROUP_TYPES['feature'], (1, 2))
                       if 'spectral' in s]
      types = list(with_spectral[rng.integers(len(with_spectral))])
    adversarial_only = set(types) <= set(GROUP_TYPES['adversarial'])
    recipes.append(_jittered(rng, types, adversarial_only))
  return recipes


def _gan(rng, n: int) -> list[Recipe]:
  adversarial = arch_lib.deal(rng, GROUP_TYPES['adversarial'], n)
  regularisers = arch_lib.deal(
      rng, [(), ('spectral',), ('total_variation',),
            ('spectral', 'total_variation')], n)
  # BASE_WEIGHTS are scaled for pixel losses of ~0.1; against an adversarial
  # term of ~1 (weight 1), the regularisers need 10x to change training (at
  # 1x, total variation went up, not down, in GANs trained on it).
  return [_jittered(rng, (a,) + r, True, scale=10.0)
          for a, r in zip(adversarial, regularisers)]


def _vae(rng, n: int) -> list[Recipe]:
  pixel = arch_lib.deal(rng, _subsets(GROUP_TYPES['pixel'], (1, 2)), n)
  feature = arch_lib.deal(
      rng, [()] * 3 + _subsets(GROUP_TYPES['feature'], (1,)), n)
  adversarial = arch_lib.deal(
      rng, [()] * 6 + _subsets(GROUP_TYPES['adversarial'], (1,)), n)
  return [_jittered(rng, ('kl',) + p + f + a, False)
          for p, f, a in zip(pixel, feature, adversarial)]


_SAMPLERS = {'image_to_image': _image_to_image, 'gan': _gan, 'vae': _vae}


def sample_recipes(rng: np.random.Generator,
                   families: list[str]) -> list[Recipe]:
  """A recipe per entry of `families`; each family deals from its own decks."""
  recipes = [None] * len(families)
  for family, sample in _SAMPLERS.items():
    where = [i for i, f in enumerate(families) if f == family]
    for i, recipe in zip(where, sample(rng, len(where))):
      recipes[i] = recipe
  return recipes
