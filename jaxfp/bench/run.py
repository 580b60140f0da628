"""Throughput of jaxfp against the published PyTorch recipe, on one device
(`python -m jaxfp.benchmark`): each row's images/s, compile time and
achieved FLOP/s, in one table. The rows and how they are measured:
docs/performance.md, "Method". The PyTorch column needs torch (an optional
requirement) and is skipped without it; the model rows need neither torch
nor TensorFlow.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from typing import Any

import flax
import jax

from jaxfp.bench import flops
from jaxfp.bench import options
from jaxfp.bench import pipeline
from jaxfp.bench import profile
from jaxfp.bench import timing
from jaxfp.bench import workloads
from jaxfp.report import tables


def _timed(side: str, step, sync, w: workloads.Workload,
           opts: options.Options, peak: float | None) -> dict[str, Any]:
  """`side`'s (jaxfp or torch) images/s, step ms and FLOP/s on `w`."""
  median, times = timing.measure(step, sync, warmup=opts.warmup,
                                 repeats=opts.repeats,
                                 min_repeat_s=opts.min_repeat_s)
  # Both sides run the same convolutions and matrix products: same FLOPs.
  achieved, fraction = flops.utilisation(w.flops_per_step, median, peak)
  return {f'{side}_images_per_s': w.batch / median,
          f'{side}_step_ms': 1e3 * median,
          f'{side}_step_ms_repeats': [1e3 * t for t in times],
          f'{side}_tflop_per_s': achieved / 1e12,
          f'{side}_fraction_of_peak': fraction}


def time_workload(w: workloads.Workload, opts: options.Options,
                  peak: float | None, torch_peer=None,
                  torch_platform: str = 'cpu') -> dict[str, Any]:
  """One row: jaxfp's timing, and PyTorch's when `torch_peer` is given."""
  with timing.CompileCounter() as counter:
    timed = _timed('jaxfp', w.step, w.sync, w, opts, peak)
  row = {
      'name': w.name, 'description': w.description, 'batch': w.batch,
      'image_size': w.image_size, **timed,
      'jaxfp_lower_s': w.lower_s, 'jaxfp_compile_s': w.compile_s,
      # Anything compiled while timing would be a recompilation.
      'compiles_during_timing': len(counter.names),
      'gflop_per_image': w.flops_per_step / w.batch / 1e9,
      'xla_gflop_per_image': (w.xla_flops_per_step / w.batch / 1e9
                              if w.xla_flops_per_step else None),
  }
  if torch_peer is not None:
    step, sync = torch_peer.make_step(
        w.torch_spec, torch_platform, train=w.name.endswith('_train'),
        threads=opts.torch_threads)
    row.update(_timed('torch', step, sync, w, opts, peak))
  return row


def _environment(device, opts: options.Options, peak, peak_source,
                 torch_version, load_start) -> dict[str, Any]:
  return {
      'device': f'{device.platform}: {device.device_kind}',
      'host_cpus': os.cpu_count(), 'python': platform.python_version(),
      'jax': jax.__version__, 'flax': flax.__version__, 'torch': torch_version,
      'dtype': opts.dtype, 'peak_flops': peak, 'peak_source': peak_source,
      'warmup': opts.warmup, 'repeats': opts.repeats,
      'min_repeat_s': opts.min_repeat_s, 'smoke': opts.smoke,
      'date': time.strftime('%Y-%m-%d %H:%M:%S'),
      'load_average_start': load_start,
      'load_average_end': (os.getloadavg() if hasattr(os, 'getloadavg')
                           else None),
  }


def _torch_peer(opts: options.Options):
  """`jaxfp.pytorch.bench_column` when the PyTorch column is wanted and
  torch is installed; imported here only, so jaxfp's rows need no torch."""
  if opts.torch == 'off':
    return None
  try:
    from jaxfp.pytorch import bench_column  # pylint: disable=g-import-not-at-top
  except ImportError:
    if opts.torch == 'on':
      raise ImportError('--torch=on but torch is not installed') from None
    print('torch is not installed: the PyTorch column is skipped.')
    return None
  return bench_column


def _config(opts: options.Options, task: str):
  """The recipe of `task` at the benchmark's batch size and dtype."""
  parsing = task == 'parsing'
  config = (opts.parsing_config if parsing else
            opts.detection_config).copy_and_resolve_references()
  config.model.dtype = opts.dtype
  config.batch_size = opts.parsing_batch if parsing else opts.detection_batch
  return config


