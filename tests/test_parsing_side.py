"""The PN's side features (spectra, colour statistics) and the continuous
loss choice."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from jaxfp import models
from jaxfp.core import schema as schema_lib
from jaxfp.core import spectrum as spectrum_lib
from jaxfp.losses import parsing as parsing_losses
from jaxfp.models import fields
from jaxfp.models import parsing_network


def test_continuous_losses_by_hand():
  predictions = jnp.array([[0.2, 0.9], [0.7, 0.1]])
  targets = jnp.array([[0.5, np.nan], [1.0, 0.0]])
  l1 = (0.3 + 0.3 + 0.1) / 3
  mse = (0.09 + 0.09 + 0.01) / 3
  assert float(parsing_losses.masked_mse(predictions, targets, kind='l1')) == (
      pytest.approx(l1, rel=1e-6))
  assert float(parsing_losses.masked_mse(predictions, targets)) == (
      pytest.approx(mse, rel=1e-6))
  with pytest.raises(ValueError, match='loss.continuous'):
    parsing_losses.masked_mse(predictions, targets, kind='huber')


def test_highpass_spectrum_is_the_spectrum_of_image_minus_blur():
  rng = np.random.default_rng(0)
  images = rng.random((2, 32, 32, 3)).astype(np.float32)
  ours = np.asarray(spectrum_lib.log_channel_spectrum(jnp.asarray(images),
                                                      1.0))
  # The same residual in pixel space: circular edges, a blur wide enough
  # that truncating the Gaussian changes nothing measurable.
  residual = images - ndimage.gaussian_filter(
      images, sigma=(0, 1.0, 1.0, 0), mode='wrap', truncate=8.0)
  theirs = np.log1p(np.abs(np.fft.fftshift(
      np.fft.fft2(residual, axes=(1, 2)), axes=(1, 2))).mean(axis=-1))
  # A sampled Gaussian vs its continuous transfer function: 0.4% apart.
  np.testing.assert_allclose(ours, theirs, rtol=5e-3, atol=1e-3)


def test_periodic_trace_peaks_where_its_frequency_is():
  # A period-4 pattern (what a stride-2, 2-fold upsampling twice leaves)
  # down the rows puts energy at 1/4 of the sampling rate: 8 rows from the
  # centre at size 32.
  x = np.cos(2 * np.pi * np.arange(32) / 4)[None, :, None, None] * np.ones(
      (1, 32, 32, 3))
  spectrum = np.asarray(spectrum_lib.log_channel_spectrum(jnp.asarray(x)))[0]
  assert np.unravel_index(spectrum.argmax(), spectrum.shape) in (
      (8, 16), (24, 16))


def test_lattice_energy_of_a_checkerboard_and_of_white_noise():
  # A checkerboard repeats every 2 pixels: all its power sits at the
  # Nyquist frequency, on the lattice of every even period.
  yy, xx = np.mgrid[:32, :32]
  board = np.broadcast_to(((yy + xx) % 2)[None, ..., None], (1, 32, 32, 3))
  share = np.asarray(spectrum_lib.lattice_energy(
      jnp.asarray(board, jnp.float32), (2, 4, 16), 1.0))[0]
  np.testing.assert_allclose(share, 1.0, rtol=1e-5)
  # White noise, no high-pass (sigma 0): each lattice gets its count of
  # frequencies, p^2 of 32^2.
  noise = np.random.default_rng(0).normal(size=(64, 32, 32, 3))
  share = np.asarray(spectrum_lib.lattice_energy(
      jnp.asarray(noise, jnp.float32), (2, 4, 8), 0.0)).mean(axis=0)
  np.testing.assert_allclose(share, [4 / 1024, 16 / 1024, 64 / 1024],
                             rtol=0.1)


def test_stage_statistics_count_upsampling_stages():
  # Nearest-neighbour upsampling x2 (pixel repetition) nulls the power on
  # the lattice of period 2; a second stage before it, that of period 4
  # too: the periods each stage empties give the number of stages.
  rng = np.random.default_rng(1)
  for stages in (1, 2, 3):
    x = rng.random((4, 64 >> stages, 64 >> stages, 3))
    x = x.repeat(2 ** stages, axis=1).repeat(2 ** stages, axis=2)
    energy, lattice = parsing_network.stage_statistics(
        jnp.asarray(x, jnp.float32), 16)
    assert energy.shape == (4, 5) and lattice.shape == (4, 16 * 16)
    share = np.exp(np.asarray(energy))
    assert share[:, :stages].max() < 1e-6, stages
    assert share[:, stages].min() > 1e-3, stages
  # An 80-pixel image: 32 does not divide it, so four periods are read.
  energy, _ = parsing_network.stage_statistics(jnp.ones((1, 80, 80, 3)), 16)
  assert energy.shape == (1, 4)


def test_radial_profile_of_a_constant_and_a_ring():
  constant = jnp.full((1, 16, 16), 3.0)
  np.testing.assert_allclose(spectrum_lib.radial_profile(constant), 3.0,
                             rtol=1e-5)
  yy, xx = np.mgrid[:16, :16] - 8
  ring = (np.sqrt(xx ** 2 + yy ** 2).astype(int) == 5).astype(np.float32)
  profile = np.asarray(spectrum_lib.radial_profile(jnp.asarray(ring[None])))[0]
  assert profile.argmax() == 5 and profile[5] == pytest.approx(1.0)
  assert np.delete(profile, 5).max() == 0.0


def test_colour_statistics_by_hand():
  unit = jnp.zeros((1, 2, 2, 3)).at[0, 0, 0].set(1.0)
  stats = np.asarray(parsing_network.colour_statistics(unit))[0]
  assert stats.shape == (3 * (4 + parsing_network.HIST_BINS),)
  np.testing.assert_allclose(stats[:3], 0.25)  # Mean.
  np.testing.assert_allclose(stats[3:6], np.sqrt(0.25 * 0.75), rtol=1e-6)
  np.testing.assert_allclose(stats[6:9], 0.75)  # Fraction at 0.
  np.testing.assert_allclose(stats[9:12], 0.25)  # Fraction at 255.
  hist = stats[12:].reshape(3, parsing_network.HIST_BINS)  # Per channel.
  np.testing.assert_allclose(hist[:, 0], 0.75)
  np.testing.assert_allclose(hist[:, -1], 0.25)
  np.testing.assert_allclose(hist.sum(axis=1), 1.0)


@pytest.mark.parametrize('options', [
    dict(spectrum='residual', colour_stats=True),
    dict(spectrum='fingerprint', pn_hidden=(8,)),
    dict(spectrum='residual', colour_stats=True, pn_channels=(),
         use_fen=False, pn_hidden=(16,)),
    dict(spectrum='residual', stage_stats=True, pn_channels=(),
         use_fen=False, pn_hidden=(16,)),
])
def test_parser_with_side_features(options):
  options = {'pn_channels': (4, 4, 8, 8, 8), **options}
  model = models.FingerprintParser(schema_lib.ZOO, fen_depth=3, fen_width=4,
                                   **options)
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = model.init(jax.random.key(1), images, train=False)
  out, _ = model.apply(variables, images, train=True, mutable=['batch_stats'],
                       rngs={'dropout': jax.random.key(2)})
  assert out['continuous'].shape == (2, len(schema_lib.ZOO.continuous))
  assert all(np.isfinite(np.asarray(d)).all() for d in out['discrete'])
  assert 'side' in variables['batch_stats']
  # The fields a checkpoint's meta records rebuild the same network.
  rebuilt = fields.parser(schema_lib.ZOO, fields.fields_of(model))
  assert rebuilt == model


def test_fingerprint_spectrum_trains_the_fen():
  model = models.FingerprintParser(schema_lib.ZOO, fen_depth=3, fen_width=4,
                                   pn_channels=(), spectrum='fingerprint',
                                   pn_hidden=(8,), dropout_rate=0.0)
  images = jax.random.normal(jax.random.key(0), (2, 16, 16, 3))
  variables = model.init(jax.random.key(1), images, train=False)

  def loss(params):
    out = model.apply({**variables, 'params': params}, images, train=False)
    return jnp.sum(out['continuous'])
  grads = jax.grad(loss)(variables['params'])
  assert float(jnp.abs(grads['fen']['conv_0']['kernel']).sum()) > 0


def test_a_trunkless_pn_needs_side_features():
  model = models.FingerprintParser(schema_lib.ZOO, fen_depth=3, fen_width=4,
                                   pn_channels=())
  with pytest.raises(ValueError, match='side features'):
    model.init(jax.random.key(1), jnp.zeros((1, 16, 16, 3)), train=False)


def test_an_ensemble_of_pns_is_the_mean_of_its_members():
  model = models.FingerprintParser(schema_lib.ZOO, use_fen=False,
                                   pn_channels=(), spectrum='residual',
                                   colour_stats=True, pn_hidden=(8,),
                                   dropout_rate=0.0, pn_members=3)
  images = jax.random.normal(jax.random.key(0), (2, 32, 32, 3))
  variables = model.init(jax.random.key(1), images, train=False)
  assert {'pn_0', 'pn_1', 'pn_2'} <= set(variables['params'])
  out, _ = model.apply(variables, images, train=True, mutable=['batch_stats'])
  members = out['members']
  assert members['continuous'].shape == (3, 2, len(schema_lib.ZOO.continuous))
  np.testing.assert_allclose(out['continuous'], members['continuous'].mean(0),
                             rtol=1e-6)
  np.testing.assert_allclose(out['fine'], members['fine'].mean(0), rtol=1e-6)
  # Each member starts from its own initialisation.
  assert not np.allclose(members['continuous'][0], members['continuous'][1])
  assert 'members' not in model.apply(variables, images, train=False)
  assert fields.parser(schema_lib.ZOO, fields.fields_of(model)) == model


def test_an_ensemble_trains_each_member_on_its_own_loss():
  import ml_collections
  from jaxfp.tasks import common
  from jaxfp.tasks import parsing as parsing_task
  schema = schema_lib.ZOO
  n = 4
  rng = np.random.default_rng(0)
  def outputs():
    return {'continuous': rng.normal(size=(n, len(schema.continuous))),
            'discrete': tuple(rng.normal(size=(n, p.num_classes))
                              for p in schema.discrete),
            'coarse': rng.normal(size=(n, len(schema.coarse), 2)),
            'fine': rng.normal(size=(n, len(schema.fine), 2))}
  first, second = outputs(), outputs()
  labels = {'continuous': rng.uniform(size=(n, len(schema.continuous))),
            'discrete': np.stack([rng.integers(0, p.num_classes, n)
                                  for p in schema.discrete], axis=1),
            'coarse': rng.integers(0, 2, (n, len(schema.coarse))),
            'fine': rng.integers(0, 2, (n, len(schema.fine)))}
  task = parsing_task.ParsingTask.__new__(parsing_task.ParsingTask)
  task.config = ml_collections.ConfigDict({'loss': {
      'head_weight': 10.0, 'hierarchical': True,
      'published_sigmoid_ce': False, 'continuous': 'l1'}})
  task.class_weights, task.schema = None, schema
  stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), first, second)

  def loss(outputs):
    return task._parsing_loss(outputs, labels)[0]
  on_device = lambda f, x: jax.pmap(f, axis_name=common.AXIS)(
      jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], x))[0]
  ensemble = on_device(loss, {**first, 'members': stacked})
  each = [on_device(loss, o) for o in (first, second)]
  assert float(ensemble) == pytest.approx(float(np.mean(each)), rel=1e-5)
