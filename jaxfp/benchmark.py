"""Throughput of jaxfp against the published PyTorch recipe, on one device.

  python -m jaxfp.benchmark                       # every row, published sizes
  python -m jaxfp.benchmark --rows=parsing_train,parsing_infer --repeats=10
  python -m jaxfp.benchmark --dtype=bfloat16 --output=/tmp/bench.json
  python -m jaxfp.benchmark --smoke               # tiny models, one step a row
  python -m jaxfp.benchmark --rows=parsing_train --profile_dir=/tmp/prof

Rows (images/s, median of --repeats timed repeats after --warmup untimed
calls; each repeat runs enough steps to last --min_repeat_s):
  parsing_train    FEN-17 + PN, 64x64, batch 16: jaxfp.train's own pmapped
                   train_step (1 device) against the same model, losses and
                   batch in PyTorch eager float32 (Adam 1e-4).
  parsing_infer    the same model's forward pass in inference mode.
  detection_train  FEN-31 + detection head, 128x128, batch 32, published
                   detection weights (fingerprint constraints + 20 x CE).
  detection_infer  its forward pass.
  input_pipeline   jaxfp's tf.data train iterator reading TFDS records built
                   from an image folder in the published layout, against a
                   PyTorch DataLoader decoding that folder's PNGs.

Compile time is jaxfp's lower + compile of each step. Achieved FLOP/s count
the conv and dense FLOPs of the step (jaxfp.flops) against --peak_flops
(default: per device, see jaxfp.flops.default_peak). The PyTorch column needs
torch (an optional requirement) and is skipped without it.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import glob
import gzip
import json
import math
import os
import platform
import re
import statistics
import tempfile
import time
import types
from collections.abc import Callable, Sequence
from typing import Any

from absl import app
from absl import flags
import flax
from flax import jax_utils
import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from configs import detection as detection_config
from configs import fen as fen_config
from jaxfp import benchmark_torch
from jaxfp import flops as flops_lib
from jaxfp import input_pipeline
from jaxfp import schema as schema_lib
from jaxfp import train
from jaxfp.tasks import classification
from jaxfp.tasks import parsing

ROWS = ('parsing_train', 'parsing_infer', 'detection_train',
        'detection_infer', 'input_pipeline')
PARSING_SIZE = 64  # Of the input_pipeline row's images.


@dataclasses.dataclass
class Options:
  """What to measure; `main` fills it from flags, tests build it directly."""
  rows: Sequence[str] = ROWS
  parsing_batch: int = 16
  detection_batch: int = 32
  warmup: int = 2
  repeats: int = 5
  min_repeat_s: float = 0.2
  dtype: str = 'float32'
  torch: str = 'auto'  # 'auto' | 'on' | 'off'.
  torch_threads: int = 0  # 0 = torch's default.
  peak_flops: float | None = None
  data_gms: int = 4
  data_images_per_gm: int = 128
  data_workers: int = 2
  smoke: bool = False
  profile_dir: str | None = None
  profile_steps: int = 3
  output: str | None = None

  def __post_init__(self):
    unknown = sorted(set(self.rows) - set(ROWS))
    if unknown:
      raise ValueError(f'unknown rows {unknown}; known: {list(ROWS)}')
    if self.torch not in ('auto', 'on', 'off'):
      raise ValueError(f"torch={self.torch!r}: use 'auto', 'on' or 'off'")
    jnp.dtype(self.dtype)
    if self.smoke:
      # One tiny step a row: what the test suite runs.
      self.parsing_batch = self.detection_batch = 2
      self.warmup, self.repeats, self.min_repeat_s = 0, 1, 0.0
      self.data_gms, self.data_images_per_gm, self.data_workers = 2, 4, 0
      self.profile_steps = 1


# ---------------------------------------------------------------- timing ----


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


def trainer_compilations(num_train_steps: int = 6) -> dict[str, Any]:
  """What the real trainer compiles over a few steps, an eval and a resume.

  Runs jaxfp.train.train_and_evaluate on configs/fen.py:test with an eval
  half way, then once more in the same workdir (a resume that only
  re-evaluates). Returns the traced function names and backend compilations
  of each run. The pmapped train and eval steps both show as `_fun`: a first
  run should compile it twice (train, eval), a resume once (eval). The first
  call also counts the zoo's build when the zoo is not cached yet.
  """
  config = fen_config.get_config('test')
  config.num_train_steps = num_train_steps
  config.eval_every_steps = max(1, num_train_steps // 2)
  config.checkpoint_every_steps = num_train_steps
  config.log_every_steps = 1
  out = {}
  with tempfile.TemporaryDirectory(prefix='jaxfp-compiles-') as workdir:
    for run_name in ('first run', 'resumed run'):
      with CompileCounter() as counter:
        train.train_and_evaluate(config, workdir)
      out[run_name] = {
          'traced': dict(collections.Counter(counter.traced)),
          'compiled': dict(collections.Counter(counter.names)),
          'num_compiled': len(counter.names)}
  return out


def _aot(fn, *args) -> tuple[Any, float, float]:
  """fn compiled ahead of time for `args`; (compiled, lower s, compile s)."""
  start = time.perf_counter()
  lowered = fn.lower(*args)
  lowered_at = time.perf_counter()
  compiled = lowered.compile()
  return (compiled, lowered_at - start, time.perf_counter() - lowered_at)


def _xla_flops(compiled) -> float | None:
  """XLA's own FLOP estimate of a compiled program, a cross-check."""
  try:
    cost = compiled.cost_analysis()
  except Exception:  # pylint: disable=broad-except
    return None  # Not every backend implements it.
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  value = (cost or {}).get('flops')
  return float(value) if value else None


