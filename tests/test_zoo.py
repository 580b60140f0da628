"""Tests of the built-in zoo: layout, ground truth, layer counts, caching."""

import collections
import functools
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import zoo as zoo_config
from jaxfp import zoo
from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import build as build_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import store

# Compiling flax's initialisers at full optimisation takes seconds on CPU.
_FAST_COMPILE = {'xla_backend_optimization_level': 0,
                 'xla_cpu_use_fusion_emitters': False}


def tiny_config(seed=1):
  config = zoo_config.get_config()
  config.num_generators = 4
  config.images_per_generator = 3
  config.image_size = 32
  config.train_steps = 2
  config.train_batch_size = 2
  config.seed = seed
  return config


@pytest.fixture(scope='module')
def cache_root(tmp_path_factory):
  return str(tmp_path_factory.mktemp('zoo_cache'))


@pytest.fixture(scope='module')
def tiny_zoo(cache_root):
  return zoo.cached(tiny_config(), cache_root)


def test_layout(tiny_zoo, cache_root):
  config = tiny_config()
  assert os.path.dirname(tiny_zoo) == cache_root
  assert os.path.basename(tiny_zoo).startswith('zoo-')
  # Nothing half-built is left beside the zoo.
  assert os.listdir(cache_root) == [os.path.basename(tiny_zoo)]
  assert sorted(os.listdir(tiny_zoo)) == [
      'ground_truth.csv', 'images', 'schema.json', 'zoo.json']
  names = ['gm_000', 'gm_001', 'gm_002', 'gm_003']
  assert sorted(os.listdir(os.path.join(tiny_zoo, 'images'))) == names
  for name in names:
    folder = os.path.join(tiny_zoo, 'images', name)
    assert sorted(os.listdir(folder)) == ['0000.png', '0001.png', '0002.png']
    for file in os.listdir(folder):
      with Image.open(os.path.join(folder, file)) as im:
        assert im.format == 'PNG'
        assert im.mode == 'RGB'
        assert im.size == (config.image_size, config.image_size)

  with open(os.path.join(tiny_zoo, 'zoo.json')) as f:
    meta = json.load(f)
  assert meta['config']['num_generators'] == 4
  assert list(meta['generators']) == names
  for entry in meta['generators'].values():
    assert {'architecture', 'task', 'loss', 'counts', 'labels',
            'training'} <= set(entry)
    assert all(np.isfinite(v) for v in entry['training']['final'].values())


def test_ground_truth_reads_back(tiny_zoo):
  gt = schema_lib.read_csv(tiny_zoo)
  assert gt.schema == schema_lib.ZOO
  assert gt.gm_names == ('gm_000', 'gm_001', 'gm_002', 'gm_003')
  with open(os.path.join(tiny_zoo, 'zoo.json')) as f:
    meta = json.load(f)
  raw = gt.denormalize(gt.continuous)
  for g, name in enumerate(gt.gm_names):
    counts = meta['generators'][name]['counts']
    expected = [counts[c] for c in schema_lib.ZOO.continuous]
    np.testing.assert_allclose(raw[g], expected, rtol=1e-5)
  assert ((gt.discrete >= 0).all()
          and (gt.discrete < np.array(gt.schema.num_classes)).all())
  fine_group = np.array(gt.schema.fine_to_coarse)
  for g in range(len(gt)):
    assert gt.coarse[g].sum() >= 1
    for k in range(len(gt.schema.coarse)):
      used = gt.fine[g][fine_group == k].sum()
      assert (used > 0) == bool(gt.coarse[g, k])
      assert used <= 2
    assert gt.fine[g][fine_group == 2].sum() == gt.coarse[g, 2]


def test_cache_hit_does_not_rebuild(tiny_zoo, cache_root):
  marker = os.path.join(tiny_zoo, 'zoo.json')
  before = os.stat(marker).st_mtime_ns
  start = time.perf_counter()
  again = zoo.cached(tiny_config(), cache_root)
  assert time.perf_counter() - start < 1.0
  assert again == tiny_zoo
  assert os.stat(marker).st_mtime_ns == before
  other = tiny_config()
  other.train_steps = 3
  assert store.cache_path(other, cache_root) != tiny_zoo


def test_same_seed_same_ground_truth(tiny_zoo, tmp_path):
  out = str(tmp_path / 'again')
  assert zoo.generate(tiny_config(), out) == out
  for file in ('ground_truth.csv', 'schema.json'):
    with open(os.path.join(tiny_zoo, file)) as a, open(
        os.path.join(out, file)) as b:
      assert a.read() == b.read()
  assert sorted(os.listdir(tmp_path)) == ['again']
  specs = build_lib.sample_specs(tiny_config(seed=1))
  assert specs == build_lib.sample_specs(tiny_config(seed=1))
  assert specs != build_lib.sample_specs(tiny_config(seed=2))


