"""Published PyTorch checkpoints -> Flax: parity, errors and the Orbax trip.

Checkpoints are built from jaxfp.pytorch.networks with random weights and random
BatchNorm statistics, saved in the published dict layout, converted, and
every output compared on random images. Relative error of an output b (the
PyTorch one) against a (ours) is max|a - b| / max|b| over the whole array.
"""

import functools
import os
import pathlib
import pickle
import re

import pytest

torch = pytest.importorskip('torch')

# pylint: disable=g-import-not-at-top,g-bad-import-order
import jax
import jax.numpy as jnp
import numpy as np

from jaxfp import checkpoints
from jaxfp import models
from jaxfp import tasks
from jaxfp.core import schema as schema_lib
from jaxfp.inference import network
from jaxfp.pytorch import convert as convert_torch
from jaxfp.pytorch import networks as torch_models

TOLERANCE = 1e-4
SMALL_FEN = 5


def relative_error(ours, reference) -> float:
  ours, reference = np.asarray(ours), np.asarray(reference)
  assert ours.shape == reference.shape, (ours.shape, reference.shape)
  return float(np.max(np.abs(ours - reference))
               / max(np.max(np.abs(reference)), 1e-30))


def randomize_batch_norm(module, seed):
  """Non-trivial running statistics and affine weights in every BatchNorm."""
  gen = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for m in module.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        c = m.num_features
        m.running_mean.copy_(0.2 * torch.randn(c, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(c, generator=gen))
        m.weight.copy_(0.5 + torch.rand(c, generator=gen))
        m.bias.copy_(0.1 * torch.randn(c, generator=gen))
        m.num_batches_tracked.fill_(7)


def build_torch(task, fen_depth, head_kwargs=None, seed=0):
  torch.manual_seed(seed)
  fen = torch_models.FEN(fen_depth)
  randomize_batch_norm(fen, seed)
  head_cls = {'parsing': torch_models.ParsingHead,
              'detection': torch_models.DetectionHead,
              'attribution': torch_models.AttributionHead}[task]
  head = head_cls(**(head_kwargs or {}))
  return fen.eval(), head.eval()


def save(tmp_path, task, fen, head, name='model.pth'):
  path = tmp_path / name
  torch.save(torch_models.published_checkpoint(fen, head, task), path)
  return str(path)


def torch_outputs(task, fen, head, images_nchw):
  """The published forward: fingerprint, spectrum, head outputs."""
  with torch.no_grad():
    fingerprint = fen(images_nchw)
    spectrum = torch_models.spectrum(fingerprint)
    out = {'fingerprint': fingerprint.permute(0, 2, 3, 1).numpy(),
           'spectrum': spectrum.numpy()}
    if task == 'parsing':
      z = {k: v.numpy() for k, v in head.logits(fingerprint).items()}
      out['logits'] = {
          'continuous': z['fc8_1'],
          'discrete': tuple(z[f'fc8_{i}'] for i in range(2, 8)),
          'coarse': np.stack([z[f'fc9_{i}'] for i in range(1, 4)], axis=1),
          'fine': np.stack([z[f'fc10_{i}'] for i in range(1, 9)], axis=1)}
      heads = [o.numpy() for o in head(fingerprint)]
      out['continuous'] = heads[0]
      out['discrete'] = tuple(heads[1:7])
      out['coarse_pairs'] = np.stack(heads[7:10], axis=1)
      out['fine_pairs'] = np.stack(heads[10:18], axis=1)
    else:
      head_input = (fingerprint if task == 'detection'
                    else spectrum.unsqueeze(1))
      out['logits'] = head.logits(head_input).numpy()
      out['probabilities'] = head(head_input).numpy()
  return out


def random_images(batch, size, seed=0):
  gen = torch.Generator().manual_seed(seed)
  return torch.randn(batch, 3, size, size, generator=gen)


def assert_parity(task, fen, head, path, batch=2):
  size = convert_torch.IMAGE_SIZE[task]
  images = random_images(batch, size)
  reference = torch_outputs(task, fen, head, images)
  module, variables = convert_torch.convert(path, task)
  apply = jax.jit(functools.partial(module.apply, train=False))
  ours = apply(variables, jnp.asarray(images.permute(0, 2, 3, 1)))
  # Every output the reference has, nested ones included, by tree path.
  compared = {k: ours[k] for k in reference}
  assert jax.tree.structure(compared) == jax.tree.structure(reference)
  errors = {
      jax.tree_util.keystr(where): relative_error(a, b)
      for (where, a), b in zip(jax.tree_util.tree_leaves_with_path(compared),
                               jax.tree.leaves(reference), strict=True)}
  if task == 'parsing':
    np.testing.assert_array_equal(ours['coarse'], ours['coarse_pairs'][..., 1])
    np.testing.assert_array_equal(ours['fine'], ours['fine_pairs'][..., 1])
  print(task, {k: f'{v:.1e}' for k, v in errors.items()})
  bad = {k: v for k, v in errors.items() if not v <= TOLERANCE}
  assert not bad, f'{task}: relative errors above {TOLERANCE}: {bad}'
  return reference, ours


# Narrower heads keep these fast; widths are read off the checkpoint. Every
# head's first Linear reads more than one spatial position (3x3, 5x5, 32x32),
# so parity also shows that no reordering of fc1 is needed: both sides
# flatten in (C, H, W) order.
SMALL_HEADS = {
    'parsing': {'channels': (8, 16, 16, 32, 32)},
    'detection': {'channels': (8, 8, 16, 16, 32), 'hidden': 64},
    'attribution': {'channels': (8, 16), 'hidden': 64},
}


@pytest.mark.parametrize('task', convert_torch.TASKS)
def test_parity_small(tmp_path, task):
  fen, head = build_torch(task, SMALL_FEN, SMALL_HEADS[task])
  reference, _ = assert_parity(task, fen, head, save(tmp_path, task, fen,
                                                     head))
  # The comparison means something only if the outputs vary.
  key = 'continuous' if task == 'parsing' else 'probabilities'
  assert np.std(reference[key]) > 1e-3


@pytest.mark.parametrize('task, depth', [('parsing', 17), ('detection', 31),
                                         ('attribution', 17)])
def test_parity_published_sizes(tmp_path, task, depth):
  """The published networks at full size: FEN depth and head widths."""
  fen, head = build_torch(task, depth, seed=2)
  assert_parity(task, fen, head, save(tmp_path, task, fen, head), batch=1)


def test_inferred_module(tmp_path):
  fen, head = build_torch('detection', SMALL_FEN, SMALL_HEADS['detection'])
  module, variables = convert_torch.convert(
      save(tmp_path, 'detection', fen, head), 'detection')
  assert isinstance(module, models.FingerprintClassifier)
  assert (module.task, module.num_classes, module.fen_depth,
          module.fen_width) == ('detection', 2, SMALL_FEN, 64)
  assert module.head_channels == (8, 8, 16, 16, 32)
  assert module.head_hidden == 64
  assert set(variables) == {'params', 'batch_stats'}
  assert set(variables['params']) == {'fen', 'head'}


def test_fen_without_batch_norm():
  """Depth 2 (conv, conv) has no BatchNorm and so no batch_stats."""
  fen, head = build_torch('detection', 2, SMALL_HEADS['detection'])
  module, variables = convert_torch.convert_state_dicts(
      'detection', numpy_state(fen), numpy_state(head))
  assert set(variables) == {'params'}
  images = random_images(1, 128)
  out = jax.jit(functools.partial(module.apply, train=False))(
      variables, jnp.asarray(images.permute(0, 2, 3, 1)))
  with torch.no_grad():
    reference = fen(images).permute(0, 2, 3, 1).numpy()
  assert relative_error(out['fingerprint'], reference) <= TOLERANCE


def test_flax_heads_published_shapes():
  """The Flax heads alone: published flatten sizes and output widths."""
  x = jnp.zeros((1, 128, 128, 3))
  shapes = jax.eval_shape(
      lambda: models.DetectionHead().init(jax.random.key(0), x, train=False))
  assert shapes['params']['fc_0']['kernel'].shape == (12800, 512)
  assert shapes['params']['conv_4']['kernel'].shape == (3, 3, 256, 512)
  shapes = jax.eval_shape(lambda: models.AttributionHead().init(
      jax.random.key(0), x[..., :1], train=False))
  assert shapes['params']['fc_0']['kernel'].shape == (65536, 512)
  assert shapes['params']['fc_1']['kernel'].shape == (512, 5)


# ------------------------------------------------------------- errors ------


def test_not_a_torch_file(tmp_path):
  path = tmp_path / 'notes.pth'
  path.write_bytes(b'these are not the weights you are looking for')
  with pytest.raises(convert_torch.ConversionError,
                     match=r'notes\.pth is not a PyTorch checkpoint'):
    convert_torch.convert(str(path), 'parsing')


def test_missing_file(tmp_path):
  with pytest.raises(FileNotFoundError, match='nothing.pth'):
    convert_torch.convert(str(tmp_path / 'nothing.pth'), 'parsing')


def test_dict_without_state_dicts(tmp_path):
  path = tmp_path / 'bare.pth'
  torch.save({'state_dict': {'w': torch.zeros(1)}}, path)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"needs the keys \['state_dict_cnn', "
                     r"'state_dict_class'\], found \['state_dict'\]"):
    convert_torch.convert(str(path), 'parsing')


