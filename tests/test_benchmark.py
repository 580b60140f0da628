"""The benchmark runs end to end (--smoke), and FLOP counts match by hand.

No timing is asserted: CI machines are shared and slow.
"""

import json

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from configs import detection as detection_config
from configs import fen as fen_config
from jaxfp.bench import flops
from jaxfp.bench import options
from jaxfp.bench import profile
from jaxfp.bench import run
from jaxfp.models import fen

# FEN-3 of width 4 on 8x8 RGB images, 3x3 convs with padding 1: per image,
# 2 FLOPs x 64 output pixels x (3 x 3 x c_in) x c_out for each layer.
FORWARD_PER_IMAGE = (2 * 64 * 27 * 4      # conv 3 -> 4
                     + 2 * 64 * 36 * 4    # conv 4 -> 4
                     + 2 * 64 * 36 * 3)   # conv 4 -> 3
FIRST_LAYER = 2 * 64 * 27 * 4


def _tiny_fen():
  model = fen.FingerprintEstimator(depth=3, width=4)
  images = jax.ShapeDtypeStruct((2, 8, 8, 3), jnp.float32)
  # Shapes suffice to count, and spare compiling the initialisers.
  variables = jax.eval_shape(
      lambda x: model.init(jax.random.key(0), x, train=False), images)
  return model, variables, images


def test_forward_flops_match_hand_count():
  model, variables, images = _tiny_fen()
  counted = flops.count_flops(
      lambda v, x: model.apply(v, x, train=False), variables, images)
  assert counted == 2 * FORWARD_PER_IMAGE == 92160


def test_gradient_flops_skip_the_image_gradient():
  model, variables, images = _tiny_fen()

  def loss(params, batch_stats, images):
    out = model.apply({'params': params, 'batch_stats': batch_stats}, images,
                      train=False)
    return jnp.sum(out ** 2)

  counted = flops.count_flops(jax.grad(loss), variables['params'],
                              variables['batch_stats'], images)
  # Forward + kernel gradients (same size) + input gradients of every layer
  # but the first (nothing needs the gradient of the image).
  assert counted == 2 * (3 * FORWARD_PER_IMAGE - FIRST_LAYER)


def test_dense_and_scan_flops():
  dense = nn.Dense(7)
  x = jnp.zeros((2, 5))
  params = jax.eval_shape(lambda x: dense.init(jax.random.key(0), x), x)
  assert flops.count_flops(dense.apply, params, x) == 2 * 2 * 5 * 7

  def repeated(w, x):
    return jax.lax.scan(lambda c, _: (c @ w, None), x, None, length=3)[0]
  w = jnp.zeros((5, 5))
  assert flops.count_flops(repeated, w, x) == 3 * 2 * 2 * 5 * 5


def test_conv_kinds_from_cudnn_names_and_cpu_windows():
  def instruction(name, op_name='', window=0, target=''):
    return {'name': name, 'opcode': 'custom-call', 'op_name': op_name,
            'files': set(), 'calls': None, 'target': target,
            'window': window}
  kind = profile._conv_kind  # pylint: disable=protected-access
  assert kind(instruction('cudnn-conv-bw-filter.3'), 0) == 'conv kernel grad'
  assert kind(instruction('cudnn-conv-bw-input.1'), 0) == 'conv input grad'
  assert kind(instruction('fusion.2', 'jit(f)/jvp(M)/conv_general_dilated'),
              3) == 'conv forward'
  assert kind(instruction('fusion.4', ''), 64) == 'conv kernel grad'
  assert kind(instruction('conv.5', 'jit(f)/transpose(jvp(M))/conv'),
              3) == 'conv input grad'


def test_smoke_run_writes_every_requested_row(tmp_path):
  output = tmp_path / 'bench.json'
  result = run.run(smoke_options(
      rows=('parsing_train', 'detection_infer', 'input_pipeline'),
      output=str(output), profile_dir=str(tmp_path / 'prof')))
  saved = json.loads(output.read_text())
  assert set(saved['rows']) == {'parsing_train', 'detection_infer',
                                'input_pipeline'}
  assert saved['environment']['smoke']
  train = saved['rows']['parsing_train']
  assert train['jaxfp_images_per_s'] > 0
  assert train['gflop_per_image'] > 0
  assert train['compiles_during_timing'] == 0
  assert train['jaxfp_compile_s'] > 0
  profile = train['profile']
  assert profile['op_s_per_step'] > 0
  assert profile['categories_s_per_step']['conv forward'] > 0
  assert saved['rows']['input_pipeline']['jaxfp_images_per_s'] > 0
  if saved['environment']['torch']:
    assert train['torch_images_per_s'] > 0
    assert train['jaxfp_over_torch'] > 0
  table = run.format_table(result)
  assert '| parsing_train | 2 |' in table


def test_unknown_row_is_named():
  with pytest.raises(ValueError, match='parsing_trian'):
    smoke_options(rows=('parsing_trian',))


def smoke_options(**kwargs) -> options.Options:
  """What `python -m jaxfp.benchmark --smoke` measures."""
  return options.Options(parsing_config=fen_config.get_config('test'),
                         detection_config=detection_config.get_config('test'),
                         smoke=True, **kwargs)
