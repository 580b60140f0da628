"""Sampled generator architectures and their discrete ground-truth labels.

An `Architecture` is the recipe `generator.Generator` builds from. Sampling
deals each discrete choice from shuffled decks (see `deal`), so over a zoo
every class occurs about equally often rather than merely in expectation.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NORMALIZATIONS = ('none', 'batch', 'instance', 'layer')
NONLINEARITIES = ('relu', 'leaky_relu', 'elu', 'silu')
LAST_NONLINEARITIES = ('none', 'tanh', 'sigmoid', 'hard_tanh')
# Upsampling variant -> the schema's upsampling class.
UPSAMPLINGS = {
    'nearest_conv': 'interpolation_conv',
    'bilinear_conv': 'interpolation_conv',
    'transposed_conv': 'learned',
    'pixel_shuffle': 'learned',
}
# Downsampling variant -> the schema's downsampling class.
DOWNSAMPLINGS = {
    'none': 'no',
    'stride_conv': 'yes',
    'avg_pool': 'yes',
}
FILTER_CHOICES = (8, 12, 16, 24, 32)
MAX_BLOCKS = 4
MAX_LAYERS_PER_BLOCK = 3


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One generator's architecture; see `generator.Generator` for the layout."""
  stem_filters: int
  block_filters: tuple[int, ...]  # One width per block.
  layers_per_block: int
  normalization: str
  block_nonlinearity: str
  last_nonlinearity: str
  upsampling: str  # A key of UPSAMPLINGS.
  downsampling: str  # A key of DOWNSAMPLINGS.
  skip_connection: bool  # Residual connection around each block.
  channel_attention: bool  # Squeeze-excitation (2 dense layers) per block.

  def __post_init__(self):
    choices = {
        'normalization': NORMALIZATIONS,
        'block_nonlinearity': NONLINEARITIES,
        'last_nonlinearity': LAST_NONLINEARITIES,
        'upsampling': tuple(UPSAMPLINGS),
        'downsampling': tuple(DOWNSAMPLINGS),
    }
    for field, allowed in choices.items():
      if getattr(self, field) not in allowed:
        raise ValueError(f'architecture {field}={getattr(self, field)!r} is '
                         f'not one of {list(allowed)}')
    if not 1 <= len(self.block_filters) <= MAX_BLOCKS:
      raise ValueError(f'architecture has {len(self.block_filters)} blocks, '
                       f'expected 1 to {MAX_BLOCKS}')
    if not 1 <= self.layers_per_block <= MAX_LAYERS_PER_BLOCK:
      raise ValueError(f'architecture layers_per_block='
                       f'{self.layers_per_block}, expected 1 to '
                       f'{MAX_LAYERS_PER_BLOCK}')

  @property
  def num_blocks(self) -> int:
    return len(self.block_filters)

  @property
  def downsamples(self) -> bool:
    return self.downsampling != 'none'

  def labels(self) -> dict[str, str]:
    """The discrete columns of `schema.ZOO`, as class names."""
    return {
        'normalization': self.normalization,
        'block_nonlinearity': self.block_nonlinearity,
        'last_nonlinearity': self.last_nonlinearity,
        'upsampling': UPSAMPLINGS[self.upsampling],
        'skip_connection': 'yes' if self.skip_connection else 'no',
        'downsampling': DOWNSAMPLINGS[self.downsampling],
    }

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['block_filters'] = list(self.block_filters)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> Architecture:
    return cls(**{**d, 'block_filters': tuple(d['block_filters'])})


def deal(rng: np.random.Generator, options, n: int) -> list:
  """n draws from `options`, each option within one of n / len(options) times.

  Concatenated independent shuffles of the deck, so any prefix is balanced.
  """
  options = list(options)
  out = []
  while len(out) < n:
    out.extend(options[i] for i in rng.permutation(len(options)))
  return out[:n]


def sample_architectures(rng: np.random.Generator,
                         n: int) -> list[Architecture]:
  """n architectures with balanced discrete classes and varied sizes."""
  norms = deal(rng, NORMALIZATIONS, n)
  acts = deal(rng, NONLINEARITIES, n)
  lasts = deal(rng, LAST_NONLINEARITIES, n)
  ups = deal(rng, UPSAMPLINGS, n)
  # 'none' twice, so half the zoo downsamples.
  downs = deal(rng, ('none', 'none', 'stride_conv', 'avg_pool'), n)
  skips = deal(rng, (False, True), n)
  attentions = deal(rng, (False, True), n)
  blocks = deal(rng, range(1, MAX_BLOCKS + 1), n)
  layers = deal(rng, range(1, MAX_LAYERS_PER_BLOCK + 1), n)
  archs = []
  for i in range(n):
    archs.append(Architecture(
        stem_filters=int(rng.choice(FILTER_CHOICES)),
        block_filters=tuple(int(f) for f in rng.choice(FILTER_CHOICES,
                                                       size=blocks[i])),
        layers_per_block=int(layers[i]),
        normalization=norms[i],
        block_nonlinearity=acts[i],
        last_nonlinearity=lasts[i],
        upsampling=ups[i],
        downsampling=downs[i],
        skip_connection=bool(skips[i]),
        channel_attention=bool(attentions[i]),
    ))
  return archs
