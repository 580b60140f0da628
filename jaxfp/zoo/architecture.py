"""Sampled generator architectures, their labels and the counts they imply.

An `Architecture` is the recipe `generator.Generator` (image-to-image) or
`generator.NoiseGenerator` (noise-to-image) builds from. Sampling deals each
discrete choice from shuffled decks (see `deal`), so over a zoo every class
occurs about equally often rather than merely in expectation; widths are
redrawn until no two architectures share every architecture column.
"""

from __future__ import annotations

import dataclasses

import numpy as np

# Image-to-image nets (super-resolution, restoration, colourisation), GAN
# generators and VAE decoders. GANs and VAEs share the noise-to-image layout:
# the family says how the network was trained, the layout what it computes.
FAMILIES = ('image_to_image', 'gan', 'vae')
NOISE_FAMILIES = ('gan', 'vae')
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
# A noise-to-image net has one block per x2 upsampling stage, as a DCGAN or
# StyleGAN adds a block per doubling: its latent map is at 1/2**num_blocks of
# the image size (1/4, 1/8 or 1/16), so depth follows resolution and leaves
# its trace at fixed frequencies of the image's spectrum.
LATENT_CHANNELS = 16
NOISE_BLOCKS = (2, 3, 4)

# The architecture columns of `schema.ZOO` that no two sampled GMs may share
# all of (the family is left out: a GAN and a VAE with the same decoder would
# be the same network).
_COUNT_COLUMNS = (
    'num_layers', 'num_conv_layers', 'num_fc_layers', 'num_pooling_layers',
    'num_norm_layers', 'num_filters', 'num_blocks', 'layers_per_block',
    'num_parameters')
