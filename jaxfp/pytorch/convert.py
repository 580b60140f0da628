"""Published PyTorch checkpoints -> jaxfp Flax variables and checkpoints
(`python -m jaxfp.convert_torch`); the file layout, the key mapping and the
parity measured: docs/converter.md. torch is imported only when a PyTorch
file is read.
"""

from __future__ import annotations

import collections
import os
import re
import warnings
from collections.abc import Mapping

from absl import logging
from flax import traverse_util
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxfp import checkpoints
from jaxfp import models
from jaxfp.core import files
from jaxfp.core import normalization
from jaxfp.core import schema as schema_lib
from jaxfp.models import fields
from jaxfp.models import parsing_network

# The published networks, by the task each serves: their input size.
IMAGE_SIZE = {'parsing': 64, 'detection': 128, 'attribution': 128}
TASKS = tuple(IMAGE_SIZE)
CHECKPOINT_KEYS = ('state_dict_cnn', 'state_dict_class')
# Branches of the published parsing network that no head reads.
UNUSED_PARSING_LAYERS = ('fc4', 'fc5', 'fc6', 'fc7')
# What the first head conv looks like in each task: (in channels, kernel).
# A mismatch means the file belongs to another task.
HEAD_SIGNATURE = {'parsing': (3, 3), 'detection': (3, 5),
                  'attribution': (1, 5)}
FIRST_HEAD_KEY = 'layer1.0.weight'


class ConversionError(ValueError):
  """A checkpoint that cannot be converted; the message says why."""


def class_names(task: str, num_classes: int) -> list[str]:
  """Names of the classifier's outputs, in index order.

  They are not published: (real, fake) for detection and `gan_1..` for
  attribution are read off the published scripts (docs/converter.md, "Facts
  read in the published code").
  """
  if task == 'detection' and num_classes == 2:
    return ['real', 'fake']
  return ['real'] + [f'gan_{i}' for i in range(1, num_classes)]


# ------------------------------------------------------------ reading ------


# The Python objects that torch's weights-only loader refuses, as its
# messages name them: a global outside its allowlist, or one of a blocked
# module (os, posix, subprocess, ...).
_GLOBALS = (
    r'WeightsUnpickler error: (Unsupported global: GLOBAL \S+ was not an '
    r'allowed global by default)',
    r'(Trying to load unsupported GLOBAL \S+ whose module \S+ is blocked)',
)
# Anything else it found (an opcode it does not support, ...).
_OTHER = r'WeightsUnpickler error:\s*(\S[^\n]*?)(?: Please use|\n|$)'


def _not_loaded(path: str, error: Exception) -> str:
  """Why `path` was not loaded, without torch's advice.

  torch's refusal of a pickle that holds more than tensors suggests loading
  it with weights_only=False or allowlisting its globals: both run the
  file's code. For a file from elsewhere that is the wrong advice, so none
  of torch's text is passed on but what it found.
  """
  text = re.sub(r'\x1b\[[0-9;]*m', '', str(error))
  if 'Weights only load failed' in text:
    found = next((m for m in (re.search(p, text) for p in _GLOBALS) if m),
                 None)
    if found:
      what = f'holds Python objects besides tensors ({found.group(1)})'
    else:
      found = re.search(_OTHER, text)
      what = ("cannot be read by torch's weights-only loader" +
              (f' ({found.group(1).rstrip(".")})' if found else ''))
    return (f'{path} {what}, so it was not loaded: a published checkpoint '
            'holds tensors in plain containers. Loading it otherwise '
            '(weights_only=False, allowlisted globals) would run code from '
            'the file; do not, unless you made it yourself')
  first = (text.strip().splitlines() or [''])[0]
  return (f'{path} is not a PyTorch checkpoint that torch.load(weights_only='
          f'True) can read: {type(error).__name__}: {first}')


