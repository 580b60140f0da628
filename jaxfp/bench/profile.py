"""Where a step goes: a profiler trace of a workload, each op attributed to
its HLO instruction (parsed from the compiled program's text) and to a part
of the train step (convolutions by kind, dense, FFT, BatchNorm, optimizer,
losses)."""

from __future__ import annotations

import glob
import gzip
import json
import os
import re
import time
from typing import Any

import jax

from jaxfp.bench import workloads


def _hlo_section(hlo: str, title: str, pattern: str) -> list[tuple]:
  """Rows of one of the tables (FileNames, StackFrames...) after the HLO."""
  block = re.search(rf'^{title}\n(.*?)(?:\n\n|\Z)', hlo, re.S | re.M)
  return re.findall(pattern, block.group(1)) if block else []


def _hlo_tables(hlo: str) -> tuple[dict[str, dict], dict[str, dict]]:
  """From HLO text: instruction name -> {name, opcode, op_name, files, calls,
  target, window}, and computation name -> {opcodes, window} inside it.

  `files` are the source files of the Python stack that emitted the op,
  from the module's StackFrames table.
  """
  files = dict(_hlo_section(hlo, 'FileNames', r'(\d+) "([^"]*)"'))
  locations = dict(_hlo_section(hlo, 'FileLocations',
                                r'(\d+) \{file_name_id=(\d+)'))
  frames = {k: (loc, parent) for k, loc, parent in _hlo_section(
      hlo, 'StackFrames',
      r'(\d+) \{file_location_id=(\d+) parent_frame_id=(\d+)')}

  def frame_files(frame):
    out, seen = set(), set()
    while frame in frames and frame not in seen:
      seen.add(frame)
      loc, frame = frames[frame]
      out.add(files.get(locations.get(loc, ''), ''))
    return out

  instructions, computations, current = {}, {}, None
  line_re = re.compile(
      r'^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*.*?\b([a-z][a-z0-9\-]*)\(')

  def window(line):
    size = re.search(r'window=\{size=([\dx]+)', line)
    return max(int(d) for d in size.group(1).split('x')) if size else 0
  for line in hlo.splitlines():
    header = re.match(r'^(?:ENTRY\s+)?%?([\w.\-]+)\s.*\{$', line)
    if header and not line.startswith(' '):
      current = header.group(1)
      computations[current] = {'opcodes': set(), 'window': 0}
      continue
    m = line_re.match(line)
    if not m:
      continue
    name, opcode = m.groups()
    op_name = re.search(r'op_name="([^"]*)"', line)
    frame = re.search(r'stack_frame_id=(\d+)', line)
    calls = re.search(r'calls=%?([\w.\-]+)', line)
    target = re.search(r'custom_call_target="([^"]*)"', line)
    instructions[name] = {
        'name': name, 'opcode': opcode,
        'op_name': op_name.group(1) if op_name else '',
        'files': frame_files(frame.group(1)) if frame else set(),
        'calls': calls.group(1) if calls else None,
        'target': target.group(1) if target else '', 'window': window(line)}
    if current is not None:
      computations[current]['opcodes'].add(opcode)
      computations[current]['window'] = max(computations[current]['window'],
                                            window(line))
  return instructions, computations


PROFILE_CATEGORIES = ('conv forward', 'conv input grad', 'conv kernel grad',
                      'dense', 'fft', 'batchnorm', 'optimizer', 'losses',
                      'other')


def _conv_kind(instruction: dict, window: int) -> str:
  """Forward, input-gradient or kernel-gradient convolution.

  cuDNN names them; on a CPU a gradient convolution is one XLA made (no
  `transpose(` in its op_name, or no op_name at all), and a kernel
  gradient is the one whose window spans the activations (wider than any
  published kernel, 5).
  """
  name = (instruction['name'] + instruction['target']).lower()
  if 'bw-filter' in name or 'backwardfilter' in name:
    return 'conv kernel grad'
  if 'bw-input' in name or 'backwardinput' in name:
    return 'conv input grad'
  op_name = instruction['op_name']
  if op_name and 'transpose(' not in op_name:
    return 'conv forward'
  return 'conv kernel grad' if window > 5 else 'conv input grad'


