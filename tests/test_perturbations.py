"""Perturbations against their libraries' direct use; identities; tf.data."""

import io

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage
import tensorflow as tf

from configs import common
from jaxfp.data import augment
from jaxfp.data import perturbations


@pytest.fixture(scope='module')
def image():
  rng = np.random.default_rng(0)
  y, x = np.mgrid[:48, :64]
  smooth = 127 + 100 * np.sin(x / 5.0)[..., None] * np.cos(y / 7.0)[..., None]
  pixels = smooth + rng.normal(0, 10, (48, 64, 3))
  return np.clip(pixels, 0, 255).astype(np.uint8)


def test_jpeg_equals_pillow_at_the_same_quality(image):
  for quality in (90, 30):
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format='JPEG', quality=quality)
    expected = np.asarray(Image.open(io.BytesIO(buffer.getvalue())))
    np.testing.assert_array_equal(perturbations.jpeg(image, quality),
                                  expected)
  # Lower quality loses more.
  err = {q: np.abs(perturbations.jpeg(image, q).astype(int) - image).mean()
         for q in (95, 30)}
  assert err[30] > err[95] > 0


def test_blur_equals_scipy_gaussian_filter(image):
  expected = ndimage.gaussian_filter(image.astype(np.float32), (1.5, 1.5, 0),
                                     mode='reflect')
  np.testing.assert_array_equal(
      perturbations.blur(image, 1.5),
      np.clip(np.rint(expected), 0, 255).astype(np.uint8))


def test_resize_equals_pillow_down_and_up(image):
  small = Image.fromarray(image).resize((32, 24), Image.BILINEAR)
  expected = np.asarray(small.resize((64, 48), Image.BILINEAR))
  np.testing.assert_array_equal(perturbations.resize(image, 0.5), expected)


def test_crop_is_a_pillow_resize_of_a_sub_window(image):
  rng = np.random.default_rng(3)
  out = perturbations.crop(image, 0.5, np.random.default_rng(3))
  top, left = int(rng.integers(0, 25)), int(rng.integers(0, 33))
  window = image[top:top + 24, left:left + 32]
  expected = np.asarray(Image.fromarray(window).resize((64, 48),
                                                       Image.BILINEAR))
  np.testing.assert_array_equal(out, expected)


def test_noise_has_the_requested_std(image):
  flat = np.full((200, 200, 3), 128, np.uint8)
  out = perturbations.noise(flat, 0.05, np.random.default_rng(0))
  assert np.std(out.astype(float) - 128) == pytest.approx(0.05 * 255,
                                                          rel=0.02)
  del image


def test_severity_zero_is_the_identity_where_it_should_be(image):
  rng = np.random.default_rng(0)
  for name, severity in (('blur', 0.0), ('noise', 0.0), ('resize', 1.0),
                         ('crop', 1.0)):
    np.testing.assert_array_equal(
        perturbations.apply(name, image, severity, rng), image, err_msg=name)
  np.testing.assert_array_equal(
      perturbations.combination(image, rng, p=0.0), image)
  np.testing.assert_array_equal(
      perturbations.cnndetection(image, rng, p=0.0), image)


def test_every_perturbation_keeps_shape_and_dtype(image):
  rng = np.random.default_rng(0)
  for name, severities in perturbations.SEVERITIES.items():
    for severity in severities:
      out = perturbations.apply(name, image, severity, rng)
      assert out.shape == image.shape and out.dtype == np.uint8, name
  out = perturbations.combination(image, rng, p=1.0)
  assert out.shape == image.shape and not np.array_equal(out, image)


def test_bad_arguments_are_named(image):
  with pytest.raises(ValueError, match='JPEG quality 0'):
    perturbations.jpeg(image, 0)
  with pytest.raises(ValueError, match='unknown perturbation'):
    perturbations.apply('sepia', image, 1, np.random.default_rng(0))
  with pytest.raises(ValueError, match='uint8'):
    perturbations.blur(image.astype(np.float32), 1.0)


def test_tf_data_maps_are_deterministic_per_position(image):
  ds = tf.data.Dataset.from_tensors({'image': image}).repeat(3)
  ds = augment.with_index(ds)
  config = common.augment()
  config.combination_prob = 1.0
  first = [ex['image'] for ex in
           ds.map(augment.training(config, seed=5)).as_numpy_iterator()]
  again = [ex['image'] for ex in
           ds.map(augment.training(config, seed=5)).as_numpy_iterator()]
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  # Different positions draw differently.
  assert not np.array_equal(first[0], first[1])
  fixed = next(ds.map(augment.fixed('jpeg', 50)).as_numpy_iterator())
  np.testing.assert_array_equal(fixed['image'], perturbations.jpeg(image, 50))