@pytest.mark.parametrize('saved, asked, found, hint', [
    ('detection', 'attribution', r'\(8, 3, 5, 5\)', 'detection'),
    ('attribution', 'parsing', r'\(8, 1, 5, 5\)', 'attribution'),
    ('parsing', 'detection', r'\(8, 3, 3, 3\)', 'parsing'),
])
def test_wrong_task(tmp_path, saved, asked, found, hint):
  fen, head = build_torch(saved, 3, SMALL_HEADS[saved])
  path = save(tmp_path, saved, fen, head)
  with pytest.raises(convert_torch.ConversionError) as e:
    convert_torch.convert(path, asked)
  message = str(e.value)
  assert f'--task={asked}' in message and "'layer1.0.weight'" in message
  c, k = convert_torch.HEAD_SIGNATURE[asked]
  assert f'(channels, {c}, {k}, {k})' in message
  assert re.search(f'found {found}; it looks like a {hint} checkpoint',
                   message), message


def numpy_state(module):
  return {k: v.numpy() for k, v in module.state_dict().items()}


def state_dicts(task='parsing'):
  fen, head = build_torch(task, 3, SMALL_HEADS[task])
  return numpy_state(fen), numpy_state(head)


def test_missing_and_unexpected_keys():
  cnn, head = state_dicts()
  del cnn['layers.1.1.running_var']
  cnn['layers.1.2.weight'] = np.zeros(3, np.float32)
  with pytest.raises(convert_torch.ConversionError) as e:
    convert_torch.convert_state_dicts('parsing', cnn, head)
  message = str(e.value)
  assert message.startswith('state_dict_cnn does not match')
  assert "missing keys ['layers.1.1.running_var']" in message
  assert "unexpected keys ['layers.1.2.weight']" in message

  cnn, head = state_dicts()
  del head['fc10_8.bias']
  with pytest.raises(convert_torch.ConversionError,
                     match=r"state_dict_class .*missing keys \['fc10_8.bias'\]"
                     r', unexpected keys \[\]'):
    convert_torch.convert_state_dicts('parsing', cnn, head)


