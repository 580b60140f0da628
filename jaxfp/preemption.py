"""Stop cleanly when the machine is being taken away (SIGTERM).

Spot and preemptible VMs, SLURM (`--signal`, `scancel`) and Kubernetes send
SIGTERM some seconds before they kill a job. The trainer installs
`StopOnSignal` around its loop and asks `requested()` after every step; when
it says yes the trainer saves a checkpoint and returns, and the next launch
resumes from that step.
"""

from __future__ import annotations

import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM,)


class StopOnSignal:
  """Context manager: records SIGTERM instead of dying; restores on exit.

  With several processes, `requested()` is a collective: it is true on every
  process as soon as any one of them was signalled, so all stop at the same
  step (and all take part in the final checkpoint save).
  """

  def __init__(self, signals=SIGNALS):
    self._signals = tuple(signals)
    self._previous = {}
    self._received = None
    self.reason = ''

  def _handle(self, signum, frame):
    del frame
    self._received = signal.Signals(signum).name
    logging.warning('Received %s; stopping after the current step.',
                    self._received)

  def __enter__(self):
    # Signal handlers can only be installed from the main thread (a trainer
    # run in a worker thread simply does not react to signals).
    if threading.current_thread() is threading.main_thread():
      for s in self._signals:
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    for s, handler in self._previous.items():
      signal.signal(s, handler)
    self._previous.clear()
    return False

  def requested(self) -> bool:
    local = self._received is not None
    if jax.process_count() > 1:
      flags = multihost_utils.process_allgather(np.int32(local))
      stop = bool(np.any(flags))
      if stop and not local:
        self._received = 'a signal on another process'
      local = stop
    if local:
      self.reason = self._received
    return local
