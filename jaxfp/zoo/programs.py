"""Training and generation programs: one train step + one generation pass.

A `Program` is compiled once and then trains any number of generators. What
it does with a generator is fixed by two small trees of arrays passed at run
time: the architecture's `supernet.switches` and the loss recipe's
`recipe_arrays` (weights per fine type, which adversarial pair, VAE or not).

  shared(program, ...)  the zoo's engine: `supernet.apply` serves every
                        architecture of the program;
  alone(arch, ...)      the same step around the architecture's own flax
                        module, compiled for it alone: the reference the
                        shared program is checked against.

Both draw a generator's initial weights the same way (the flax module's
variables, from `host_init`) and run the same losses and optimiser, so they
differ only in the generator function.

The step runs from a Python loop rather than `lax.scan`, which is slower on
the XLA CPU backend (docs/zoo.md).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfp.core import schema as schema_lib
from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import host_init
from jaxfp.zoo import objectives
from jaxfp.zoo import recipe as recipe_lib
from jaxfp.zoo import supernet

_FINE = schema_lib.ZOO.fine
_ADVERSARIAL = recipe_lib.GROUP_TYPES['adversarial']
# Logged every step: the reconstruction-type terms whether or not the recipe
# trains on them (what `probe` compares), and the recipe's other terms.
METRICS = ('pixel_l1', 'pixel_mse', 'gradient', 'spectral', 'total_variation')
# What a step logs, in the order of its log vector.
LOGS = METRICS + ('kl', 'adversarial', 'total', 'discriminator')
_SIGMOID = arch_lib.LAST_NONLINEARITIES.index('sigmoid')


@dataclasses.dataclass(frozen=True)
class Sizes:
  """Shapes a program is compiled for."""
  batch: int  # Training images per step.
  crop: int  # Side of the training crops (generators are convolutional).
  image: int  # Side of the generated images.
  generation_batch: int  # Images per generation call.


def recipe_arrays(recipe: recipe_lib.Recipe, family: str) -> dict:
  """The run-time description of a loss recipe that the step reads."""
  weights = dict(recipe.weights)
  adversarial = recipe.adversarial
  return {
      'weights': np.array([weights.get(t, 0.0) for t in _FINE], np.float32),
      'adversarial': np.int32(_ADVERSARIAL.index(adversarial)
                              if adversarial else 0),
      'has_adversarial': np.bool_(adversarial is not None),
      'vae': np.bool_(family == 'vae'),
  }


def _to_input(x):
  return 2.0 * x - 1.0


def _size(shapes) -> int:
  """Scalars in a tree of arrays or shape structs."""
  return sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))


def _specs_like(tree):
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), tree)


def _output_range(sw):
  """(lo, hi) of the generator's images, what targets are scaled to: [0, 1]
  after a sigmoid, else [-1, 1]."""
  lo = jnp.where(sw['last'] == _SIGMOID, 0.0, -1.0)
  return lo, jnp.float32(1.0)


def to_uint8(images, lo, hi):
  """Images in the generator's output range -> uint8, clipping outliers."""
  unit = jnp.nan_to_num((images - lo) / (hi - lo), nan=0.0)
  return jnp.round(jnp.clip(unit, 0.0, 1.0) * 255.0).astype(jnp.uint8)


# The CPU backend's optimisation of a step's many small fused loops pays for
# a program that runs thousands of steps, not a few dozen (docs/zoo.md).
_FAST_COMPILE = {
    'xla_backend_optimization_level': 0,
    'xla_cpu_use_fusion_emitters': False,
}
# Steps (all GMs of a program together) from which full optimisation pays.
_OPTIMISE_FROM_STEPS = 200


def compiler_options(total_steps: int) -> dict | None:
  """XLA options for a program that will run `total_steps` steps."""
  if jax.default_backend() != 'cpu' or total_steps >= _OPTIMISE_FROM_STEPS:
    return None
  return _FAST_COMPILE


