"""Tests of the folder reader and the two TFDS builders, on tiny trees."""

import errno
import io
import json
import logging
import os
import pathlib
import re
import shutil
import subprocess
import sys

import ml_collections
import numpy as np
from PIL import Image
import pytest
import tensorflow_datasets as tfds

from configs import data as data_config
from configs import zoo as zoo_config_lib
# Registers the builders with TFDS.
import jaxfp.data.builders  # pylint: disable=unused-import
from jaxfp.core import schema
from jaxfp.data import images
from jaxfp.data import gm_folders
from jaxfp.data import trees
from jaxfp.data.builders import folder
from jaxfp.data.builders import model_parsing
from jaxfp.data.builders import zoo as zoo_dataset

REPO = pathlib.Path(__file__).resolve().parent.parent
GMS = ('gm_b', 'gm_a', 'gm_c')  # Not sorted on purpose.
SORTED_GMS = tuple(sorted(GMS))


def _row(i: int) -> dict:
  """A distinct ZOO ground-truth row per GM index."""
  s = schema.ZOO
  row = {c: float(10 * (i + 1) + j) for j, c in enumerate(s.continuous)}
  row.update({p.name: p.classes[i % p.num_classes] for p in s.discrete})
  row.update({c: (i + j) % 2 for j, c in enumerate(s.coarse)})
  row.update({c: (i + j + 1) % 2 for j, c in enumerate(s.fine)})
  return row


def _png(color, size=16) -> bytes:
  buf = io.BytesIO()
  Image.fromarray(np.full((size, size, 3), color, np.uint8)).save(buf, 'PNG')
  return buf.getvalue()


