"""A few SGD steps of the parsing trainer's train_step, on every device.

Run by tests/test_multihost.py in several processes (each its own simulated
CPU devices, joined by `jaxfp.core.distributed`); the test runs the same
steps in one process and compares. Process p feeds rows [p*n, (p+1)*n) of every
global batch, n = global batch / processes, as the input pipeline's
per-process shards do. Writes the updated parameters of this process to an
npz:

  python tests/multihost_worker.py --coordinator_address=localhost:PORT \
      --num_processes=2 --process_id=P --out=/tmp/params_P.npz
"""

from __future__ import annotations

import argparse

from flax import jax_utils
import jax
import numpy as np
import optax

from configs import fen as fen_config
from jaxfp import steps
from jaxfp.core import distributed
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.tasks import parsing as parsing_task

GLOBAL_BATCH = 8
NUM_STEPS = 2
NUM_GMS = 5
IMAGE_SIZE = 64


def problem():
  """The task, the initial state (SGD) and the global batches.

  Drawn as tests/test_train.py draws its four-devices-vs-one problem, so the
  session compiles the one-process program once for both tests.
  """
  config = fen_config.get_config('test')
  config.model.dropout_rate = 0.0  # Dropout keys differ per device.
  schema = schema_lib.ZOO
  rng = np.random.default_rng(0)
  gt = schema_lib.random_ground_truth(schema, NUM_GMS, rng)
  info = splits.DataInfo(
      ground_truth=gt, train_gms=gt.gm_names, test_gms=(),
      num_train_images=0, num_test_images=0, skipped_files=())
  task = parsing_task.ParsingTask(config, info=info)
  state = steps.create_train_state(
      jax.random.key(1), config, task.model, IMAGE_SIZE,
      optax.constant_schedule(1.0))
  # Plain SGD: an update is the (averaged) gradient itself, so a wrong
  # cross-process mean shows at full size (Adam's first step is sign(g)).
  sgd = optax.sgd(1e-2)
  state = state.replace(tx=sgd, opt_state=sgd.init(state.params))
  batches = []
  for _ in range(NUM_STEPS):
    rows = rng.integers(0, NUM_GMS, GLOBAL_BATCH)
    batch = {
        'image': rng.normal(size=(GLOBAL_BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)
                            ).astype(np.float32),
        'continuous': gt.continuous[rows].copy(),
        'discrete': gt.discrete[rows], 'coarse': gt.coarse[rows],
        'fine': gt.fine[rows], 'gm': rows.astype(np.int32),
        'mask': np.ones(GLOBAL_BATCH, np.float32),
    }
    # A missing label, masked out by the losses' global counts.
    batch['continuous'][0, 2] = np.nan
    batches.append(batch)
  return task, state, batches


def run_steps(task, state, batches, devices=None):
  """train_step pmapped over `devices` (default: every device of every
  process); returns this process's copy of the state and the losses."""
  collection = steps.metrics_collection(task.train_metric_names)
  step = steps.pmapped(steps.train_step, donate_state=True,
                       devices=devices, task=task,
                       learning_rate_fn=optax.constant_schedule(1.0),
                       collection=collection)
  local = [d for d in (devices or jax.devices())
           if d.process_index == jax.process_index()]
  per_process = GLOBAL_BATCH // jax.process_count()
  start = jax.process_index() * per_process
  state = jax_utils.replicate(state, devices=local)
  keys = jax_utils.replicate(jax.random.key(0), devices=local)
  losses = []
  for batch in batches:
    mine = jax.tree.map(
        lambda x: x[start:start + per_process].reshape(
            (len(local), per_process // len(local)) + x.shape[1:]), batch)
    state, update, _ = step(state, mine, keys)
    losses.append(float(_first(update).compute()['loss']))
  return _first(state), losses


def _first(tree):
  # This process's first device's copy: pmap outputs hold local devices only.
  return jax.tree.map(lambda x: np.asarray(x)[0], tree)


def flat(tree) -> dict[str, np.ndarray]:
  return {jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree.leaves_with_path(tree)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--coordinator_address', required=True)
  parser.add_argument('--num_processes', type=int, required=True)
  parser.add_argument('--process_id', type=int, required=True)
  parser.add_argument('--out', required=True)
  args = parser.parse_args()
  topology = distributed.initialize(args.coordinator_address,
                                    args.num_processes, args.process_id)
  task, state, batches = problem()
  after, losses = run_steps(task, state, batches)
  np.savez(args.out, losses=np.asarray(losses),
           device_count=topology.device_count,
           process_count=topology.process_count,
           **flat((after.params, after.batch_stats)))


if __name__ == '__main__':
  main()
