"""Detection and attribution: metrics, loss, folder data, end to end."""

import functools
import json
import logging
import os

import jax
import numpy as np
import pytest
from PIL import Image
from sklearn import metrics as sk_metrics

from configs import attribution as attribution_config
from configs import detection as detection_config
from jaxfp import steps
from jaxfp import train
from jaxfp.core import schema
from jaxfp.data import classes as class_pipeline
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.tasks import classification


def test_fake_index_follows_the_class_names():
  assert schema.fake_index(('fake', 'real')) == 0
  assert schema.fake_index(('real', 'stylegan')) == 1
  assert schema.fake_index(('generated', 'real')) == 0
  assert schema.fake_index(('a', 'b')) == 1


def test_binary_metrics_by_hand():
  is_fake = np.array([1, 1, 0, 0, 1])
  score = np.array([0.9, 0.4, 0.3, 0.6, 0.8])
  out = classification.binary_metrics(is_fake, score)
  # Correct at 0.5: 0.9 fake, 0.3 real, 0.8 fake -> 3 of 5.
  assert out['accuracy'] == pytest.approx(0.6)
  # Fake/real pairs ranked right: 0.9 and 0.8 beat both reals, 0.4 beats
  # 0.3 only -> 5 of 6.
  assert out['roc_auc'] == pytest.approx(5 / 6)
  assert out['average_precision'] == pytest.approx(
      sk_metrics.average_precision_score(is_fake, score))


def test_multiclass_metrics_by_hand():
  labels = np.array([0, 0, 1, 2, 2, 2])
  probs = np.eye(3)[[0, 1, 1, 2, 0, 2]]
  out, matrix = classification.multiclass_metrics(labels, probs,
                                                  ('a', 'b', 'c'))
  np.testing.assert_array_equal(matrix, [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
  assert out['accuracy'] == pytest.approx(4 / 6)
  assert out['recall/a'] == pytest.approx(0.5)
  assert out['recall/c'] == pytest.approx(2 / 3)


def test_cross_entropy_is_the_global_masked_mean_across_devices():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(8, 3)).astype(np.float32)
  labels = rng.integers(0, 3, 8).astype(np.int32)
  mask = np.array([1, 1, 1, 0, 1, 1, 0, 1], np.float32)
  per_image = -jax.nn.log_softmax(logits)[np.arange(8), labels]
  expected = float(np.sum(per_image * mask) / mask.sum())
  fn = jax.pmap(functools.partial(classification.cross_entropy,
                                  published_sigmoid_ce=False),
                axis_name=steps.AXIS)
  per_device = fn(logits.reshape(4, 2, 3), labels.reshape(4, 2),
                  mask.reshape(4, 2))
  # The trainer averages device gradients (pmean), so the device losses
  # must average to the global masked mean.
  assert float(np.mean(per_device)) == pytest.approx(expected, rel=1e-5)


def _tree(root, rng, counts):
  for name, n in counts.items():
    os.makedirs(root / name)
    for i in range(n):
      colour = 40 if name == 'real' else 200
      pixels = np.clip(rng.normal(colour, 20, (20, 24, 3)), 0, 255)
      Image.fromarray(pixels.astype(np.uint8)).save(root / name / f'{i}.png')


def test_folder_source_skips_a_corrupt_file_and_labels_by_folder(tmp_path):
  rng = np.random.default_rng(0)
  root = tmp_path / 'tree'
  _tree(root, rng, {'real': 12, 'fake': 12})
  with open(root / 'fake' / 'broken.png', 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + b'\0' * 10)
  config = detection_config.get_config('test').data
  config.source = 'folder'
  config.root = str(root)
  config.image_size = 16
  config.cache_dir = str(tmp_path / 'cache')
  info = class_pipeline.load_info(config)
  assert info.class_names == ('fake', 'real')
  assert [f for f, _ in info.skipped_files] == ['fake/broken.png']
  assert info.num_train_images + info.num_test_images == 24
  assert info.num_test_images > 0 and info.num_train_images > 0
  batch = next(class_pipeline.train_iterator(
      config, info, global_batch_size=8, local_device_count=4, seed=0))
  assert batch['image'].shape == (4, 2, 16, 16, 3)
  # Real images are dark, fake ones bright: labels follow the folders.
  brightness = batch['image'].mean(axis=(2, 3, 4))
  assert np.all((brightness > 0) == (batch['label'] == 0))
  seen = 0
  for batch in class_pipeline.eval_iterator(config, info, global_batch_size=8,
                                            local_device_count=4):
    seen += int(batch['mask'].sum())
    assert np.all(batch['label'][batch['mask'] == 0] == -1)
  assert seen == info.num_test_images


def test_a_tree_with_one_class_is_a_clear_error(tmp_path):
  _tree(tmp_path / 'tree', np.random.default_rng(0), {'real': 4})
  config = detection_config.get_config('test').data
  config.source = 'folder'
  config.root = str(tmp_path / 'tree')
  config.cache_dir = str(tmp_path / 'cache')
  with pytest.raises(ValueError, match='at least two'):
    class_pipeline.load_info(config)


def _folder_config(root, cache):
  config = detection_config.get_config('test').data
  config.source = 'folder'
  config.root = str(root)
  config.image_size = 16
  config.cache_dir = str(cache)
  return config


def test_a_class_whose_images_are_all_unreadable_is_an_error(tmp_path):
  """Issue 14, case 7: every class keeps a readable image in each split.

  The readable class is large enough to fill both splits on its own, so
  only a check per class refuses the tree (not one of the whole tree)."""
  root = tmp_path / 'tree'
  _tree(root, np.random.default_rng(0), {'real': 40})
  os.makedirs(root / 'fake')
  for i in range(6):
    (root / 'fake' / f'{i}.png').write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * i)
  with pytest.raises(ValueError, match=r"class 'fake' \(.*fake\) has no "
                     r'readable image in the training or the test split \(0 '
                     r'readable, 6 skipped as unreadable'):
    class_pipeline.load_info(_folder_config(root, tmp_path / 'cache'))