def write_tree(root, gms=GMS, per_gm=4, extra_rows=(), images_dir=True,
               bad_files=True, ground_truth=True):
  """GM folders of constant-colour PNGs (+ a truncated and an empty file)."""
  base = os.path.join(root, 'images') if images_dir else str(root)
  for g, gm in enumerate(gms):
    os.makedirs(os.path.join(base, gm))
    for f in range(per_gm):
      with open(os.path.join(base, gm, f'{f:03d}.png'), 'wb') as fh:
        fh.write(_png((10 + 40 * g + 5 * f, 200 - 30 * g, 20 * f)))
  if bad_files:
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, 'PNG')
    data = buf.getvalue()
    with open(os.path.join(base, gms[0], 'truncated.png'), 'wb') as fh:
      fh.write(data[:len(data) // 2])
    open(os.path.join(base, gms[-1], 'empty.png'), 'wb').close()
  if ground_truth:
    names = list(gms) + list(extra_rows)
    schema.write_csv(str(root), schema.ZOO, names,
                     [_row(i) for i in range(len(names))])
  return base


def test_scan_skips_and_counts_bad_files(tmp_path):
  write_tree(tmp_path)
  found = trees.scan(str(tmp_path))
  assert found.gm_names == SORTED_GMS
  assert found.num_files == 14
  skipped = []
  examples = list(folder.generate_examples(found, 8, skipped))
  assert len(examples) == 12
  assert sorted(f for f, _ in skipped) == ['gm_b/truncated.png',
                                           'gm_c/empty.png']
  assert all(reason for _, reason in skipped)
  key, ex = examples[0]
  assert key == ex['file'] == 'gm_a/000.png' and ex['gm'] == 'gm_a'
  assert ex['image'].shape == (8, 8, 3) and ex['image'].dtype == np.uint8
  # Sorted walk: GM by GM, file by file.
  assert [k for k, _ in examples] == sorted(k for k, _ in examples)


def test_load_image_modes_and_resize(tmp_path):
  gray16 = np.array([[0, 32896], [65535, 65535]], np.uint16)
  Image.fromarray(gray16).save(tmp_path / 'g16.png')
  out = images.load_image(str(tmp_path / 'g16.png'), 2)
  assert out.shape == (2, 2, 3)
  np.testing.assert_array_equal(out[..., 0], [[0, 128], [255, 255]])

  rgba = np.zeros((4, 4, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 0
  Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
  np.testing.assert_array_equal(
      images.load_image(str(tmp_path / 'rgba.png'), 4)[..., 0], 200)

  Image.fromarray(np.full((5, 5), 77, np.uint8), 'L').save(tmp_path / 'l.bmp')
  np.testing.assert_array_equal(
      images.load_image(str(tmp_path / 'l.bmp'), 3), 77)

  noise = np.random.default_rng(1).integers(0, 255, (20, 30, 3), np.uint8)
  Image.fromarray(noise).save(tmp_path / 'n.png')
  expected = np.asarray(
      Image.fromarray(noise).resize((7, 7), Image.BILINEAR))
  np.testing.assert_array_equal(
      images.load_image(str(tmp_path / 'n.png'), 7), expected)

  with pytest.raises(images.ImageError, match='0 bytes'):
    open(tmp_path / 'z.png', 'wb').close()
    images.load_image(str(tmp_path / 'z.png'), 7)


def test_gm_folder_without_ground_truth_row_is_an_error(tmp_path):
  write_tree(tmp_path)
  os.makedirs(tmp_path / 'images' / 'gm_unlisted')
  (tmp_path / 'images' / 'gm_unlisted' / 'x.png').write_bytes(_png(1))
  found = trees.scan(str(tmp_path))
  with pytest.raises(ValueError, match='gm_unlisted') as e:
    trees.read_ground_truth(found)
  assert schema.CSV_NAME in str(e.value)


def test_ground_truth_row_without_folder_warns(tmp_path, caplog):
  write_tree(tmp_path, extra_rows=('gm_gone',))
  with caplog.at_level(logging.WARNING):
    table, source = trees.read_ground_truth(trees.scan(str(tmp_path)))
  assert 'gm_gone' in caplog.text
  assert table.gm_names == SORTED_GMS
  assert source.endswith(schema.CSV_NAME)
  # Rows follow the names, not the csv order (gm_b is csv row 0).
  full = schema.read_csv(str(tmp_path))
  np.testing.assert_array_equal(table.discrete[1],
                                full.discrete[full.index('gm_b')])


def _edit_csv(root, edit) -> str:
  """Rewrites root's ground_truth.csv through `edit` (text -> text)."""
  path = os.path.join(root, schema.CSV_NAME)
  with open(path, encoding='utf-8', newline='') as f:
    text = f.read()
  with open(path, 'w', encoding='utf-8', newline='') as f:
    f.write(edit(text))
  return path


def _set_cell(text: str, row: int, column: str, value: str) -> str:
  lines = text.splitlines(keepends=True)
  header = lines[0].rstrip('\r\n').split(',')
  cells = lines[row].rstrip('\r\n').split(',')
  cells[header.index(column)] = value
  lines[row] = ','.join(cells) + '\r\n'
  return ''.join(lines)


@pytest.mark.parametrize('value', ['inf', '-inf', 'nan', '1e999'])
def test_a_non_finite_ground_truth_cell_is_named(tmp_path, value):
  """Issue 22, case 6: an infinite cell would scale every other GM of its
  column to 0; it is refused, naming the file, line, column and value."""
  write_tree(tmp_path, bad_files=False)
  column = schema.ZOO.continuous[0]
  path = _edit_csv(tmp_path, lambda t: _set_cell(t, 1, column, value))
  with pytest.raises(ValueError, match=re.escape(
      f"{path} line 2, column '{column}': '{value}' is not a finite")):
    trees.read_ground_truth(trees.scan(str(tmp_path)))


def test_ground_truth_columns_byte_order_mark_and_duplicates(tmp_path):
  """Issue 22, case 16: a missing or an extra column is named alone (not
  both headers in full); a spreadsheet's byte-order mark is no column
  name; a GM's second row names the file and both lines."""
  write_tree(tmp_path, bad_files=False)
  found = trees.scan(str(tmp_path))
  original = (tmp_path / schema.CSV_NAME).read_text(encoding='utf-8')
  column = schema.ZOO.continuous[1]
  path = _edit_csv(tmp_path, lambda t: t.replace(f',{column},', ',oops,', 1))
  with pytest.raises(ValueError) as e:
    trees.read_ground_truth(found)
  assert str(e.value) == (
      f"{path}: columns do not match the schema: missing ['{column}']; not "
      f"in {tmp_path / schema.SCHEMA_NAME}: ['oops']")
  _edit_csv(tmp_path, lambda t: '\ufeff' + original)
  table, _ = trees.read_ground_truth(found)
  assert table.gm_names == SORTED_GMS
  lines = original.splitlines(keepends=True)
  _edit_csv(tmp_path, lambda t: ''.join(lines + lines[1:2]))
  with pytest.raises(ValueError, match=re.escape(
      f"{path} line {len(lines) + 1}: GM '{lines[1].split(',')[0]}' has a "
      'row already (line 2)')):
    trees.read_ground_truth(found)


def test_a_non_finite_published_table_is_named(tmp_path):
  """Issue 22, the class of case 6: the npy tables too."""
  write_tree(tmp_path, images_dir=False, bad_files=False, ground_truth=False)
  gt_dir = tmp_path / 'gt'
  gt_dir.mkdir()
  net, _, _ = _write_npy(str(gt_dir), 3)
  net[1, 2] = np.inf
  path = gt_dir / trees.PUBLISHED_NPY_FILES['net']
  np.save(path, net)
  with pytest.raises(ValueError, match=re.escape(
      f'{path}: row 1, column 2 is inf, not a finite number')):
    trees.read_ground_truth(trees.scan(str(tmp_path)), str(gt_dir))


def _write_npy(directory, n, seed=0):
  rng = np.random.default_rng(seed)
  net = np.concatenate([rng.random((n, 9)), rng.integers(0, 4, (n, 3)),
                        rng.integers(0, 2, (n, 3))], axis=1)
  coarse = rng.integers(0, 2, (n, 3))
  fine = rng.integers(0, 2, (n, 10))
  files = trees.PUBLISHED_NPY_FILES
  for key, table in (('net', net), ('coarse', coarse), ('fine', fine)):
    np.save(os.path.join(directory, files[key]), table)
  return net, coarse, fine


def test_published_npy_rows_follow_sorted_folders(tmp_path):
  # GM folders directly in the root, ground truth in a folder of its own.
  write_tree(tmp_path, images_dir=False, bad_files=False, ground_truth=False)
  gt_dir = tmp_path / 'gt'
  gt_dir.mkdir()
  net, coarse, fine = _write_npy(str(gt_dir), 3)
  table, _ = trees.read_ground_truth(trees.scan(str(tmp_path)),
                                      str(gt_dir))
  assert table.gm_names == SORTED_GMS
  np.testing.assert_allclose(table.continuous, net[:, :9], rtol=1e-6)
  np.testing.assert_array_equal(table.discrete, net[:, 9:])
  np.testing.assert_array_equal(table.coarse, coarse)
  np.testing.assert_array_equal(table.fine, fine[:, :8])


# Byte copies of the published 116-GM tables, 26 KB, so that this test runs
# on every clone (docs/published.md, "Ground-truth tables").
PUBLISHED_GT = REPO / 'tests' / 'data' / 'published_ground_truth'


def test_the_published_116_gm_tables(tmp_path):
  names = [f'GM_{i:03d}' for i in range(116)]
  for gm in names:
    os.makedirs(tmp_path / gm)
    (tmp_path / gm / '0.png').write_bytes(_png(0, size=2))
  gt_dir = str(PUBLISHED_GT)
  table, _ = trees.read_ground_truth(trees.scan(str(tmp_path)), gt_dir)
  net = np.load(os.path.join(gt_dir, trees.PUBLISHED_NPY_FILES['net']))
  assert table.gm_names == tuple(names)
  np.testing.assert_array_equal(table.discrete[57], net[57, 9:])
  assert table.schema == schema.PUBLISHED
  # The value ranges docs/published.md states for the 15 columns.
  assert net.shape == (116, 15)
  assert ((net[:, :9] >= 0) & (net[:, :9] <= 1)).all()
  assert set(np.unique(net[:, 9:12])) <= {0, 1, 2, 3}
  assert set(np.unique(net[:, 12:])) <= {0, 1}
  assert table.coarse.shape == (116, 3) and table.fine.shape == (116, 8)


def test_model_parsing_builder(tmp_path):
  manual = tmp_path / 'manual'
  write_tree(manual, images_dir=False, ground_truth=False)
  net, _, _ = _write_npy(str(manual), 3)
  data_dir = str(tmp_path / 'tfds')
  ds, info = tfds.load(
      'model_parsing', split='train', data_dir=data_dir, with_info=True,
      download_and_prepare_kwargs={
          'download_config': tfds.download.DownloadConfig(
              manual_dir=str(manual))})
  assert info.config_name == 'size_64'
  assert info.splits['train'].num_examples == 12
  assert info.features['gm'].names == list(SORTED_GMS)
  examples = list(tfds.as_numpy(ds))
  assert {e['image'].shape for e in examples} == {(64, 64, 3)}

  shutil.rmtree(manual)  # Everything a reader needs is in the records.
  builder = tfds.builder('model_parsing', data_dir=data_dir)
  meta = builder.info.metadata
  table = schema.GroundTruth.from_dict(meta['ground_truth'])
  np.testing.assert_allclose(table.continuous, net[:, :9], rtol=1e-6)
  assert sorted(f for f, _ in meta['skipped_files']) == [
      'gm_b/truncated.png', 'gm_c/empty.png']
  assert meta['gm_counts'] == {'gm_a': 4, 'gm_b': 4, 'gm_c': 4}
  assert builder.info.features['gm'].names == list(SORTED_GMS)

  # Another ground truth is another config, never the same records.
  other = model_parsing.ModelParsing(data_dir=data_dir,
                                     ground_truth_dir=str(tmp_path / 'x'))
  assert other.builder_config.name.startswith('size_64_gt')
  assert not other.is_prepared()


def test_model_parsing_missing_manual_dir_is_reported(tmp_path):
  builder = model_parsing.ModelParsing(data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(AssertionError, match='manual'):
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=str(tmp_path / 'nowhere')))


def _fake_zoo(monkeypatch, tmp_path):
  """Stands in for jaxfp.zoo: cached() writes a tiny tree, once per config."""
  import jaxfp.zoo  # pylint: disable=g-import-not-at-top
  calls = []

  def tiny_config():
    return ml_collections.ConfigDict(dict(
        num_generators=3, images_per_generator=4, image_size=16,
        train_steps=2, train_batch_size=2, learning_rate=1e-3, seed=0))

  def cached(zoo_config, cache_root):
    calls.append(zoo_config.to_json())
    root = os.path.join(cache_root, f'zoo{len(calls)}')
    write_tree(root, bad_files=False)
    return root

  monkeypatch.setattr(jaxfp.zoo, 'cached', cached)
  return tiny_config, calls


def test_zoo_builder_with_a_fake_zoo(monkeypatch, tmp_path):
  tiny_config, calls = _fake_zoo(monkeypatch, tmp_path)
  data_dir = str(tmp_path / 'tfds')
  kwargs = dict(data_dir=data_dir, zoo_cache_dir=str(tmp_path / 'zoo'))

  ds = tfds.load('jaxfp_zoo', split='train', data_dir=data_dir,
                 builder_kwargs={'zoo_config': tiny_config(),
                                 'zoo_cache_dir': kwargs['zoo_cache_dir']})
  assert len(list(ds)) == 12
  assert len(calls) == 1
  # The same zoo given again is the same records.
  builder = zoo_dataset.ZooDataset(zoo_config=tiny_config(), **kwargs)
  assert builder.is_prepared()
  assert builder.info.metadata['zoo_config'] == tiny_config().to_dict()
  with pytest.raises(ValueError, match='needs zoo_config'):
    zoo_dataset.ZooDataset(**kwargs)

  small = tiny_config()
  small.num_generators = 2
  custom = zoo_dataset.ZooDataset(zoo_config=small, **kwargs)
  name = custom.builder_config.name
  assert name != builder.builder_config.name
  assert name == zoo_dataset.ZooDataset(zoo_config=small, **kwargs
                                        ).builder_config.name
  assert name != zoo_dataset.ZooDataset(zoo_config=small, image_size=32,
                                        **kwargs).builder_config.name
  custom.download_and_prepare()
  assert len(calls) == 2
  zoo_dataset.ZooDataset(zoo_config=small, **kwargs).download_and_prepare()
  assert len(calls) == 2  # Built once.


def test_zoo_builder_with_the_real_zoo(tmp_path):
  config = zoo_config_lib.get_config()
  config.num_generators = 3
  config.images_per_generator = 3
  config.train_steps = 2
  config.image_size = 16
  builder = zoo_dataset.ZooDataset(
      zoo_config=config, image_size=16, data_dir=str(tmp_path / 'tfds'),
      zoo_cache_dir=str(tmp_path / 'zoo'))
  builder.download_and_prepare()
  meta = builder.info.metadata
  assert len(builder.info.features['gm'].names) == 3
  assert sum(meta['gm_counts'].values()) == 9 - len(meta['skipped_files'])
  table = schema.GroundTruth.from_dict(meta['ground_truth'])
  assert table.gm_names == tuple(builder.info.features['gm'].names)
  example = next(iter(tfds.as_numpy(builder.as_dataset(split='train'))))
  assert example['image'].shape == (16, 16, 3)


def _read_only_file_system(*args, **kwargs):
  """Stands in for a write to a read-only mount (root writes through any
  chmod, so a test cannot make one otherwise)."""
  raise OSError(errno.EROFS, 'Read-only file system', 'dataset_info.json')


def test_a_complete_cache_moved_or_mounted_read_only_is_used_as_is(
    tmp_path, monkeypatch):
  """Issue 22, case 9: the zoo's records remember its tree relative to the
  cache, so a cache copied (or mounted) elsewhere is the same content and
  nothing is rebuilt; a rebuild that cannot write names the folder."""
  config = zoo_config_lib.get_config()
  config.num_generators = 3
  config.images_per_generator = 3
  config.train_steps = 2
  config.image_size = 16

  def make(cache):
    return lambda: zoo_dataset.ZooDataset(
        zoo_config=config, image_size=16, data_dir=str(cache / 'tfds'),
        zoo_cache_dir=str(cache / 'zoo'))
  folder.prepare(make(tmp_path / 'built'))
  shutil.copytree(tmp_path / 'built', tmp_path / 'mounted')
  shutil.rmtree(tmp_path / 'built')
  monkeypatch.setattr(folder.shutil, 'rmtree', _read_only_file_system)
  builder = folder.prepare(make(tmp_path / 'mounted'))
  assert len(list(builder.as_dataset(split='train'))) == 9
  # A tree that did change: the rebuild fails, naming the records' folder.
  gm = sorted(os.listdir(tmp_path / 'mounted' / 'zoo'))[0]
  images_dir = tmp_path / 'mounted' / 'zoo' / gm / 'images'
  first = sorted(images_dir.iterdir())[0]
  (sorted(first.iterdir())[0]).write_bytes(_png(3))
  with pytest.raises(OSError, match=re.escape(
      f'the jaxfp_zoo records in {builder.data_dir} cannot be rebuilt: '
      'Read-only file system')):
    folder.prepare(make(tmp_path / 'mounted'))


def _parsing_config(tmp_path, manual_dir):
  c = data_config.parsing()
  c.name = 'model_parsing'
  c.manual_dir = str(manual_dir)
  c.cache_dir = str(tmp_path / 'cache')
  c.image_size = 16
  c.num_test_gms = 1
  return c


def test_records_follow_the_tree_they_were_built_from(tmp_path):
  """Issue 14, case 1: records are keyed by the tree's content."""
  write_tree(tmp_path / 'a', gms=('gm_a', 'gm_b', 'gm_c'), bad_files=False)
  write_tree(tmp_path / 'b', gms=('gm_x', 'gm_y', 'gm_z'), bad_files=False)
  c = _parsing_config(tmp_path, tmp_path / 'a')
  assert gm_folders.load_info(c).ground_truth.gm_names == ('gm_a', 'gm_b',
                                                        'gm_c')
  c.manual_dir = str(tmp_path / 'b')  # Another tree: rebuilt from it.
  info = gm_folders.load_info(c)
  assert info.ground_truth.gm_names == ('gm_x', 'gm_y', 'gm_z')
  assert set(info.train_gms + info.test_gms) == {'gm_x', 'gm_y', 'gm_z'}
  again = gm_folders.load_info(c)  # Unchanged: the same records.
  assert (again.train_gms, again.test_gms) == (info.train_gms, info.test_gms)


def test_a_gm_folder_added_with_no_ground_truth_row_is_named(tmp_path):
  """Issue 14, case 1: a GM folder added after the build is not ignored."""
  write_tree(tmp_path / 'b', gms=('gm_x', 'gm_y', 'gm_z'), bad_files=False)
  c = _parsing_config(tmp_path, tmp_path / 'b')
  assert gm_folders.load_info(c).ground_truth.gm_names == ('gm_x', 'gm_y',
                                                        'gm_z')
  os.makedirs(tmp_path / 'b' / 'images' / 'gm_new')
  (tmp_path / 'b' / 'images' / 'gm_new' / '0.png').write_bytes(_png(9))
  with pytest.raises(ValueError, match='gm_new has no row in the ground '
                     'truth'):
    gm_folders.load_info(c)


def _held_out_count(c, info) -> int:
  """Held-out images the evaluation of `info` reads, as a run counts them."""
  return int(sum(batch['mask'].sum() for batch in gm_folders.eval_iterator(
      c, info, global_batch_size=4, local_device_count=1)))


def test_two_trees_never_share_one_records_folder(tmp_path):
  """Issue 22, case 1: a second tree, built while the first run still
  reads its records, leaves them as they were: the first run's held-out
  images are its own (another count here), never the second tree's."""
  write_tree(tmp_path / 'a', gms=('gm_a', 'gm_b', 'gm_c'), per_gm=4,
             bad_files=False)
  write_tree(tmp_path / 'b', gms=('gm_x', 'gm_y', 'gm_z'), per_gm=2,
             bad_files=False)
  a = _parsing_config(tmp_path, tmp_path / 'a')
  b = _parsing_config(tmp_path, tmp_path / 'b')
  info_a = gm_folders.load_info(a)
  assert _held_out_count(a, info_a) == 4
  info_b = gm_folders.load_info(b)  # The second trainer starts.
  assert _held_out_count(b, info_b) == 2
  assert _held_out_count(a, info_a) == 4  # The first one reads on.
  builds = sorted(p.name for p in (tmp_path / 'cache' / 'tfds' /
                                   'model_parsing').glob('size_*'))
  assert len(builds) == 2, builds


# Prepares the records of a tree, as a second trainer on it would.
PREPARE = """
import sys
from configs import data as data_config
from jaxfp.data import gm_folders
c = data_config.parsing()
c.name, c.manual_dir, c.cache_dir = 'model_parsing', sys.argv[1], sys.argv[2]
c.image_size, c.num_test_gms = 16, 1
print('test GMs', list(gm_folders.load_info(c).test_gms))
"""


def test_two_processes_on_one_tree_build_its_records_once(tmp_path,
                                                          monkeypatch):
  """Issue 22, the class of case 1: a second process asking for records
  while the first builds them waits for them (before, both built, and one
  failed renaming its folder onto the other's); then it uses them as
  built."""
  import subprocs  # pylint: disable=g-import-not-at-top
  write_tree(tmp_path / 'a', bad_files=False)
  c = _parsing_config(tmp_path, tmp_path / 'a')
  second = []
  read = trees.read_ground_truth

  def start_the_second_mid_build(*args, **kwargs):
    # Inside the first build: the second process starts, and must wait.
    child = subprocs.Child(
        [sys.executable, '-c', PREPARE, c.manual_dir, c.cache_dir],
        subprocs.child_env(), tmp_path / 'second.log')
    second.append(child)
    subprocs.wait_for(lambda: 'Waiting for another process' in
                      child.output(), [child], 300, 'the second to wait')
    return read(*args, **kwargs)
  monkeypatch.setattr(trees, 'read_ground_truth', start_the_second_mid_build)
  info = gm_folders.load_info(c)
  built = sorted((tmp_path / 'cache' / 'tfds' / 'model_parsing').glob(
      'size_*/*/dataset_info.json'))
  assert len(built) == 1
  stamp = built[0].stat().st_mtime_ns
  assert subprocs.wait_all(second, 300) == [0]
  assert f'test GMs {list(info.test_gms)}' in second[0].output()
  assert built[0].stat().st_mtime_ns == stamp  # Not built again.


def test_a_manual_dir_that_is_a_file_is_named_as_such(tmp_path):
  """Issue 22, case 13."""
  (tmp_path / 'a_file').write_text('not a tree')
  c = _parsing_config(tmp_path, tmp_path / 'a_file')
  with pytest.raises(NotADirectoryError, match=f"manual_dir '{tmp_path}/"
                     "a_file' is a file, not a folder"):
    gm_folders.load_info(c)


# Lists the images under a folder (inference) and scans a dataset tree, as
# a program of its own, so that an endless walk is stopped by a time limit.
WALK = '''
import json, sys
from jaxfp.data import images, trees
found, problems = images.find_images([sys.argv[1]])
scan = trees.scan(sys.argv[2])
print(json.dumps({'found': found, 'problems': problems, 'scan': scan.files}))
'''


def test_link_loops_end_and_each_image_is_listed_once(tmp_path):
  """Issue 14, case 2: a folder linking back to its parents, twice."""
  loop = tmp_path / 'L' / 'd'
  loop.mkdir(parents=True)
  (loop / 'x.png').write_bytes(_png(1))
  os.symlink('..', loop / 'l1')
  os.symlink('..', loop / 'l2')
  base = write_tree(tmp_path / 'tree', bad_files=False)
  os.makedirs(os.path.join(base, 'gm_a', 'sub'))
  os.symlink('..', os.path.join(base, 'gm_a', 'sub', 'back'))
  os.symlink('.', os.path.join(base, 'gm_a', 'sub', 'here'))
  out = subprocess.run(
      [sys.executable, '-c', WALK, str(tmp_path / 'L'), str(tmp_path / 'tree')],
      cwd=REPO, capture_output=True, text=True, timeout=60, check=True)
  listed = json.loads(out.stdout)
  assert listed['found'] == [str(loop / 'x.png')]
  assert listed['problems'] == []
  assert listed['scan'] == {gm: [f'{gm}/{i:03d}.png' for i in range(4)]
                            for gm in SORTED_GMS}