def test_unused_parsing_branches_are_optional():
  cnn, head = state_dicts()
  for key in [k for k in head if k.split('.')[0] in ('fc4', 'fc5', 'fc6',
                                                      'fc7')]:
    del head[key]
  del cnn['layers.1.1.num_batches_tracked']
  convert_torch.convert_state_dicts('parsing', cnn, head)


def test_shape_mismatch_names_the_key():
  cnn, head = state_dicts()
  head['fc8_1.weight'] = np.zeros((8, 64), np.float32)
  head['fc8_1.bias'] = np.zeros((8,), np.float32)
  with pytest.raises(convert_torch.ConversionError,
                     match=r"state_dict_class\['fc8_1.weight'\] should have "
                     r'shape \(9, 64\) .*found \(8, 64\)'):
    convert_torch.convert_state_dicts('parsing', cnn, head)


@pytest.mark.parametrize('task,which,key', [
    ('parsing', 'cnn', 'layers.0.0.weight'),
    ('parsing', 'head', 'layer1.0.weight'),
    ('detection', 'head', 'fc1.weight'),
])
def test_one_tensor_of_a_wrong_shape_is_the_one_named(task, which, key):
  """Issue 22, case 14: sizes are read off what most tensors agree on, so
  the bad tensor is named, not a good one measured against it."""
  cnn, head = state_dicts(task)
  state = cnn if which == 'cnn' else head
  shape = state[key].shape
  state[key] = np.zeros((shape[0] + 3,) + shape[1:], np.float32)
  name = 'state_dict_cnn' if which == 'cnn' else 'state_dict_class'
  with pytest.raises(convert_torch.ConversionError, match=re.escape(
      f'{name}[{key!r}] should have shape ')) as e:
    convert_torch.convert_state_dicts(task, cnn, head)
  assert f'found {(shape[0] + 3,) + shape[1:]}' in str(e.value)