# ----------------------------------------------------------------- rows -----


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


def _holder_step(compiled, state, *rest):
  """step/sync closures that feed each step's state (donated) to the next."""
  box = {'state': state, 'out': None}

  def step():
    box['state'], *box['out'] = compiled(box['state'], *rest)

  def sync():
    jax.block_until_ready(box['state'])
  return step, sync


def task_config(opts: Options, task: str):
  """The published recipe of `task` from configs/ (their test preset under
  --smoke), at the benchmark's batch size and dtype."""
  get = fen_config.get_config if task == 'parsing' else (
      detection_config.get_config)
  config = get('test' if opts.smoke else '')
  config.model.dtype = opts.dtype
  config.batch_size = (opts.parsing_batch if task == 'parsing'
                       else opts.detection_batch)
  return config


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
    info = input_pipeline.DataInfo(
        ground_truth=gt, train_gms=gt.gm_names, test_gms=(),
        num_train_images=0, num_test_images=0, skipped_files=())
    rows = rng.integers(0, len(gt), batch_size)
    batch.update(continuous=gt.continuous[rows], discrete=gt.discrete[rows],
                 coarse=gt.coarse[rows], fine=gt.fine[rows],
                 gm=rows.astype(np.int32))
    return parsing.ParsingTask(config, info=info), batch
  info = types.SimpleNamespace(class_names=('fake', 'real'))
  batch['label'] = rng.integers(0, 2, batch_size).astype(np.int32)
  return classification.ClassificationTask(config, info=info), batch


def _describe(config) -> str:
  m = config.model
  size = config.data.image_size
  head = (f'PN{tuple(m.pn_channels)}' if config.task == 'parsing' else
          f'{config.task} head {tuple(m.head_channels) or "(published)"}')
  return f'FEN-{m.fen_depth} w{m.fen_width} + {head}, {size}x{size}, {m.dtype}'


