"""One network per program that computes every architecture of that program.

The zoo compiles one train step per *program*, not per generator (why, and
what it costs: docs/zoo.md), and feeds each generator's architecture in as
arrays (`switches`):

  program      input                     what cannot be a switch
  half_input   RGB at half the size      the input's size
  full_input   RGB at the output's size  (downsampling: stride conv | pool)
  latent_4     latent map at 1/4         2 stages of upsampling + block
  latent_8     latent map at 1/8         3 such stages
  latent_16    latent map at 1/16        4 such stages

Everything else is chosen at run time:
  - depth: the image-to-image programs scan over [block, layer]-stacked
    slots (their code compiled once, not 12 times), each block and layer
    inside a `lax.cond`, so unused ones do not run; the latent programs
    unroll their stages (each at its own resolution) and scan the layers;
  - widths: every tensor has `WIDTH` channels, those beyond a layer's width
    held at exactly 0 by channel masks (their weights start at 0 and get
    zero gradients, so they stay 0); on CPU a conv over 8 channels is not
    faster than over 32, so the padding costs little;
  - normalisation (statistics over batch, image or image+channels, masked to
    the active channels), nonlinearities and the last nonlinearity: selects;
  - upsampling: a `lax.cond` between resize (nearest | bilinear | zero
    insertion, i.e. transposed conv) + conv and conv + pixel shuffle;
  - attention and residual projections: `lax.cond`s.

`embed` puts the variables of an architecture's flax module
(`generator.build`) into these padded slots, so a generator is initialised
exactly as its module would be, and `apply` then computes what the module
computes, up to float rounding (sums over zero channels may run in another
order). Generators are not vmapped: on CPU that ran 3-4x slower each.
"""
from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import generator as generator_lib

PROGRAMS = ('half_input', 'full_input') + tuple(
    arch_lib.latent_program(s) for s in arch_lib.NOISE_BLOCKS)
WIDTH = max(arch_lib.FILTER_CHOICES)
SQUEEZE = arch_lib.squeeze_width(WIDTH)
_UP_VARIANTS = tuple(arch_lib.UPSAMPLINGS)
assert _UP_VARIANTS[-1] == 'pixel_shuffle'  # `_upsample` relies on it.
_DOWN_VARIANTS = ('stride_conv', 'avg_pool')
_BN_MOMENTUM = 0.9  # As generator._apply_norm's BatchNorm.
_BN_EPSILON = 1e-5  # flax's defaults: BatchNorm 1e-5, Layer/InstanceNorm 1e-6.
_LN_EPSILON = 1e-6


# ---------------------------------------------------------------- layout --

def _conv_slot(cin: int, cout: int, k: int = 3) -> dict:
  return {'kernel': (k, k, cin, cout), 'bias': (cout,)}


def _norm_slot() -> dict:
  return {'scale': (WIDTH,), 'bias': (WIDTH,)}


def _up_slot() -> dict:
  return {'conv': _conv_slot(WIDTH, WIDTH),
          'shuffle': _conv_slot(WIDTH, 4 * WIDTH),
          'norm': _norm_slot()}


def _up_names(program: str) -> list[str]:
  stages = arch_lib.latent_stages(program)
  return [f'up_{i}' for i in range(stages)] if stages else ['upsample']


def param_shapes(program: str) -> dict:
  """Nested dict of parameter shapes, named as the flax modules name them."""
  if program not in PROGRAMS:
    raise ValueError(f'unknown program {program!r}; expected one of '
                     f'{list(PROGRAMS)}')
  cin = arch_lib.LATENT_CHANNELS if arch_lib.latent_stages(program) else 3
  shapes = {'stem': _conv_slot(cin, WIDTH), 'to_rgb': _conv_slot(WIDTH, 3)}
  if program == 'full_input':
    shapes['down_conv'] = _conv_slot(WIDTH, WIDTH)
    shapes['down_norm'] = _norm_slot()
  for name in _up_names(program):
    shapes[name] = _up_slot()
  # Blocks and their layers are stacked on leading axes [block, layer]: the
  # program scans over them, so their code is compiled once, not 12 times.
  b, l = arch_lib.MAX_BLOCKS, arch_lib.MAX_LAYERS_PER_BLOCK
  shapes['blocks'] = {
      'conv': {'kernel': (b, l, 3, 3, WIDTH, WIDTH), 'bias': (b, l, WIDTH)},
      'norm': {'scale': (b, l, WIDTH), 'bias': (b, l, WIDTH)},
      'attention': {'squeeze': {'kernel': (b, WIDTH, SQUEEZE),
                                'bias': (b, SQUEEZE)},
                    'excite': {'kernel': (b, SQUEEZE, WIDTH),
                               'bias': (b, WIDTH)}},
      'projection': {'kernel': (b, 1, 1, WIDTH, WIDTH), 'bias': (b, WIDTH)},
  }
  return shapes


