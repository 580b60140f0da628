"""All of jaxfp's checkpoint I/O (Orbax).

One layout for every writer: a CheckpointManager directory (a run's
`<workdir>/checkpoints`, or a converter's `<output>/checkpoints`) whose steps
hold two items,

  state  the trainer's TrainState, or {'step', 'params', 'batch_stats'} of
         converted published weights;
  meta   JSON: the run's config and the task's facts, or the converted
         network's constructor fields ('model') and preprocessing.

Writers: the trainer (`manager`, `save`, `restore_latest`) and the converter
(`write`); readers (`read`, which ignores any optimiser state): evaluation
and inference.

What cannot be used is said in one line (CheckpointError): a missing path,
a step that cannot be read (files missing or damaged, no meta), one holding
NaN or infinite values, a network that does not fit the config. Readers and
the trainer fall back to an older step (`read`, `restore_latest`); `save`
refuses a state that is not finite, so such a step is never the latest.
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


class CheckpointError(ValueError):
  """A checkpoint that cannot be used; the message says which and why."""


def manager(directory: str, *, create: bool = False,
            max_to_keep: int | None = None) -> ocp.CheckpointManager:
  """The CheckpointManager of `directory` (items 'state' and 'meta')."""
  return ocp.CheckpointManager(
      os.path.abspath(directory),
      options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep,
                                           create=create),
      item_names=ITEMS,
      # Named, so that a step's metadata (shapes) can be read on its own.
      item_handlers={'state': ocp.StandardCheckpointHandler(),
                     'meta': ocp.JsonCheckpointHandler()})


def of_run(workdir: str, max_to_keep: int | None = None
           ) -> ocp.CheckpointManager:
  """The manager of a training run's `<workdir>/checkpoints`, created."""
  return manager(os.path.join(workdir, DIRECTORY), create=True,
                 max_to_keep=max_to_keep)


def _is_step(folder: str) -> bool:
  """Whether `folder` is one step's: `<step>/state`."""
  return bool(re.fullmatch(r'\d+', os.path.basename(folder)) and
              os.path.isdir(os.path.join(folder, 'state')))


def find(path: str, step: int | None = None) -> tuple[str, list[int]]:
  """(CheckpointManager directory, steps) of a run, checkpoints or step dir.

  `path` may be a run directory (or a converter's output), its
  `checkpoints` folder or one step's folder. The steps are those to try,
  newest first: the one asked for (one step's folder, or `step`), else
  every step of the directory.
  """
  path = os.path.abspath(os.path.expanduser(path))
  if not os.path.exists(path):
    raise CheckpointError(f'checkpoint path {path} does not exist')
  if not os.path.isdir(path):
    raise CheckpointError(f'checkpoint path {path} is a file; give a run '
                          'folder, its checkpoints folder or one step folder')
  if _is_step(path):
    name = os.path.basename(path)
    if step is not None and step != int(name):
      raise CheckpointError(f'{path} is the checkpoint of step {name}, but '
                            f'--step={step}')
    return os.path.dirname(path), [int(name)]
  if os.path.isdir(os.path.join(path, DIRECTORY)):
    path = os.path.join(path, DIRECTORY)
  steps = sorted((int(d) for d in os.listdir(path)
                  if _is_step(os.path.join(path, d))), reverse=True)
  if not steps:
    raise CheckpointError(f'{path} holds no checkpoint (no <step>/state '
                          'folder)')
  if step is None:
    return path, steps
  if step not in steps:
    raise CheckpointError(f'{path} has no step {step}; it has '
                          f'{sorted(steps)}')
  return path, [step]


def _reason(error: Exception) -> str:
  """One line on why a step could not be read (Orbax and TensorStore
  messages run long: their JSON specs are cut)."""
  text = ' '.join(str(error).split()).split(' [tensorstore_spec')[0]
  text = text.split(' tensorstore_spec=')[0]
  if len(text) > 300:
    text = text[:297] + '...'
  return f'{type(error).__name__}: {text}' if text else type(error).__name__


