"""The zoo's generators as flax modules, and their counts read off the build.

These modules are each architecture's reference: the zoo's labels are counted
on them (`layer_counts`), and the shared programs that train the zoo
(`supernet`) must compute what they compute.

Image-to-image `Generator`:

  stem conv 3x3 -> nonlinearity
  [downsampling: stride-2 conv -> norm -> nonlinearity, or 2x2 average pool]
  blocks: layers_per_block x (conv 3x3 -> norm -> nonlinearity)
          [-> squeeze-excitation: 2 dense layers]
          [+ residual input, through a 1x1 conv where the width changes]
  upsampling x2: nearest or bilinear resize + conv, transposed conv, or
                 conv + pixel shuffle; then norm -> nonlinearity
  output conv 3x3 to RGB -> last nonlinearity

With downsampling the input has the output's size; without, half of it (the
generator super-resolves). Either way there is exactly one upsampling.

Noise-to-image `NoiseGenerator` (GAN generators, VAE decoders): a latent map
of `architecture.LATENT_CHANNELS` channels at 1/2**num_blocks of the image
size, and one block per x2 stage, as real GAN generators add a block per
doubling of resolution:

  stem conv 3x3 -> nonlinearity
  per block: upsampling x2 to the block's width -> norm -> nonlinearity,
             then the block as above
  output conv 3x3 to RGB -> last nonlinearity

The latent is a map rather than a vector so that the network, like the
image-to-image ones, is convolutional throughout: trained on small crops, it
makes images of any size that is a multiple of 16.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxfp.zoo import architecture as arch_lib

# The nonlinearities of `architecture.NONLINEARITIES` and LAST_NONLINEARITIES.
ACTIVATIONS: dict[str, Callable] = {
    'relu': nn.relu,
    'leaky_relu': functools.partial(nn.leaky_relu, negative_slope=0.2),
    'elu': nn.elu,
    'silu': nn.silu,
}
LAST: dict[str, Callable] = {
    'none': lambda x: x,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'hard_tanh': jax.nn.hard_tanh,
}


def conv_bias(normalization: str) -> bool:
  """Whether a conv followed by this normalisation has a bias.

  BatchNorm and InstanceNorm subtract each channel's mean, and with it any
  bias: such a bias gets a gradient of pure rounding noise, which Adam
  scales up to full-size random steps. Networks drop it; so do these.
  """
  return normalization not in ('batch', 'instance')


def _apply_norm(kind: str, train: bool, name: str, x):
  """x through a normalisation layer of `kind`; x itself for 'none'."""
  if kind == 'batch':
    layer = nn.BatchNorm(use_running_average=not train, momentum=0.9,
                         name=name)
  elif kind == 'instance':
    layer = nn.InstanceNorm(name=name)
  elif kind == 'layer':
    # Over height, width and channels of each image, as image layer norm is.
    layer = nn.LayerNorm(reduction_axes=(1, 2, 3), feature_axes=-1, name=name)
  else:
    return x
  return layer(x)


class AvgPool(nn.Module):
  """2x2 average pooling, a module so that layer counting can see it."""

  @nn.compact
  def __call__(self, x):
    return nn.avg_pool(x, (2, 2), strides=(2, 2))


class TransposedConv2x(nn.Module):
  """Stride-2 transposed convolution with a 3x3 kernel.

  Written as zero insertion followed by an ordinary convolution, which is
  what a transposed convolution computes: every input pixel scatters one
  kernel footprint, and the uneven overlap of a 3x3 footprint at stride 2
  leaves the classic checkerboard trace. XLA's CPU backend runs input-dilated
  convolutions (`nn.ConvTranspose`) through a slow generic loop; this form
  runs as a plain convolution, several times faster.
  """
  features: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, x):
    n, h, w, c = x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (3, 3, c, self.features))
    spread = jnp.pad(x[:, :, None, :, None, :],
                     ((0, 0), (0, 0), (0, 1), (0, 0), (0, 1), (0, 0)))
    spread = spread.reshape(n, 2 * h, 2 * w, c)
    y = jax.lax.conv_general_dilated(
        spread, kernel, (1, 1), 'SAME',
        dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros_init(),
                         (self.features,))
    return y


class SqueezeExcite(nn.Module):
  """Channel attention: global mean -> dense -> act -> dense -> sigmoid gate."""
  activation: str

  @nn.compact
  def __call__(self, x):
    channels = x.shape[-1]
    s = jnp.mean(x, axis=(1, 2))
    s = ACTIVATIONS[self.activation](
        nn.Dense(arch_lib.squeeze_width(channels), name='squeeze')(s))
    s = nn.sigmoid(nn.Dense(channels, name='excite')(s))
    return x * s[:, None, None, :]


class Block(nn.Module):
  """layers x (conv -> norm -> act), optional attention and residual."""
  filters: int
  layers: int
  normalization: str
  activation: str
  skip_connection: bool
  channel_attention: bool

  @nn.compact
  def __call__(self, x, train: bool):
    h = x
    for j in range(self.layers):
      h = nn.Conv(self.filters, (3, 3), use_bias=conv_bias(
          self.normalization), name=f'conv_{j}')(h)
      h = _apply_norm(self.normalization, train, f'norm_{j}', h)
      h = ACTIVATIONS[self.activation](h)
    if self.channel_attention:
      h = SqueezeExcite(self.activation, name='attention')(h)
    if self.skip_connection:
      if x.shape[-1] != self.filters:
        x = nn.Conv(self.filters, (1, 1), name='projection')(x)
      h = h + x
    return h


class Upsample(nn.Module):
  """x2 upsampling by one of `architecture.UPSAMPLINGS`, then norm and act."""
  variant: str
  filters: int
  normalization: str
  activation: str

  @nn.compact
  def __call__(self, x, train: bool):
    n, h, w, c = x.shape
    bias = conv_bias(self.normalization)
    if self.variant in ('nearest_conv', 'bilinear_conv'):
      method = 'nearest' if self.variant == 'nearest_conv' else 'bilinear'
      x = jax.image.resize(x, (n, 2 * h, 2 * w, c), method)
      x = nn.Conv(self.filters, (3, 3), use_bias=bias, name='conv')(x)
    elif self.variant == 'transposed_conv':
      x = TransposedConv2x(self.filters, use_bias=bias, name='conv')(x)
    elif self.variant == 'pixel_shuffle':
      x = nn.Conv(4 * self.filters, (3, 3), use_bias=bias, name='conv')(x)
      x = x.reshape(n, h, w, 2, 2, self.filters)
      x = x.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, self.filters)
    else:
      raise ValueError(f'unknown upsampling variant {self.variant!r}')
    x = _apply_norm(self.normalization, train, 'norm', x)
    return ACTIVATIONS[self.activation](x)


def _block(a: arch_lib.Architecture, i: int, x, train: bool):
  return Block(a.block_filters[i], a.layers_per_block, a.normalization,
               a.block_nonlinearity, a.skip_connection, a.channel_attention,
               name=f'block_{i}')(x, train)


def _upsample(a: arch_lib.Architecture, filters: int, name: str, x,
              train: bool):
  return Upsample(a.upsampling, filters, a.normalization,
                  a.block_nonlinearity, name=name)(x, train)


def _to_rgb(a: arch_lib.Architecture, x):
  return LAST[a.last_nonlinearity](nn.Conv(3, (3, 3), name='to_rgb')(x))


class Generator(nn.Module):
  """An image-to-image generator built from an `Architecture`."""
  arch: arch_lib.Architecture

  @nn.compact
  def __call__(self, x, train: bool):
    a = self.arch
    act = ACTIVATIONS[a.block_nonlinearity]
    x = act(nn.Conv(a.stem_filters, (3, 3), name='stem')(x))
    if a.downsampling == 'stride_conv':
      x = nn.Conv(a.stem_filters, (3, 3), strides=(2, 2),
                  use_bias=conv_bias(a.normalization), name='down_conv')(x)
      x = act(_apply_norm(a.normalization, train, 'down_norm', x))
    elif a.downsampling == 'avg_pool':
      x = AvgPool(name='down_pool')(x)
    for i in range(a.num_blocks):
      x = _block(a, i, x, train)
    return _to_rgb(a, _upsample(a, a.block_filters[-1], 'upsample', x, train))


class NoiseGenerator(nn.Module):
  """A noise-to-image generator (GAN generator or VAE decoder)."""
  arch: arch_lib.Architecture

  @nn.compact
  def __call__(self, z, train: bool):
    a = self.arch
    act = ACTIVATIONS[a.block_nonlinearity]
    x = act(nn.Conv(a.stem_filters, (3, 3), name='stem')(z))
    for i, filters in enumerate(a.block_filters):
      x = _block(a, i, _upsample(a, filters, f'up_{i}', x, train), train)
    return _to_rgb(a, x)


def build(arch: arch_lib.Architecture) -> nn.Module:
  """The flax module of an architecture, by its family's layout."""
  return NoiseGenerator(arch) if arch.noise_input else Generator(arch)