def stats_shapes(program: str) -> dict:
  """Running BatchNorm statistics for every normalisation slot."""
  stats = {'mean': (WIDTH,), 'var': (WIDTH,)}
  out = {}
  if program == 'full_input':
    out['down_norm'] = dict(stats)
  for name in _up_names(program):
    out[name] = {'norm': dict(stats)}
  b, l = arch_lib.MAX_BLOCKS, arch_lib.MAX_LAYERS_PER_BLOCK
  out['blocks'] = {'norm': {'mean': (b, l, WIDTH), 'var': (b, l, WIDTH)}}
  return out


def _is_shape(x) -> bool:
  return isinstance(x, tuple) and all(isinstance(d, int) for d in x)


def _zeros(shapes):
  return jax.tree.map(lambda s: np.zeros(s, np.float32), shapes,
                      is_leaf=_is_shape)


def _initial_stats(program: str) -> dict:
  """As flax's BatchNorm starts them: means 0, variances 1."""
  return jax.tree_util.tree_map_with_path(
      lambda path, s: (np.ones if path[-1].key == 'var' else np.zeros)(
          s, np.float32), stats_shapes(program), is_leaf=_is_shape)


def _mask(width: int, size: int = WIDTH) -> np.ndarray:
  return (np.arange(size) < width).astype(np.float32)


def switches(arch: arch_lib.Architecture) -> dict:
  """The run-time description of `arch` that `apply` reads.

  Fixed shapes and dtypes for every architecture, so one compiled program
  serves them all.
  """
  blocks = arch_lib.MAX_BLOCKS
  widths = list(arch.block_filters) + [0] * (blocks - arch.num_blocks)
  # A noise-to-image block reads its stage's upsampling, at its own width.
  inputs = widths if arch.noise_input else (
      [arch.stem_filters] + list(arch.block_filters)[:-1])
  inputs += [0] * (blocks - len(inputs))
  return {
      'norm': np.int32(arch_lib.NORMALIZATIONS.index(arch.normalization)),
      'act': np.int32(arch_lib.NONLINEARITIES.index(arch.block_nonlinearity)),
      'last': np.int32(arch_lib.LAST_NONLINEARITIES.index(
          arch.last_nonlinearity)),
      'up': np.int32(_UP_VARIANTS.index(arch.upsampling)),
      'down': np.int32(_DOWN_VARIANTS.index(arch.downsampling)
                       if arch.downsamples else 0),
      'blocks': np.int32(arch.num_blocks),
      'layers': np.int32(arch.layers_per_block),
      'conv_bias': np.float32(generator_lib.conv_bias(arch.normalization)),
      'attention': np.bool_(arch.channel_attention),
      'skip': np.bool_(arch.skip_connection),
      'project': np.array([arch.skip_connection and w > 0 and inputs[b] != w
                           for b, w in enumerate(widths)]),
      'stem_mask': _mask(arch.stem_filters),
      'block_mask': np.stack([_mask(w) for w in widths]),
      'block_width': np.array(widths, np.float32),
      'squeeze_mask': np.stack([_mask(arch_lib.squeeze_width(w) if w else 0,
                                      SQUEEZE) for w in widths]),
      'up_mask': _mask(arch.block_filters[-1]),
  }