def _key_path(path) -> str:
  """'params/fen/conv_0/kernel' for a tree path of dicts, lists or
  attributes alike (a TrainState and its restored dict match)."""
  return jax.tree_util.keystr(path, simple=True, separator='/')


def _shapes(tree) -> dict[str, tuple]:
  # np.shape reads `.shape` where a leaf has one (Orbax's metadata does).
  return {_key_path(p): tuple(np.shape(x))
          for p, x in jax.tree_util.tree_leaves_with_path(tree)}


def mismatches(expected, found) -> list[str]:
  """What differs between two trees' leaves (paths and shapes): 'missing',
  'unexpected', or both shapes; empty when they fit."""
  want, have = _shapes(expected), _shapes(found)
  problems = [f'{k}: missing' for k in sorted(set(want) - set(have))]
  problems += [f'{k}: unexpected' for k in sorted(set(have) - set(want))]
  problems += [f'{k}: checkpoint {have[k]}, model {want[k]}'
               for k in sorted(set(want) & set(have)) if want[k] != have[k]]
  return problems


def non_finite(tree) -> str | None:
  """The path of the first floating-point leaf holding a NaN or infinity."""
  for path, x in jax.tree_util.tree_leaves_with_path(tree):
    x = np.asarray(x)
    if np.issubdtype(x.dtype, np.inexact) and not np.all(np.isfinite(x)):
      return _key_path(path)
  return None


class _Unusable(Exception):
  """A step that cannot be resumed from; the message says why."""


def _finite(tree):
  """`tree`, or _Unusable naming its first non-finite leaf."""
  bad = non_finite(tree)
  if bad:
    raise _Unusable(f'it holds non-finite values ({bad})')
  return tree


def _restore(m: ocp.CheckpointManager, step: int, **items):
  """The `items` (Orbax restore args) of `step`; a failure is _Unusable."""
  try:
    return m.restore(step, args=ocp.args.Composite(**items))
  except KeyError as e:  # Orbax's word for a missing item ('meta').
    raise _Unusable(str(e.args[0] if e.args else e)) from None
  except Exception as e:  # pylint: disable=broad-except
    # Missing or damaged files surface as many types (TensorStore's
    # ValueError, FileNotFoundError, JSON errors...); all mean "unusable".
    raise _Unusable(_reason(e)) from None


def _read_step(m: ocp.CheckpointManager, step: int) -> Checkpoint:
  restored = _restore(m, step, state=ocp.args.StandardRestore(),
                      meta=ocp.args.JsonRestore())
  state = restored.state
  if 'params' not in state:
    raise _Unusable(f'its state holds no params; found {sorted(state)}')
  variables = {'params': state['params'],
               'batch_stats': state.get('batch_stats') or {}}
  return Checkpoint(directory=str(m.directory), step=step,
                    variables=_finite(jax.tree.map(np.asarray, variables)),
                    meta=dict(restored.meta or {}))


def read(path: str, step: int | None = None) -> Checkpoint:
  """The parameters, BatchNorm statistics and meta of one step (`find`).

  The state is restored without a target, so it works whatever optimiser
  state (or none) was saved beside the parameters. With no step named, the
  newest step that reads is used: a damaged newer one is named in a
  warning. A step named (or none usable) that cannot be read, or that holds
  NaN or infinite values, raises CheckpointError saying why.
  """
  directory, steps = find(path, step)
  unusable = []  # (step, why)
  with manager(directory) as m:
    for candidate in steps:
      try:
        checkpoint = _read_step(m, candidate)
      except _Unusable as e:
        unusable.append((candidate, str(e)))
        continue
      for skipped, why in unusable:
        logging.warning('Skipping the unusable checkpoint of step %d in %s '
                        '(%s); using step %d.', skipped, directory, why,
                        candidate)
      return checkpoint
  if len(steps) == 1:
    raise CheckpointError(f'the checkpoint {directory}/{steps[0]} cannot be '
                          f'used: {unusable[0][1]}')
  raise CheckpointError(f'no usable checkpoint in {directory}: ' + '; '.join(
      f'step {skipped}: {why}' for skipped, why in unusable))


