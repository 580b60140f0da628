"""Tests of the tf.data pipeline on a tiny model_parsing tree.

Every image is one constant colour whose red value encodes its (GM, file),
so a batch can be checked against the tree it came from.
"""

import io
import itertools
import os

import ml_collections
import numpy as np
from PIL import Image
import pytest

from configs import data as data_config
from jaxfp.core import normalization
from jaxfp.core import schema
from jaxfp.data import gm_folders as input_pipeline
from jaxfp.data.builders import zoo as zoo_dataset

GMS = ('gm_a', 'gm_b', 'gm_c', 'gm_d')
PER_GM = 5
SIZE = 8
LDC = 4  # Local devices (tests/conftest.py simulates 4).


def _red(g, f):
  return 10 + 40 * g + 5 * f


def _row(i):
  s = schema.ZOO
  row = {c: float(3 * i + j * j) for j, c in enumerate(s.continuous)}
  row['num_blocks'] = None if i == 2 else row['num_blocks']  # A missing one.
  row.update({p.name: p.classes[(i + j) % p.num_classes]
              for j, p in enumerate(s.discrete)})
  row.update({c: (i + j) % 2 for j, c in enumerate(s.coarse)})
  row.update({c: (i * j + 1) % 2 for j, c in enumerate(s.fine)})
  return row


def _write_tree(root):
  for g, gm in enumerate(GMS):
    os.makedirs(os.path.join(root, 'images', gm))
    for f in range(PER_GM):
      Image.fromarray(np.full((12, 12, 3), (_red(g, f), 100, 7), np.uint8)
                      ).save(os.path.join(root, 'images', gm, f'{f}.png'))
  buf = io.BytesIO()
  Image.fromarray(np.random.default_rng(0).integers(
      0, 255, (64, 64, 3), np.uint8)).save(buf, 'PNG')
  with open(os.path.join(root, 'images', 'gm_a', 'cut.png'), 'wb') as fh:
    fh.write(buf.getvalue()[:300])
  open(os.path.join(root, 'images', 'gm_d', 'zero.png'), 'wb').close()
  schema.write_csv(root, schema.ZOO, GMS, [_row(i) for i in range(len(GMS))])


@pytest.fixture(scope='module')
def data(tmp_path_factory):
  root = str(tmp_path_factory.mktemp('data'))
  _write_tree(os.path.join(root, 'manual'))
  c = data_config.parsing()
  c.name = 'model_parsing'
  c.cache_dir = os.path.join(root, 'cache')
  c.manual_dir = os.path.join(root, 'manual')
  c.image_size = SIZE
  c.test_gms = ('gm_c',)
  c.closed_set_fraction = 0.0  # Every training image trains, but below.
  return c, input_pipeline.load_info(c)