def read_torch_checkpoint(path: str) -> tuple[dict, dict]:
  """(FEN state dict, head state dict) of a published file, as numpy."""
  import torch  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise FileNotFoundError(f'PyTorch checkpoint {path} does not exist')
  try:
    with warnings.catch_warnings():
      # A plain pickle (not torch.save's zip) is refused below all the same;
      # torch's warning about its protocol would only add a stray line.
      warnings.filterwarnings('ignore', message='Detected pickle protocol')
      checkpoint = torch.load(path, map_location='cpu', weights_only=True)
  except Exception as e:  # pylint: disable=broad-except
    raise ConversionError(_not_loaded(path, e)) from None
  if not isinstance(checkpoint, Mapping) or any(
      k not in checkpoint for k in CHECKPOINT_KEYS):
    found = (sorted(map(str, checkpoint)) if isinstance(checkpoint, Mapping)
             else type(checkpoint).__name__)
    raise ConversionError(
        f'{path} is not a published checkpoint: it needs the keys '
        f'{list(CHECKPOINT_KEYS)}, found {found}')
  ignored = [k for k in checkpoint if k not in CHECKPOINT_KEYS]
  if ignored:
    logging.info('Ignoring %s of %s (optimizer states are not needed for '
                 'inference)', sorted(map(str, ignored)), path)

  def to_numpy(state, name):
    if not isinstance(state, Mapping):
      raise ConversionError(f'{path}: {name} is a {type(state).__name__}, '
                            'not a state dict')
    return {k: v.detach().cpu().numpy() for k, v in state.items()
            if isinstance(v, torch.Tensor)}
  return (to_numpy(checkpoint['state_dict_cnn'], 'state_dict_cnn'),
          to_numpy(checkpoint['state_dict_class'], 'state_dict_class'))


# ------------------------------------------------------------ mapping ------
# An entry (torch prefix, flax path, kind) maps `prefix.weight` etc. onto
# params[path] (and batch_stats[path] for BatchNorm).


def _fen_entries(depth: int):
  yield 'layers.0.0', ('fen', 'conv_0'), 'conv'
  for i in range(1, depth - 1):
    yield f'layers.{i}.0', ('fen', f'conv_{i}'), 'conv'
    yield f'layers.{i}.1', ('fen', f'norm_{i}'), 'norm'
  yield f'layers.{depth - 1}', ('fen', f'conv_{depth - 1}'), 'conv'


def _head_entries(task: str, module: nn.Module):
  parsing = task == 'parsing'
  scope = 'pn' if parsing else 'head'
  for i in range(len(module.pn_channels if parsing else module.head_channels)):
    yield f'layer{i + 1}.0', (scope, f'conv_{i}'), 'conv'
  # The classifiers' fc1, fc2; the parsing network's shared fc1..fc3.
  for i in range(len(parsing_network.HIDDEN) if parsing else 2):
    yield f'fc{i + 1}', (scope, f'fc_{i}'), 'dense'
  if parsing:
    s = module.schema
    heads = (('continuous',) + s.discrete_names, s.coarse, s.fine)
    for group, names in zip(('fc8', 'fc9', 'fc10'), heads):
      for i, name in enumerate(names):
        yield f'{group}_{i + 1}', (scope, f'head_{name}'), 'dense'


SUFFIXES = {'conv': ('weight', 'bias'), 'dense': ('weight', 'bias'),
            'norm': ('weight', 'bias', 'running_mean', 'running_var')}
# Present in BatchNorm state dicts since PyTorch 0.4.1; carries no weights.
OPTIONAL_SUFFIXES = {'norm': ('num_batches_tracked',)}


# A kernel's torch axes in Flax's order: OIHW -> HWIO, (out, in) -> (in, out).
KERNEL_AXES = {'conv': (2, 3, 1, 0), 'dense': (1, 0)}
# (collection, leaf name) of each BatchNorm tensor.
NORM_LEAVES = {'weight': ('params', 'scale'), 'bias': ('params', 'bias'),
               'running_mean': ('batch_stats', 'mean'),
               'running_var': ('batch_stats', 'var')}


def _to_flax(kind: str, suffix: str, array: np.ndarray):
  """(collection, leaf name, array in Flax layout) of one torch tensor."""
  if kind == 'norm':
    return (*NORM_LEAVES[suffix], array)
  if suffix == 'bias':
    return 'params', 'bias', array
  return 'params', 'kernel', array.transpose(KERNEL_AXES[kind])


def _torch_shape(kind: str, suffix: str, flax_shape: tuple[int, ...]):
  if suffix == 'weight' and kind in KERNEL_AXES:
    # argsort of a permutation is its inverse.
    return tuple(flax_shape[a] for a in np.argsort(KERNEL_AXES[kind]))
  return tuple(flax_shape)


def _layer_indices(keys, pattern: str) -> list[int]:
  return sorted({int(m.group(1)) for k in keys
                 if (m := re.match(pattern, k))})


def _check_task(task: str, cnn: dict, head: dict) -> None:
  """Clear errors for a file of another task (or not a FEN at all)."""
  if FIRST_HEAD_KEY in head:
    found = tuple(head[FIRST_HEAD_KEY].shape)
    signature = (found[1], found[2]) if len(found) == 4 else None
    if signature != HEAD_SIGNATURE[task]:
      c, k = HEAD_SIGNATURE[task]
      likely = [t for t, s in HEAD_SIGNATURE.items() if s == signature]
      hint = (f'; it looks like a {likely[0]} checkpoint' if likely else '')
      raise ConversionError(
          f'--task={task}: state_dict_class[{FIRST_HEAD_KEY!r}] should have '
          f'shape (channels, {c}, {k}, {k}), found {found}{hint}')
  first = 'layers.0.0.weight'
  if first in cnn and (cnn[first].ndim != 4 or cnn[first].shape[1] != 3):
    raise ConversionError(
        f'state_dict_cnn[{first!r}] should have shape (width, 3, 3, 3), '
        f'found {tuple(cnn[first].shape)}')


