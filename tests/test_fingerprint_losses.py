"""Analytic tests of the spectrum maths (jaxfp.core.spectrum) and the
fingerprint constraints (jaxfp.losses.fingerprint)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import common
from jaxfp.core import spectrum
from jaxfp.losses import fingerprint as fp

PARSING_WEIGHTS = common.PUBLISHED_FINGERPRINT_WEIGHTS['parsing']


def _rgb_from_gray(gray):
  """[N, H, W] -> [N, H, W, 3] with R = G = B (so gray(f) = gray)."""
  return np.repeat(np.asarray(gray, np.float32)[..., None], 3, axis=-1)


def _cosine(h, w, k, amplitude=1.0):
  """amplitude * cos(2 pi k x / W) along the width axis, [H, W]."""
  x = np.arange(w)
  return np.broadcast_to(amplitude * np.cos(2 * np.pi * k * x / w), (h, w))


# ------------------------------------------------------------- gray, FFT --

def test_gray_weights():
  f = np.zeros((1, 2, 2, 3), np.float32)
  f[0, 0, 0] = (1, 0, 0)
  f[0, 0, 1] = (0, 1, 0)
  f[0, 1, 0] = (0, 0, 1)
  f[0, 1, 1] = (1, 2, 3)
  np.testing.assert_allclose(
      spectrum.to_gray(jnp.asarray(f))[0],
      [[0.299, 0.587], [0.114, 0.299 + 2 * 0.587 + 3 * 0.114]], rtol=1e-6)


def test_to_gray_needs_three_channels():
  with pytest.raises(ValueError, match='3 channels'):
    spectrum.to_gray(jnp.zeros((1, 4, 4, 1)))


@pytest.mark.parametrize('h,w', [(5, 6), (6, 5), (7, 7), (8, 8), (4, 9)])
def test_zero_frequency_at_centre_odd_and_even(h, w):
  # A constant image has only a DC component, H*W*value, which fftshift puts
  # at (H//2, W//2) for odd and even sizes alike.
  f = np.full((1, h, w, 3), (1.0, 2.0, 3.0), np.float32)
  s = np.asarray(spectrum.magnitude_spectrum(jnp.asarray(f)))[0]
  expected = np.zeros((h, w))
  expected[h // 2, w // 2] = h * w * 1.815
  np.testing.assert_allclose(s, expected, atol=1e-4)


def test_spectrum_matches_numpy():
  f = np.random.default_rng(0).normal(size=(2, 9, 12, 3)).astype(np.float32)
  gray = f @ np.array(spectrum.GRAY_WEIGHTS, np.float64)
  expected = np.abs(np.fft.fftshift(np.fft.fft2(gray), axes=(-2, -1)))
  np.testing.assert_allclose(spectrum.magnitude_spectrum(jnp.asarray(f)), expected,
                             rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('h,w,k', [(32, 32, 7), (24, 40, 11), (33, 31, 5)])
def test_planted_cosine_gives_peak_of_known_height(h, w, k):
  amplitude = 0.5
  f = _rgb_from_gray(_cosine(h, w, k, amplitude)[None])
  s = np.asarray(spectrum.magnitude_spectrum(jnp.asarray(f)))[0]
  peak = amplitude * h * w / 2
  expected = np.zeros((h, w))
  expected[h // 2, w // 2 + k] = peak
  expected[h // 2, w // 2 - k] = peak
  np.testing.assert_allclose(s, expected, atol=1e-3 * peak)
  # Outside the low window (radius < k) the peak is the max.
  np.testing.assert_allclose(
      fp.repetitive_loss(jnp.asarray(s[None]), radius=k - 1), -peak,
      rtol=1e-5)
  # Inside it (radius >= k) the peak leaves the max and enters the
  # low-frequency energy: two bins of `peak` in a (2r+1)^2 window.
  r = k
  np.testing.assert_allclose(
      fp.repetitive_loss(jnp.asarray(s[None]), radius=r), 0.0,
      atol=1e-3 * peak)
  np.testing.assert_allclose(
      fp.spectrum_loss(jnp.asarray(s[None]), radius=r),
      2 * peak**2 / (2 * r + 1)**2, rtol=1e-5)


def test_low_frequency_window_shape_centre_and_errors():
  f = np.full((2, 10, 11, 3), 1.0, np.float32)
  s = spectrum.magnitude_spectrum(jnp.asarray(f))
  window = np.asarray(spectrum.low_frequency_window(s, 2))
  assert window.shape == (2, 5, 5)
  expected = np.zeros((5, 5))
  expected[2, 2] = 110.0
  np.testing.assert_allclose(window[1], expected, atol=1e-4)
  # Centre 5 of height 10: radius 4 fits (1..9), 5 does not (0..10).
  assert spectrum.low_frequency_window(s, 4).shape == (2, 9, 9)
  with pytest.raises(ValueError, match='does not fit'):
    spectrum.low_frequency_window(s, 5)
  with pytest.raises(ValueError, match='>= 0'):
    spectrum.low_frequency_window(s, -1)
  with pytest.raises(ValueError, match='does not fit'):
    fp.repetitive_loss(s, radius=25)  # the published radius needs >= 51


# ------------------------------------------------------------ the terms --

def test_magnitude_loss_of_constant_image():
  f = np.full((3, 4, 5, 3), (1.0, 2.0, 3.0), np.float32)
  # gray = 0.299 + 2 * 0.587 + 3 * 0.114 = 1.815 everywhere.
  np.testing.assert_allclose(fp.magnitude_loss(jnp.asarray(f)), 1.815**2,
                             rtol=1e-6)


@pytest.mark.parametrize('r', [0, 3, 7])
def test_spectrum_loss_of_constant_image_is_the_dc_bin(r):
  h = w = 16
  c = 0.25
  f = np.full((2, h, w, 3), c, np.float32)
  s = spectrum.magnitude_spectrum(jnp.asarray(f))
  np.testing.assert_allclose(fp.spectrum_loss(s, r),
                             (h * w * c)**2 / (2 * r + 1)**2, rtol=1e-5)


def test_symmetry_zero_for_transpose_symmetric_image():
  m = np.random.default_rng(1).normal(size=(2, 16, 16))
  gray = m + np.swapaxes(m, -1, -2)
  s = spectrum.magnitude_spectrum(jnp.asarray(_rgb_from_gray(gray)))
  assert float(fp.symmetry_loss(s)) < 1e-8 * float(jnp.mean(s**2))


def test_symmetry_of_one_dimensional_cosine_by_hand():
  # S has peaks n^2/2 at (c, c +- k); S^T at (c +- k, c). S - S^T is +-n^2/2
  # at four bins and 0 elsewhere: mean = 4 (n^2/2)^2 / n^2 = n^2.
  n, k = 16, 3
  s = spectrum.magnitude_spectrum(
      jnp.asarray(_rgb_from_gray(_cosine(n, n, k)[None])))
  np.testing.assert_allclose(fp.symmetry_loss(s), n**2, rtol=1e-5)


def test_symmetry_needs_square_spectrum():
  with pytest.raises(ValueError, match='square'):
    fp.symmetry_loss(jnp.zeros((1, 4, 6)))


def test_batch_global_max_against_per_image_max():
  n, r = 32, 3
  gray = np.stack([_cosine(n, n, 5, 1.0), _cosine(n, n, 6, 3.0)])
  s = spectrum.magnitude_spectrum(jnp.asarray(_rgb_from_gray(gray)))
  m1, m2 = n * n / 2, 3 * n * n / 2
  np.testing.assert_allclose(fp.repetitive_loss(s, r, batch_global=True),
                             -max(m1, m2), rtol=1e-5)
  np.testing.assert_allclose(fp.repetitive_loss(s, r, batch_global=False),
                             -(m1 + m2) / 2, rtol=1e-5)


# ---------------------------------------------------- fingerprint_losses --

def test_fingerprint_losses_total_is_weighted_sum_and_weight_zero_works():
  f = jnp.asarray(
      np.random.default_rng(2).normal(size=(2, 16, 16, 3)).astype(np.float32))
  total, terms = fp.fingerprint_losses(f, PARSING_WEIGHTS, low_freq_radius=4)
  assert set(terms) == set(fp.LOSS_NAMES)
  assert all(t.shape == () for t in terms.values())
  expected = sum(PARSING_WEIGHTS[k] * float(terms[k]) for k in fp.LOSS_NAMES)
  np.testing.assert_allclose(total, expected, rtol=1e-5)
  s = spectrum.magnitude_spectrum(f)
  np.testing.assert_allclose(terms['symmetry'], fp.symmetry_loss(s),
                             rtol=1e-6)
  np.testing.assert_allclose(terms['repetitive'], fp.repetitive_loss(s, 4),
                             rtol=1e-6)
  ablated = dict(PARSING_WEIGHTS, symmetry=0.0)
  total0, terms0 = fp.fingerprint_losses(f, ablated, low_freq_radius=4)
  np.testing.assert_allclose(
      total0, expected - float(terms['symmetry']), rtol=1e-5)
  assert float(terms0['symmetry']) > 0  # still reported
  zero, _ = fp.fingerprint_losses(f, dict.fromkeys(fp.LOSS_NAMES, 0.0),
                                  low_freq_radius=4)
  assert float(zero) == 0.0
  # A precomputed spectrum gives the same result.
  total_s, _ = fp.fingerprint_losses(f, PARSING_WEIGHTS, low_freq_radius=4,
                                     spectrum=s)
  np.testing.assert_allclose(total_s, total, rtol=1e-6)


def test_fingerprint_losses_rejects_bad_weight_keys():
  f = jnp.zeros((1, 8, 8, 3))
  with pytest.raises(ValueError, match='missing'):
    fp.fingerprint_losses(f, {'magnitude': 1.0}, low_freq_radius=2)
  with pytest.raises(ValueError, match='symetry'):
    fp.fingerprint_losses(f, dict(PARSING_WEIGHTS, symetry=1.0),
                          low_freq_radius=2)


@functools.partial(jax.jit, static_argnames='batch_global')
def _total_grad(f, batch_global):
  return jax.grad(lambda x: fp.fingerprint_losses(
      x, PARSING_WEIGHTS, low_freq_radius=3,
      batch_global_max=batch_global)[0])(f)


@pytest.mark.parametrize('kind', ['random', 'constant', 'zeros', 'cosine'])
def test_gradients_finite(kind):
  n = 16
  if kind == 'random':
    f = np.random.default_rng(3).normal(size=(2, n, n, 3))
  elif kind == 'constant':
    f = np.full((2, n, n, 3), 0.5)
  elif kind == 'zeros':
    f = np.zeros((2, n, n, 3))
  else:
    f = _rgb_from_gray(np.stack([_cosine(n, n, 5)] * 2))
  f = jnp.asarray(f, jnp.float32)
  for batch_global in (True, False):
    grad = _total_grad(f, batch_global)
    assert np.all(np.isfinite(np.asarray(grad)))
    if kind != 'zeros':  # at F = 0 every term's gradient is 0 (|z|'(0) = 0).
      assert np.any(np.asarray(grad) != 0)


def test_bfloat16_input_gives_float32_spectrum_and_terms():
  f = jnp.asarray(
      np.random.default_rng(4).normal(size=(2, 16, 16, 3)), jnp.bfloat16)
  s = spectrum.magnitude_spectrum(f)
  assert s.dtype == jnp.float32
  total, terms = fp.fingerprint_losses(f, PARSING_WEIGHTS, low_freq_radius=3)
  assert total.dtype == jnp.float32
  assert all(t.dtype == jnp.float32 for t in terms.values())
  # Same as upcasting first: the FFT ran in float32, not bfloat16.
  np.testing.assert_allclose(s, spectrum.magnitude_spectrum(f.astype(jnp.float32)),
                             rtol=1e-6, atol=1e-6)


def test_jit():
  f = jnp.asarray(
      np.random.default_rng(5).normal(size=(2, 16, 16, 3)).astype(np.float32))
  run = jax.jit(lambda x, w: fp.fingerprint_losses(x, w, low_freq_radius=3))
  total, _ = run(f, PARSING_WEIGHTS)
  np.testing.assert_allclose(
      total, fp.fingerprint_losses(f, PARSING_WEIGHTS, low_freq_radius=3)[0],
      rtol=1e-5)


# ------------------------------------------------------------- 4 devices --

def _pmap_setup():
  devices = jax.local_device_count()
  if devices < 4:
    pytest.skip('needs 4 devices (tests/conftest.py sets XLA_FLAGS)')
  rng = np.random.default_rng(6)
  x = rng.normal(size=(8, 16, 16, 3)).astype(np.float32)
  # Plant the batch's strongest high-frequency peak on the third device, so
  # the global max is not on device 0.
  x[5] += _rgb_from_gray(_cosine(16, 16, 6, 4.0)[None])[0]
  params = {'scale': jnp.asarray([1.0, 0.7, 1.3]),
            'bias': jnp.asarray([0.1, -0.2, 0.05])}
  return jnp.asarray(x), params


# Only the batch-global max: its gradient is the one the collective fixes
# (with the published weights the other terms dominate the gradient).
REPETITIVE_ONLY = dict(dict.fromkeys(fp.LOSS_NAMES, 0.0), repetitive=1.0)


def _model_loss(params, x, weights, axis_name=None):
  f = x * params['scale'] + params['bias']
  return fp.fingerprint_losses(f, weights, low_freq_radius=3,
                               axis_name=axis_name)


# Module-level and with traced weights, so each compiles once.
_single = jax.jit(jax.value_and_grad(_model_loss, has_aux=True))


def _step(params, x, weights, axis_name):
  (total, terms), grads = jax.value_and_grad(
      _model_loss, has_aux=True)(params, x, weights, axis_name)
  # What the trainer does: average gradients (and losses) over devices.
  return (jax.lax.pmean(total, 'batch'), terms,
          jax.lax.pmean(grads, 'batch'))


_PMAPPED = {
    axis: jax.pmap(functools.partial(_step, axis_name=axis),
                   axis_name='batch', in_axes=(0, 0, None))
    for axis in ('batch', None)}


def _pmapped(x, params, axis_name, weights):
  replicated = jax.tree.map(lambda a: jnp.stack([a] * 4), params)
  return _PMAPPED[axis_name](replicated, x.reshape(4, 2, 16, 16, 3), weights)


@pytest.mark.parametrize('weights', [PARSING_WEIGHTS, REPETITIVE_ONLY],
                         ids=['published', 'repetitive_only'])
def test_pmap_global_max_equals_single_device(weights):
  x, params = _pmap_setup()
  (total, terms), grads = _single(params, x, weights)
  p_total, p_terms, p_grads = _pmapped(x, params, 'batch', weights)
  # Every device sees the same global max.
  np.testing.assert_allclose(p_terms['repetitive'],
                             np.full(4, float(terms['repetitive'])),
                             rtol=1e-6)
  np.testing.assert_allclose(p_total[0], total, rtol=1e-5)
  # rtol 1e-5; atol for entries that are 0 up to float32 rounding (the bias
  # does not move a high-frequency peak).
  scale = max(float(jnp.max(jnp.abs(g))) for g in grads.values())
  for name in grads:
    np.testing.assert_allclose(p_grads[name][0], grads[name], rtol=1e-5,
                               atol=1e-6 * scale)


def test_pmap_without_axis_name_uses_local_max_and_differs():
  # The control: without the collective each device maximises its own
  # batch, which is not the published batch-global gradient.
  x, params = _pmap_setup()
  _, grads = _single(params, x, REPETITIVE_ONLY)
  _, p_terms, p_grads = _pmapped(x, params, None, REPETITIVE_ONLY)
  assert len(set(np.asarray(p_terms['repetitive']).tolist())) == 4
  assert not np.allclose(p_grads['scale'][0], grads['scale'], rtol=1e-2)