def _identify(images):
  """(GM index, file index) of each normalised constant-colour image."""
  raw = normalization.unit_range(images) * 255
  red = np.rint(raw[..., 0].reshape(len(images), -1).mean(axis=1)).astype(int)
  return [((r - 10) // 40, (r - 10) % 40 // 5) for r in red]


def _flat(batch):
  return {k: v.reshape((-1,) + v.shape[2:]) for k, v in batch.items()}


def test_info_split_counts_and_skipped(data):
  _, info = data
  assert info.ground_truth.gm_names == GMS
  assert info.test_gms == ('gm_c',)
  assert info.train_gms == ('gm_a', 'gm_b', 'gm_d')
  assert (info.num_train_images, info.num_test_images) == (15, 5)
  assert sorted(f for f, _ in info.skipped_files) == ['gm_a/cut.png',
                                                      'gm_d/zero.png']


def test_split_errors_and_random_pick(data):
  c, _ = data
  bad = ml_collections.ConfigDict(c.to_dict())
  bad.test_gms = ('gm_c', 'gm_nope')
  with pytest.raises(ValueError, match="gm_nope.*'gm_a', 'gm_b'"):
    input_pipeline.load_info(bad)
  bad.test_gms = ()
  bad.num_test_gms = 4
  with pytest.raises(ValueError, match='num_test_gms'):
    input_pipeline.load_info(bad)
  bad.num_test_gms = 2
  picks = {input_pipeline.load_info(bad).test_gms for _ in range(2)}
  assert len(picks) == 1 and len(next(iter(picks))) == 2


def test_missing_manual_dir_is_named(tmp_path, data):
  c = ml_collections.ConfigDict(data[0].to_dict())
  c.cache_dir = str(tmp_path / 'cache')
  c.manual_dir = str(tmp_path / 'no_such_dir')
  with pytest.raises(FileNotFoundError, match='no_such_dir'):
    input_pipeline.load_info(c)


def test_batch_size_must_divide(data):
  c, info = data
  with pytest.raises(ValueError, match='6.*1 processes x 4 local devices'):
    input_pipeline.train_iterator(c, info, global_batch_size=6,
                                  local_device_count=LDC, seed=0)
  with pytest.raises(ValueError, match='6'):
    input_pipeline.eval_iterator(c, info, global_batch_size=6,
                                 local_device_count=LDC)


def test_train_batches_shapes_labels_and_normalisation(data):
  c, info = data
  it = input_pipeline.train_iterator(c, info, global_batch_size=8,
                                     local_device_count=LDC, seed=0)
  batch = next(it)
  s = info.ground_truth.schema
  expected = {
      'image': ((LDC, 2, SIZE, SIZE, 3), np.float32),
      'continuous': ((LDC, 2, len(s.continuous)), np.float32),
      'discrete': ((LDC, 2, len(s.discrete)), np.int32),
      'coarse': ((LDC, 2, len(s.coarse)), np.int32),
      'fine': ((LDC, 2, len(s.fine)), np.int32),
      'gm': ((LDC, 2), np.int32),
      'mask': ((LDC, 2), np.float32),
  }
  assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
  gt = info.ground_truth
  seen = set()
  for batch in itertools.islice(it, 6):
    b = _flat(batch)
    np.testing.assert_array_equal(b['mask'], 1.0)
    for i, (g, f) in enumerate(_identify(b['image'])):
      seen.add((g, f))
      assert b['gm'][i] == g  # The image's own GM...
      np.testing.assert_array_equal(b['continuous'][i], gt.continuous[g])
      for k in ('discrete', 'coarse', 'fine'):
        np.testing.assert_array_equal(b[k][i], getattr(gt, k)[g])
      # ...normalised with the published constants.
      np.testing.assert_allclose(
          b['image'][i, 0, 0],
          (np.array([_red(g, f), 100, 7]) / 255 - 0.6490) / 0.1269,
          rtol=1e-5)
  assert {g for g, _ in seen} == {0, 1, 3}  # Never a test GM.
  assert np.isnan(gt.continuous[2, s.continuous.index('num_blocks')])


def _take(it, n):
  return [next(it) for _ in range(n)]


def _assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    for k in x:
      np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_same_seed_same_batches_and_resume(data):
  c, info = data
  kw = dict(global_batch_size=8, local_device_count=LDC)
  # 15 train images, batches of 8: batches straddle epochs.
  full = _take(input_pipeline.train_iterator(c, info, seed=3, **kw), 9)
  _assert_same(full,
               _take(input_pipeline.train_iterator(c, info, seed=3, **kw), 9))
  other = _take(input_pipeline.train_iterator(c, info, seed=4, **kw), 9)
  assert any(not np.array_equal(x['gm'], y['gm']) for x, y in zip(full, other))
  resumed = _take(input_pipeline.train_iterator(c, info, seed=3,
                                                start_step=4, **kw), 5)
  _assert_same(full[4:], resumed)
  # Each epoch is a permutation of the train set.
  ids = [x for b in full for x in _identify(_flat(b)['image'])]
  assert len(set(ids[:15])) == 15 and len(set(ids[15:30])) == 15


def test_eval_one_pass_padded_with_mask(data):
  c, info = data
  kw = dict(global_batch_size=8, local_device_count=LDC)
  batches = list(input_pipeline.eval_iterator(c, info, **kw))
  assert len(batches) == 1  # 5 test images, padded to 8.
  b = _flat(batches[0])
  np.testing.assert_array_equal(b['mask'], [1] * 5 + [0] * 3)
  real = b['mask'] == 1
  assert sorted(_identify(b['image'][real])) == [(2, f) for f in range(PER_GM)]
  np.testing.assert_array_equal(b['gm'][real], 2)
  np.testing.assert_array_equal(b['coarse'][real],
                                np.tile(info.ground_truth.coarse[2], (5, 1)))
  np.testing.assert_array_equal(b['gm'][~real], -1)
  np.testing.assert_array_equal(b['discrete'][~real], -1)
  assert np.isnan(b['continuous'][~real]).all()
  np.testing.assert_array_equal(b['image'][~real], 0)
  # A fixed order.
  _assert_same(batches, list(input_pipeline.eval_iterator(c, info, **kw)))
  # Batches of 4 (one per device): 2 batches, 3 rows of padding.
  small = list(input_pipeline.eval_iterator(c, info, global_batch_size=4,
                                            local_device_count=LDC))
  assert [x['mask'].sum() for x in small] == [4, 1]


def test_the_closed_set_is_held_back_from_training(data):
  c = ml_collections.ConfigDict(data[0].to_dict())
  c.closed_set_fraction = 0.4
  info = input_pipeline.load_info(c)
  # 15 images of the training GMs a, b, d: some held back, by a hash of
  # their paths, so the same ones in every load.
  assert 0 < info.num_closed_images < 15
  assert info.num_train_images + info.num_closed_images == 15
  assert set(info.closed_gms) <= set(info.train_gms)
  again = input_pipeline.load_info(c)
  assert (again.closed_gms, again.num_closed_images) == (
      info.closed_gms, info.num_closed_images)
  kw = dict(global_batch_size=8, local_device_count=LDC)
  closed = []
  for batch in input_pipeline.eval_iterator(c, info, split='closed_set',
                                            **kw):
    b = _flat(batch)
    ids = _identify(b['image'][b['mask'] == 1])
    np.testing.assert_array_equal(b['gm'][b['mask'] == 1],
                                  [g for g, _ in ids])
    closed += ids
  assert len(closed) == len(set(closed)) == info.num_closed_images
  assert {info.ground_truth.gm_names[g] for g, _ in closed} == set(
      info.closed_gms)
  # Two passes of the training stream see every other training image and
  # never a closed one.
  it = input_pipeline.train_iterator(c, info, seed=0, **kw)
  trained = {x for b in _take(it, 4) for x in _identify(_flat(b)['image'])}
  assert not trained & set(closed)
  assert len(trained) == info.num_train_images
  # The held-out GM keeps all its images.
  test = list(input_pipeline.eval_iterator(c, info, **kw))
  assert sum(x['mask'].sum() for x in test) == 5
  # One unshuffled pass over what training reads (the reference fits on it).
  once = []
  for batch in input_pipeline.eval_iterator(c, info, split='train', **kw):
    b = _flat(batch)
    once += _identify(b['image'][b['mask'] == 1])
  assert set(once) == trained and len(once) == info.num_train_images
  with pytest.raises(ValueError, match="split 'nope'"):
    input_pipeline.eval_iterator(c, info, split='nope', **kw)
  # A GM whose every image would be held back keeps them all for training.
  c.closed_set_fraction = 0.9999
  everything = input_pipeline.load_info(c)
  assert everything.num_closed_images == 0 and not everything.closed_gms
  assert everything.num_train_images == 15
  c.closed_set_fraction = 1.0
  with pytest.raises(ValueError, match='closed_set_fraction is 1.0'):
    input_pipeline.load_info(c)


def test_every_gm_held_out_is_for_evaluation_only(data):
  c = ml_collections.ConfigDict(data[0].to_dict())
  c.test_gms, c.test_fraction = (), 1.0
  with pytest.raises(ValueError, match='every GM .4. is a test GM'):
    input_pipeline.load_info(c)
  info = input_pipeline.load_info(c, require_train_gms=False)
  assert info.test_gms == GMS and not info.train_gms
  assert (info.num_test_images, info.num_closed_images) == (20, 0)
  with pytest.raises(ValueError, match='nothing to train on'):
    input_pipeline.train_iterator(c, info, global_batch_size=8,
                                  local_device_count=LDC, seed=0)


def test_zoo_data_config(monkeypatch, tmp_path):
  import jaxfp.zoo  # pylint: disable=g-import-not-at-top
  calls = []

  def cached(zoo_config, cache_root):
    calls.append(zoo_config)
    root = os.path.join(cache_root, 'tiny')
    if not os.path.exists(root):
      _write_tree(root)
    return root

  monkeypatch.setattr(jaxfp.zoo, 'cached', cached)
  monkeypatch.setenv('JAXFP_CACHE', str(tmp_path / 'cache'))
  c = data_config.parsing()
  c.zoo = ml_collections.ConfigDict(dict(
      num_generators=4, images_per_generator=5, image_size=12,
      train_steps=2, train_batch_size=2, learning_rate=1e-3, seed=0))
  c.num_test_gms = 1
  info = input_pipeline.load_info(c)
  assert os.path.isdir(tmp_path / 'cache' / 'zoo')
  name = zoo_dataset.config_name(c.zoo, c.image_size)
  assert os.path.isdir(tmp_path / 'cache' / 'tfds' / 'jaxfp_zoo' / name)
  assert len(info.test_gms) == 1 and len(info.train_gms) == 3
  assert input_pipeline.load_info(c).test_gms == info.test_gms
  assert len(calls) == 1  # Built once.
  batch = next(input_pipeline.train_iterator(
      c, info, global_batch_size=4, local_device_count=LDC, seed=0))
  assert batch['image'].shape == (LDC, 1, 64, 64, 3)

  # A new zoo format: the records are rebuilt under a new name.
  fingerprint = zoo_dataset.zoo_fingerprint
  monkeypatch.setattr(zoo_dataset, 'zoo_fingerprint',
                      lambda z: 'v2' + fingerprint(z))
  input_pipeline.load_info(c)
  assert len(calls) == 2
  assert zoo_dataset.config_name(c.zoo, c.image_size) != name
