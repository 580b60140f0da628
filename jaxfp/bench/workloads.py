"""The benchmark's jaxfp workloads: the trainer's own pmapped train step and
the inference forward pass of a task's model, compiled ahead of time, on a
random batch (no dataset behind the task)."""

from __future__ import annotations

import collections
import dataclasses
import functools
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

from flax import jax_utils
import jax
import ml_collections
import numpy as np

from jaxfp import tasks
from jaxfp import steps
from jaxfp import train
from jaxfp.bench import flops
from jaxfp.bench import timing
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits


@dataclasses.dataclass
class Workload:
  """One jaxfp row ready to time, and what the PyTorch side needs."""
  name: str
  batch: int
  image_size: int
  step: Callable[[], None]
  sync: Callable[[], None]
  flops_per_step: int
  compile_s: float
  lower_s: float
  xla_flops_per_step: float | None
  hlo: str
  description: str
  torch_spec: dict[str, Any]


def _holder_step(compiled, args: tuple, donated: bool):
  """step/sync closures of `compiled(*args)` that hold its last output; a
  donated first argument (the train state) is fed the step's new one."""
  box = {'args': list(args), 'out': None}

  def step():
    box['out'] = compiled(*box['args'])
    if donated:
      box['args'][0] = box['out'][0]

  def sync():
    jax.block_until_ready(box['out'])
  return step, sync


def _task_and_batch(config, batch_size: int):
  """The task object (no dataset behind it) and one random batch."""
  rng = np.random.default_rng(0)
  size = config.data.image_size
  batch = {'image': rng.normal(size=(batch_size, size, size, 3)).astype(
      np.float32), 'mask': np.ones(batch_size, np.float32)}
  if config.task == 'parsing':
    # The published heads (9 continuous, 4-4-4-2-2-2 discrete, 3 coarse and
    # 8 fine), so that the PyTorch ParsingHead matches.
    gt = schema_lib.random_ground_truth(schema_lib.PUBLISHED, 116,
                                        np.random.default_rng(0))
    info = splits.DataInfo(
        ground_truth=gt, train_gms=gt.gm_names, test_gms=(),
        num_train_images=0, num_test_images=0, skipped_files=())
    rows = rng.integers(0, len(gt), batch_size)
    batch.update(continuous=gt.continuous[rows], discrete=gt.discrete[rows],
                 coarse=gt.coarse[rows], fine=gt.fine[rows],
                 gm=rows.astype(np.int32))
  else:
    info = splits.ClassInfo(class_names=('fake', 'real'), root='',
                            num_train_images=0, num_test_images=0,
                            class_counts={}, skipped_files=())
    batch['label'] = rng.integers(0, 2, batch_size).astype(np.int32)
  return tasks.get(config.task)(config, info=info), batch


def _describe(config) -> str:
  m = config.model
  size = config.data.image_size
  head = (f'PN{tuple(m.pn_channels)}' if config.task == 'parsing' else
          f'{config.task} head {tuple(m.head_channels) or "(published)"}')
  return f'FEN-{m.fen_depth} w{m.fen_width} + {head}, {size}x{size}, {m.dtype}'


def task_workloads(config: ml_collections.ConfigDict, device,
                   names: Sequence[str]) -> dict[str, Workload]:
  """The workloads of `names` among `<task>_train` and `<task>_infer` of
  `config` (at its batch size and dtype).

  `<task>_train` is jaxfp.steps.train_step pmapped on `device` with the
  state donated, as the trainer runs it; `<task>_infer` the forward pass in
  inference mode, jitted.
  """
  task_name = config.task
  task, batch = _task_and_batch(config, config.batch_size)
  size = config.data.image_size
  lr_fn = steps.create_learning_rate_fn(config)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  state = steps.create_train_state(init_key, config, task.model, size, lr_fn)
  description = _describe(config)
  torch_spec = dict(config=config, batch=batch, task=task)
  out = {}

  def add(kind: str, fn, *args, donated: bool = False):
    """out[<task>_<kind>]: `fn` compiled for `args`, its FLOPs counted."""
    flop_count = flops.count_flops(fn, *args)
    compiled, lower_s, compile_s = timing.aot(fn, *args)
    name = f'{task_name}_{kind}'
    out[name] = Workload(
        name, config.batch_size, size,
        *_holder_step(compiled, args, donated), flop_count, compile_s,
        lower_s, timing.xla_flops(compiled), compiled.as_text(), description,
        torch_spec)

  if f'{task_name}_train' in names:
    devices = [device]
    collection = steps.metrics_collection(task.train_metric_names)
    p_train_step = steps.pmapped(steps.train_step, donate_state=True,
                                 devices=devices,
                                 task=task, learning_rate_fn=lr_fn,
                                 collection=collection)
    # Replicated from host copies (flax's replicate stacks jax.Arrays with
    # an eager jnp.stack, one compilation per leaf shape), on a mesh named
    # like the pmap axis, so that step 1's inputs are sharded as every
    # later step's (the outputs of step 1) are.
    replicate = functools.partial(jax_utils.replicate, devices=devices,
                                  axis_name=steps.AXIS)
    r_state = replicate(jax.device_get(state))
    # One device: replicating the batch is sharding it.
    r_batch = replicate(batch)
    r_keys = replicate(jax.device_get(dropout_key))
    add('train', p_train_step, r_state, r_batch, r_keys, donated=True)
  if f'{task_name}_infer' in names:
    # Without the pmap axis: inference needs no cross-device mean.
    model = task.model.clone(axis_name=None)
    variables = jax.device_put(
        {'params': state.params, 'batch_stats': state.batch_stats}, device)
    images = jax.device_put(batch['image'], device)
    add('infer', jax.jit(lambda v, x: model.apply(v, x, train=False)),
        variables, images)
  return out


def trainer_compilations(config: ml_collections.ConfigDict,
                         num_train_steps: int = 6) -> dict[str, Any]:
  """What the real trainer compiles over a few steps, an eval and a resume.

  Runs jaxfp.train.train_and_evaluate on `config` (configs/fen.py:test from
  the command) with an eval half way, then once more in the same workdir (a
  resume that only re-evaluates). Returns the traced function names and
  backend compilations of each run. The pmapped train and eval steps both
  show as `_fun`: a first run should compile it twice (train, eval), a resume
  once (eval). The first call also counts the zoo's build when the zoo is not
  cached yet.
  """
  config = config.copy_and_resolve_references()
  config.num_train_steps = num_train_steps
  config.eval_every_steps = max(1, num_train_steps // 2)
  config.checkpoint_every_steps = num_train_steps
  config.log_every_steps = 1
  out = {}
  with tempfile.TemporaryDirectory(prefix='jaxfp-compiles-') as workdir:
    for run_name in ('first run', 'resumed run'):
      with timing.CompileCounter() as counter:
        train.train_and_evaluate(config, workdir)
      out[run_name] = {
          'traced': dict(collections.Counter(counter.traced)),
          'compiled': dict(collections.Counter(counter.names)),
          'num_compiled': len(counter.names)}
  return out
