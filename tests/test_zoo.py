"""Tests of the built-in zoo: layout, ground truth, layer counts, caching.

The shared programs that train the zoo are tested in test_zoo_engine.py.
"""

import collections
import functools
import json
import os
import re
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

import zoo_cases

def tiny_config(seed=1):
  config = zoo_config.get_config()
  config.num_generators = 4  # Every family.
  config.images_per_generator = 3
  config.image_size = 32
  config.train_steps = 2
  config.train_batch_size = 2
  config.train_crop_size = 16
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
  families = set()
  for entry in meta['generators'].values():
    assert {'architecture', 'task', 'loss', 'counts', 'labels',
            'training'} <= set(entry)
    assert all(np.isfinite(v) for v in entry['training']['late'].values())
    families.add(entry['labels']['family'])
  assert families == set(arch_lib.FAMILIES)
  assert set(meta['probe']) == families


def test_ground_truth_reads_back(tiny_zoo):
  gt = schema_lib.read_csv(tiny_zoo)
  assert gt.schema == schema_lib.ZOO
  assert gt.gm_names == ('gm_000', 'gm_001', 'gm_002', 'gm_003')
  with open(os.path.join(tiny_zoo, 'zoo.json')) as f:
    meta = json.load(f)
  raw = gt.denormalize(gt.continuous)
  for g, name in enumerate(gt.gm_names):
    # The labels are the counts of the network rebuilt from zoo.json.
    arch = arch_lib.Architecture.from_dict(
        meta['generators'][name]['architecture'])
    counts = generator_lib.layer_counts(arch, tiny_config().image_size)
    assert counts == meta['generators'][name]['counts']
    expected = [counts[c] for c in schema_lib.ZOO.continuous]
    np.testing.assert_allclose(raw[g], expected, rtol=1e-5)
    labels = arch.labels()
    for p, column in enumerate(schema_lib.ZOO.discrete):
      assert column.classes[gt.discrete[g, p]] == labels[column.name]
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
    # KL (group 'latent') exactly for VAEs; GANs are always adversarial.
    family = gt.schema.discrete[-1].classes[gt.discrete[g, -1]]
    assert gt.coarse[g, 3] == (family == 'vae')
    if family == 'gan':
      assert gt.coarse[g, 2] == 1 and gt.coarse[g, 0] == 0


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


def test_same_seed_same_zoo(tiny_zoo, tmp_path):
  out = str(tmp_path / 'again')
  assert zoo.generate(tiny_config(), out) == out
  for file in ('ground_truth.csv', 'schema.json'):
    with open(os.path.join(tiny_zoo, file)) as a, open(
        os.path.join(out, file)) as b:
      assert a.read() == b.read()
  # Same machine, same images, whichever worker thread took which GM.
  for gm in os.listdir(os.path.join(out, 'images')):
    for file in os.listdir(os.path.join(out, 'images', gm)):
      with Image.open(os.path.join(out, 'images', gm, file)) as a, \
          Image.open(os.path.join(tiny_zoo, 'images', gm, file)) as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
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
    ('train_steps', 0), ('learning_rate', 0.0), ('train_crop_size', 12),
    ('families', ('image_to_image', 'dragon'))])
def test_impossible_config_names_field(field, value, tmp_path):
  config = tiny_config()
  config[field] = value
  with pytest.raises(ValueError, match=re.escape(f'{field}={value}')):
    zoo.generate(config, str(tmp_path / 'zoo'))
  assert not os.listdir(tmp_path)


def test_default_zoo_labels_are_balanced():
  specs = build_lib.sample_specs(zoo_config.get_config())
  assert len(specs) >= 400
  labels = collections.Counter()
  image_to_image = collections.Counter()
  for spec in specs:
    row = {**spec.architecture.labels(), **spec.recipe.labels()}
    for column, value in row.items():
      labels[column, value] += 1
    if row['family'] == 'image_to_image':
      image_to_image[row['downsampling']] += 1
  for param in schema_lib.ZOO.discrete:
    counts = [labels[param.name, c] for c in param.classes]
    if param.name == 'downsampling':
      # Noise-to-image nets never downsample; 2 in 3 image-to-image nets do.
      assert image_to_image['yes'] >= 2 * image_to_image['no'] - 2
      assert labels[param.name, 'yes'] == image_to_image['yes']
      continue
    assert min(counts) >= len(specs) // (2 * param.num_classes), (param,
                                                                  counts)
  families = [labels['family', f] for f in arch_lib.FAMILIES]
  assert max(families) - min(families) <= 1
  for fine in schema_lib.ZOO.fine:
    assert labels[fine, 1] >= len(specs) // 8, (fine, labels[fine, 1])


def test_default_zoo_architectures_are_distinct():
  """No two GMs share every architecture column (counts and classes)."""
  specs = build_lib.sample_specs(zoo_config.get_config())
  keys = [arch_lib.columns_key(s.architecture) for s in specs]
  assert len(set(keys)) == len(keys)
  # The planned counts are the counts read off the built networks (the build
  # checks every GM; here a sample of each family).
  for spec in specs[:12]:
    assert (arch_lib.planned_counts(spec.architecture)
            == generator_lib.layer_counts(spec.architecture, 64))


@pytest.mark.parametrize('arch', zoo_cases.covering_architectures(),
                         ids=zoo_cases.arch_id)
def test_counts_match_built_network(arch):
  image_size = 32
  counts = generator_lib.layer_counts(arch, image_size)
  assert counts == arch_lib.planned_counts(arch)
  model = generator_lib.build(arch)
  x = jnp.zeros((2,) + arch_lib.input_shape(arch, image_size))
  # Shapes suffice to count; a fresh trace, independent of layer_counts'.
  variables = jax.eval_shape(functools.partial(model.init, train=False),
                             jax.random.key(0), x)
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
  # A noise-to-image block reads its stage's upsampling, at its own width.
  projections = 0 if arch.noise_input else sum(
      arch.skip_connection and a != b for a, b in zip(widths, widths[1:]))
  upsamplings = arch.num_blocks if arch.noise_input else 1
  assert counts['num_conv_layers'] == (
      2 + upsamplings + (arch.downsampling == 'stride_conv')
      + arch.num_blocks * arch.layers_per_block + projections)
  assert counts['num_fc_layers'] == 2 * arch.num_blocks * int(
      arch.channel_attention)
  assert counts['num_norm_layers'] == (arch.normalization != 'none') * (
      upsamplings + (arch.downsampling == 'stride_conv')
      + arch.num_blocks * arch.layers_per_block)
  if arch.normalization == 'batch':
    assert 'batch_stats' in variables

  out = jax.eval_shape(functools.partial(model.apply, train=False),
                       variables, x)
  assert out.shape == (2, image_size, image_size, 3)