class Program:
  """A compiled train step and generation pass around one generator function.

  Inputs and targets are given in [0, 1]; inputs reach the generator in
  [-1, 1] (latent maps as drawn) and targets are compared in the generator's
  output range. Parameters travel as flat vectors: the optimiser is then a
  few fused ops rather than several per leaf. For noise-to-image programs the
  VAE encoder's parameters follow the generator's in the same vector (they
  are trained with it; a GAN leaves them untouched).
  """

  def __init__(self, kind: str, network: Callable, param_shapes,
               stats_shapes, sizes: Sizes, learning_rate: float,
               compiler_options: dict | None = None):
    if kind not in supernet.PROGRAMS:
      raise ValueError(f'unknown program {kind!r}')
    self.kind = kind
    self.latent = arch_lib.latent_stages(kind)  # 0: image-to-image.
    self.network = network
    self.sizes = sizes
    self.compiler_options = compiler_options
    self.disc = objectives.Discriminator()
    self.encoder = objectives.Encoder(arch_lib.LATENT_CHANNELS,
                                      max(self.latent, 1))
    self.g_tx = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adam(learning_rate, eps=1e-6))
    self.d_tx = optax.adam(learning_rate, b1=0.5, eps=1e-6)
    self.stats_shapes = stats_shapes
    self.gen_ravel, self.gen_unravel = host_init.flattener(param_shapes)
    self.gen_size = _size(param_shapes)
    crop = jax.ShapeDtypeStruct((1, sizes.crop, sizes.crop, 3), jnp.float32)
    self.d_shapes, self.e_shapes = (
        jax.eval_shape(module.init, jax.random.key(0), crop)['params']
        for module in (self.disc, self.encoder))
    self.d_ravel, self.d_unravel = host_init.flattener(self.d_shapes)
    self.e_ravel, self.e_unravel = host_init.flattener(self.e_shapes)
    self._lock = threading.Lock()
    self.compile_seconds = 0.0
    self._step = None
    self._generate = None

  # ----------------------------------------------------------- traced --

  def _g_loss(self, params, stats, d_params, sw, rc, inputs, targets):
    weights = rc['weights']
    lo, hi = _output_range(sw)
    y = lo + (hi - lo) * targets
    gen, enc = params
    kl = jnp.float32(0.0)
    if self.latent:
      # The encoder runs for GANs too and is then ignored: its convolutions'
      # gradients inside a `lax.cond` would run many times slower on CPU
      # (see supernet._conv_same), and it is small.
      mean, log_var = self.encoder.apply({'params': enc}, _to_input(targets))
      x = jnp.where(rc['vae'], mean + jnp.exp(0.5 * log_var) * inputs,
                    inputs)
      kl = jnp.where(rc['vae'], objectives.kl_divergence(mean, log_var), 0.0)
    else:
      x = _to_input(inputs)
    out, stats = self.network(gen, stats, sw, x, True)

    def spectral(out):
      if not self.latent:
        return objectives.spectral(out, y)
      return jax.lax.cond(rc['vae'], objectives.spectral,
                          objectives.spectral_unpaired, out, y)

    functions = {
        'pixel_l1': lambda o: objectives.pixel_l1(o, y),
        'pixel_mse': lambda o: objectives.pixel_mse(o, y),
        'gradient': lambda o: objectives.gradient(o, y),
        'spectral': spectral,
        'total_variation': lambda o: objectives.total_variation(o, None),
    }
    total = kl * weights[_FINE.index('kl')]
    for name, fn in functions.items():
      w = weights[_FINE.index(name)]
      # Terms off the recipe are not differentiated at all: a zero weight
      # times a NaN gradient (|FFT| at 0) would still be NaN.
      total = total + jax.lax.cond(w > 0, lambda o, fn=fn, w=w: w * fn(o),
                                   lambda o: jnp.float32(0.0), out)

    # The discriminator, like the encoder, runs for every GM: it is small,
    # and its gradients inside a cond would be slow.
    logits = self.disc.apply({'params': d_params}, self._to_disc(out, lo, hi))
    adv = jnp.where(rc['has_adversarial'], jax.lax.select_n(
        rc['adversarial'],
        *[objectives.ADVERSARIAL[t][0](logits) for t in _ADVERSARIAL]), 0.0)
    adv_weight = sum(weights[_FINE.index(t)] for t in _ADVERSARIAL)
    total = total + adv_weight * adv
    metrics = {name: fn(jax.lax.stop_gradient(out))
               for name, fn in functions.items()}
    return total, (dict(metrics, kl=kl, adversarial=adv), stats, out, y)

  @staticmethod
  def _to_disc(images, lo, hi):
    return 2.0 * (images - lo) / (hi - lo) - 1.0

  def _train_step(self, carry, sw, rc, inputs, targets):
    """One generator update, then one discriminator update if adversarial."""
    flat, stats, opt, d_flat, d_opt = carry
    # Differentiated as trees and flattened by concatenation: the gradient of
    # slicing the flat vector would add one vector-sized pad per leaf (~50 ms
    # a step for the supernet's ~150 leaves).
    params = (self.gen_unravel(flat[:self.gen_size]),
              self.e_unravel(flat[self.gen_size:]) if self.latent else {})
    d_params = self.d_unravel(d_flat)
    (total, (log, stats, out, y)), (g_gen, g_enc) = jax.value_and_grad(
        self._g_loss, has_aux=True)(params, stats, d_params, sw, rc, inputs,
                                    targets)
    grads = self.gen_ravel(g_gen)
    if self.latent:
      grads = jnp.concatenate([grads, self.e_ravel(g_enc)])
    updates, opt = self.g_tx.update(grads, opt, flat)
    flat = optax.apply_updates(flat, updates)
    lo, hi = _output_range(sw)
    fake = jax.lax.stop_gradient(out)

    def d_loss(d_params):
      params = {'params': d_params}
      real_logits = self.disc.apply(params, self._to_disc(y, lo, hi))
      fake_logits = self.disc.apply(params, self._to_disc(fake, lo, hi))
      return jax.lax.select_n(
          rc['adversarial'],
          *[objectives.ADVERSARIAL[t][1](real_logits, fake_logits)
            for t in _ADVERSARIAL])

    # Alternating: the discriminator then learns from this step's fakes.
    # Computed for every GM, kept only for adversarial ones.
    d_value, d_grads = jax.value_and_grad(d_loss)(d_params)
    d_grads = self.d_ravel(d_grads)
    d_updates, new_d_opt = self.d_tx.update(d_grads, d_opt, d_flat)
    keep = rc['has_adversarial']
    d_flat, d_opt = jax.tree.map(
        lambda new, old: jnp.where(keep, new, old),
        (optax.apply_updates(d_flat, d_updates), new_d_opt), (d_flat, d_opt))
    d_value = jnp.where(keep, d_value, 0.0)
    log = dict(log, total=total, discriminator=d_value)
    # One vector a step: fetching the logs is then one transfer per step,
    # not one per value.
    return (flat, stats, opt, d_flat, d_opt), jnp.stack(
        [log[name] for name in LOGS])

  def _generate_batch(self, flat, stats, sw, inputs):
    gen = self.gen_unravel(flat[:self.gen_size])
    x = inputs if self.latent else _to_input(inputs)
    out, _ = self.network(gen, stats, sw, x, False)
    return to_uint8(out, *_output_range(sw))

  # ---------------------------------------------------------- host API --

  def init(self, gen_params, stats, rng: np.random.Generator):
    """The training carry: (params, stats, opt, d_params, d_opt).

    `gen_params`/`stats` are the generator's initial variables in this
    program's layout; the discriminator (and encoder) are drawn from `rng`.
    """
    flat = self.gen_ravel(gen_params)
    d_flat = self.d_ravel(host_init.init_variables(self.d_shapes, rng))
    if self.latent:
      e_flat = self.e_ravel(host_init.init_variables(self.e_shapes, rng))
      flat = np.concatenate([flat, e_flat])
    opt = jax.device_get(self.g_tx.init(flat))
    d_opt = jax.device_get(self.d_tx.init(d_flat))
    return (flat, stats, opt, d_flat, d_opt)

  def compile(self, sw_example, rc_example) -> None:
    """Compiles the train step and the generation pass (the slow part).

    Thread-safe: a second caller waits for the first one's compile.
    """
    with self._lock:
      if self._step is not None:
        return
      start = time.perf_counter()
      gen_size = self.gen_size + (_size(self.e_shapes) if self.latent else 0)
      flat = jax.ShapeDtypeStruct((gen_size,), jnp.float32)
      d_flat = jax.ShapeDtypeStruct((_size(self.d_shapes),), jnp.float32)
      stats = _specs_like(self.stats_shapes)
      carry = (flat, stats, jax.eval_shape(self.g_tx.init, flat), d_flat,
               jax.eval_shape(self.d_tx.init, d_flat))
      sw, rc = _specs_like((sw_example, rc_example))
      b, c = self.sizes.batch, self.sizes.crop
      f32 = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32)
      input_shape = functools.partial(arch_lib.program_input_shape,
                                      self.kind)
      step = jax.jit(self._train_step, donate_argnums=0).lower(
          carry, sw, rc, f32((b,) + input_shape(c)),
          f32((b, c, c, 3))).compile(self.compiler_options)
      generate = jax.jit(self._generate_batch).lower(
          flat, stats, sw, f32((self.sizes.generation_batch,)
                               + input_shape(self.sizes.image))
      ).compile(self.compiler_options)
      self._generate = generate
      self._step = step
      self.compile_seconds = time.perf_counter() - start

  def fit(self, carry, sw, rc, inputs: np.ndarray, targets: np.ndarray):
    """One step per [batch, ...] slice of inputs/targets [steps, ...].

    Returns (carry, {log name: np.ndarray [steps]}).
    """
    self.compile(sw, rc)
    # On the device once, not converted again at every step.
    sw, rc = jax.device_put((sw, rc))
    logs = []
    for x, y in zip(inputs, targets):
      carry, log = self._step(carry, sw, rc, x, y)
      logs.append(log)
    logs = np.stack(jax.device_get(logs)).astype(np.float64)
    return carry, {name: logs[:, i] for i, name in enumerate(LOGS)}

  def generate(self, carry, sw, inputs: np.ndarray) -> np.ndarray:
    """uint8 images [N, S, S, 3] for inputs [N, ...] (images in [0, 1] or
    latent maps)."""
    if self._generate is None:
      raise RuntimeError('generate() before fit(): nothing is compiled')
    sw = jax.device_put(sw)
    chunk = self.sizes.generation_batch
    n = len(inputs)
    padded = np.concatenate(
        [inputs, np.zeros((-n % chunk,) + inputs.shape[1:], np.float32)])
    images = [self._generate(carry[0], carry[1], sw, padded[i:i + chunk])
              for i in range(0, len(padded), chunk)]
    return np.concatenate([np.asarray(im) for im in images])[:n]


