"""Sampled training-loss recipes and their coarse/fine ground-truth labels.

A recipe is a weighted sum of fine loss types (the names of `schema.ZOO`).
Each recipe uses at least one coarse group, one or two fine types of each
group it uses, and exactly one adversarial type if it is adversarial.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib

GROUP_TYPES = {
    'pixel': ('pixel_l1', 'pixel_mse'),
    'feature': ('gradient', 'spectral', 'total_variation'),
    'adversarial': ('adv_non_saturating', 'adv_least_squares', 'adv_hinge'),
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
  out = []
  for size in sizes:
    if size == 1:
      out.extend((m,) for m in members)
    elif size == 2:
      out.extend((a, b) for i, a in enumerate(members) for b in members[i + 1:])
  return out


def sample_recipes(rng: np.random.Generator, n: int) -> list[Recipe]:
  """n recipes; group sets and per-group type sets are dealt from decks."""
  groups = tuple(GROUP_TYPES)
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
    order = schema_lib.ZOO.fine
    types.sort(key=order.index)
    adversarial_only = set(types) <= set(GROUP_TYPES['adversarial'])
    weights = []
    for t in types:
      w = BASE_WEIGHTS[t] * 2.0 ** rng.uniform(-1.0, 1.0)
      if adversarial_only:
        w = 1.0  # Nothing else to balance against.
      weights.append((t, round(float(w), 4)))
    recipes.append(Recipe(tuple(weights)))
  return recipes