def task_workloads(opts: Options, task_name: str, device,
                   names: Sequence[str]) -> dict[str, Workload]:
  """The workloads of `names` among `<task>_train` and `<task>_infer`.

  `<task>_train` is jaxfp.train.train_step pmapped on `device` with the
  state donated, as the trainer runs it; `<task>_infer` the forward pass in
  inference mode, jitted.
  """
  config = task_config(opts, task_name)
  task, batch = _task_and_batch(config, config.batch_size)
  size = config.data.image_size
  lr_fn = train.create_learning_rate_fn(config)
  init_key, dropout_key = jax.random.split(jax.random.key(config.seed))
  state = train.create_train_state(init_key, config, task.model, size, lr_fn)
  description = _describe(config)
  torch_spec = dict(config=config, batch=batch, task=task)
  out = {}
  if f'{task_name}_train' in names:
    devices = [device]
    collection = train.metrics_collection(task.train_metric_names)
    p_train_step = jax.pmap(
        functools.partial(train.train_step, task=task,
                          learning_rate_fn=lr_fn, collection=collection),
        axis_name=train.AXIS, donate_argnums=(0,), devices=devices)
    # Replicated from host copies (flax's replicate stacks jax.Arrays with
    # an eager jnp.stack, one compilation per leaf shape), on a mesh named
    # like the pmap axis, so that step 1's inputs are sharded as every
    # later step's (the outputs of step 1) are.
    replicate = functools.partial(jax_utils.replicate, devices=devices,
                                  axis_name=train.AXIS)
    r_state = replicate(jax.device_get(state))
    # One device: replicating the batch is sharding it.
    r_batch = replicate(batch)
    r_keys = replicate(jax.device_get(dropout_key))
    flops = flops_lib.count_flops(p_train_step, r_state, r_batch, r_keys)
    compiled, lower_s, compile_s = _aot(p_train_step, r_state, r_batch,
                                        r_keys)
    step, sync = _holder_step(compiled, r_state, r_batch, r_keys)
    out[f'{task_name}_train'] = Workload(
        f'{task_name}_train', config.batch_size, size, step, sync, flops,
        compile_s, lower_s, _xla_flops(compiled), compiled.as_text(),
        description, torch_spec)
  if f'{task_name}_infer' in names:
    # Without the pmap axis: inference needs no cross-device mean.
    model = task.model.clone(axis_name=None)
    variables = jax.device_put(
        {'params': state.params, 'batch_stats': state.batch_stats}, device)
    images = jax.device_put(batch['image'], device)
    infer = jax.jit(lambda v, x: model.apply(v, x, train=False))
    flops = flops_lib.count_flops(infer, variables, images)
    compiled, lower_s, compile_s = _aot(infer, variables, images)
    box = {}

    def infer_step():
      box['out'] = compiled(variables, images)
    out[f'{task_name}_infer'] = Workload(
        f'{task_name}_infer', config.batch_size, size, infer_step,
        lambda: jax.block_until_ready(box['out']), flops, compile_s,
        lower_s, _xla_flops(compiled), compiled.as_text(), description,
        torch_spec)
  return out


# ------------------------------------------------------- input pipeline -----