def _voted(state: dict, votes: list[tuple[str, int]]) -> int:
  """The size most of the (key, axis) tensors present in `state` agree on;
  a tie goes to the first. One tensor of a wrong shape then does not set
  the size for all the others, and the shape check names it."""
  sizes = [int(state[key].shape[axis]) for key, axis in votes
           if key in state and state[key].ndim > axis]
  return collections.Counter(sizes).most_common(1)[0][0]


def _fen_width(cnn: dict, depth: int) -> int:
  votes = [('layers.0.0.weight', 0), (f'layers.{depth - 1}.weight', 1)]
  for i in range(1, depth - 1):
    votes += [(f'layers.{i}.0.weight', 0), (f'layers.{i}.0.weight', 1),
              (f'layers.{i}.0.bias', 0)]
    votes += [(f'layers.{i}.1.{s}', 0) for s in SUFFIXES['norm']]
  return _voted(cnn, votes)


def _build_module(task: str, cnn: dict, head: dict) -> nn.Module:
  """The Flax module whose shapes the state dicts describe."""
  depths = _layer_indices(cnn, r'layers\.(\d+)\.')
  if not depths or 'layers.0.0.weight' not in cnn:
    raise ConversionError('state_dict_cnn has no FEN layers (keys '
                          f'layers.0.0.weight ...); found {sorted(cnn)[:8]}')
  blocks = _layer_indices(head, r'layer(\d+)\.0\.weight$')
  if blocks != list(range(1, len(blocks) + 1)) or not blocks:
    raise ConversionError(
        'state_dict_class needs conv blocks layer1.0.weight, layer2.0.weight, '
        f'... in sequence; found blocks {blocks}')
  channels = tuple(_voted(head, [(f'layer{i}.0.weight', 0),
                                 (f'layer{i + 1}.0.weight', 1),
                                 (f'layer{i}.0.bias', 0)]) for i in blocks)
  common = dict(fen_depth=depths[-1] + 1,
                fen_width=_fen_width(cnn, depths[-1] + 1))
  if task == 'parsing':
    return models.FingerprintParser(schema_lib.PUBLISHED, pn_channels=channels,
                                    **common)
  for key in ('fc1.weight', 'fc2.weight'):
    if key not in head:
      raise ConversionError(f'state_dict_class lacks {key!r}')
  return models.FingerprintClassifier(
      task, num_classes=_voted(head, [('fc2.weight', 0), ('fc2.bias', 0)]),
      head_channels=channels, head_hidden=_voted(head, [
          ('fc1.weight', 0), ('fc2.weight', 1), ('fc1.bias', 0)]),
      **common)


