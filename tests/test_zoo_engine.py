"""Tests of the zoo's shared programs against each architecture's own module.

A shared program (`supernet` + `programs.shared`) must compute, and train, the
generator that `generator.build(arch)` describes: the zoo's labels are read
off that module, its images come from the shared program.
"""

import jax
import numpy as np
import pytest

from configs import zoo as zoo_config
from jaxfp import zoo
from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import build as build_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import host_init
from jaxfp.zoo import photos as photos_lib
from jaxfp.zoo import probe as probe_lib
from jaxfp.zoo import supernet
from jaxfp.zoo import programs as programs_lib

import zoo_cases

_FAST = programs_lib.compiler_options(0)


def _forward_cases():
  """Per program at least one architecture, every value of every choice."""
  families = ('image_to_image',) * 3 + ('gan', 'gan', 'vae', 'vae')
  downs = ('none', 'stride_conv', 'avg_pool') + ('none',) * 4
  shapes = [(12, (8,), 1), (8, (8, 16), 2), (24, (16, 12, 8), 3),
            (32, (8, 8, 16, 32), 1), (16, (24, 24), 2), (8, (32, 16, 8), 3),
            (12, (12, 24), 2)]
  cases = []
  for i, (family, down, (stem, filters, layers)) in enumerate(
      zip(families, downs, shapes)):
    cases.append(arch_lib.Architecture(
        stem_filters=stem, block_filters=filters, layers_per_block=layers,
        normalization=arch_lib.NORMALIZATIONS[i % 4],
        block_nonlinearity=arch_lib.NONLINEARITIES[(i + 1) % 4],
        last_nonlinearity=arch_lib.LAST_NONLINEARITIES[(i + 2) % 4],
        upsampling=tuple(arch_lib.UPSAMPLINGS)[(i + 3) % 4],
        downsampling=down, skip_connection=bool(i % 2),
        channel_attention=bool((i // 2) % 2), family=family))
  return cases


@pytest.mark.parametrize('arch', _forward_cases(), ids=zoo_cases.arch_id)
def test_shared_program_computes_the_module(arch):
  """Same variables, same input: same images and running statistics."""
  rng = np.random.default_rng(0)
  _, shapes = generator_lib.inspect(arch, 32)
  variables = host_init.init_variables(shapes, rng)
  # Non-trivial statistics and biases, so that a slot mix-up shows.
  variables = jax.tree.map(
      lambda v: v + 0.1 * rng.standard_normal(v.shape).astype(np.float32)
      if v.ndim == 1 else v, variables)
  variables = jax.tree_util.tree_map_with_path(
      lambda p, v: np.abs(v) + 0.5 if p[-1].key == 'var' else v, variables)
  params, stats = supernet.embed(arch, variables)
  x = rng.standard_normal((3,) + arch_lib.input_shape(arch, 32)).astype(
      np.float32)
  model = generator_lib.build(arch)

  def both(variables, params, stats, sw, x):
    ref_train, ref_stats = model.apply(variables, x, train=True,
                                       mutable=['batch_stats'])
    ref_eval = model.apply(variables, x, train=False)
    out_train, out_stats = supernet.apply(arch.program, params, stats, sw, x,
                                          True)
    out_eval, _ = supernet.apply(arch.program, params, stats, sw, x, False)
    return ref_train, ref_eval, dict(ref_stats), out_train, out_eval, \
        out_stats

  sw = supernet.switches(arch)
  args = (variables, params, stats, sw, x)
  ref_train, ref_eval, ref_stats, out_train, out_eval, out_stats = (
      jax.jit(both).lower(*args).compile(_FAST)(*args))
  np.testing.assert_allclose(out_train, ref_train, rtol=0, atol=2e-5)
  np.testing.assert_allclose(out_eval, ref_eval, rtol=0, atol=2e-5)
  if arch.normalization == 'batch':
    # The module's new statistics sit in the same slots of the program's
    # (padded channels hold whatever they like).
    _, expected = supernet.embed(arch, {
        'params': variables['params'],
        'batch_stats': ref_stats['batch_stats']})
    _, held = supernet.embed(arch, {
        'params': variables['params'],
        'batch_stats': jax.tree.map(lambda v: np.full(v.shape, np.nan),
                                    ref_stats['batch_stats'])})
    for a, b, h in zip(jax.tree.leaves(out_stats), jax.tree.leaves(expected),
                       jax.tree.leaves(held)):
      h = np.isnan(h)
      np.testing.assert_allclose(np.asarray(a)[h], np.asarray(b)[h],
                                 rtol=1e-5, atol=1e-6)


def test_embedding_keeps_every_parameter():
  """Each variable of a module lands in a slot: the program holds exactly
  num_parameters non-zero parameters when the module's are all non-zero."""
  for arch in zoo_cases.covering_architectures():
    counts, shapes = generator_lib.inspect(arch, 32)
    ones = jax.tree.map(lambda s: np.ones(s.shape, np.float32), shapes)
    params, _ = supernet.embed(arch, ones)
    held = sum(int(np.count_nonzero(p)) for p in jax.tree.leaves(params))
    assert held == counts['num_parameters'], arch


def test_switches_share_one_program():
  """Every architecture's switches have the same shapes and dtypes."""
  specs = [(jax.tree.map(lambda a: (np.shape(a), np.asarray(a).dtype),
                         supernet.switches(a)))
           for a in zoo_cases.covering_architectures()]
  assert all(s == specs[0] for s in specs)


def _engine_config():
  config = zoo_config.get_config()
  config.num_generators = 12
  config.images_per_generator = 4
  config.image_size = 32
  config.train_crop_size = 16
  config.train_steps = 3
  config.train_batch_size = 2
  config.seed = 3
  return config


def test_shared_build_matches_building_alone():
  """A GM trained by its shared program and by a program compiled for it
  alone: uint8 images within 1 on >= 99.9% of pixels, losses within 1e-4.

  A few steps only: Adam amplifies float rounding in a few chaotic nets
  (one in twelve drifted visibly after ten steps).
  """
  config = _engine_config()
  specs = build_lib.sample_specs(config)
  # One GM of each program; among them a GAN and a VAE (the latent
  # programs' two paths), each compiled alone costs a compile.
  chosen, programs_seen = [], set()
  for i, spec in enumerate(specs):
    if spec.architecture.program not in programs_seen:
      programs_seen.add(spec.architecture.program)
      chosen.append(i)
  for family in arch_lib.NOISE_FAMILIES:
    if all(specs[i].architecture.family != family for i in chosen):
      chosen.append(next(i for i, s in enumerate(specs)
                          if s.architecture.family == family))
  assert programs_seen == set(supernet.PROGRAMS)
  assert {'gan', 'vae'} <= {specs[i].architecture.family for i in chosen}
  photos = photos_lib.load_photos(config.image_size)
  programs = {k: programs_lib.shared(k, build_lib.sizes(config),
                                  config.learning_rate, _FAST)
              for k in supernet.PROGRAMS}
  for i in chosen:
    spec = specs[i]
    shared, counts, shared_log = build_lib.train_gm(
        config, i, spec, photos, programs[spec.architecture.program])
    alone, alone_counts, alone_log = build_lib.train_gm(config, i, spec,
                                                        photos)
    assert counts == alone_counts
    assert shared.shape == (config.images_per_generator, 32, 32, 3)
    close = np.abs(shared.astype(int) - alone.astype(int)) <= 1
    assert close.mean() >= 0.999, (spec.name, close.mean())
    for name in alone_log:
      np.testing.assert_allclose(shared_log[name], alone_log[name],
                                 rtol=1e-4, atol=1e-6, err_msg=name)
    # Training moved the generator: the test compares two trained nets.
    assert np.ptp(alone_log['total']) > 0


def test_trace_probe():
  def entry(family, term_on, early, late):
    labels = {t: 0 for t in programs_lib.METRICS}
    labels.update({term_on: 1, 'family': family})
    return {'labels': labels, 'training': {
        'early': {t: early for t in programs_lib.METRICS},
        'late': {t: late for t in programs_lib.METRICS}}}
  entries = {'a': entry('vae', 'pixel_l1', 1.0, 0.5),
             'b': entry('vae', 'gradient', 1.0, 0.25),
             'c': entry('gan', 'spectral', 2.0, 0.0)}
  probe = probe_lib.trace_probe(entries)
  assert probe['vae']['pixel_l1'] == {
      'on': round(np.log(0.5), 4), 'n_on': 1,
      'off': round(np.log(0.25), 4), 'n_off': 1}
  # A term that reached 0 has no log ratio: left out, not -inf.
  assert probe['gan']['spectral'] == {'on': None, 'n_on': 0, 'off': None,
                                      'n_off': 0}
  assert len(probe_lib.describe(probe)) == 2


def test_planned_counts_are_the_built_counts():
  rng = np.random.default_rng(7)
  families = arch_lib.deal(rng, arch_lib.FAMILIES, 30)
  for arch in arch_lib.sample_architectures(rng, families):
    assert arch_lib.planned_counts(arch) == generator_lib.layer_counts(
        arch, 64), arch
