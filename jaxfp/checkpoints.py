"""All of jaxfp's checkpoint I/O (Orbax).

One layout for every writer: a CheckpointManager directory (a run's
`<workdir>/checkpoints`, or a converter's `<output>/checkpoints`) whose steps
hold two items,

  state  the trainer's TrainState, or {'step', 'params', 'batch_stats'} of
         converted published weights;
  meta   JSON: the run's config and the task's facts, or the converted
         network's constructor fields ('model') and preprocessing.

Writers: the trainer (`manager`, `save`, `restore_latest`) and the converter
(`write`). Readers (`read`): evaluation and inference, which need only the
parameters and BatchNorm statistics, so a state is read without a target and
whatever optimiser state it holds is ignored.
"""

from __future__ import annotations

import dataclasses
import os
import re

from absl import logging
import jax
import numpy as np
import orbax.checkpoint as ocp

ITEMS = ('state', 'meta')
DIRECTORY = 'checkpoints'


@dataclasses.dataclass(frozen=True)
class Checkpoint:
  """One step of a checkpoint directory, read: what every reader needs."""
  directory: str  # The CheckpointManager directory.
  step: int
  variables: dict  # {'params', 'batch_stats'} as numpy arrays.
  meta: dict


def manager(directory: str, *, create: bool = False,
            max_to_keep: int | None = None) -> ocp.CheckpointManager:
  """The CheckpointManager of `directory` (items 'state' and 'meta')."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=create),
      item_names=ITEMS)


def of_run(workdir: str, max_to_keep: int | None = None
           ) -> ocp.CheckpointManager:
  """The manager of a training run's `<workdir>/checkpoints`, created."""
  return manager(os.path.join(workdir, DIRECTORY), create=True,
                 max_to_keep=max_to_keep)


def find(path: str, step: int | None = None) -> tuple[str, int]:
  """(CheckpointManager directory, step) of a run, checkpoints or step dir.

  `path` may be a run directory (or a converter's output), its
  `checkpoints` folder or one step's folder; `step` None: the latest.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.isdir(path):
    raise FileNotFoundError(f'checkpoint path {path} does not exist')
  name = os.path.basename(path)
  if re.fullmatch(r'\d+', name) and os.path.isdir(os.path.join(path,
                                                                'state')):
    if step is not None and step != int(name):
      raise ValueError(f'{path} is the checkpoint of step {name}, but '
                       f'--step={step}')
    return os.path.dirname(path), int(name)
  if os.path.isdir(os.path.join(path, DIRECTORY)):
    path = os.path.join(path, DIRECTORY)
  steps = sorted(int(d) for d in os.listdir(path) if re.fullmatch(r'\d+', d)
                 and os.path.isdir(os.path.join(path, d, 'state')))
  if not steps:
    raise FileNotFoundError(f'{path} holds no checkpoint (no <step>/state '
                            'folder)')
  if step is None:
    return path, steps[-1]
  if step not in steps:
    raise FileNotFoundError(f'{path} has no step {step}; it has {steps}')
  return path, step


def read(path: str, step: int | None = None) -> Checkpoint:
  """The parameters, BatchNorm statistics and meta of one step (`find`).

  The state is restored without a target, so it works whatever optimiser
  state (or none) was saved beside the parameters.
  """
  directory, step = find(path, step)
  with manager(directory) as m:
    restored = m.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()))
  state = restored.state
  if 'params' not in state:
    raise ValueError(f'{directory}/{step}/state holds no params; found '
                     f'{sorted(state)}')
  variables = {'params': state['params'],
               'batch_stats': state.get('batch_stats') or {}}
  return Checkpoint(directory=directory, step=step,
                    variables=jax.tree.map(np.asarray,
                                           jax.device_get(variables)),
                    meta=dict(restored.meta or {}))


def restore_latest(m: ocp.CheckpointManager, state):
  """The latest checkpoint's state, or `state` unchanged if there is none.

  Restored as host numpy arrays, which every process can read whatever its
  devices; the trainer replicates them onto its devices.
  """
  step = m.latest_step()
  if step is None:
    return state
  logging.info('Resuming from the checkpoint of step %d in %s', step,
               m.directory)
  target = jax.device_get(state)
  restored = m.restore(
      step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
  return restored.state


def save(m: ocp.CheckpointManager, state, step: int, meta: dict) -> None:
  """Saves the replicated `state` (device 0's copy) at `step`.

  Every process calls this: Orbax synchronises them and writes host numpy
  arrays from the primary process only.
  """
  # Each leaf's first local shard, copied as is: indexing (x[0]) would
  # compile and run a small program per leaf, which took minutes in a
  # multi-process run.
  host_state = jax.tree.map(
      lambda x: np.asarray(x)[0],
      jax.device_get(jax.tree.map(lambda x: x.addressable_data(0), state)))
  m.save(step, args=ocp.args.Composite(
      state=ocp.args.StandardSave(host_state),
      meta=ocp.args.JsonSave(meta)))
  # Orbax's background finalisation reports `step` to JAX's preemption sync
  # (reached_preemption_sync_point); done later, while the loop reports newer
  # steps, it would rewind the step that processes compare on SIGTERM, and
  # they could disagree on where to stop. Finishing here keeps it in order.
  m.wait_until_finished()


def write(output: str, state: dict, meta: dict) -> str:
  """A new checkpoint directory `<output>/checkpoints` with step 0.

  Refuses a directory that already holds a checkpoint. Returns the
  CheckpointManager directory.
  """
  directory = os.path.join(os.path.abspath(output), DIRECTORY)
  with manager(directory, create=True) as m:
    if m.latest_step() is not None:
      raise FileExistsError(f'{directory} already holds a checkpoint (step '
                            f'{m.latest_step()}); choose a new --output')
    m.save(0, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))
    m.wait_until_finished()
  return directory