# Width draws for one GM before giving up (a few suffice at 1000s of GMs).
_MAX_REDRAWS = 1000
_LABEL_COLUMNS = ('normalization', 'block_nonlinearity', 'last_nonlinearity',
                  'upsampling', 'skip_connection', 'downsampling')


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One generator's architecture; see `generator` for the two layouts."""
  stem_filters: int
  block_filters: tuple[int, ...]  # One width per block.
  layers_per_block: int
  normalization: str
  block_nonlinearity: str
  last_nonlinearity: str
  upsampling: str  # A key of UPSAMPLINGS.
  downsampling: str  # A key of DOWNSAMPLINGS; 'none' for noise-to-image.
  skip_connection: bool  # Residual connection around each block.
  channel_attention: bool  # Squeeze-excitation (2 dense layers) per block.
  family: str = 'image_to_image'

  def __post_init__(self):
    choices = {
        'family': FAMILIES,
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
    widths = (self.stem_filters,) + tuple(self.block_filters)
    if any(w not in FILTER_CHOICES for w in widths):
      raise ValueError(f'architecture widths {widths} must be among '
                       f'{FILTER_CHOICES}')
    if self.noise_input and self.downsampling != 'none':
      raise ValueError(f'a {self.family} generator starts from a latent map '
                       'and cannot downsample; downsampling must be none')
    if self.noise_input and self.num_blocks not in NOISE_BLOCKS:
      raise ValueError(f'a {self.family} generator has one block per '
                       f'upsampling stage: {self.num_blocks} blocks, expected '
                       f'one of {list(NOISE_BLOCKS)}')

  @property
  def num_blocks(self) -> int:
    return len(self.block_filters)

  @property
  def downsamples(self) -> bool:
    return self.downsampling != 'none'

  @property
  def noise_input(self) -> bool:
    return self.family in NOISE_FAMILIES

  @property
  def program(self) -> str:
    """Which shared program trains it: its input differs from the others'."""
    if self.noise_input:
      return latent_program(self.num_blocks)
    return 'full_input' if self.downsamples else 'half_input'

  def labels(self) -> dict[str, str]:
    """The discrete columns of `schema.ZOO`, as class names."""
    return {
        'normalization': self.normalization,
        'block_nonlinearity': self.block_nonlinearity,
        'last_nonlinearity': self.last_nonlinearity,
        'upsampling': UPSAMPLINGS[self.upsampling],
        'skip_connection': 'yes' if self.skip_connection else 'no',
        'downsampling': DOWNSAMPLINGS[self.downsampling],
        'family': self.family,
    }

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d['block_filters'] = list(self.block_filters)
    return d

  @classmethod
  def from_dict(cls, d: dict) -> Architecture:
    return cls(**{**d, 'block_filters': tuple(d['block_filters'])})


def latent_program(stages: int) -> str:
  """The program of noise-to-image nets of `stages` blocks, named by their
  latent map's scale: latent_4 reads maps at 1/4 of the image size."""
  return f'latent_{2 ** stages}'


def latent_stages(program: str) -> int:
  """Upsampling stages of a latent program; 0 for image-to-image ones."""
  for stages in NOISE_BLOCKS:
    if program == latent_program(stages):
      return stages
  return 0


def program_input_shape(program: str, side: int) -> tuple[int, int, int]:
  """[H, W, C] that a program's generators read to make side x side images."""
  stages = latent_stages(program)
  if stages:
    return (side // 2 ** stages, side // 2 ** stages, LATENT_CHANNELS)
  if program != 'full_input':
    side //= 2
  return (side, side, 3)


def input_shape(arch: Architecture, image_size: int) -> tuple[int, int, int]:
  """[H, W, C] of what the generator reads to make image_size images."""
  return program_input_shape(arch.program, image_size)


def squeeze_width(channels: int) -> int:
  """Hidden units of a block's channel attention."""
  return max(4, channels // 4)


def planned_counts(arch: Architecture) -> dict[str, int]:
  """The continuous columns of `schema.ZOO` as the layout implies them.

  Used to keep sampled architectures distinct without building them; the
  zoo's labels are read off the built networks (`generator.layer_counts`),
  and the build refuses a GM where the two disagree.
  """
  convs, fcs, norms, params = [], 0, 0, 0
  normed = arch.normalization != 'none'
  # As generator.conv_bias: no bias before a per-channel normalisation.
  normed_bias = arch.normalization not in ('batch', 'instance')

  def conv(cin, cout, k=3, bias=True):
    nonlocal params
    convs.append(cout)
    params += k * k * cin * cout + (cout if bias else 0)

  def norm(c):
    nonlocal norms, params
    if normed:
      norms += 1
      params += 2 * c

  def upsample(cin, cout):
    conv(cin, 4 * cout if arch.upsampling == 'pixel_shuffle' else cout,
         bias=normed_bias)
    norm(cout)

  conv(LATENT_CHANNELS if arch.noise_input else 3, arch.stem_filters)
  width = arch.stem_filters
  if arch.downsampling == 'stride_conv':
    conv(width, width, bias=normed_bias)
    norm(width)
  for filters in arch.block_filters:
    if arch.noise_input:
      # Each stage upsamples to its block's width, so its block keeps it.
      upsample(width, filters)
      width = filters
    c = width
    for _ in range(arch.layers_per_block):
      conv(c, filters, bias=normed_bias)
      norm(filters)
      c = filters
    if arch.channel_attention:
      hidden = squeeze_width(filters)
      fcs += 2
      params += filters * hidden + hidden + hidden * filters + filters
    if arch.skip_connection and width != filters:
      conv(width, filters, k=1)
    width = filters
  if not arch.noise_input:
    upsample(width, width)
  conv(width, 3)
  counts = {
      'num_conv_layers': len(convs),
      'num_fc_layers': fcs,
      'num_pooling_layers': int(arch.downsampling == 'avg_pool'),
      'num_norm_layers': norms,
      'num_filters': sum(convs),
      'num_blocks': arch.num_blocks,
      'layers_per_block': arch.layers_per_block,
      'num_parameters': params,
  }
  counts['num_layers'] = (counts['num_conv_layers'] + counts['num_fc_layers']
                          + counts['num_pooling_layers']
                          + counts['num_norm_layers'])
  return counts


def columns_key(arch: Architecture) -> tuple:
  """Every architecture column of the GM's ground-truth row, family aside."""
  counts = planned_counts(arch)
  labels = arch.labels()
  return (tuple(counts[c] for c in _COUNT_COLUMNS)
          + tuple(labels[c] for c in _LABEL_COLUMNS))


def deal(rng: np.random.Generator, options, n: int) -> list:
  """n draws from `options`, each option within one of n / len(options) times.

  Concatenated independent shuffles of the deck, so any prefix is balanced.
  """
  options = list(options)
  out = []
  while len(out) < n:
    out.extend(options[i] for i in rng.permutation(len(options)))
  return out[:n]


def deal_families(rng: np.random.Generator, families, n: int) -> list[str]:
  for family in families:
    if family not in FAMILIES:
      raise ValueError(f'unknown generator family {family!r}; expected some '
                       f'of {list(FAMILIES)}')
  return deal(rng, families, n)


def sample_architectures(rng: np.random.Generator,
                         families: list[str]) -> list[Architecture]:
  """One architecture per entry of `families`: balanced classes, varied sizes.

  Image-to-image nets downsample two times in three (stride conv, average
  pool or none); noise-to-image nets never do, so over a zoo of all three
  families about 2 in 9 GMs downsample. Image-to-image nets have 1 to 4
  blocks, noise-to-image nets 2 to 4 (one per upsampling stage).
  """
  n = len(families)
  norms = deal(rng, NORMALIZATIONS, n)
  acts = deal(rng, NONLINEARITIES, n)
  lasts = deal(rng, LAST_NONLINEARITIES, n)
  ups = deal(rng, UPSAMPLINGS, n)
  image_to_image = [i for i, f in enumerate(families) if f not in
                    NOISE_FAMILIES]
  downs = ['none'] * n
  for i, d in zip(image_to_image, deal(rng, tuple(DOWNSAMPLINGS),
                                       len(image_to_image))):
    downs[i] = d
  skips = deal(rng, (False, True), n)
  attentions = deal(rng, (False, True), n)
  blocks = [0] * n
  noise = [i for i, f in enumerate(families) if f in NOISE_FAMILIES]
  for group, options in ((image_to_image, range(1, MAX_BLOCKS + 1)),
                         (noise, NOISE_BLOCKS)):
    for i, b in zip(group, deal(rng, options, len(group))):
      blocks[i] = b
  layers = deal(rng, range(1, MAX_LAYERS_PER_BLOCK + 1), n)
  archs, seen = [], set()
  for i in range(n):
    for _ in range(_MAX_REDRAWS):
      # Only the widths are redrawn, so the dealt classes stay balanced.
      arch = Architecture(
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
          family=families[i],
      )
      key = columns_key(arch)
      if key not in seen:
        break
    else:
      raise ValueError(f'no distinct widths found for GM {i} ({arch}) in '
                       f'{_MAX_REDRAWS} draws; the zoo is too large for its '
                       'architecture space')
    seen.add(key)
    archs.append(arch)
  return archs