def embed(arch: arch_lib.Architecture, variables) -> tuple[dict, dict]:
  """(params, stats) of `arch`'s program holding `variables` of its module.

  `variables` is what `generator.build(arch).init` makes (numpy or jax
  arrays); unused slots and channels hold 0 (running variances 1), and every
  variable of the module must find a slot.
  """
  program = arch.program
  params = _zeros(param_shapes(program))
  stats = _initial_stats(program)
  up_names = _up_names(program)
  shuffle = arch.upsampling == 'pixel_shuffle'

  def slot_of(tree, keys):
    """The slot (a numpy view) of a flax variable path."""
    index = ()
    if keys[0].startswith('block_'):
      # block_i/conv_j/kernel -> blocks/conv/kernel[i, j], and so on.
      index = (int(keys[0].split('_')[1]),)
      layer = keys[1].split('_')
      if layer[0] in ('conv', 'norm') and len(layer) == 2:
        index += (int(layer[1]),)
        keys = ['blocks', layer[0]] + keys[2:]
      else:
        keys = ['blocks'] + keys[1:]
    elif shuffle and keys[0] in up_names and keys[1] == 'conv':
      keys = [keys[0], 'shuffle'] + keys[2:]
    node = tree
    for key in keys:
      if not isinstance(node, dict) or key not in node:
        raise ValueError(f'the {program} program has no slot for '
                         f'{"/".join(keys)}')
      node = node[key]
    return node[index], keys

  def put(tree, path, value):
    slot, keys = slot_of(tree, [p.key for p in path])
    value = np.asarray(value, np.float32)
    if slot.ndim != value.ndim:
      raise ValueError(f'{"/".join(keys)}: slot {slot.shape} cannot hold '
                       f'{value.shape}')
    if keys[1:2] == ['shuffle']:
      # Pixel shuffle reads channel (dy * 2 + dx) * width + c: each of the
      # four sub-pixel groups keeps its own stride of WIDTH channels.
      width = value.shape[-1] // 4
      grouped = slot.reshape(slot.shape[:-1] + (4, WIDTH))  # A view.
      lead = tuple(slice(0, d) for d in value.shape[:-1])
      grouped[lead + (slice(None), slice(0, width))] = value.reshape(
          value.shape[:-1] + (4, width))
    else:
      slot[tuple(slice(0, d) for d in value.shape)] = value

  for path, value in jax.tree_util.tree_leaves_with_path(variables['params']):
    put(params, path, value)
  for path, value in jax.tree_util.tree_leaves_with_path(
      variables.get('batch_stats', {})):
    put(stats, path, value)
  return params, stats


# ------------------------------------------------------------- forward --

_DIMENSIONS = ('NHWC', 'HWIO', 'NHWC')


@jax.custom_vjp
def _conv_same(x, kernel):
  """Stride-1 'SAME' convolution (odd kernel), with a hand-written VJP.

  Inside a `lax.cond`, XLA's CPU backend leaves the gradient convolutions
  that autodiff emits in their transposed layouts and runs them through a
  generic loop: a step with conds took 20-40x longer than without. The VJP
  below writes both gradients as convolutions in the forward's own layout
  (explicit transposes around them), which run as fast inside a cond as out.
  """
  return jax.lax.conv_general_dilated(x, kernel, (1, 1), 'SAME',
                                      dimension_numbers=_DIMENSIONS)


def _conv_same_fwd(x, kernel):
  return _conv_same(x, kernel), (x, kernel)


def _conv_same_bwd(residuals, g):
  x, kernel = residuals
  kh, kw = kernel.shape[:2]
  # d/dx: the cotangent correlated with the flipped kernel, in/out swapped.
  dx = jax.lax.conv_general_dilated(
      g, jnp.flip(kernel, (0, 1)).transpose(0, 1, 3, 2), (1, 1), 'SAME',
      dimension_numbers=_DIMENSIONS)
  # d/dkernel: the padded input, channels as batch and batch as features,
  # correlated with the cotangent as a (H x W) kernel.
  padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2),
                       (0, 0)))
  dk = jax.lax.conv_general_dilated(
      padded.transpose(3, 1, 2, 0), g.transpose(1, 2, 0, 3), (1, 1),
      'VALID', dimension_numbers=_DIMENSIONS).transpose(1, 2, 0, 3)
  return dx, dk


_conv_same.defvjp(_conv_same_fwd, _conv_same_bwd)


def _conv(x, p, mask=None, stride: int = 1, bias=1.0):
  """As flax's nn.Conv with 'SAME' padding, then the channel mask.

  `bias` is 0 for convs that have none (generator.conv_bias): the slot's
  bias then gets no gradient and stays 0. Stride 2 (on even sizes) keeps the
  stride-1 outputs at odd positions:
  'SAME' pads a stride-2 3x3 conv by 0 before and 1 after, so output i reads
  inputs 2i..2i+2, as stride-1 output 2i + 1 does.
  """
  y = _conv_same(x, p['kernel'])
  if stride == 2:
    y = y[:, 1::2, 1::2, :]
  y = y + jnp.reshape(p['bias'] * bias, (1, 1, 1, -1))
  return y if mask is None else y * mask


# In the order of the switches' indices.
_ACTIVATIONS = tuple(generator_lib.ACTIVATIONS[a]
                     for a in arch_lib.NONLINEARITIES)
