"""Tests of the parsing-head losses (jaxfp.losses.parsing).

References are plain float64 numpy loops written from the definitions, not
from the implementation.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfp.core import schema as schema_lib
from jaxfp.losses import parsing

SCHEMA = schema_lib.Schema(
    continuous=('a', 'b'),
    discrete=(schema_lib.DiscreteParam('three', ('x', 'y', 'z')),
              schema_lib.DiscreteParam('two', ('no', 'yes'))),
    coarse=('g0', 'g1'),
    fine=('f0', 'f1', 'f2'),
    fine_to_coarse=(0, 0, 1),
)
MISSING = schema_lib.MISSING

# Jitted once per shape and static options, and every random batch has N
# samples: compilations are what make these tests slow.
N = 6
# The published factor of every head loss (configs/fen.py), unless a test
# asks for another.
HEAD_WEIGHT = 10.0


def _published_loss(outputs, labels, class_weights, schema, *,
                    head_weight=HEAD_WEIGHT, hierarchical=True,
                    published_sigmoid_ce=False, axis_name=None):
  return parsing.parsing_loss(
      outputs, labels, class_weights, schema, head_weight=head_weight,
      hierarchical=hierarchical, published_sigmoid_ce=published_sigmoid_ce,
      axis_name=axis_name)


_loss = jax.jit(_published_loss, static_argnames=(
    'schema', 'hierarchical', 'published_sigmoid_ce', 'axis_name'))
_grad = jax.jit(jax.value_and_grad(
    lambda out, lab, cw: _published_loss(out, lab, cw, SCHEMA)[0]))


# ------------------------------------------------------------ references --

def _log_softmax(x):
  x = np.asarray(x, np.float64)
  m = x.max(axis=-1, keepdims=True)
  return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def _softmax(x):
  return np.exp(_log_softmax(x))


def _sigmoid(x):
  return 1 / (1 + np.exp(-np.asarray(x, np.float64)))


def _ref_wce(log_p, y, w):
  """sum_i w[y_i] (-log_p[i, y_i]) / sum_i w[y_i] over y_i != -1, else 0."""
  num = den = 0.0
  for i in range(len(y)):
    if y[i] == MISSING:
      continue
    num += w[y[i]] * -log_p[i, y[i]]
    den += w[y[i]]
  return num / den if den > 0 else 0.0


def _ref_loss(out, lab, cw, schema=SCHEMA, head_weight=HEAD_WEIGHT,
              hierarchical=True, published=False):
  """The whole parsing loss, term by term, in float64."""
  t = np.asarray(lab['continuous'], np.float64)
  pred = _sigmoid(out['continuous'])
  ok = ~np.isnan(t)
  cont = ((pred - np.where(ok, t, 0))**2)[ok].sum() / max(ok.sum(), 1)

  def head_log_p(logits):
    if published:  # sigmoid outputs taken as logits
      return _log_softmax(_sigmoid(logits))
    return _log_softmax(logits)

  disc = sum(_ref_wce(head_log_p(out['discrete'][d]), lab['discrete'][:, d],
                      cw['discrete'][d]) for d in range(len(schema.discrete)))
  coarse = sum(_ref_wce(head_log_p(out['coarse'][:, k]), lab['coarse'][:, k],
                        cw['coarse'][k]) for k in range(len(schema.coarse)))
  fine = 0.0
  for j, g in enumerate(schema.fine_to_coarse):
    if published:
      s = _sigmoid(out['fine'][:, j])
      if hierarchical:
        s = s * _sigmoid(out['coarse'][:, g, 1])[:, None]
      log_p = _log_softmax(s)
    else:
      p = _softmax(out['fine'][:, j])[:, 1]
      if hierarchical:
        p = p * _softmax(out['coarse'][:, g])[:, 1]
      log_p = np.log(np.stack([1 - p, p], axis=-1))
    fine += _ref_wce(log_p, lab['fine'][:, j], cw['fine'][j])
  terms = {'continuous': head_weight * cont, 'discrete': head_weight * disc,
           'coarse': head_weight * coarse, 'fine': head_weight * fine}
  return sum(terms.values()), terms


def _random_batch(n, seed, missing=0.2, scale=2.0, schema=SCHEMA):
  """Random logits and labels (some missing) for `schema`."""
  rng = np.random.default_rng(seed)
  c, k, f = len(schema.continuous), len(schema.coarse), len(schema.fine)
  out = {
      'continuous': scale * rng.normal(size=(n, c)).astype(np.float32),
      'discrete': tuple(scale * rng.normal(size=(n, m)).astype(np.float32)
                        for m in schema.num_classes),
      'coarse': scale * rng.normal(size=(n, k, 2)).astype(np.float32),
      'fine': scale * rng.normal(size=(n, f, 2)).astype(np.float32),
  }

  def drop(a, fill):
    a = a.copy()
    a[rng.random(a.shape) < missing] = fill
    return a

  lab = {
      'continuous': drop(rng.random((n, c)).astype(np.float32), np.nan),
      'discrete': drop(np.stack([rng.integers(0, m, n)
                                 for m in schema.num_classes], 1), MISSING),
      'coarse': drop(rng.integers(0, 2, (n, k)), MISSING),
      'fine': drop(rng.integers(0, 2, (n, f)), MISSING),
  }
  return out, lab


def _random_weights(seed, schema=SCHEMA):
  rng = np.random.default_rng(seed)
  return {
      'discrete': tuple(rng.uniform(0.5, 4, m).astype(np.float32)
                        for m in schema.num_classes),
      'coarse': rng.uniform(0.5, 4, (len(schema.coarse), 2)).astype(
          np.float32),
      'fine': rng.uniform(0.5, 4, (len(schema.fine), 2)).astype(np.float32),
  }


def _jax(tree):
  return jax.tree.map(jnp.asarray, tree)


# ---------------------------------------------------------- weighted CE --

def test_weighted_cross_entropy_by_hand():
  # Sample 0: logits (0, 0) -> nll ln 2 for either class. Sample 1: logits
  # (ln 3, 0) -> p = (3/4, 1/4). Labels (1, 0), weights (2, 5) -> w = (5, 2):
  # loss = (5 ln 2 + 2 ln(4/3)) / 7. A third sample is missing.
  logits = jnp.asarray([[0.0, 0.0], [np.log(3.0), 0.0], [9.0, -9.0]])
  loss = parsing.weighted_cross_entropy(
      jax.nn.log_softmax(logits), jnp.asarray([1, 0, MISSING]),
      jnp.asarray([2.0, 5.0]))
  np.testing.assert_allclose(loss, (5 * np.log(2) + 2 * np.log(4 / 3)) / 7,
                             rtol=1e-6)


def test_weighted_cross_entropy_per_head_weights():
  # [N, H, k] with a [H, k] weight table: each head its own weights.
  rng = np.random.default_rng(0)
  log_p = _log_softmax(rng.normal(size=(5, 3, 2)))
  y = rng.integers(0, 2, (5, 3))
  y[1, 2] = MISSING
  w = rng.uniform(0.5, 3, (3, 2))
  got = parsing.weighted_cross_entropy(jnp.asarray(log_p, jnp.float32),
                                       jnp.asarray(y), jnp.asarray(w))
  expected = [_ref_wce(log_p[:, h], y[:, h], w[h]) for h in range(3)]
  np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_masked_mse_by_hand():
  pred = jnp.asarray([[0.5, 0.2], [0.9, 0.0]])
  target = jnp.asarray([[1.0, np.nan], [0.4, 0.0]])
  # (0.25 + 0.25 + 0) / 3 valid entries.
  np.testing.assert_allclose(parsing.masked_mse(pred, target), 0.5 / 3,
                             rtol=1e-6)


# --------------------------------------------------------- parsing_loss --

@pytest.mark.parametrize('hierarchical', [True, False])
def test_parsing_loss_matches_reference(hierarchical):
  out, lab = _random_batch(N, seed=1)
  cw = _random_weights(2)
  total, terms = _loss(_jax(out), _jax(lab), _jax(cw), SCHEMA,
                       hierarchical=hierarchical)
  ref_total, ref_terms = _ref_loss(out, lab, cw, hierarchical=hierarchical)
  assert set(terms) == {'continuous', 'discrete', 'coarse', 'fine'}
  for name, value in ref_terms.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)


def test_head_weight_scales_every_term():
  out, lab = _random_batch(N, seed=3)
  uniform = parsing.uniform_class_weights(SCHEMA)
  t10, terms10 = _loss(_jax(out), _jax(lab), _jax(uniform), SCHEMA)
  t1, terms1 = _loss(_jax(out), _jax(lab), _jax(uniform), SCHEMA,
                     head_weight=1.0)
  np.testing.assert_allclose(t10, 10 * t1, rtol=1e-6)
  for name in terms1:
    np.testing.assert_allclose(terms10[name], 10 * terms1[name], rtol=1e-6)
  np.testing.assert_allclose(t1, _ref_loss(out, lab, uniform,
                                           head_weight=1.0)[0], rtol=1e-5)


def test_missing_label_changes_nothing_else():
  out, lab = _random_batch(N, seed=4, missing=0.0)
  cw = _random_weights(5)
  _, base = _loss(_jax(out), _jax(lab), _jax(cw), SCHEMA)
  lab2 = dict(lab, discrete=lab['discrete'].copy())
  lab2['discrete'][2, 0] = MISSING
  _, masked = _loss(_jax(out), _jax(lab2), _jax(cw), SCHEMA)
  for name in ('continuous', 'coarse', 'fine'):
    np.testing.assert_allclose(masked[name], base[name], rtol=1e-6)
  # The masked discrete term is the one of a batch without that sample for
  # head 0 (head 1 untouched).
  keep = np.arange(N) != 2
  expected = 10 * (
      _ref_wce(_log_softmax(out['discrete'][0][keep]),
               lab['discrete'][keep, 0], cw['discrete'][0])
      + _ref_wce(_log_softmax(out['discrete'][1]), lab['discrete'][:, 1],
                 cw['discrete'][1]))
  np.testing.assert_allclose(masked['discrete'], expected, rtol=1e-5)
  assert abs(float(masked['discrete']) - float(base['discrete'])) > 1e-4

  # Nothing flows into the masked sample's logits of that head.
  _, grads = _grad(_jax(out), _jax(lab2), _jax(cw))
  grad = np.asarray(grads['discrete'][0])
  assert np.all(grad[2] == 0) and np.any(grad[keep] != 0)


def test_missing_continuous_target_is_ignored():
  out, lab = _random_batch(N, seed=6, missing=0.0)
  lab2 = dict(lab, continuous=lab['continuous'].copy())
  lab2['continuous'][1, 0] = np.nan
  out2 = dict(out, continuous=out['continuous'].copy())
  out2['continuous'][1, 0] = 50.0  # would dominate if it were counted
  _, terms = _loss(_jax(out2), _jax(lab2), None, SCHEMA)  # None: uniform
  ok = ~np.isnan(lab2['continuous'])
  pred = _sigmoid(out2['continuous'])
  expected = 10 * ((pred - lab2['continuous'])[ok]**2).mean()
  np.testing.assert_allclose(terms['continuous'], expected, rtol=1e-5)


def test_all_missing_gives_zero_and_finite_zero_gradient():
  out, lab = _random_batch(N, seed=7, missing=1.0)
  assert np.all(np.isnan(lab['continuous'])) and np.all(lab['fine'] == -1)
  total, grads = _grad(_jax(out), _jax(lab), _jax(_random_weights(8)))
  assert float(total) == 0.0
  for g in jax.tree.leaves(grads):
    assert np.all(np.isfinite(np.asarray(g))) and np.all(np.asarray(g) == 0)


def test_zero_weight_class_gives_zero_not_nan():
  # A class absent from training weighs 0; a batch holding only that class
  # has a zero normaliser.
  loss = parsing.weighted_cross_entropy(
      jax.nn.log_softmax(jnp.ones((3, 2))), jnp.asarray([1, 1, 1]),
      jnp.asarray([1.0, 0.0]))
  assert float(loss) == 0.0


def test_shape_errors_name_the_head():
  out, lab = _random_batch(N, seed=9)
  bad = dict(out, coarse=out['coarse'][:, :1])
  with pytest.raises(ValueError, match='coarse'):
    _loss(_jax(bad), _jax(lab), None, SCHEMA)
  bad = dict(out, discrete=out['discrete'][:1])
  with pytest.raises(ValueError, match='discrete heads'):
    _loss(_jax(bad), _jax(lab), None, SCHEMA)
  bad = dict(out, discrete=(out['discrete'][0][:, :2], out['discrete'][1]))
  with pytest.raises(ValueError, match='three'):
    _loss(_jax(bad), _jax(lab), None, SCHEMA)


def test_bfloat16_logits_give_float32_losses_and_none_weights_are_uniform():
  out, lab = _random_batch(N, seed=10)
  bf16 = jax.tree.map(lambda a: jnp.asarray(a, jnp.bfloat16), out)
  total16, terms16 = _loss(bf16, _jax(lab), None, SCHEMA)
  assert total16.dtype == jnp.float32
  assert all(t.dtype == jnp.float32 for t in terms16.values())
  # Computed in float32 from the bfloat16 values (not in bfloat16).
  rounded = jax.tree.map(lambda a: np.asarray(a, np.float64), bf16)
  np.testing.assert_allclose(
      total16, _ref_loss(rounded, lab, parsing.uniform_class_weights(
          SCHEMA))[0], rtol=1e-5)


# ---------------------------------------------- hierarchical probabilities --

def test_fine_probabilities_hierarchy_and_limits():
  rng = np.random.default_rng(11)
  coarse = rng.normal(size=(4, 2, 2)).astype(np.float32)
  fine = rng.normal(size=(4, 3, 2)).astype(np.float32)
  coarse[0, 0] = (50.0, -50.0)  # group 0 surely unused in sample 0
  coarse[1, 1] = (-50.0, 50.0)  # group 1 surely used in sample 1
  ftc = SCHEMA.fine_to_coarse
  p = np.asarray(parsing.fine_probabilities(jnp.asarray(coarse),
                                            jnp.asarray(fine), ftc))
  cond = _softmax(fine)[..., 1]
  group = _softmax(coarse)[..., 1]
  np.testing.assert_allclose(p, group[:, ftc] * cond, rtol=1e-5, atol=1e-7)
  assert np.all(p[0, :2] < 1e-30)  # coarse prob 0 -> fine prob 0
  np.testing.assert_allclose(p[1, 2], cond[1, 2], rtol=1e-6)  # prob 1 -> cond
  assert np.all(p <= group[:, ftc] + 1e-7) and np.all(p >= 0)
  flat = parsing.fine_probabilities(jnp.asarray(coarse), jnp.asarray(fine),
                                    ftc, hierarchical=False)
  np.testing.assert_allclose(flat, jax.nn.softmax(jnp.asarray(fine))[..., 1],
                             rtol=1e-6)


def test_fine_log_probabilities_match_log_of_probabilities():
  rng = np.random.default_rng(12)
  coarse = rng.normal(size=(5, 2, 2)).astype(np.float32)
  fine = rng.normal(size=(5, 3, 2)).astype(np.float32)
  ftc = SCHEMA.fine_to_coarse
  for hierarchical in (True, False):
    log_p = np.asarray(parsing.fine_log_probabilities(
        jnp.asarray(coarse), jnp.asarray(fine), ftc,
        hierarchical=hierarchical))
    p = np.asarray(parsing.fine_probabilities(
        jnp.asarray(coarse), jnp.asarray(fine), ftc,
        hierarchical=hierarchical), np.float64)
    np.testing.assert_allclose(log_p[..., 1], np.log(p), rtol=1e-5)
    np.testing.assert_allclose(log_p[..., 0], np.log1p(-p), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(np.exp(log_p).sum(-1), 1.0, rtol=1e-5)


def _log_sigmoid(x):
  return -np.logaddexp(0.0, -np.asarray(x, np.float64))


@pytest.mark.parametrize('c,f', [(50, 50), (50, -50), (-50, 50), (-50, -50),
                                 (30, -8), (0, 50)])
def test_fine_log_probabilities_extreme_logits(c, f):
  # Logits (0, c) and (0, f): P(group) = sigmoid(c), P(fine|group) =
  # sigmoid(f). float64 references: log p = log_sigmoid(c) + log_sigmoid(f);
  # 1 - p = a + b - ab with a = sigmoid(-c), b = sigmoid(-f), both exact.
  coarse = jnp.asarray([[[0.0, c], [0.0, c]]], jnp.float32)
  fine = jnp.asarray([[[0.0, f]] * 3], jnp.float32)
  ftc = SCHEMA.fine_to_coarse
  log_p = np.asarray(parsing.fine_log_probabilities(coarse, fine, ftc))
  a, b = _sigmoid(-c), _sigmoid(-f)
  # atol: log p within float32 rounding of 0 (log_softmax((0, 50))[1] is 0).
  np.testing.assert_allclose(log_p[..., 1], _log_sigmoid(c) + _log_sigmoid(f),
                             rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(log_p[..., 0], np.log(a + b - a * b), rtol=1e-5,
                             atol=1e-7)

  # Through the loss (labels of both kinds): finite value and gradients.
  lab = {'continuous': np.full((1, 2), np.nan, np.float32),
         'discrete': np.full((1, 2), MISSING),
         'coarse': np.asarray([[0, 1]]), 'fine': np.asarray([[0, 1, 0]])}
  out = {'continuous': jnp.zeros((1, 2)),
         'discrete': (jnp.zeros((1, 3)), jnp.zeros((1, 2))),
         'coarse': coarse, 'fine': fine}
  value, grads = _grad(out, _jax(lab),
                       _jax(parsing.uniform_class_weights(SCHEMA)))
  assert np.isfinite(float(value))
  assert all(np.all(np.isfinite(np.asarray(g)))
             for g in jax.tree.leaves(grads))


# ------------------------------------------------------ published quirk --

def test_published_sigmoid_ce_by_hand():
  # Logits (50, -50): sigmoid -> (1, 0), and torch's CE takes those as
  # logits: -log_softmax((1, 0))[1] = log(1 + e). A proper CE would give 100.
  log_p = jax.nn.log_softmax(jax.nn.sigmoid(jnp.asarray([[50.0, -50.0]])))
  np.testing.assert_allclose(
      parsing.weighted_cross_entropy(log_p, jnp.asarray([1]),
                                     jnp.ones(2)), np.log1p(np.e), rtol=1e-6)
  # Through parsing_loss, one fine head gated by its coarse group: coarse
  # logits (0, 0) -> sigmoid (1/2, 1/2), gate 1/2; fine logits (50, -50) ->
  # sigmoid (1, 0) * 1/2 = (1/2, 0); label 1: log(1 + e^(1/2)) - 0.
  lab = {'continuous': jnp.full((1, 2), jnp.nan),
         'discrete': jnp.full((1, 2), MISSING),
         'coarse': jnp.full((1, 2), MISSING),
         'fine': jnp.asarray([[1, MISSING, MISSING]])}
  out = {'continuous': jnp.zeros((1, 2)),
         'discrete': (jnp.zeros((1, 3)), jnp.zeros((1, 2))),
         'coarse': jnp.zeros((1, 2, 2)),
         'fine': jnp.asarray([[[50.0, -50.0]] * 3])}
  _, terms = _loss(out, lab, None, SCHEMA, head_weight=1.0,
                                  published_sigmoid_ce=True)
  np.testing.assert_allclose(terms['fine'], np.log1p(np.exp(0.5)), rtol=1e-6)
  _, terms = _loss(out, lab, None, SCHEMA, head_weight=1.0,
                                  published_sigmoid_ce=True,
                                  hierarchical=False)
  np.testing.assert_allclose(terms['fine'], np.log1p(np.e), rtol=1e-6)
  _, terms = _loss(out, lab, None, SCHEMA, head_weight=1.0)
  np.testing.assert_allclose(terms['fine'], 100 + np.log(2), rtol=1e-5)


def test_published_sigmoid_ce_matches_reference():
  out, lab = _random_batch(7, seed=13)
  cw = _random_weights(14)
  total, terms = _loss(_jax(out), _jax(lab), _jax(cw), SCHEMA,
                                      published_sigmoid_ce=True)
  ref_total, ref_terms = _ref_loss(out, lab, cw, published=True)
  for name, value in ref_terms.items():
    np.testing.assert_allclose(terms[name], value, rtol=1e-5, err_msg=name)
  np.testing.assert_allclose(total, ref_total, rtol=1e-5)
  proper, _ = _loss(_jax(out), _jax(lab), _jax(cw), SCHEMA)
  assert abs(float(proper) - float(total)) > 1e-2


# ------------------------------------------------------------ class weights --

def test_parsing_class_weights_from_tiny_ground_truth():
  gt = schema_lib.GroundTruth(
      schema=SCHEMA, gm_names=('m0', 'm1', 'm2', 'm3'),
      continuous=np.zeros((4, 2), np.float32),
      discrete=np.array([[0, 1], [0, 0], [2, 1], [MISSING, 1]], np.int32),
      coarse=np.array([[1, 0], [1, 1], [0, 1], [1, 1]], np.int32),
      fine=np.array([[1, 0, 0], [0, 0, 1], [0, MISSING, 1], [1, 1, 1]],
                    np.int32),
      continuous_range=np.zeros((2, 2), np.float32))
  cw = parsing.parsing_class_weights(gt)
  # discrete 'three': labels 0, 0, 2 (one missing): 3/2, absent 0, 3/1.
  np.testing.assert_allclose(cw['discrete'][0], [1.5, 0.0, 3.0])
  # discrete 'two': 0 once, 1 three times: 4/1, 4/3.
  np.testing.assert_allclose(cw['discrete'][1], [4.0, 4 / 3])
  np.testing.assert_allclose(cw['coarse'], [[4.0, 4 / 3], [4.0, 4 / 3]])
  np.testing.assert_allclose(cw['fine'],
                             [[2.0, 2.0], [1.5, 3.0], [4.0, 4 / 3]])
  assert cw['coarse'].dtype == np.float32 and cw['fine'].shape == (3, 2)
  assert len(cw['discrete']) == 2


# --------------------------------------------------------------- 4 devices --

def _split_outputs(z, schema=SCHEMA):
  """[N, width] -> the PN output dict of `schema`."""
  n = z.shape[0]
  c, k, f = len(schema.continuous), len(schema.coarse), len(schema.fine)
  sizes = [c, *schema.num_classes, 2 * k, 2 * f]
  parts = jnp.split(z, np.cumsum(sizes)[:-1], axis=1)
  d = len(schema.discrete)
  return {'continuous': parts[0], 'discrete': tuple(parts[1:1 + d]),
          'coarse': parts[1 + d].reshape(n, k, 2),
          'fine': parts[2 + d].reshape(n, f, 2)}


def _linear_loss(params, x, lab, cw, axis_name=None):
  out = _split_outputs(x @ params['w'] + params['b'])
  return _published_loss(out, lab, cw, SCHEMA, axis_name=axis_name)[0]


_single_grad = jax.jit(jax.value_and_grad(_linear_loss))


def _make_pmapped(axis_name):
  def step(params, x, lab, cw):
    loss, grads = jax.value_and_grad(_linear_loss)(params, x, lab, cw,
                                                   axis_name)
    # What the trainer does: average losses and gradients over devices.
    return jax.lax.pmean(loss, 'd'), jax.lax.pmean(grads, 'd')
  return jax.pmap(step, axis_name='d', in_axes=(0, 0, 0, None))


_PMAPPED = {axis: _make_pmapped(axis) for axis in ('d', None)}


def _uneven_device_batch():
  """16 samples, 4 per device, classes and missing labels spread unevenly."""
  if jax.local_device_count() < 4:
    pytest.skip('needs 4 devices (tests/conftest.py sets XLA_FLAGS)')
  rng = np.random.default_rng(15)
  x = rng.normal(size=(16, 5)).astype(np.float32)
  _, lab = _random_batch(16, seed=16, missing=0.1)
  lab['discrete'][0:4, 0] = 0  # device 0: one class only
  lab['discrete'][4:8, 0] = (2, 2, 2, 1)
  lab['discrete'][8:12, 0] = MISSING  # device 2: head all missing
  lab['coarse'][0:4, 1] = 1
  lab['fine'][12:16] = MISSING  # device 3: no fine labels
  lab['continuous'][0:4] = np.nan  # device 0: no continuous targets
  width = len(SCHEMA.continuous) + sum(SCHEMA.num_classes) + 2 * (
      len(SCHEMA.coarse) + len(SCHEMA.fine))
  params = {'w': jnp.asarray(rng.normal(size=(5, width)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=width), jnp.float32)}
  return x, lab, _random_weights(17), params


def _run_pmapped(axis_name, params, x, lab, cw):
  shard = lambda a: jnp.asarray(a).reshape(4, 4, *a.shape[1:])  # noqa: E731
  replicated = jax.tree.map(lambda a: jnp.stack([a] * 4), params)
  return _PMAPPED[axis_name](replicated, shard(x), jax.tree.map(shard, lab),
                             _jax(cw))


def test_pmap_gradient_equals_global_batch_gradient():
  x, lab, cw, params = _uneven_device_batch()
  loss, grads = _single_grad(params, jnp.asarray(x), _jax(lab), _jax(cw))
  p_loss, p_grads = _run_pmapped('d', params, x, lab, cw)
  # Tolerance: 1e-5 relative (float32 sums in a different order), plus 1e-6
  # of the largest entry for entries that are 0 up to rounding.
  np.testing.assert_allclose(p_loss[0], loss, rtol=1e-5)
  for name in grads:
    np.testing.assert_allclose(
        p_grads[name][0], grads[name], rtol=1e-5,
        atol=1e-6 * float(jnp.max(jnp.abs(grads[name]))))


def test_pmap_with_local_normalisers_differs():
  # The control: per-device normalisers weight devices, not samples.
  x, lab, cw, params = _uneven_device_batch()
  _, grads = _single_grad(params, jnp.asarray(x), _jax(lab), _jax(cw))
  _, p_grads = _run_pmapped(None, params, x, lab, cw)
  assert not np.allclose(p_grads['w'][0], grads['w'], rtol=1e-3)