def test_a_first_build_of_a_clean_tree_warns_of_nothing(tmp_path, caplog):
  """Checking for records built before must not log TFDS's warning about
  the folder it has just made for them (a stray line on every first run)."""
  root = tmp_path / 'tree'
  _tree(root, np.random.default_rng(0), {'real': 12, 'fake': 12})
  with caplog.at_level(logging.WARNING):
    class_pipeline.load_info(_folder_config(root, tmp_path / 'cache'))
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], (
      caplog.text)


def test_a_repaired_class_folder_is_built_again(tmp_path):
  """Issue 14, case 1: records follow the tree's content."""
  root = tmp_path / 'tree'
  _tree(root, np.random.default_rng(0), {'real': 12, 'fake': 12})
  broken = root / 'fake' / 'late.png'
  broken.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 10)
  config = _folder_config(root, tmp_path / 'cache')
  info = class_pipeline.load_info(config)
  assert [f for f, _ in info.skipped_files] == ['fake/late.png']
  Image.fromarray(np.full((20, 24, 3), 220, np.uint8)).save(broken)
  info = class_pipeline.load_info(config)
  assert not info.skipped_files
  assert info.class_counts == {'fake': 13, 'real': 12}


@pytest.fixture(scope='module')
def cache(tmp_path_factory):
  return str(tmp_path_factory.mktemp('cache'))


@pytest.mark.parametrize('module', [detection_config, attribution_config],
                         ids=['detection', 'attribution'])
def test_trains_evaluates_and_predicts_on_builtin_data(module, cache,
                                                       tmp_path):
  config = module.get_config('test')
  config.data.cache_dir = cache
  workdir = str(tmp_path / 'run')
  result = train.train_and_evaluate(config, workdir)
  task = config.task
  with open(os.path.join(workdir, 'results.json')) as f:
    saved = json.load(f)
  assert saved['step'] == config.num_train_steps
  assert 0.0 <= saved['metrics']['accuracy'] <= 1.0
  assert saved['metrics'] == pytest.approx(result['metrics'])
  picture = 'roc.png' if task == 'detection' else 'confusion.png'
  assert os.path.getsize(os.path.join(workdir, picture)) > 0
  if task == 'detection':
    assert set(saved['metrics']) == {'accuracy', 'roc_auc',
                                     'average_precision'}
    assert saved['class_names'] == ['fake', 'real']
  else:
    matrix = np.array(saved['confusion_matrix'])
    assert matrix.shape == (4, 4) and matrix.sum() == saved['num_images']

  loaded = network.load(workdir)
  assert loaded.task == task and loaded.step == config.num_train_steps
  real_dir = os.path.join(result_root(cache, task), 'real')
  records, failures = predict.predict(
      loaded, [real_dir], batch_size=8, progress=False)
  assert not failures and records
  p = records[0]['prediction']
  assert sum(p['probabilities'].values()) == pytest.approx(1.0, abs=1e-5)
  key = 'fake_probability' if task == 'detection' else 'source'
  assert key in p


def result_root(cache, task):
  classes = os.path.join(cache, 'classes')
  (name,) = [n for n in os.listdir(classes) if n.startswith(task + '-') and
             '.partial' not in n]
  return os.path.join(classes, name)


def test_augmented_batches_resume_exactly_and_differ_from_clean(tmp_path):
  _tree(tmp_path / 'tree', np.random.default_rng(1), {'real': 8, 'fake': 8})
  config = detection_config.get_config('test')
  data = config.data
  data.source, data.root = 'folder', str(tmp_path / 'tree')
  data.image_size, data.cache_dir = 16, str(tmp_path / 'cache')
  info = class_pipeline.load_info(data)
  augmentation = config.augment
  augmentation.blur_jpeg_prob = 1.0

  def batches(start, aug, n):
    it = class_pipeline.train_iterator(
        data, info, global_batch_size=4, local_device_count=4, seed=0,
        start_step=start, augmentation=aug)
    return [next(it)['image'] for _ in range(n)]

  straight = batches(0, augmentation, 3)
  resumed = batches(2, augmentation, 1)
  np.testing.assert_array_equal(resumed[0], straight[2])
  clean = batches(0, None, 1)
  assert not np.array_equal(clean[0], straight[0])