_LAST = tuple(generator_lib.LAST[a] for a in arch_lib.LAST_NONLINEARITIES)


def _select(index, functions, x):
  """functions[index](x), computing all: cheap elementwise, no branching."""
  return jax.lax.select_n(index, *[f(x) for f in functions])


def _moments(x, axes, count=None):
  """flax's fast variance, E[x^2] - E[x]^2; sums / count if given."""
  if count is None:
    mean, mean2 = jnp.mean(x, axes), jnp.mean(jnp.square(x), axes)
  else:
    mean = jnp.sum(x, axes) / count
    mean2 = jnp.sum(jnp.square(x), axes) / count
  return mean, jnp.maximum(0.0, mean2 - jnp.square(mean))


def _norm(sw, p, stats, x, mask, active, train: bool):
  """Normalisation of kind sw['norm'] over the active channels.

  Returns (y, stats): running statistics move only for BatchNorm in training.
  """
  kind = sw['norm']
  n, h, w, c = x.shape
  if train:
    batch_mean, batch_var = _moments(x, (0, 1, 2))
  else:
    batch_mean, batch_var = stats['mean'], stats['var']
  inst_mean, inst_var = _moments(x, (1, 2))
  layer_mean, layer_var = _moments(x, (1, 2, 3), count=h * w * active)
  which = jnp.clip(kind - 1, 0, 2)

  def pick(per_batch, per_image, per_layer):
    """The statistic of kind sw['norm'], broadcast to [N, 1, 1, C]."""
    shape = (n, 1, 1, c)
    return jax.lax.select_n(
        which,
        jnp.broadcast_to(per_batch.reshape(1, 1, 1, c), shape),
        jnp.broadcast_to(per_image.reshape(n, 1, 1, c), shape),
        jnp.broadcast_to(per_layer.reshape(n, 1, 1, 1), shape))

  mean = pick(batch_mean, inst_mean, layer_mean)
  var = pick(batch_var, inst_var, layer_var)
  epsilon = jnp.where(kind == 1, _BN_EPSILON, _LN_EPSILON)
  # The order of flax's _normalize: (x - mean) * (rsqrt(var + eps) * scale).
  y = x - mean
  mul = jax.lax.rsqrt(var + epsilon) * p['scale'].reshape(1, 1, 1, c)
  y = y * mul + p['bias'].reshape(1, 1, 1, c)
  y = jnp.where(kind == 0, x, y * mask)
  if train:
    stats = jax.tree.map(
        lambda old, batch: jnp.where(
            kind == 1, _BN_MOMENTUM * old + (1 - _BN_MOMENTUM) * batch, old),
        stats, {'mean': batch_mean, 'var': batch_var})
  return y, stats


def _upsample(sw, p, stats, x, mask, active, train: bool):
  """x2 upsampling by variant sw['up'], then norm and nonlinearity."""
  n, h, w, c = x.shape

  def interpolated(x):
    nearest = jax.image.resize(x, (n, 2 * h, 2 * w, c), 'nearest')
    bilinear = jax.image.resize(x, (n, 2 * h, 2 * w, c), 'bilinear')
    # Zero insertion + conv is the stride-2 transposed conv
    # (generator.TransposedConv2x).
    spread = jnp.pad(x[:, :, None, :, None, :],
                     ((0, 0), (0, 0), (0, 1), (0, 0), (0, 1), (0, 0)))
    spread = spread.reshape(n, 2 * h, 2 * w, c)
    resized = jax.lax.select_n(jnp.clip(sw['up'], 0, 2), nearest, bilinear,
                               spread)
    return _conv(resized, p['conv'], mask, bias=sw['conv_bias'])

  def shuffled(x):
    y = _conv(x, p['shuffle'], jnp.tile(mask, 4), bias=sw['conv_bias'])
    y = y.reshape(n, h, w, 2, 2, WIDTH)
    return y.transpose(0, 1, 3, 2, 4, 5).reshape(n, 2 * h, 2 * w, WIDTH)

  x = jax.lax.cond(sw['up'] == len(_UP_VARIANTS) - 1, shuffled, interpolated,
                   x)
  x, stats = _norm(sw, p['norm'], stats, x, mask, active, train)
  return _select(sw['act'], _ACTIVATIONS, x), stats


