"""jaxfp.predict and jaxfp.cluster: bad inputs, batching, grouping."""

import json
import os
import re
import shutil

from absl import flags
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from PIL import Image
from sklearn import metrics as sk_metrics

from configs import fen as fen_config
from jaxfp import predict as predict_command
from jaxfp.core import schema as schema_lib
from jaxfp.data import images as image_files
from jaxfp.inference import cluster
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.tasks import parsing as parsing_task

SIZE = 64


def _write_checkpoint(directory, variables, meta=None):
  """Step 3 of a checkpoint in the trainer's layout (without meta if None)."""
  state = {'step': 3, 'params': variables['params'],
           'batch_stats': variables['batch_stats']}
  items = {'state': ocp.args.StandardSave(jax.device_get(state))}
  if meta is not None:
    items['meta'] = ocp.args.JsonSave(meta)
  with ocp.CheckpointManager(directory / 'checkpoints',
                             item_names=tuple(items)) as manager:
    manager.save(3, args=ocp.args.Composite(**items))
  return str(directory)


def _meta():
  config = fen_config.get_config('test')
  return {'config': json.loads(config.to_json_best_effort()),
          'task': 'parsing', 'schema': schema_lib.ZOO.to_dict()}


@pytest.fixture(scope='module')
def variables():
  config = fen_config.get_config('test')
  model = parsing_task.create_model(config, schema_lib.ZOO, axis_name=None)
  return jax.device_get(jax.jit(lambda k: model.init(
      k, np.zeros((1, SIZE, SIZE, 3), np.float32), train=False))(
          jax.random.key(0)))


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory, variables):
  """A parsing checkpoint of random weights, in the trainer's layout."""
  return _write_checkpoint(tmp_path_factory.mktemp('run'), variables,
                           _meta())


def _write(path, array):
  Image.fromarray(array).save(path)
  return str(path)