def write_image_tree(root: str, num_gms: int, per_gm: int, source_size: int,
                     seed: int = 0) -> None:
  """PNG images in the published layout, root/images/<gm>/*.png, plus a
  ground-truth table (schema.write_csv) so the model_parsing builder reads it.
  """
  rng = np.random.default_rng(seed)
  s = schema_lib.ZOO
  names = [f'gm_{g:03d}' for g in range(num_gms)]
  rows = []
  for g, name in enumerate(names):
    folder = os.path.join(root, 'images', name)
    os.makedirs(folder, exist_ok=True)
    for i in range(per_gm):
      # Smooth noise: compresses like a photo, unlike white noise.
      small = rng.integers(0, 256, (source_size // 4, source_size // 4, 3),
                           np.uint8)
      Image.fromarray(small).resize((source_size, source_size),
                                    Image.BILINEAR).save(
                                        os.path.join(folder, f'{i:05d}.png'))
    row = {c: float(g + j) for j, c in enumerate(s.continuous)}
    row.update({p.name: p.classes[g % p.num_classes] for p in s.discrete})
    row.update({c: g % 2 for c in s.coarse + s.fine})
    rows.append(row)
  schema_lib.write_csv(root, s, names, rows)


def input_pipeline_row(opts: Options, use_torch: bool) -> dict[str, Any]:
  """Images/s of the parsing train iterator (records -> normalised batch).

  The records are built once from a synthetic tree in the published layout
  (not timed). jaxfp's train iterator caches decoded images after its first
  pass, so it is timed twice: the first pass (decode-bound) and the steady
  state. The PyTorch side decodes every PNG every time, as published.
  """
  batch = opts.parsing_batch
  with tempfile.TemporaryDirectory(prefix='jaxfp-bench-data-') as tmp:
    manual = os.path.join(tmp, 'manual')
    write_image_tree(manual, opts.data_gms, opts.data_images_per_gm,
                     source_size=2 * PARSING_SIZE)
    c = input_pipeline.default_data_config()
    c.name = 'model_parsing'
    c.cache_dir = os.path.join(tmp, 'cache')
    c.manual_dir = manual
    c.image_size = PARSING_SIZE
    c.test_gms = ('gm_000',)
    start = time.perf_counter()
    info = input_pipeline.load_info(c)
    build_s = time.perf_counter() - start
    per_pass = info.num_train_images // batch
    if per_pass < 1:
      raise ValueError(f'{info.num_train_images} training images give no '
                       f'batch of {batch}; raise --data_images_per_gm')
    it = input_pipeline.train_iterator(c, info, global_batch_size=batch,
                                       local_device_count=1, seed=0)
    start = time.perf_counter()
    for _ in range(per_pass):
      next(it)
    first_pass = per_pass * batch / (time.perf_counter() - start)
    box = {}
    median, _ = measure(lambda: box.update(b=next(it)), lambda: None,
                        warmup=opts.warmup, repeats=opts.repeats,
                        min_repeat_s=opts.min_repeat_s)
    row = {
        'name': 'input_pipeline', 'batch': batch, 'image_size': PARSING_SIZE,
        'description': (f'{info.num_train_images} PNGs of '
                        f'{2 * PARSING_SIZE}px in {opts.data_gms - 1} GM '
                        f'folders -> {PARSING_SIZE}x{PARSING_SIZE} batches'),
        'jaxfp_images_per_s': batch / median,
        'jaxfp_first_pass_images_per_s': first_pass,
        'jaxfp_record_build_s': build_s,
    }
    if use_torch:
      loader = benchmark_torch.image_loader(
          os.path.join(manual, 'images'), PARSING_SIZE, batch,
          opts.data_workers, input_pipeline.MEAN, input_pipeline.STD)
      t_median, _ = measure(lambda: box.update(b=next(loader)), lambda: None,
                            warmup=opts.warmup, repeats=opts.repeats,
                            min_repeat_s=opts.min_repeat_s)
      row['torch_images_per_s'] = batch / t_median
      row['torch_workers'] = opts.data_workers
  return row


# -------------------------------------------------------------- profile -----


def _hlo_section(hlo: str, title: str, pattern: str) -> list[tuple]:
  """Rows of one of the tables (FileNames, StackFrames...) after the HLO."""
  block = re.search(rf'^{title}\n(.*?)(?:\n\n|\Z)', hlo, re.S | re.M)
  return re.findall(pattern, block.group(1)) if block else []


def _hlo_tables(hlo: str) -> tuple[dict[str, dict], dict[str, set[str]]]:
  """From HLO text: instruction name -> {opcode, op_name, files, calls,
  target}, and computation name -> the opcodes inside it.

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


def profile_workload(w: Workload, logdir: str, steps: int) -> dict[str, Any]:
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
  unattributed = 0.0
  for e in device or events:
    seconds = e.get('dur', 0.0) / 1e6 / steps  # us -> s per step.
    instruction = _event_instruction(e, instructions)
    if instruction is None:
      if device:  # Host events that are no HLO op are not op time.
        unattributed += seconds
      continue
    totals[categorize(instruction, computations)] += seconds
  totals['other'] += unattributed
  op_total = sum(totals.values())
  return {
      'wall_s_per_step': wall,
      'op_s_per_step': op_total,
      'source': 'device' if device else 'host thunks',
      'categories_s_per_step': totals,
      'share': {k: (v / op_total if op_total else 0.0)
                for k, v in totals.items()},
  }


# ------------------------------------------------------------- the run ------


def time_workload(w: Workload, opts: Options, peak: float | None,
                  torch_platform: str | None) -> dict[str, Any]:
  """One row: jaxfp's timing, and PyTorch's when `torch_platform` is set."""
  with CompileCounter() as counter:
    median, times = measure(w.step, w.sync, warmup=opts.warmup,
                            repeats=opts.repeats,
                            min_repeat_s=opts.min_repeat_s)
  achieved, fraction = flops_lib.utilisation(w.flops_per_step, median, peak)
  row = {
      'name': w.name, 'description': w.description, 'batch': w.batch,
      'image_size': w.image_size,
      'jaxfp_images_per_s': w.batch / median,
      'jaxfp_step_ms': 1e3 * median,
      'jaxfp_step_ms_repeats': [1e3 * t for t in times],
      'jaxfp_lower_s': w.lower_s, 'jaxfp_compile_s': w.compile_s,
      # Anything compiled while timing would be a recompilation.
      'compiles_during_timing': len(counter.names),
      'gflop_per_image': w.flops_per_step / w.batch / 1e9,
      'xla_gflop_per_image': (w.xla_flops_per_step / w.batch / 1e9
                              if w.xla_flops_per_step else None),
      'jaxfp_tflop_per_s': achieved / 1e12,
      'jaxfp_fraction_of_peak': fraction,
  }
  if torch_platform:
    step, sync = benchmark_torch.make_step(
        w.torch_spec, torch_platform, train=w.name.endswith('_train'),
        threads=opts.torch_threads)
    t_median, t_times = measure(step, sync, warmup=opts.warmup,
                                repeats=opts.repeats,
                                min_repeat_s=opts.min_repeat_s)
    # The same convolutions and matrix products, so the same FLOPs.
    t_achieved, t_fraction = flops_lib.utilisation(w.flops_per_step,
                                                   t_median, peak)
    row.update({
        'torch_images_per_s': w.batch / t_median,
        'torch_step_ms': 1e3 * t_median,
        'torch_step_ms_repeats': [1e3 * t for t in t_times],
        'torch_tflop_per_s': t_achieved / 1e12,
        'torch_fraction_of_peak': t_fraction,
    })
  return row


def _environment(device, opts: Options, peak, peak_source,
                 torch_version) -> dict[str, Any]:
  return {
      'device': f'{device.platform}: {device.device_kind}',
      'host_cpus': os.cpu_count(), 'python': platform.python_version(),
      'jax': jax.__version__, 'flax': flax.__version__, 'torch': torch_version,
      'dtype': opts.dtype, 'peak_flops': peak, 'peak_source': peak_source,
      'warmup': opts.warmup, 'repeats': opts.repeats,
      'min_repeat_s': opts.min_repeat_s, 'smoke': opts.smoke,
      'date': time.strftime('%Y-%m-%d %H:%M:%S'),
  }


def run(opts: Options) -> dict[str, Any]:
  """Measures the rows of `opts`; prints the table, writes opts.output."""
  load_start = os.getloadavg() if hasattr(os, 'getloadavg') else None
  device = jax.local_devices()[0]
  torch_version = None
  if opts.torch != 'off':
    torch_version = benchmark_torch.version()
    if torch_version is None:
      if opts.torch == 'on':
        raise ImportError('--torch=on but torch is not installed')
      print('torch is not installed: the PyTorch column is skipped.')
  torch_platform = device.platform if torch_version else None
  if opts.peak_flops:
    peak, peak_source = opts.peak_flops, '--peak_flops'
  else:
    peak, peak_source = flops_lib.default_peak(device, opts.dtype)
  rows = {}
  for task in ('parsing', 'detection'):
    names = [n for n in (f'{task}_train', f'{task}_infer') if n in opts.rows]
    if not names:
      continue
    workloads = task_workloads(opts, task, device, names)
    for name in names:
      rows[name] = time_workload(workloads[name], opts, peak, torch_platform)
    if opts.profile_dir and f'{task}_train' in names:
      rows[f'{task}_train']['profile'] = profile_workload(
          workloads[f'{task}_train'],
          os.path.join(opts.profile_dir, f'{task}_train'), opts.profile_steps)
    del workloads  # Frees the device buffers before the next task.
  if 'input_pipeline' in opts.rows:
    rows['input_pipeline'] = input_pipeline_row(opts, bool(torch_version))
  for r in rows.values():
    ours, theirs = r.get('jaxfp_images_per_s'), r.get('torch_images_per_s')
    r['jaxfp_over_torch'] = ours / theirs if ours and theirs else None
  env = _environment(device, opts, peak, peak_source, torch_version)
  env['load_average_start'] = load_start
  env['load_average_end'] = (os.getloadavg() if hasattr(os, 'getloadavg')
                             else None)
  result = {'environment': env, 'rows': rows}
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
      f"({env['peak_source']}).", '',
      '| row | batch | jaxfp img/s | PyTorch img/s | jaxfp / PyTorch | '
      'compile s | GFLOP/img | jaxfp TFLOP/s (% peak) | '
      'PyTorch TFLOP/s (% peak) |',
      '|---|---|---|---|---|---|---|---|---|']
  for name, r in result['rows'].items():
    ours, theirs = r.get('jaxfp_images_per_s'), r.get('torch_images_per_s')

    def flops(prefix, r=r):
      t = r.get(f'{prefix}_tflop_per_s')
      f = r.get(f'{prefix}_fraction_of_peak')
      if t is None:
        return '-'
      return f'{_num(t)} ({_num(100 * f, 2)}%)' if f == f else _num(t)
    lines.append(
        f"| {name} | {r['batch']} | {_num(ours)} | {_num(theirs)} | "
        f"{_num(r.get('jaxfp_over_torch'))} | "
        f"{_num(r.get('jaxfp_compile_s'))} | "
        f"{_num(r.get('gflop_per_image'))} | {flops('jaxfp')} | "
        f"{flops('torch')} |")
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


def main(argv):
  if len(argv) > 1:
    raise ValueError(f'unexpected arguments {argv[1:]}')
  f = flags.FLAGS
  # PyTorch shares the GPU within this process: without this, jax takes 75%
  # of its memory up front. Read when jax starts its backend, i.e. later.
  os.environ.setdefault('XLA_PYTHON_CLIENT_PREALLOCATE', 'false')
  if f.check_recompilation:
    print(json.dumps(trainer_compilations(), indent=2))
    return
  run(Options(
      rows=tuple(f.rows), parsing_batch=f.parsing_batch,
      detection_batch=f.detection_batch, warmup=f.warmup, repeats=f.repeats,
      min_repeat_s=f.min_repeat_s, dtype=f.dtype, torch=f.torch,
      torch_threads=f.torch_threads, peak_flops=f.peak_flops,
      data_gms=f.data_gms, data_images_per_gm=f.data_images_per_gm,
      data_workers=f.data_workers, smoke=f.smoke,
      profile_dir=f.profile_dir, profile_steps=f.profile_steps,
      output=f.output))


def _define_flags():
  d = Options()
  flags.DEFINE_list('rows', list(ROWS), 'Rows to measure.')
  flags.DEFINE_integer('parsing_batch', d.parsing_batch,
                       'Batch of the parsing rows and the input pipeline '
                       '(published 16).')
  flags.DEFINE_integer('detection_batch', d.detection_batch,
                       'Batch of the detection rows (published 32).')
  flags.DEFINE_integer('warmup', d.warmup, 'Untimed steps after compiling.')
  flags.DEFINE_integer('repeats', d.repeats,
                       'Timed repeats; the median is reported.')
  flags.DEFINE_float('min_repeat_s', d.min_repeat_s,
                     'Each repeat runs enough steps to last this long.')
  flags.DEFINE_enum('dtype', d.dtype, ['float32', 'bfloat16'],
                    "jaxfp's compute dtype (PyTorch stays float32).")
  flags.DEFINE_enum('torch', d.torch, ['auto', 'on', 'off'],
                    'The PyTorch column: auto = when torch is installed.')
  flags.DEFINE_integer('torch_threads', d.torch_threads,
                       'torch.set_num_threads; 0 = torch default.')
  flags.DEFINE_float('peak_flops', d.peak_flops,
                     'Peak FLOP/s of one device; default: '
                     'jaxfp.flops.default_peak.')
  flags.DEFINE_integer('data_gms', d.data_gms,
                       'GM folders of the synthetic image tree (one is the '
                       'held-out GM).')
  flags.DEFINE_integer('data_images_per_gm', d.data_images_per_gm,
                       'PNGs per GM folder.')
  flags.DEFINE_integer('data_workers', d.data_workers,
                       'PyTorch DataLoader workers.')
  flags.DEFINE_bool('smoke', d.smoke,
                    'Tiny models and batches, one timed step per row.')
  flags.DEFINE_string('profile_dir', d.profile_dir,
                      'If set, trace the train rows there and print where a '
                      'step goes.')
  flags.DEFINE_integer('profile_steps', d.profile_steps, 'Steps to trace.')
  flags.DEFINE_string('output', d.output, 'JSON file of the results.')
  flags.DEFINE_bool('check_recompilation', False,
                    'Instead of timing, run the trainer on '
                    'configs/fen.py:test and list what it compiles.')


if __name__ == '__main__':
  _define_flags()
  app.run(main)