def _as_specs(shapes):
  return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, jnp.float32), shapes,
                      is_leaf=lambda x: isinstance(x, tuple) and all(
                          isinstance(d, int) for d in x))


def shared(kind: str, sizes: Sizes, learning_rate: float,
           compiler_options: dict | None = None) -> Program:
  """The program that trains every architecture of `kind` (see supernet)."""
  return Program(kind, functools.partial(supernet.apply, kind),
                 _as_specs(supernet.param_shapes(kind)),
                 _as_specs(supernet.stats_shapes(kind)), sizes,
                 learning_rate, compiler_options)


def alone(arch: arch_lib.Architecture, variable_shapes, sizes: Sizes,
          learning_rate: float) -> Program:
  """A program around `arch`'s own flax module, compiled for it alone.

  `variable_shapes` as from `generator.inspect`. Its carry holds the module's
  own variables (`init(variables['params'], variables.get('batch_stats',
  {}), rng)`).
  """
  model = generator_lib.build(arch)

  def network(params, stats, sw, x, train):
    del sw  # The module is the architecture.
    variables = {'params': params}
    if stats:
      variables['batch_stats'] = stats
    if train:
      out, new = model.apply(variables, x, train=True,
                             mutable=['batch_stats'])
      return out, dict(new).get('batch_stats', stats)
    return model.apply(variables, x, train=False), stats

  stats = _specs_like(dict(variable_shapes).get('batch_stats', {}))
  return Program(arch.program, network, variable_shapes['params'], stats,
                 sizes, learning_rate, compiler_options(0))