def categorize(instruction: dict, computations: dict[str, dict]) -> str:
  """Which part of a train step an HLO instruction belongs to."""
  called = computations.get(instruction['calls'] or '',
                            {'opcodes': set(), 'window': 0})
  opcodes = {instruction['opcode']} | called['opcodes']
  last = instruction['op_name'].rsplit('/', 1)[-1]
  target = instruction['target'].lower()
  if ('convolution' in opcodes or last == 'conv_general_dilated'
      or 'conv' in target):
    return _conv_kind(instruction, max(instruction['window'],
                                       called['window']))
  if 'dot' in opcodes or last == 'dot_general' or 'gemm' in target:
    return 'dense'
  if 'fft' in opcodes or 'fft' in target:
    return 'fft'
  files = ' '.join(instruction['files'])
  if 'optax' in files or 'train_state.py' in files:
    return 'optimizer'
  if 'normalization.py' in files or '/norm_' in instruction['op_name']:
    return 'batchnorm'
  if '/losses/' in files or '/tasks/' in files:
    return 'losses'
  return 'other'


def _trace_events(logdir: str) -> list[dict]:
  paths = sorted(glob.glob(os.path.join(logdir, '**',
                                        '*perfetto_trace.json.gz'),
                           recursive=True), key=os.path.getmtime)
  if not paths:
    raise FileNotFoundError(f'no perfetto trace under {logdir}')
  with gzip.open(paths[-1]) as f:
    data = json.load(f)
  return data['traceEvents'] if isinstance(data, dict) else data


def _event_instruction(event: dict, instructions: dict) -> dict | None:
  """The HLO instruction a trace event ran, if it can be told.

  CPU thunks and GPU kernels outside command buffers name it in
  args.hlo_op; a kernel inside a command buffer (CUDA graph) carries the
  fusion's name with '_N' for '.N', and its op_name in args.name.
  """
  args = event.get('args') or {}
  name = event.get('name', '')
  for candidate in (args.get('hlo_op'), name,
                    re.sub(r'_(\d+)$', r'.\1', name)):
    if candidate in instructions:
      return instructions[candidate]
  if args.get('name'):
    return {'name': name, 'opcode': '', 'op_name': args['name'],
            'files': set(), 'calls': None, 'target': '', 'window': 0}
  return None


def profile_workload(w: workloads.Workload, logdir: str,
                     steps: int) -> dict[str, Any]:
  """Traces `steps` steps of `w`; time per category of HLO op, per step.

  Device events (GPU kernels) are used when the trace has any, else the
  host's per-thunk events (CPU). On a CPU, thunks run on several threads
  at once, so the op times may sum to more than the wall time; on a GPU
  the gap between the op time and the wall time is the device idling
  (launch and host overhead).
  """
  instructions, computations = _hlo_tables(w.hlo)
  w.step()
  w.sync()
  with jax.profiler.trace(logdir, create_perfetto_trace=True):
    start = time.perf_counter()
    for _ in range(steps):
      w.step()
    w.sync()
    wall = (time.perf_counter() - start) / steps
  trace = _trace_events(logdir)
  process = {e['pid']: e['args']['name'] for e in trace
             if e.get('ph') == 'M' and e.get('name') == 'process_name'}
  events = [e for e in trace if e.get('ph') == 'X']
  device = [e for e in events
            if '/device:' in process.get(e.get('pid'), '')]
  totals = dict.fromkeys(PROFILE_CATEGORIES, 0.0)
  for e in device or events:
    seconds = e.get('dur', 0.0) / 1e6 / steps  # us -> s per step.
    instruction = _event_instruction(e, instructions)
    if instruction is not None:
      totals[categorize(instruction, computations)] += seconds
    elif device:  # On the host, events that run no HLO op are not op time.
      totals['other'] += seconds
  op_total = sum(totals.values())
  return {
      'wall_s_per_step': wall,
      'op_s_per_step': op_total,
      'source': 'device' if device else 'host thunks',
      'categories_s_per_step': totals,
      'share': {k: (v / op_total if op_total else 0.0)
                for k, v in totals.items()},
  }
