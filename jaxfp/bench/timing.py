"""Timing steps, counting compilations, compiling ahead of time."""

from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax


def measure(step: Callable[[], None], sync: Callable[[], None], *,
            warmup: int, repeats: int, min_repeat_s: float
            ) -> tuple[float, list[float]]:
  """Median seconds per step, and every repeat's seconds per step.

  `step` enqueues one step (it may return before the device is done);
  `sync` waits for the device. One calibration step picks how many steps a
  repeat runs so that a repeat lasts at least `min_repeat_s`, which keeps
  millisecond GPU steps above timer and dispatch noise.
  """
  for _ in range(warmup):
    step()
  if warmup:
    sync()
  start = time.perf_counter()
  step()
  sync()
  one = time.perf_counter() - start
  per_repeat = max(1, math.ceil(min_repeat_s / max(one, 1e-6)))
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    for _ in range(per_repeat):
      step()
    sync()
    times.append((time.perf_counter() - start) / per_repeat)
  return statistics.median(times), times


class CompileCounter(contextlib.AbstractContextManager):
  """Names of the XLA programs compiled while the context is open.

  Listens to jax's backend-compile event, so it sees every compilation,
  including the small ones of eager ops, but not persistent-cache hits.
  """

  def __init__(self):
    self.names: list[str] = []
    # Python functions traced for compilation (pmap and jit both name
    # the function here, where the compile event may only say 'jit(_fun)').
    self.traced: list[str] = []

  def _listen(self, event, duration, **kwargs):
    del duration
    name = str(kwargs.get('fun_name', '?'))
    if event == '/jax/core/compile/backend_compile_duration':
      self.names.append(name)
    elif event == '/jax/core/compile/jaxpr_trace_duration':
      self.traced.append(name)

  def __enter__(self):
    jax.monitoring.register_event_duration_secs_listener(self._listen)
    return self

  def __exit__(self, *exc):
    jax.monitoring.unregister_event_duration_listener(self._listen)
    return False


def aot(fn, *args) -> tuple[Any, float, float]:
  """fn compiled ahead of time for `args`; (compiled, lower s, compile s)."""
  start = time.perf_counter()
  lowered = fn.lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  return (compiled, lowered_at - start, time.perf_counter() - lowered_at)


def xla_flops(compiled) -> float | None:
  """XLA's own FLOP estimate of a compiled program, a cross-check."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # Not every backend implements it.
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  value = (cost or {}).get('flops')
  return float(value) if value else None
