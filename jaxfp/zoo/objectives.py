"""The fine loss types as functions, and the tiny discriminator for GAN losses.

Reconstruction terms compare a generator's output with its target, both in
the generator's output range. Adversarial terms come in (generator,
discriminator) pairs of functions of discriminator logits.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp


def pixel_l1(out, target):
  return jnp.mean(jnp.abs(out - target))


def pixel_mse(out, target):
  return jnp.mean(jnp.square(out - target))


def _gradients(x):
  return x[:, 1:, :, :] - x[:, :-1, :, :], x[:, :, 1:, :] - x[:, :, :-1, :]


def gradient(out, target):
  """L1 between the image gradients (finite differences) of output, target."""
  (oy, ox), (ty, tx) = _gradients(out), _gradients(target)
  return jnp.mean(jnp.abs(oy - ty)) + jnp.mean(jnp.abs(ox - tx))


def spectral(out, target):
  """L1 between 2-D FFT magnitudes; 'ortho' keeps it on the pixel scale."""
  def magnitude(x):
    return jnp.abs(jnp.fft.fft2(x, axes=(1, 2), norm='ortho'))
  return jnp.mean(jnp.abs(magnitude(out) - magnitude(target)))


def total_variation(out, target):
  del target  # A prior on the output alone.
  dy, dx = _gradients(out)
  return jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dx))


RECONSTRUCTION = {
    'pixel_l1': pixel_l1,
    'pixel_mse': pixel_mse,
    'gradient': gradient,
    'spectral': spectral,
    'total_variation': total_variation,
}


def _softplus(x):
  return jnp.logaddexp(x, 0.0)


# name -> (generator loss of fake logits, discriminator loss of real and fake).
ADVERSARIAL = {
    'adv_non_saturating': (
        lambda fake: jnp.mean(_softplus(-fake)),
        lambda real, fake: jnp.mean(_softplus(-real)) + jnp.mean(
            _softplus(fake))),
    'adv_least_squares': (
        lambda fake: 0.5 * jnp.mean(jnp.square(fake - 1.0)),
        lambda real, fake: 0.5 * (jnp.mean(jnp.square(real - 1.0))
                                  + jnp.mean(jnp.square(fake)))),
    'adv_hinge': (
        lambda fake: -jnp.mean(fake),
        lambda real, fake: jnp.mean(nn.relu(1.0 - real)) + jnp.mean(
            nn.relu(1.0 + fake))),
}


class Discriminator(nn.Module):
  """A small patch discriminator on images in [-1, 1]."""

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(16, (4, 4), strides=(2, 2))(x), 0.2)
    x = nn.leaky_relu(nn.Conv(32, (4, 4), strides=(2, 2))(x), 0.2)
    return nn.Conv(1, (3, 3))(x)
