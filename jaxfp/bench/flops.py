"""Analytic FLOP counts of convolutions and dense layers, and device peaks.

FLOPs are read off a function's jaxpr, so the count follows the model's code
(including the backward pass of a train step) instead of a hand-kept table
of layers that could drift from it. Only the matrix work is counted, one
multiply-add = 2 FLOPs; what is left out and the per-row checks:
docs/performance.md, "Method".
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

import jax
from jax import extend as jex


def _conv_flops(eqn) -> int:
  rhs = eqn.invars[1].aval.shape
  out = eqn.outvars[0].aval.shape
  spec = eqn.params['dimension_numbers'].rhs_spec  # (out, in, *spatial).
  window = math.prod(rhs[d] for d in spec[2:])
  # The kernel's input-feature size is already per feature group.
  return 2 * math.prod(out) * rhs[spec[1]] * window


def _dot_flops(eqn) -> int:
  lhs = eqn.invars[0].aval.shape
  (contract, _), _ = eqn.params['dimension_numbers']
  out = eqn.outvars[0].aval.shape
  return 2 * math.prod(out) * math.prod(lhs[d] for d in contract)


def jaxpr_flops(jaxpr) -> int:
  """Conv and dense FLOPs of a (closed) jaxpr, sub-jaxprs included.

  A scan's body counts `length` times; of a cond's branches the largest
  counts; a while loop's body counts once (its trip count is not static).
  """
  jaxpr = getattr(jaxpr, 'jaxpr', jaxpr)
  total = 0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'conv_general_dilated':
      total += _conv_flops(eqn)
    elif name == 'dot_general':
      total += _dot_flops(eqn)
    elif name == 'cond':
      total += max(jaxpr_flops(b) for b in eqn.params['branches'])
    else:
      inner = sum(jaxpr_flops(j) for j in jex.core.jaxprs_in_params(
          eqn.params))
      total += inner * (eqn.params['length'] if name == 'scan' else 1)
  return total


def count_flops(fn: Callable, *args, **kwargs) -> int:
  """Conv and dense FLOPs of one call `fn(*args, **kwargs)`.

  Args may be arrays or jax.ShapeDtypeStruct; nothing is run. For a pmapped
  `fn` the count is per device.
  """
  return jaxpr_flops(jax.make_jaxpr(fn)(*args, **kwargs))


# Dense (no sparsity) peaks from NVIDIA's datasheets, FLOP/s, by a substring
# of jax's device_kind. 'float32' is the TF32 tensor-core peak: XLA (default
# precision) and cuDNN (torch.backends.cudnn.allow_tf32, on by default) run
# float32 convolutions in TF32 on Ampere and later GPUs.
GPU_PEAKS = (
    ('H200', {'float32': 494.7e12, 'bfloat16': 989.4e12}),
    ('H100 PCIe', {'float32': 378.0e12, 'bfloat16': 756.0e12}),
    ('H100', {'float32': 494.7e12, 'bfloat16': 989.4e12}),  # SXM.
    ('A100', {'float32': 156.0e12, 'bfloat16': 312.0e12}),
    ('L4', {'float32': 60.0e12, 'bfloat16': 121.0e12}),
    ('V100', {'float32': 15.7e12, 'bfloat16': 15.7e12}),  # No TF32 / bf16.
)


def _cpuinfo(field: str) -> str:
  """The first core's `field` in /proc/cpuinfo; '' when there is none."""
  try:
    with open('/proc/cpuinfo') as f:
      line = next((line for line in f if line.startswith(field)), '')
  except OSError:
    line = ''
  return line.partition(':')[2].strip()


def _cpu_ghz() -> float:
  """Current clock of the first core from /proc/cpuinfo, else 2.5 GHz."""
  try:
    return float(_cpuinfo('cpu MHz')) / 1000
  except ValueError:
    return 2.5


def _cpu_flops_per_cycle() -> int:
  """float32 FLOPs per cycle per core from the vector extensions present.

  Two FMA pipes per core (Zen 2+, Haswell+): AVX-512 2 x 16 x 2 = 64,
  AVX2 + FMA 2 x 8 x 2 = 32, else SSE 2 x 4 x 2 = 16. bfloat16 has no
  faster path on most x86 cores, so it gets the same peak.
  """
  flags = set(_cpuinfo('flags').split())
  if 'avx512f' in flags:
    return 64
  if {'avx2', 'fma'} <= flags:
    return 32
  return 16


def default_peak(device: jax.Device, dtype: str = 'float32'
                 ) -> tuple[float | None, str]:
  """(peak FLOP/s of one device, where that number comes from).

  None when the device is unknown; pass --peak_flops then.
  """
  if device.platform == 'cpu':
    cores = len(os.sched_getaffinity(0)) if hasattr(
        os, 'sched_getaffinity') else os.cpu_count()
    ghz, per_cycle = _cpu_ghz(), _cpu_flops_per_cycle()
    return (cores * ghz * 1e9 * per_cycle,
            f'{cores} cores x {ghz:.2f} GHz x {per_cycle} float32 FLOP/cycle '
            '(two FMA pipes of the widest vector unit in /proc/cpuinfo)')
  kind = device.device_kind
  for key, peaks in GPU_PEAKS:
    if key in kind:
      name = 'TF32' if dtype == 'float32' else dtype
      return (peaks.get(dtype, peaks['float32']),
              f'{kind}: datasheet dense {name} tensor-core peak')
  return None, f'{kind}: no default peak known; pass --peak_flops'


def utilisation(flops: float, seconds: float, peak: float | None
                ) -> tuple[float, float]:
  """(achieved FLOP/s, fraction of peak or NaN)."""
  achieved = flops / seconds if seconds > 0 else float('nan')
  return achieved, (achieved / peak if peak else math.nan)
