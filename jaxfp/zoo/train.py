"""Brief training of one generator, then batched generation.

Per generator there are two XLA compiles: the train step and the generation
forward pass. The step runs from a Python loop rather than `lax.scan`: on the
XLA CPU backend a scanned step compiled several times slower and ran more
than ten times slower than the same step dispatched on its own.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxfp.zoo import architecture as arch_lib
from jaxfp.zoo import generator as generator_lib
from jaxfp.zoo import host_init
from jaxfp.zoo import objectives
from jaxfp.zoo import recipe as recipe_lib


# On CPU, LLVM's optimisation of a train step's many small fused loops costs
# more than it saves over a few dozen steps: with these options a step
# compiles in ~0.3 s instead of 1-3 s and runs ~1.5-2x slower, a net gain
# (convolutions run in library kernels either way).
_CPU_COMPILER_OPTIONS = {
    'xla_backend_optimization_level': 0,
    'xla_cpu_use_fusion_emitters': False,
}


def _compiler_options() -> dict | None:
  return _CPU_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else None


def to_uint8(images, last_nonlinearity: str):
  """Images in the generator's output range -> uint8, clipping outliers."""
  lo, hi = generator_lib.output_range(last_nonlinearity)
  unit = jnp.nan_to_num((images - lo) / (hi - lo), nan=0.0)
  return jnp.round(jnp.clip(unit, 0.0, 1.0) * 255.0).astype(jnp.uint8)


def _to_input(x):
  return 2.0 * x - 1.0