@pytest.mark.parametrize('key', ['layers.1.1.running_var', 'fc8_1.bias'])
def test_non_finite_weights_are_refused_naming_the_tensor(key):
  """Issue 22, case 14: NaN weights do not convert (exit 0, and predict
  refusing the result later); the tensor is named."""
  cnn, head = state_dicts()
  state, name = ((cnn, 'state_dict_cnn') if key.startswith('layers') else
                 (head, 'state_dict_class'))
  state[key] = state[key].copy()
  state[key].flat[0] = np.nan
  with pytest.raises(convert_torch.ConversionError, match=re.escape(
      f'{name}[{key!r}] holds NaN or infinite values')):
    convert_torch.convert_state_dicts('parsing', cnn, head)


def test_unknown_task():
  cnn, head = state_dicts()
  with pytest.raises(convert_torch.ConversionError, match='task must be one'):
    convert_torch.convert_state_dicts('segmentation', cnn, head)


# -------------------------------------------------------------- orbax ------


@pytest.mark.parametrize('task', ['parsing', 'attribution'])
def test_orbax_round_trip(tmp_path, task):
  fen, head = build_torch(task, 3, SMALL_HEADS[task])
  path = save(tmp_path, task, fen, head)
  output = tmp_path / 'converted'
  directory = convert_torch.write_checkpoint(path, task, str(output))
  assert directory == str(output / 'checkpoints')

  loaded = network.load(str(output))
  module, variables, meta = loaded.model, loaded.variables, loaded.meta
  assert type(module) is (models.FingerprintParser if task == 'parsing'
                          else models.FingerprintClassifier)
  assert meta['task'] == task and meta['source'] == path
  assert meta['preprocessing'] == {
      'image_size': convert_torch.IMAGE_SIZE[task], 'mean': 0.6490,
      'std': 0.1269}
  if task == 'parsing':
    assert meta['schema'] == schema_lib.PUBLISHED.to_dict()
  else:
    assert meta['class_names'] == ['real', 'gan_1', 'gan_2', 'gan_3', 'gan_4']

  published, converted = convert_torch.convert(path, task)
  for a, b in zip(jax.tree.leaves(variables), jax.tree.leaves(converted),
                  strict=True):
    np.testing.assert_array_equal(a, b)
  assert jax.tree.structure(variables) == jax.tree.structure(converted)

  size = convert_torch.IMAGE_SIZE[task]
  images = jnp.asarray(random_images(2, size).permute(0, 2, 3, 1))
  again = network.load(str(directory), published_outputs=True).model
  assert again == published
  def apply(m, v):
    return jax.jit(functools.partial(m.apply, train=False))(v, images)
  np.testing.assert_array_equal(apply(again, variables)['fingerprint'],
                                apply(published, converted)['fingerprint'])
  logits = apply(module, variables)
  assert (logits['continuous'] if task == 'parsing'
          else logits['logits']).shape[0] == 2

  with pytest.raises(convert_torch.ConversionError, match='already holds'):
    convert_torch.write_checkpoint(path, task, str(output))