def convert_state_dicts(task: str, cnn: dict, head: dict
                        ) -> tuple[nn.Module, dict]:
  """(module with logits outputs, {'params', 'batch_stats'}) of two dicts;
  a FEN without BatchNorm (depth 2) gives no 'batch_stats'.

  Args:
    task: 'parsing', 'detection' or 'attribution'.
    cnn: the FEN's state dict (name -> numpy array).
    head: the head's state dict.

  Raises:
    ConversionError naming the task mismatch, a shape mismatch (key,
    expected, found), or the missing and unexpected keys.
  """
  if task not in TASKS:
    raise ConversionError(f'task must be one of {TASKS}, got {task!r}')
  _check_task(task, cnn, head)
  module = _build_module(task, cnn, head)
  size = IMAGE_SIZE[task]
  expected = traverse_util.flatten_dict(jax.eval_shape(
      lambda: module.init(jax.random.key(0), jnp.zeros((1, size, size, 3)),
                          train=False)))
  sources = (('state_dict_cnn', cnn, _fen_entries(module.fen_depth)),
             ('state_dict_class', head, _head_entries(task, module)))

  variables = {}  # (collection, *path, leaf) -> array.
  for dict_name, state, entries in sources:
    entries = list(entries)
    wanted = {f'{p}.{s}' for p, _, kind in entries for s in SUFFIXES[kind]}
    optional = {f'{p}.{s}' for p, _, kind in entries
                for s in OPTIONAL_SUFFIXES.get(kind, ())}
    ignored = {k for k in state if task == 'parsing'
               and dict_name == 'state_dict_class'
               and k.split('.')[0] in UNUSED_PARSING_LAYERS}
    missing = sorted(wanted - set(state))
    unexpected = sorted(set(state) - wanted - optional - ignored)
    if missing or unexpected:
      raise ConversionError(
          f'{dict_name} does not match a {task} network with '
          f'{_describe(module)}: missing keys {_listed(missing)}, unexpected '
          f'keys {_listed(unexpected)}')
    if ignored:
      logging.info('Ignoring %s of %s: no published head reads them',
                   sorted(ignored), dict_name)
    for prefix, path, kind in entries:
      for suffix in SUFFIXES[kind]:
        key = f'{prefix}.{suffix}'
        collection, leaf, array = _to_flax(kind, suffix, state[key])
        want = expected[(collection, *path, leaf)].shape
        if array.shape != want:
          raise ConversionError(
              f'{dict_name}[{key!r}] should have shape '
              f'{_torch_shape(kind, suffix, want)} for a {task} network with '
              f'{_describe(module)}, found {tuple(state[key].shape)}')
        if not np.all(np.isfinite(array)):
          raise ConversionError(
              f'{dict_name}[{key!r}] holds NaN or infinite values: the file '
              'is damaged, or was saved from a run that diverged')
        variables[(collection, *path, leaf)] = jnp.asarray(array, jnp.float32)
  if variables.keys() != expected.keys():
    raise RuntimeError(f'the converter does not fill every variable of '
                       f'{type(module).__name__}; update its key mapping')
  return module, traverse_util.unflatten_dict(variables)


def _listed(keys: list[str], limit: int = 20) -> str:
  if len(keys) <= limit:
    return str(keys)
  return f'{keys[:limit]} and {len(keys) - limit} more'


def _describe(module: nn.Module) -> str:
  return ', '.join(f'{k}={v}' for k, v in fields.fields_of(module).items()
                   if k in ('fen_depth', 'fen_width', 'pn_channels',
                            'head_channels', 'head_hidden', 'num_classes'))


def published_module(module: nn.Module) -> nn.Module:
  """The same network, returning the published (sigmoid) outputs."""
  if isinstance(module, models.FingerprintParser):
    return fields.parser(module.schema, fields.fields_of(module),
                         published=True)
  return fields.classifier(module.task, module.num_classes,
                           fields.fields_of(module), published=True)


def convert(path: str, task: str) -> tuple[nn.Module, dict]:
  """A published PyTorch checkpoint as a Flax module and its variables.

  `module.apply(variables, images, train=False)`, with images [N, H, W, 3]
  normalised as published ((x - 0.6490) / 0.1269, 64x64 for parsing, 128x128
  otherwise), returns a dict of float32 arrays: the published outputs after
  their sigmoids and the logits, as `jaxfp.models.published` lists them.
  `jaxfp.inference.network.load(..., published_outputs=True)` gives the
  same network from a converted checkpoint.
  """
  cnn, head = read_torch_checkpoint(path)
  module, variables = convert_state_dicts(task, cnn, head)
  return published_module(module), variables


# ------------------------------------------------------------- write -------


def write_checkpoint(path: str, task: str, output: str) -> str:
  """Converts `path` and writes a checkpoint directory under `output`.

  Its one step, 0, holds 'state' {'step', 'params', 'batch_stats'} and
  'meta' {'task', 'source', 'model' (the module's constructor fields),
  'schema' or 'class_names', 'preprocessing'}, like the trainer's;
  `jaxfp.inference.network.load(output)` reads it without torch. Returns the
  CheckpointManager directory, `output/checkpoints`.
  """
  # Checked before the work: an output that is the .pth itself would fail
  # half-way, after the conversion.
  files.check_not_input(output, '--output', [path])
  cnn, head = read_torch_checkpoint(path)
  module, variables = convert_state_dicts(task, cnn, head)
  meta = {'task': task, 'source': os.path.abspath(path),
          'model': fields.fields_of(module),
          'preprocessing': {'image_size': IMAGE_SIZE[task],
                            'mean': normalization.MEAN,
                            'std': normalization.STD}}
  if task == 'parsing':
    meta['schema'] = module.schema.to_dict()
  else:
    meta['class_names'] = class_names(task, module.num_classes)
  try:
    directory = checkpoints.write(output, {'step': 0, **variables}, meta)
  except FileExistsError as e:
    raise ConversionError(str(e)) from None
  count = sum(x.size for x in jax.tree.leaves(variables['params']))
  logging.info('Wrote the %s network (%s; %d parameters) to %s', task,
               _describe(module), count, directory)
  return directory