class Trainer:
  """One generator + loss recipe: compiled train step and generation.

  Inputs and targets are given in [0, 1]; inputs reach the generator in
  [-1, 1] and targets are compared in the generator's output range.
  Generator and discriminator parameters travel as flat vectors: the
  optimiser is then a few fused ops rather than several per leaf.
  """

  def __init__(self, arch: arch_lib.Architecture, recipe: recipe_lib.Recipe,
               learning_rate: float, batch_size: int, image_size: int,
               generation_batch_size: int):
    self.arch = arch
    self.recipe = recipe
    self.model = generator_lib.Generator(arch)
    self.disc = objectives.Discriminator()
    self.range = generator_lib.output_range(arch.last_nonlinearity)
    size = generator_lib.input_size(arch, image_size)
    self.input_shape = (batch_size, size, size, 3)
    self.target_shape = (batch_size, image_size, image_size, 3)
    self.generation_shape = (generation_batch_size, size, size, 3)
    # Clipping keeps unbounded (last nonlinearity 'none') generators stable
    # at a learning rate high enough for a few dozen steps to matter.
    self.g_tx = optax.chain(optax.clip_by_global_norm(1.0),
                            optax.adam(learning_rate))
    self.d_tx = optax.adam(learning_rate, b1=0.5)

    variables = jax.eval_shape(
        lambda: self.model.init(jax.random.key(0),
                                jnp.zeros(self.input_shape), train=False))
    self.variable_shapes = variables
    self.ravel, self.unravel = host_init.flattener(variables['params'])
    d_shapes = jax.eval_shape(
        lambda: self.disc.init(jax.random.key(0),
                               jnp.zeros(self.target_shape)))['params']
    self.d_shapes = d_shapes
    self.d_ravel, self.d_unravel = host_init.flattener(d_shapes)
    self._step = None
    self._generate = None

  # ----------------------------------------------------------- traced parts --

  def _to_disc(self, images):
    lo, hi = self.range
    return 2.0 * (images - lo) / (hi - lo) - 1.0

  def _g_loss(self, flat, state, d_flat, x, y):
    out, new_state = self.model.apply(
        {'params': self.unravel(flat), **state}, x, train=True,
        mutable=['batch_stats'])
    terms = {}
    for name, _ in self.recipe.weights:
      if name in objectives.RECONSTRUCTION:
        terms[name] = objectives.RECONSTRUCTION[name](out, y)
      else:
        fake_logits = self.disc.apply({'params': self.d_unravel(d_flat)},
                                      self._to_disc(out))
        terms[name] = objectives.ADVERSARIAL[name][0](fake_logits)
    total = sum(w * terms[name] for name, w in self.recipe.weights)
    return total, (terms, dict(new_state), out)

  def _d_loss(self, d_flat, real, fake):
    d_params = {'params': self.d_unravel(d_flat)}
    real_logits = self.disc.apply(d_params, self._to_disc(real))
    fake_logits = self.disc.apply(d_params, self._to_disc(fake))
    return objectives.ADVERSARIAL[self.recipe.adversarial][1](real_logits,
                                                              fake_logits)

  def _train_step(self, carry, inputs, targets):
    """One generator update, then one discriminator update if adversarial."""
    flat, state, opt, d_flat, d_opt = carry
    lo, hi = self.range
    y = lo + (hi - lo) * targets
    (total, (terms, state, out)), grads = jax.value_and_grad(
        self._g_loss, has_aux=True)(flat, state, d_flat, _to_input(inputs), y)
    updates, opt = self.g_tx.update(grads, opt, flat)
    flat = optax.apply_updates(flat, updates)
    log = dict(terms, total=total)
    if self.recipe.adversarial:
      # Alternating: the discriminator then learns from this step's fakes.
      d_value, d_grads = jax.value_and_grad(self._d_loss)(
          d_flat, y, jax.lax.stop_gradient(out))
      d_updates, d_opt = self.d_tx.update(d_grads, d_opt, d_flat)
      d_flat = optax.apply_updates(d_flat, d_updates)
      log['discriminator'] = d_value
    return (flat, state, opt, d_flat, d_opt), log

  def _generate_batch(self, flat, state, inputs):
    out = self.model.apply({'params': self.unravel(flat), **state},
                           _to_input(inputs), train=False)
    return to_uint8(out, self.arch.last_nonlinearity)

  # --------------------------------------------------------------- host API --

  def init(self, rng: np.random.Generator):
    """The training carry: (params, state, opt, d_params, d_opt)."""
    variables = host_init.init_variables(self.variable_shapes, rng)
    flat = self.ravel(variables['params'])
    state = {k: v for k, v in variables.items() if k != 'params'}
    d_flat = self.d_ravel(host_init.init_variables(self.d_shapes, rng))
    opt = jax.device_get(self.g_tx.init(flat))
    d_opt = jax.device_get(self.d_tx.init(d_flat))
    return (flat, state, opt, d_flat, d_opt)

  def compile(self) -> None:
    """Compiles the train step and the generation pass (the slow part)."""
    carry = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                         self.init(np.random.default_rng(0)))
    f32 = lambda shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    options = _compiler_options()
    self._step = jax.jit(self._train_step, donate_argnums=0).lower(
        carry, f32(self.input_shape), f32(self.target_shape)).compile(options)
    self._generate = jax.jit(self._generate_batch).lower(
        carry[0], carry[1], f32(self.generation_shape)).compile(options)

  def fit(self, carry, inputs: np.ndarray, targets: np.ndarray):
    """Runs one step per [batch, ...] slice of inputs/targets [steps, ...].

    Returns (carry, {loss name: np.ndarray [steps]}).
    """
    if self._step is None:
      self.compile()
    logs = []
    for x, y in zip(inputs, targets):
      carry, log = self._step(carry, x, y)
      logs.append(log)
    logs = jax.device_get(logs)
    return carry, {k: np.array([log[k] for log in logs], np.float64)
                   for k in logs[0]}

  def generate(self, carry, inputs: np.ndarray) -> np.ndarray:
    """uint8 images [N, S, S, 3] for inputs [N, ...] in [0, 1]."""
    if self._generate is None:
      self.compile()
    chunk = self.generation_shape[0]
    n = len(inputs)
    padded = np.concatenate(
        [inputs, np.zeros((-n % chunk,) + inputs.shape[1:], np.float32)])
    images = [self._generate(carry[0], carry[1], padded[i:i + chunk])
              for i in range(0, len(padded), chunk)]
    return np.concatenate([np.asarray(im) for im in images])[:n]