def _restore_fitting(m: ocp.CheckpointManager, step: int, target):
  """The state of `step` restored onto `target`'s structure.

  Raises _Unusable for a damaged step, and CheckpointError when the saved
  network's shapes differ from `target`'s: then the config is another, and
  no earlier step would fit either.
  """
  try:
    saved = m.item_metadata(step)['state']
  except Exception as e:  # pylint: disable=broad-except
    raise _Unusable(f'its metadata cannot be read: {_reason(e)}') from None
  if saved is None:
    raise _Unusable('its state has no metadata')
  expected = {k: getattr(target, k) for k in ('params', 'batch_stats')}
  problems = mismatches(expected, {k: saved[k] for k in expected
                                   if k in saved})
  if problems:
    raise CheckpointError(
        f'the checkpoint of step {step} in {m.directory} does not fit the '
        f'configured model ({len(problems)} differences: '
        + '; '.join(problems[:4]) + "): resume with the run's own config "
        '(saved in its meta) or use another --workdir')
  return _finite(_restore(m, step,
                         state=ocp.args.StandardRestore(target)).state)


def restore_latest(m: ocp.CheckpointManager, state):
  """The newest usable checkpoint's state, or `state` unchanged if there is
  no checkpoint.

  A step that cannot be read (files missing or damaged) or holds NaN or
  infinite values is unusable: it is named in a warning, renamed
  `<step>.unusable` (so the run can save that step again) and the step
  before it is tried. A step whose network does not fit `state` (another
  config) is a CheckpointError, as is a directory with no usable step.
  Restored as host numpy arrays, which every process can read whatever its
  devices; the trainer replicates them onto its devices.
  """
  target = jax.device_get(state)
  unusable, problems = [], []
  for step in sorted(m.all_steps(), reverse=True):
    try:
      restored = _restore_fitting(m, step, target)
    except _Unusable as e:
      logging.warning('The checkpoint of step %d in %s is unusable (%s); '
                      'trying the step before it.', step, m.directory, e)
      unusable.append(step)
      problems.append(f'step {step}: {e}')
      continue
    _set_aside(m, unusable)
    logging.info('Resuming from the checkpoint of step %d in %s', step,
                 m.directory)
    return restored
  if unusable:
    raise CheckpointError(f'no usable checkpoint in {m.directory} (' +
                          '; '.join(problems) + '); move that folder away to '
                          'start the run again')
  return state


def _set_aside(m: ocp.CheckpointManager, steps) -> None:
  """Renames unusable steps to `<step>.unusable` (kept for inspection;
  Orbax ignores the name), on process 0, and lets every process's manager
  see it."""
  if not steps:
    return
  ocp.multihost.sync_global_processes('jaxfp_unusable_steps_found')
  if jax.process_index() == 0:
    for step in steps:
      source = os.path.join(m.directory, str(step))
      target, n = f'{source}.unusable', 1
      while os.path.lexists(target):
        target, n = f'{source}.unusable{n}', n + 1
      os.rename(source, target)
      logging.warning('Moved the unusable checkpoint of step %d to %s.', step,
                      target)
  ocp.multihost.sync_global_processes('jaxfp_unusable_steps_moved')
  m.reload()


def save(m: ocp.CheckpointManager, state, step: int, meta: dict) -> None:
  """Saves the replicated `state` (device 0's copy) at `step`.

  Every process calls this: Orbax synchronises them and writes host numpy
  arrays from the primary process only. A state holding NaN or infinite
  values is refused (CheckpointError).
  """
  # Each leaf's first local shard, copied as is: indexing (x[0]) would
  # compile and run a small program per leaf.
  host_state = jax.tree.map(
      lambda x: np.asarray(x)[0],
      jax.device_get(jax.tree.map(lambda x: x.addressable_data(0), state)))
  bad = non_finite(host_state)
  if bad:
    # A state that cannot be resumed from must not become the latest step.
    raise CheckpointError(f'refusing to checkpoint step {step}: the state '
                          f'holds non-finite values ({bad})')
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
