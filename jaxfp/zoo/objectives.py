"""The fine loss types as functions; the tiny discriminator and VAE encoder.

Reconstruction terms compare a generator's output with its target, both in
the generator's output range. Adversarial terms come in (generator,
discriminator) pairs of functions of discriminator logits. GANs have no
paired target: their spectral term compares batch-mean spectra
(`spectral_unpaired`), as spectral regularisers of GANs do.
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


def spectral_unpaired(out, real):
  """L1 between the batch-mean FFT magnitudes of generated and real images."""
  def magnitude(x):
    return jnp.mean(jnp.abs(jnp.fft.fft2(x, axes=(1, 2), norm='ortho')), 0)
  return jnp.mean(jnp.abs(magnitude(out) - magnitude(real)))


def kl_divergence(mean, log_var):
  """KL(N(mean, exp(log_var)) || N(0, 1)), averaged over latent elements."""
  return 0.5 * jnp.mean(jnp.square(mean) + jnp.exp(log_var) - 1.0 - log_var)


def total_variation(out, target):
  del target  # A prior on the output alone.
  dy, dx = _gradients(out)
  return jnp.mean(jnp.abs(dy)) + jnp.mean(jnp.abs(dx))


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
  """A small patch discriminator on images in [-1, 1] (any size, /4)."""

  @nn.compact
  def __call__(self, x):
    x = nn.leaky_relu(nn.Conv(16, (4, 4), strides=(2, 2))(x), 0.2)
    x = nn.leaky_relu(nn.Conv(32, (4, 4), strides=(2, 2))(x), 0.2)
    return nn.Conv(1, (3, 3))(x)


class Encoder(nn.Module):
  """A VAE encoder: images in [-1, 1] -> (mean, log variance) latent maps.

  One stride-2 conv per upsampling stage of the decoder reaches the scale of
  a `generator.NoiseGenerator`'s latent map. Not part of a GM's ground truth:
  generation uses the decoder.
  """
  latent_channels: int
  stages: int

  @nn.compact
  def __call__(self, x):
    for features in (16, 32, 32, 32)[:self.stages]:
      x = nn.leaky_relu(nn.Conv(features, (4, 4), strides=(2, 2))(x), 0.2)
    stats = nn.Conv(2 * self.latent_channels, (1, 1))(x)
    mean, log_var = jnp.split(stats, 2, axis=-1)
    # Bounded so that a few large steps cannot overflow exp(log_var).
    return mean, jnp.clip(log_var, -8.0, 8.0)
