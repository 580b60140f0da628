"""Variable initialisation on the host, and flat parameter vectors.

Flax's initialisers are JAX programs; compiling one per architecture took
seconds on CPU (threefry bits and truncated normals for every leaf), longer
than training. The same distributions drawn with numpy cost nothing.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

# Flax's lecun_normal draws a normal truncated to +-2 std, rescaled by this
# (the std of the truncated unit normal) so the variance is 1 / fan_in.
_TRUNCATED_STD = 0.87962566103423978


def _truncated_normal(rng: np.random.Generator, shape, std: float):
  z = rng.standard_normal(shape)
  bad = np.abs(z) > 2.0
  while bad.any():
    z[bad] = rng.standard_normal(int(bad.sum()))
    bad = np.abs(z) > 2.0
  return (z * (std / _TRUNCATED_STD)).astype(np.float32)


def init_variables(shapes, rng: np.random.Generator):
  """numpy variables for a tree of shapes (e.g. from `jax.eval_shape`).

  Leaves are filled by name as flax's defaults do: 'kernel' lecun-normal
  (fan-in = all but the last axis), 'bias' and running 'mean' zeros, 'scale'
  and running 'var' ones.
  """
  def fill(path, leaf):
    name = path[-1].key if hasattr(path[-1], 'key') else str(path[-1])
    shape = tuple(leaf.shape)
    if name == 'kernel':
      fan_in = int(np.prod(shape[:-1]))
      return _truncated_normal(rng, shape, (1.0 / fan_in) ** 0.5)
    if name in ('bias', 'mean'):
      return np.zeros(shape, np.float32)
    if name in ('scale', 'var'):
      return np.ones(shape, np.float32)
    raise ValueError('no host initialiser for variable '
                     f'{jax.tree_util.keystr(path)}')
  return jax.tree_util.tree_map_with_path(fill, shapes)


def flattener(tree) -> tuple[Callable, Callable]:
  """(ravel, unravel) between `tree`'s structure and one float32 vector.

  One vector makes the optimiser a handful of fused ops instead of several
  per leaf, which shortens XLA compiles.
  """
  leaves, treedef = jax.tree.flatten(tree)
  shapes = [tuple(leaf.shape) for leaf in leaves]
  sizes = [int(np.prod(s)) for s in shapes]
  offsets = np.cumsum([0] + sizes)

  def ravel(t):
    parts = [x.reshape(-1) for x in jax.tree.leaves(t)]
    if all(isinstance(p, np.ndarray) for p in parts):
      return np.concatenate(parts).astype(np.float32)
    return jnp.concatenate(parts)

  def unravel(flat):
    return treedef.unflatten([
        flat[offsets[i]:offsets[i + 1]].reshape(shapes[i])
        for i in range(len(shapes))])

  return ravel, unravel