def run(opts: options.Options) -> dict[str, Any]:
  """Measures the rows of `opts`; prints the table, writes opts.output."""
  load_start = os.getloadavg() if hasattr(os, 'getloadavg') else None
  device = jax.local_devices()[0]
  torch_peer = _torch_peer(opts)
  torch_version = torch_peer.version() if torch_peer else None
  if opts.peak_flops:
    peak, peak_source = opts.peak_flops, '--peak_flops'
  else:
    peak, peak_source = flops.default_peak(device, opts.dtype)
  rows = {}
  for task in ('parsing', 'detection'):
    names = [n for n in (f'{task}_train', f'{task}_infer') if n in opts.rows]
    if not names:
      continue
    ready = workloads.task_workloads(_config(opts, task), device, names)
    for name in names:
      rows[name] = time_workload(ready[name], opts, peak, torch_peer,
                                 device.platform)
    if opts.profile_dir and f'{task}_train' in names:
      rows[f'{task}_train']['profile'] = profile.profile_workload(
          ready[f'{task}_train'],
          os.path.join(opts.profile_dir, f'{task}_train'), opts.profile_steps)
    del ready  # Frees the device buffers before the next task.
  if 'input_pipeline' in opts.rows:
    rows['input_pipeline'] = pipeline.input_pipeline_row(opts, torch_peer)
  for r in rows.values():
    ours, theirs = r.get('jaxfp_images_per_s'), r.get('torch_images_per_s')
    r['jaxfp_over_torch'] = ours / theirs if ours and theirs else None
  result = {'environment': _environment(device, opts, peak, peak_source,
                                        torch_version, load_start),
            'rows': rows}
  print(format_table(result))
  if opts.output:
    os.makedirs(os.path.dirname(os.path.abspath(opts.output)), exist_ok=True)
    with open(opts.output, 'w') as f:
      json.dump(result, f, indent=2)
  return result


def _num(x, digits: int = 3) -> str:
  """x to `digits` significant figures, '-' when missing."""
  if x is None or (isinstance(x, float) and math.isnan(x)):
    return '-'
  return f'{x:.{digits}g}' if abs(x) < 10 ** digits else f'{x:,.0f}'


def format_table(result: dict[str, Any]) -> str:
  """A markdown table of the rows, with the environment above it."""
  env = result['environment']
  lines = [
      f"{env['device']}; jax {env['jax']}, torch {env['torch'] or 'absent'};"
      f" {env['dtype']}; median of {env['repeats']} repeats after "
      f"{env['warmup']} warm-up steps; load average at start "
      f"{_num((env['load_average_start'] or [None])[0])}.",
      f"Peak {_num(env['peak_flops'] and env['peak_flops'] / 1e12)} TFLOP/s "
      f"({env['peak_source']}).", '']

  def utilisation(r, prefix):
    t = r.get(f'{prefix}_tflop_per_s')
    f = r.get(f'{prefix}_fraction_of_peak')
    if t is None:
      return '-'
    return f'{_num(t)} ({_num(100 * f, 2)}%)' if f == f else _num(t)
  rows = [[name, r['batch'], _num(r.get('jaxfp_images_per_s')),
           _num(r.get('torch_images_per_s')),
           _num(r.get('jaxfp_over_torch')), _num(r.get('jaxfp_compile_s')),
           _num(r.get('gflop_per_image')), utilisation(r, 'jaxfp'),
           utilisation(r, 'torch')] for name, r in result['rows'].items()]
  lines.append(tables.markdown(
      ['row', 'batch', 'jaxfp img/s', 'PyTorch img/s', 'jaxfp / PyTorch',
       'compile s', 'GFLOP/img', 'jaxfp TFLOP/s (% peak)',
       'PyTorch TFLOP/s (% peak)'], rows))
  lines.append('')
  lines += [f"- {name}: {r['description']}" for name, r in
            result['rows'].items()]
  for name, r in result['rows'].items():
    p = r.get('profile')
    if p:
      lines.append(f"\nWhere a {name} step goes ({p['source']} op time "
                   f"{_num(1e3 * p['op_s_per_step'])} ms, wall "
                   f"{_num(1e3 * p['wall_s_per_step'])} ms per step):")
      lines += [f'  {k:17s} {_num(1e3 * v):>8s} ms  '
                f"{_num(100 * p['share'][k], 2):>4s}%"
                for k, v in p['categories_s_per_step'].items()]
  return '\n'.join(lines)
