"""Stop cleanly when the machine is being taken away (SIGTERM), the user
presses Ctrl-C (SIGINT) or the terminal closes (SIGHUP): one path for all.

The trainer enters `StopOnSignal` around its loop and asks
`requested(step)` after every step; when it says yes the trainer saves a
checkpoint and returns, and the next launch resumes from that step. A
second Ctrl-C stops at once (KeyboardInterrupt), without saving. Every
process of a run must stop at the same step, since the save is a
collective: with `jax.distributed` running, JAX's preemption service picks
it; otherwise a Python handler records the signal and, with several
processes, every step all-gathers the flags (docs/multihost.md, "Design").
"""

from __future__ import annotations

import contextlib
import signal
import threading

from absl import logging
import jax
from jax.experimental import multihost_utils
import numpy as np

SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def exit_status(name: str | None) -> int | None:
  """The exit status of a run stopped by the signal `name` after it saved:
  None (0) for SIGTERM, since a preempted job that saved did its part and a
  scheduler requeues it; the shell's 128 + signal number for a user's stop
  (Ctrl-C 130, a closed terminal 129), so that `cmd && next` stops too."""
  if not name or name == 'SIGTERM' or not hasattr(signal, name):
    return None
  return 128 + int(getattr(signal, name))


class Interrupted(BaseException):
  """One of SIGNALS outside the training loop (start-up, the final
  evaluation); its argument is the signal's name.

  A BaseException, as KeyboardInterrupt is: library code that catches
  Exception (a dataset build) must not swallow it.
  """


def _restore(previous: dict) -> None:
  """Gives each signal of {signal: handler} its handler back."""
  for s, handler in previous.items():
    # None: the previous handler was not installed from Python.
    signal.signal(s, signal.SIG_DFL if handler is None else handler)


def _not_ignored(signals):
  """The signals not ignored in this process: a job started in the
  background of a script (`cmd &`) ignores SIGINT, and must go on doing so."""
  return [s for s in signals if signal.getsignal(s) is not signal.SIG_IGN]


def _coordinated() -> bool:
  """True when JAX's preemption service owns SIGTERM in this process."""
  return (jax.distributed.is_initialized() and
          bool(jax.config.jax_enable_preemption_service))


class StopOnSignal:
  """Context manager: turns SIGNALS into a request to stop at a step.
  Where JAX's preemption service owns SIGTERM, no handler is
  installed (a Ctrl-C there is KeyboardInterrupt: one process cannot stop
  the others at an agreed step without it).

  `requested(step)` must be called by every process at every step, with the
  same step numbers; it is true on all of them at the same step.
  """

  def __init__(self, signals=SIGNALS):
    self._signals = tuple(signals)
    self._previous = {}
    self._received = None
    self._coordinated = False
    self.reason = ''

  def _handle(self, signum, frame):
    del frame
    name = signal.Signals(signum).name
    if self._received is not None and signum == signal.SIGINT:
      # A second Ctrl-C: the user will not wait for the save.
      raise KeyboardInterrupt
    self._received = self._received or name
    logging.warning('Received %s; saving after the current step and '
                    'stopping%s.', name,
                    ' (Ctrl-C again to stop at once, unsaved)'
                    if signum == signal.SIGINT else '')

  def __enter__(self):
    # JAX's preemption service installed its own SIGTERM handler; a Python
    # handler would replace it and leave the other processes uninformed.
    self._coordinated = _coordinated() and signal.SIGTERM in self._signals
    # Signal handlers can only be installed from the main thread (a trainer
    # run in a worker thread simply does not react to signals).
    if (not self._coordinated and
        threading.current_thread() is threading.main_thread()):
      for s in _not_ignored(self._signals):
        self._previous[s] = signal.signal(s, self._handle)
    return self

  def __exit__(self, *exc):
    _restore(self._previous)
    self._previous.clear()
    return False

  def requested(self, step: int) -> bool:
    """Whether to save and stop after `step`; the same on every process."""
    if self._coordinated:
      if multihost_utils.reached_preemption_sync_point(step):
        self.reason = ('SIGTERM to one of the processes (JAX preemption '
                       'service)')
        return True
      return False
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


@contextlib.contextmanager
def interrupt_on_signal(signals=SIGNALS):
  """Turns SIGNALS into `Interrupted` while the block runs, so
  that a run stopped before or after its training loop (a zoo or dataset
  build can take minutes) unwinds, releases its workdir lock and exits
  (`exit_status`), instead of dying by the default action
  (status 143, or a KeyboardInterrupt traceback, the lock left behind).

  `StopOnSignal` takes over inside the loop and gives this handler back when
  it exits. Not installed where JAX's preemption service owns SIGTERM, off
  the main thread, or with several processes: one process unwinding alone
  would leave the others waiting in a collective.
  """
  install = (not _coordinated() and jax.process_count() == 1 and
             threading.current_thread() is threading.main_thread())
  if not install:
    yield
    return

  def handle(signum, frame):
    del frame
    raise Interrupted(signal.Signals(signum).name)

  previous = {s: signal.signal(s, handle) for s in _not_ignored(signals)}
  try:
    yield
  finally:
    _restore(previous)