def test_generate_refuses_foreign_directory(tmp_path):
  (tmp_path / 'notes.txt').write_text('not a zoo')
  with pytest.raises(FileExistsError, match='not a zoo'):
    zoo.generate(tiny_config(), str(tmp_path))


@pytest.mark.parametrize('field,value', [
    ('image_size', 33), ('num_generators', 0), ('images_per_generator', -1),
    ('train_steps', 0), ('learning_rate', 0.0)])
def test_impossible_config_names_field(field, value, tmp_path):
  config = tiny_config()
  config[field] = value
  with pytest.raises(ValueError, match=f'{field}={value}'):
    zoo.generate(config, str(tmp_path / 'zoo'))
  assert not os.listdir(tmp_path)


def test_default_zoo_labels_are_balanced():
  specs = build_lib.sample_specs(zoo_config.get_config())
  assert len(specs) >= 40
  labels = collections.Counter()
  for spec in specs:
    for column, value in {**spec.architecture.labels(),
                          **spec.recipe.labels()}.items():
      labels[column, value] += 1
  for param in schema_lib.ZOO.discrete:
    counts = [labels[param.name, c] for c in param.classes]
    assert min(counts) >= len(specs) // (2 * param.num_classes), (param,
                                                                  counts)
  for fine in schema_lib.ZOO.fine:
    assert labels[fine, 1] >= len(specs) // 8, (fine, labels[fine, 1])


def _covering_architectures():
  """A few architectures that together use every variant of each choice."""
  variants = {
      'normalization': arch_lib.NORMALIZATIONS,
      'upsampling': tuple(arch_lib.UPSAMPLINGS),
      'downsampling': tuple(arch_lib.DOWNSAMPLINGS),
      'block_nonlinearity': arch_lib.NONLINEARITIES,
      'last_nonlinearity': arch_lib.LAST_NONLINEARITIES,
      'skip_connection': (True, False),
      'channel_attention': (False, True),
  }
  shapes = [((8,), 1), ((8, 16), 2), ((16, 12, 8), 3), ((8, 8, 16, 8), 1)]
  archs = []
  for i, (filters, layers) in enumerate(shapes):
    choice = {k: v[i % len(v)] for k, v in variants.items()}
    archs.append(arch_lib.Architecture(
        stem_filters=12, block_filters=filters, layers_per_block=layers,
        **choice))
  return archs


@pytest.mark.parametrize('arch', _covering_architectures(),
                         ids=lambda a: f'{a.normalization}-{a.upsampling}-'
                         f'{a.downsampling}')
def test_counts_match_built_network(arch):
  image_size = 32
  counts = generator_lib.layer_counts(arch, image_size)
  model = generator_lib.Generator(arch)
  size = generator_lib.input_size(arch, image_size)
  x = jnp.zeros((2, size, size, 3))
  init = jax.jit(functools.partial(model.init, train=False),
                 compiler_options=_FAST_COMPILE)
  variables = init(jax.random.key(0), x)
  params = variables['params']
  leaves = jax.tree_util.tree_leaves_with_path(params)
  kernels = [leaf for path, leaf in leaves if path[-1].key == 'kernel']
  conv_kernels = [k for k in kernels if k.ndim == 4]

  assert counts['num_parameters'] == sum(leaf.size for _, leaf in leaves)
  assert counts['num_conv_layers'] == len(conv_kernels)
  assert counts['num_fc_layers'] == sum(k.ndim == 2 for k in kernels)
  assert counts['num_filters'] == sum(k.shape[-1] for k in conv_kernels)
  # Every normalisation layer here has a learned scale; nothing else does.
  scales = sum(path[-1].key == 'scale' for path, _ in leaves)
  assert counts['num_norm_layers'] == scales
  assert counts['num_pooling_layers'] == int(arch.downsampling == 'avg_pool')
  assert counts['num_layers'] == (
      counts['num_conv_layers'] + counts['num_fc_layers']
      + counts['num_norm_layers'] + counts['num_pooling_layers'])
  assert counts['num_blocks'] == arch.num_blocks
  assert counts['layers_per_block'] == arch.layers_per_block
  # The same totals, from the layout documented in generator.py.
  widths = (arch.stem_filters,) + arch.block_filters
  projections = sum(arch.skip_connection and a != b
                    for a, b in zip(widths, widths[1:]))
  assert counts['num_conv_layers'] == (
      3 + (arch.downsampling == 'stride_conv')
      + arch.num_blocks * arch.layers_per_block + projections)
  assert counts['num_fc_layers'] == 2 * arch.num_blocks * int(
      arch.channel_attention)
  if arch.normalization == 'batch':
    assert 'batch_stats' in variables

  out = model.apply(variables, x, train=False)
  assert out.shape == (2, image_size, image_size, 3)