_CONV_TYPES = (nn.Conv, nn.ConvTranspose, TransposedConv2x)
_NORM_TYPES = (nn.BatchNorm, nn.LayerNorm, nn.InstanceNorm, nn.GroupNorm)


def layer_counts(arch: arch_lib.Architecture, image_size: int) -> dict:
  """The continuous columns of `schema.ZOO`, counted on the built network."""
  return inspect(arch, image_size)[0]


def inspect(arch: arch_lib.Architecture, image_size: int):
  """(counts, variable shapes) of the built network, from one abstract trace.

  The counts are the continuous columns of `schema.ZOO`; the shapes are those
  `model.init` would make (what `host_init` fills).

  The network is traced abstractly (no compile) with every submodule call
  recorded, so the counts describe what runs, not what was sampled:

    num_conv_layers: convolutions, transposed ones included (also 1x1
      residual projections and the output conv).
    num_fc_layers: dense layers (those of channel attention).
    num_pooling_layers: pooling layers (average-pool downsampling).
    num_norm_layers: normalisation layers of any kind.
    num_layers: num_conv_layers + num_fc_layers + num_pooling_layers +
      num_norm_layers, i.e. every layer with weights plus normalisation and
      pooling; nonlinearities, resizes and reshapes do not count.
    num_filters: output channels summed over all conv layers.
    num_blocks: residual/conv blocks.
    layers_per_block: main-path convs per block (projections excluded).
    num_parameters: scalars in the 'params' collection (BatchNorm running
      statistics are state, not parameters).
  """
  model = build(arch)
  calls = []  # (module, enclosing Block or None)
  blocks = []

  def record(next_fun, args, kwargs, context):
    if context.method_name != '__call__':
      return next_fun(*args, **kwargs)
    module = context.module
    if isinstance(module, Block):
      blocks.append(module)
      try:
        return next_fun(*args, **kwargs)
      finally:
        blocks.pop()
    calls.append((module, blocks[-1] if blocks else None))
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    variables = jax.eval_shape(
        functools.partial(model.init, train=False), jax.random.key(0),
        jnp.zeros((1,) + arch_lib.input_shape(arch, image_size), jnp.float32))

  convs = [m for m, _ in calls if isinstance(m, _CONV_TYPES)]
  block_names = sorted({b.name for _, b in calls if b is not None})
  main_path = {name: 0 for name in block_names}
  for m, b in calls:
    if b is not None and isinstance(m, _CONV_TYPES) and m.name.startswith(
        'conv_'):
      main_path[b.name] += 1
  per_block = set(main_path.values())
  if len(per_block) > 1:
    raise ValueError(f'blocks differ in depth: {main_path}')
  counts = {
      'num_conv_layers': len(convs),
      'num_fc_layers': sum(isinstance(m, nn.Dense) for m, _ in calls),
      'num_pooling_layers': sum(isinstance(m, AvgPool) for m, _ in calls),
      'num_norm_layers': sum(isinstance(m, _NORM_TYPES) for m, _ in calls),
      'num_filters': sum(m.features for m in convs),
      'num_blocks': len(block_names),
      'layers_per_block': per_block.pop() if per_block else 0,
      'num_parameters': sum(
          int(leaf.size) for leaf in jax.tree.leaves(variables['params'])),
  }
  counts['num_layers'] = (counts['num_conv_layers'] + counts['num_fc_layers']
                          + counts['num_pooling_layers']
                          + counts['num_norm_layers'])
  return counts, variables