def _attention(sw, p, x, mask, squeeze_mask):
  """Squeeze-excitation (generator.SqueezeExcite) over the active channels."""
  s = jnp.mean(x, axis=(1, 2))
  s = s @ p['squeeze']['kernel'] + p['squeeze']['bias']
  s = _select(sw['act'], _ACTIVATIONS, s * squeeze_mask)
  s = nn.sigmoid(s @ p['excite']['kernel'] + p['excite']['bias'])
  return x * (s * mask)[:, None, None, :]


def _block(sw, p, stats, x, per_block, train: bool):
  """One block; p, stats and per_block hold this block's slices."""
  mask, active, squeeze_mask, project = per_block

  def layer(h, xs):
    conv, norm, norm_stats, j = xs

    def run(h):
      y = _conv(h, conv, mask, bias=sw['conv_bias'])
      y, new_stats = _norm(sw, norm, norm_stats, y, mask, active, train)
      return _select(sw['act'], _ACTIVATIONS, y), new_stats

    return jax.lax.cond(j < sw['layers'], run, lambda h: (h, norm_stats), h)

  h, norm_stats = jax.lax.scan(
      layer, x, (p['conv'], p['norm'], stats['norm'],
                 jnp.arange(arch_lib.MAX_LAYERS_PER_BLOCK)))
  h = jax.lax.cond(
      sw['attention'],
      lambda h: _attention(sw, p['attention'], h, mask, squeeze_mask),
      lambda h: h, h)
  shortcut = jax.lax.cond(project, lambda x: _conv(x, p['projection'], mask),
                          lambda x: x, x)
  return jnp.where(sw['skip'], h + shortcut, h), {'norm': norm_stats}


def _blocks(sw, params, stats, h, train: bool):
  """The blocks in turn; those past sw['blocks'] pass h through."""
  def body(h, xs):
    p, block_stats, per_block, b = xs
    return jax.lax.cond(
        b < sw['blocks'],
        lambda h: _block(sw, p, block_stats, h, per_block, train),
        lambda h: (h, block_stats), h)

  per_block = (sw['block_mask'], sw['block_width'], sw['squeeze_mask'],
               sw['project'])
  return jax.lax.scan(body, h, (params, stats, per_block,
                                jnp.arange(arch_lib.MAX_BLOCKS)))


def _stages(sw, params, stats, h, stages: int, train: bool):
  """Upsampling then block, per stage: unrolled, as each has its own size."""
  block_stats = stats['blocks']
  for i in range(stages):
    name = f'up_{i}'
    mask = sw['block_mask'][i]
    h, up_stats = _upsample(sw, params[name], stats[name]['norm'], h, mask,
                            sw['block_width'][i], train)
    stats[name] = {'norm': up_stats}
    at = functools.partial(jax.tree.map, lambda a: a[i])
    per_block = (mask, sw['block_width'][i], sw['squeeze_mask'][i],
                 sw['project'][i])
    h, new = _block(sw, at(params['blocks']), at(block_stats), h, per_block,
                    train)
    block_stats = jax.tree.map(lambda a, b: a.at[i].set(b), block_stats, new)
  stats['blocks'] = block_stats
  return h, stats


def apply(program: str, params, stats, sw, x, train: bool):
  """(images, stats): the generator described by `sw` applied to `x`."""
  act = functools.partial(_select, sw['act'], _ACTIVATIONS)
  stem_mask = sw['stem_mask']
  stem_width = jnp.sum(stem_mask)
  stats = dict(stats)
  h = act(_conv(x, params['stem'], stem_mask))
  if program == 'full_input':
    def strided(h):
      y = _conv(h, params['down_conv'], stem_mask, stride=2,
                bias=sw['conv_bias'])
      y, s = _norm(sw, params['down_norm'], stats['down_norm'], y, stem_mask,
                   stem_width, train)
      return act(y), s

    def pooled(h):
      return nn.avg_pool(h, (2, 2), strides=(2, 2)), stats['down_norm']

    h, stats['down_norm'] = jax.lax.cond(sw['down'] == 0, strided, pooled, h)
  stages = arch_lib.latent_stages(program)
  if stages:
    h, stats = _stages(sw, params, stats, h, stages, train)
  else:
    h, stats['blocks'] = _blocks(sw, params['blocks'], stats['blocks'], h,
                                 train)
    h, up_stats = _upsample(sw, params['upsample'],
                            stats['upsample']['norm'], h, sw['up_mask'],
                            jnp.sum(sw['up_mask']), train)
    stats['upsample'] = {'norm': up_stats}
  out = _conv(h, params['to_rgb'])
  return _select(sw['last'], _LAST, out), stats