@pytest.fixture()
def images(tmp_path):
  rng = np.random.default_rng(0)
  rgb = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
  good = {
      'rgb': _write(tmp_path / 'rgb.png', rgb),
      'wide_jpeg': _write(tmp_path / 'wide.jpg', rng.integers(
          0, 256, (40, 90, 3), dtype=np.uint8)),
      'gray': _write(tmp_path / 'gray.bmp', rgb[..., 0]),
      'rgba': _write(tmp_path / 'rgba.webp', np.concatenate(
          [rgb, np.full((SIZE, SIZE, 1), 128, np.uint8)], -1)),
      'sixteen_bit': _write(tmp_path / 'deep.png',
                            rgb[..., 1].astype(np.uint16) * 257),
  }
  bad = {'empty': str(tmp_path / 'empty.png'),
         'truncated': str(tmp_path / 'truncated.png'),
         'not_an_image': str(tmp_path / 'notes.jpg')}
  open(bad['empty'], 'wb').close()
  with open(good['rgb'], 'rb') as f:
    data = f.read()
  with open(bad['truncated'], 'wb') as f:
    f.write(data[:len(data) // 3])
  with open(bad['not_an_image'], 'w') as f:
    f.write('this is text')
  return good, bad


def test_every_good_format_loads_as_rgb_of_the_input_size(images):
  good, _ = images
  for name, path in good.items():
    for policy in image_files.RESIZE_POLICIES:
      array = image_files.load_image(path, SIZE, policy)
      assert array.shape == (SIZE, SIZE, 3) and array.dtype == np.uint8, name
  # 16-bit values are rescaled to 8 bits, not clipped.
  deep = image_files.load_image(good['sixteen_bit'], SIZE)
  rgb = image_files.load_image(good['rgb'], SIZE)
  np.testing.assert_array_equal(deep[..., 0], rgb[..., 1])


def test_center_crop_keeps_the_middle_square(tmp_path):
  wide = np.zeros((SIZE, 2 * SIZE, 3), np.uint8)
  wide[:, SIZE // 2: 3 * SIZE // 2] = 255  # White centre square.
  path = _write(tmp_path / 'wide.png', wide)
  assert image_files.load_image(path, SIZE, 'center_crop').min() == 255
  assert image_files.load_image(path, SIZE, 'resize').min() == 0


def test_bad_inputs_are_named_and_do_not_change_good_outputs(checkpoint,
                                                             images, tmp_path):
  good, bad = images
  loaded = network.load(checkpoint)
  alone, failures = predict.predict(loaded, list(good.values()), batch_size=4,
                                    progress=False)
  assert not failures
  empty_dir = tmp_path / 'no_images'
  empty_dir.mkdir()
  mixed_inputs = ([bad['empty'], good['rgb'], bad['truncated']] +
                  list(good.values())[1:] +
                  [bad['not_an_image'], str(empty_dir),
                   str(tmp_path / 'missing.png')])
  mixed, failures = predict.predict(loaded, mixed_inputs, batch_size=4,
                                    progress=False)
  failed = dict(failures)
  assert set(failed) == set(bad.values()) | {str(empty_dir),
                                             str(tmp_path / 'missing.png')}
  assert 'empty file' in failed[bad['empty']]
  assert 'truncated' in failed[bad['truncated']]
  assert 'no image' in failed[str(empty_dir)]
  assert 'no such file' in failed[str(tmp_path / 'missing.png')]
  by_file = {r['file']: r['parse'] for r in mixed}
  assert set(by_file) == set(good.values())
  for record in alone:
    got, want = by_file[record['file']], record['parse']
    for name, value in want['loss_type_probability'].items():
      assert got['loss_type_probability'][name] == pytest.approx(value,
                                                                 abs=1e-6)
    for name, value in want['continuous'].items():
      assert got['continuous'][name]['normalized'] == pytest.approx(
          value['normalized'], abs=1e-6)


def test_predictions_name_every_head(checkpoint, images):
  good, _ = images
  records, _ = predict.predict(network.load(checkpoint), [good['rgb']],
                               progress=False)
  p = records[0]['parse']
  schema = schema_lib.ZOO
  assert set(p['continuous']) == set(schema.continuous)
  assert set(p['discrete']) == {d.name for d in schema.discrete}
  assert set(p['loss_type_probability']) == set(schema.coarse + schema.fine)
  for d in schema.discrete:
    assert p['discrete'][d.name]['class'] in d.classes
  text = predict.format_record('parsing', records[0])
  assert good['rgb'] in text and 'loss types' in text


def test_cli_exit_codes_and_json_lines(checkpoint, images, tmp_path):
  good, bad = images
  out = tmp_path / 'out.jsonl'
  if 'checkpoint' not in flags.FLAGS:
    predict_command.define_flags()
  argv = ['predict', f'--checkpoint={checkpoint}', f'--output={out}',
          '--quiet', good['rgb'], bad['empty']]
  flags.FLAGS(argv)
  try:
    assert predict_command.main(argv[:1] + [good['rgb'], bad['empty']]) == 1
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])['file'] == good['rgb']
    assert predict_command.main(argv[:1] + [good['rgb']]) == 0
    assert predict_command.main(argv[:1] + [bad['empty']]) == 2
    flags.FLAGS.checkpoint = str(tmp_path / 'nowhere')
    assert predict_command.main(argv[:1] + [good['rgb']]) == 2
  finally:
    flags.FLAGS.unparse_flags()


def test_missing_or_wrong_checkpoint_is_a_clear_error(tmp_path):
  with pytest.raises(network.CheckpointError, match='does not exist'):
    network.load(str(tmp_path / 'nowhere'))
  (tmp_path / 'empty_run').mkdir()
  with pytest.raises(network.CheckpointError, match='holds no checkpoint'):
    network.load(str(tmp_path / 'empty_run'))


def test_grouping_recovers_well_separated_sources():
  rng = np.random.default_rng(0)
  centres = rng.normal(size=(3, 16)) * 5
  truth = np.repeat(np.arange(3), 20)
  vectors = centres[truth] + rng.normal(size=(60, 16))
  unit = cluster.normalize(vectors)
  labels, k, score = cluster.group(unit)
  assert k == 3 and score > 0.5
  assert sk_metrics.adjusted_rand_score(truth, labels) == 1.0
  labels, k, _ = cluster.group(unit, num_groups=2)
  assert k == 2 and len(np.unique(labels)) == 2


def test_cluster_report_files(checkpoint, images, tmp_path):
  good, _ = images
  loaded = network.load(checkpoint)
  kept, vectors, failures = cluster.embed(loaded, list(good.values()))
  assert not failures and len(kept) == len(good)
  assert vectors.shape == (len(good), 64)
  unit = cluster.normalize(vectors)
  labels, k, score = cluster.group(unit, num_groups=2)
  text = cluster.report(str(tmp_path / 'out'), kept, unit @ unit.T, labels,
                        k, score)
  assert '2 groups' in text
  for name in ('groups.json', 'groups.md', 'similarity.png'):
    assert os.path.getsize(tmp_path / 'out' / name) > 0


def test_a_converted_published_detector_predicts(tmp_path, images):
  torch = pytest.importorskip('torch')
  # pylint: disable=g-import-not-at-top
  from jaxfp.pytorch import convert as convert_torch
  from jaxfp.pytorch import networks as torch_models
  # pylint: enable=g-import-not-at-top
  torch.manual_seed(0)
  fen = torch_models.FEN(3, width=8).eval()
  head = torch_models.DetectionHead(channels=(4, 4, 8, 8, 8), hidden=16,
                                    image_size=128).eval()
  path = tmp_path / 'detector.pth'
  torch.save(torch_models.published_checkpoint(fen, head, 'detection'), path)
  convert_torch.write_checkpoint(str(path), 'detection', str(tmp_path / 'out'))
  loaded = network.load(str(tmp_path / 'out'))
  assert loaded.task == 'detection' and loaded.image_size == 128
  good, bad = images
  records, failures = predict.predict(loaded, [good['rgb'], bad['empty']],
                                      progress=False)
  assert [f for f, _ in failures] == [bad['empty']]
  p = records[0]['prediction']
  assert set(p['probabilities']) == {'real', 'fake'}
  assert p['fake_probability'] == pytest.approx(p['probabilities']['fake'])


def _run_predict(argv):
  """The predict command's main on `argv` (flags parsed as on a command
  line); returns its exit status."""
  if 'checkpoint' not in flags.FLAGS:
    predict_command.define_flags()
  flags.FLAGS(['predict'] + [a for a in argv if a.startswith('--')])
  try:
    return predict_command.main(['predict'] + [a for a in argv
                                               if not a.startswith('--')])
  finally:
    flags.FLAGS.unparse_flags()


def test_a_checkpoint_with_nan_weights_writes_no_nan(variables, images,
                                                     tmp_path, capsys):
  """Issue 14, case 3: predict never writes NaN into JSON lines; refusing
  the checkpoint, it leaves an earlier --output file as it was."""
  good, _ = images
  broken = jax.tree.map(np.array, variables)
  kernel = broken['params']['fen']['conv_0']['kernel']
  kernel[0, 0, 0, 0] = np.nan
  run = _write_checkpoint(tmp_path / 'nan_run', broken, _meta())
  out = tmp_path / 'out.jsonl'
  earlier = '{"file": "earlier.png"}\n'
  out.write_text(earlier)
  assert _run_predict([f'--checkpoint={run}', f'--output={out}', '--quiet',
                       good['rgb']]) == 2
  assert out.read_text() == earlier
  assert 'non-finite values (params/fen/conv_0/kernel)' in (
      capsys.readouterr().err)


def test_a_checkpoint_without_meta_is_a_one_line_error(variables, images,
                                                       tmp_path, capsys):
  """Issue 14, case 10: no KeyError, but exit status 2 and a reason."""
  good, _ = images
  run = _write_checkpoint(tmp_path / 'no_meta', variables)
  assert _run_predict([f'--checkpoint={run}', good['rgb']]) == 2
  err = capsys.readouterr().err
  assert err.startswith('error: the checkpoint ') and '"meta"' in err


def test_an_output_that_cannot_be_written_fails_before_any_work(
    checkpoint, images, tmp_path, monkeypatch):
  """Issue 14, case 8: --output is opened before any image is read."""
  good, _ = images

  def no_work(*args, **kwargs):
    raise AssertionError('the work started before --output was checked')
  monkeypatch.setattr(network, 'load', no_work)
  missing = tmp_path / 'missing'
  with pytest.raises(FileNotFoundError, match=f'folder {missing} does not '
                     'exist'):
    predict.run(checkpoint, [good['rgb']], output=str(missing / 'out.jsonl'))
  with pytest.raises(IsADirectoryError, match='is a folder'):
    predict.run(checkpoint, [good['rgb']], output=str(tmp_path))


def _copies(tmp_path, image, names):
  """A folder holding the file `image` under each of `names` (bytes)."""
  folder = tmp_path / 'copies'
  folder.mkdir()
  data = open(image, 'rb').read()
  for name in names:
    with open(os.path.join(os.fsencode(folder), name), 'wb') as f:
      f.write(data)
  return folder


def test_cluster_names_a_file_whose_name_is_not_utf8(checkpoint, images,
                                                     tmp_path):
  """Issue 14, case 9: an odd file name is reported, not a crash."""
  good, _ = images
  folder = _copies(tmp_path, good['rgb'], (b'a.png', b'odd\xff.png'))
  out = tmp_path / 'out'
  assert cluster.run(checkpoint, [str(folder)], str(out)) == 0
  assert 'odd\\xff.png' in (out / 'groups.md').read_text()
  assert json.loads((out / 'groups.json').read_text())['num_images'] == 2


def test_cluster_considers_one_group(checkpoint, images, tmp_path):
  """Issue 14, case 9: three copies of one image are one group, not 2 + 1."""
  good, _ = images
  folder = _copies(tmp_path, good['rgb'], (b'a.png', b'b.png', b'c.png'))
  out = tmp_path / 'out'
  assert cluster.run(checkpoint, [str(folder)], str(out)) == 0
  summary = json.loads((out / 'groups.json').read_text())
  assert summary['num_groups'] == 1 and summary['silhouette'] is None


def test_cluster_checks_num_groups_before_any_work(checkpoint, images,
                                                   tmp_path, monkeypatch):
  """Issue 14, case 9: --num_groups above the number of images is refused
  before the embedding work."""
  good, _ = images
  folder = _copies(tmp_path, good['rgb'], (b'a.png', b'b.png', b'c.png'))

  def no_work(*args, **kwargs):
    raise AssertionError('embedding started before --num_groups was checked')
  monkeypatch.setattr(cluster, 'embed', no_work)
  with pytest.raises(ValueError, match='num_groups=5, but there are only 3 '
                     'images'):
    cluster.run(checkpoint, [str(folder)], str(tmp_path / 'out'),
                num_groups=5)


def test_identical_embeddings_are_one_group():
  rng = np.random.default_rng(0)
  same = np.repeat(rng.normal(size=(1, 16)), 3, axis=0)
  same[1] += 1e-9  # Float rounding must not split them.
  labels, k, score = cluster.group(cluster.normalize(same))
  assert k == 1 and list(labels) == [0, 0, 0] and np.isnan(score)


def test_an_output_never_replaces_or_joins_an_input(checkpoint, images,
                                                    tmp_path, capsys):
  """Issue 22, case 2 and its class: --output, --panels_dir and cluster's
  --workdir that are an input, another spelling of one (a link), or inside
  an input folder are refused before any work: exit 2, the inputs as they
  were."""
  good, _ = images
  image = good['rgb']
  before = open(image, 'rb').read()
  folder = _copies(tmp_path, image, (b'a.png',))
  link = tmp_path / 'link.png'
  link.symlink_to(image)
  for flag, path, inputs in (
      ('--output', image, [image]),
      ('--output', str(link), [image]),
      ('--output', str(folder / 'preds.jsonl'), [str(folder)]),
      ('--panels_dir', str(folder / 'panels'), [str(folder)]),
      ('--panels_dir', str(folder), [str(folder)])):
    assert _run_predict([f'--checkpoint={checkpoint}', f'{flag}={path}',
                         '--quiet', *inputs]) == 2, (flag, path)
    err = capsys.readouterr().err
    assert err.startswith(f'error: {flag} {path} ') and 'input' in err, err
  assert open(image, 'rb').read() == before
  assert sorted(os.listdir(folder)) == ['a.png']
  with pytest.raises(ValueError, match='inside the input folder'):
    cluster.run(checkpoint, [str(folder)], str(folder / 'groups'))
  assert sorted(os.listdir(folder)) == ['a.png']


def test_a_parsing_checkpoint_for_a_gallery_or_embeddings_says_so(
    checkpoint, images, tmp_path):
  """Issue 22, case 11: not 'source_calibration.json is missing', but what
  the checkpoint is, as predict --gallery says."""
  from jaxfp.inference import gallery  # pylint: disable=g-import-not-at-top
  from jaxfp.tools import embeddings  # pylint: disable=g-import-not-at-top
  good, _ = images
  tree = tmp_path / 'tree'
  for source in ('a', 'b'):
    (tree / source).mkdir(parents=True)
    shutil.copy(good['rgb'], tree / source / 'x.png')
  for call in (lambda: gallery.run(checkpoint, str(tree),
                                   str(tmp_path / 'g.npz')),
               lambda: embeddings.run(checkpoint, str(tree),
                                      str(tmp_path / 'report'))):
    with pytest.raises(network.CheckpointError, match=re.escape(
        f"{checkpoint}") + r".* is a 'parsing' checkpoint \(train one"):
      call()
  assert not (tmp_path / 'g.npz').exists()


def test_a_gallery_with_non_finite_centroids_is_named_damaged(tmp_path):
  """Issue 22, case 10: the gallery is blamed, not the network (which would
  be blamed for every image)."""
  from jaxfp.inference import gallery  # pylint: disable=g-import-not-at-top
  centroids = np.eye(3, 4)
  centroids[1, 2] = np.nan
  path = str(tmp_path / 'g.npz')
  gallery.save(gallery.Gallery(('a', 'b', 'c'), centroids, np.ones(3, int),
                               {'group_threshold': 0.5}, 3), path)
  with pytest.raises(gallery.GalleryError, match=re.escape(
      f"gallery {path!r} is damaged: the centroids of 1 sources hold NaN or "
      'infinite values (b)')):
    gallery.load(path)


def test_a_file_name_with_a_newline_stays_on_one_line(checkpoint, images,
                                                      tmp_path, capsys):
  """Issue 22, case 15: each skip is one stderr line and each image's table
  entry starts on one line, the newline shown as \\n; the JSON lines keep
  the real name."""
  good, _ = images
  folder = _copies(tmp_path, good['rgb'], (b'a\nb.png',))
  (folder / 'bad\n.png').write_bytes(b'')
  out = tmp_path / 'out.jsonl'
  assert _run_predict([f'--checkpoint={checkpoint}', f'--output={out}',
                       str(folder)]) == 1
  captured = capsys.readouterr()
  skips = [line for line in captured.err.splitlines()
           if line.startswith('skipped ')]
  assert len(skips) == 1 and skips[0].startswith(
      f'skipped {folder}/bad\\n.png: '), captured.err
  assert f'{folder}/a\\nb.png' in captured.out.splitlines()[0]
  record = json.loads(out.read_text().splitlines()[0])
  assert record['file'] == f'{folder}/a\nb.png'