def test_an_output_that_is_the_torch_file_is_refused_before_work(tmp_path):
  """An --output that names the .pth (another spelling of it, too) is one
  line naming both, and the .pth is left as it was."""
  fen, head = build_torch('parsing', 3, SMALL_HEADS['parsing'])
  path = save(tmp_path, 'parsing', fen, head)
  before = pathlib.Path(path).read_bytes()
  link = tmp_path / 'link.pth'
  link.symlink_to(path)
  for output in (path, str(link)):
    with pytest.raises(ValueError, match=re.escape(
        f'--output {output} is also an input ({path})')):
      convert_torch.write_checkpoint(path, 'parsing', output)
  assert pathlib.Path(path).read_bytes() == before


def test_load_empty_directory(tmp_path):
  (tmp_path / 'checkpoints').mkdir()
  with pytest.raises(checkpoints.CheckpointError,
                     match='holds no checkpoint'):
    checkpoints.read(str(tmp_path))


def test_every_published_network_serves_a_registered_task():
  assert set(convert_torch.TASKS) <= set(tasks.names())
  assert set(torch_models.HEADS) == set(convert_torch.TASKS)


class _RunsCode:
  """Pickled as a call of print: what a malicious .pth file holds."""

  def __reduce__(self):
    return (print, ('this ran',))


class _RunsOsCode:
  """Pickled as a call of os.getpid (harmless): a global of a module that
  torch blocks outright, refused in other words."""

  def __reduce__(self):
    return (os.getpid, ())


def _save_plain_pickle(payload, path):
  """A plain pickle, not torch.save's zip: refused for its opcodes."""
  with open(path, 'wb') as f:
    pickle.dump(payload, f, protocol=4)


@pytest.mark.parametrize('write, found', [
    (functools.partial(torch.save, {'state_dict_cnn': _RunsCode()}),
     'holds Python objects besides tensors (Unsupported global: GLOBAL '
     'print was not'),
    (functools.partial(torch.save, {'state_dict_cnn': _RunsOsCode()}),
     'holds Python objects besides tensors (Trying to load unsupported '
     'GLOBAL posix.getpid whose module posix is blocked)'),
    (functools.partial(_save_plain_pickle, {'state_dict_cnn': {}}),
     "cannot be read by torch's weights-only loader (Unsupported operand"),
], ids=['global', 'blocked_module', 'plain_pickle'])
def test_a_file_with_code_is_refused_without_unsafe_advice(tmp_path, capfd,
                                                           write, found):
  """Issue 14, case 11: torch's hint to retry with weights_only=False is
  wrong for a file from elsewhere; it is not passed on, whichever way
  torch words its refusal."""
  path = tmp_path / 'hostile.pth'
  write(path)
  capfd.readouterr()
  with pytest.raises(convert_torch.ConversionError) as e:
    convert_torch.convert(str(path), 'parsing')
  message = str(e.value)
  assert found in message, message
  assert 'would run code from the file; do not' in message
  for advice in ('will likely succeed', 'safe_globals', 'trust',
                 'file an issue'):
    assert advice not in message, message
  assert not capfd.readouterr().err  # Nor torch's warnings.
