"""Source embeddings: losses, calibrated grouping, open-set scores, and the
commands around a trained embedding (train, gallery, predict, cluster,
evaluation on a tree)."""

import json
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image
import pytest
from scipy import ndimage
from sklearn import cluster as sk_cluster
from sklearn import metrics as sk_metrics

from configs import source as source_config
from jaxfp import train
from jaxfp.data import trees
from jaxfp.inference import cluster
from jaxfp.inference import gallery
from jaxfp.inference import network
from jaxfp.inference import predict
from jaxfp.inference import sources
from jaxfp.losses import embedding as losses
from jaxfp.models import embedding
from jaxfp.tools import embeddings as embeddings_tool
import subprocs


def planted(num_sources, per_source, *, spread=0.25, dim=32, seed=0):
  """Unit vectors around `num_sources` random directions, and their
  labels."""
  rng = np.random.default_rng(seed)
  centres = rng.normal(size=(num_sources, dim))
  labels = np.repeat(np.arange(num_sources), per_source)
  x = (centres[labels] / np.sqrt(dim) +
       spread / np.sqrt(dim) * rng.normal(size=(len(labels), dim)))
  return x / np.linalg.norm(x, axis=1, keepdims=True), labels


def test_the_residual_blur_is_scipys_gaussian_filter():
  rng = np.random.default_rng(7)
  x = rng.uniform(size=(2, 16, 16, 3)).astype(np.float32)
  expected = ndimage.gaussian_filter(x, sigma=(0, 1, 1, 0), mode='reflect')
  np.testing.assert_allclose(np.asarray(embedding.gaussian_blur(x)), expected,
                             atol=1e-5)


def test_the_embedder_gives_unit_rows_and_finite_statistics_of_flat_images():
  model = embedding.SourceEmbedder(embed_dim=8, hidden=(16,), num_sources=3,
                                   spectrum_pool=8, trace_stats=True)
  images = np.zeros((2, 64, 64, 3), np.float32)  # Flat: residual all zero.
  images[1] += np.random.default_rng(0).normal(size=(64, 64, 3))
  variables = model.init(jax.random.key(0), images, train=False)
  out = model.apply(variables, images, train=False)
  np.testing.assert_allclose(np.linalg.norm(out['embedding'], axis=1), 1.0,
                             rtol=1e-5)
  assert out['cosines'].shape == (2, 3)
  stats = embedding.trace_statistics(jnp.zeros((1, 64, 64, 3)))
  assert stats.shape == (1, 27 + 2 * 64 + 15)
  assert np.isfinite(np.asarray(stats)).all()


def test_margin_softmax_rewards_the_true_source_and_skips_missing_labels():
  labels = jnp.array([0, 1, -1])
  good = jnp.array([[0.9, 0.1], [0.0, 0.8], [5.0, -5.0]])
  bad = jnp.array([[0.1, 0.9], [0.8, 0.0], [5.0, -5.0]])
  assert losses.margin_softmax(good, labels) < losses.margin_softmax(
      bad, labels)
  # The ignored row changes nothing.
  other = good.at[2].set(jnp.array([-5.0, 5.0]))
  assert losses.margin_softmax(good, labels) == pytest.approx(
      float(losses.margin_softmax(other, labels)))
  # The margin makes a tie a loss above log(2).
  tie = jnp.array([[0.5, 0.5]])
  assert losses.margin_softmax(tie, jnp.array([0])) > np.log(2)


def test_supervised_contrastive_pulls_sources_together_and_stays_finite():
  unit, labels = planted(3, 4, seed=1)
  mixed = np.roll(unit, 1, axis=0)  # Every image beside another source's.
  loss = lambda u, y: float(losses.supervised_contrastive(
      jnp.asarray(u), jnp.asarray(y)))
  assert loss(unit, labels) < loss(mixed, labels)
  # No positive anywhere, or nothing valid: zero loss, finite gradients.
  alone = jnp.asarray(unit[:3])
  grad = jax.grad(lambda u: losses.supervised_contrastive(
      u, jnp.array([0, 1, -1])))(alone)
  assert loss(unit[:3], [0, 1, 2]) == 0.0
  assert np.isfinite(np.asarray(grad)).all()


def test_grouping_counts_by_average_linkage_and_splits_by_ward():
  """The two steps, read off one tree each, equal scikit-learn's own
  clusterings at every threshold."""
  unit, _ = planted(6, 5, spread=0.6, seed=2)
  thresholds = [0.05, 0.2, 0.5, 0.9, 1.5]
  counts = sources.count_groups(unit, thresholds)
  for t, k, groups in zip(thresholds, counts,
                          sources._cuts(unit, thresholds)):  # pylint: disable=protected-access
    average = sk_cluster.AgglomerativeClustering(
        n_clusters=None, distance_threshold=t, linkage='average',
        metric='cosine').fit(unit)
    assert average.n_clusters_ == k, t
    ward = sources.group_into(unit, k)
    assert sk_metrics.adjusted_rand_score(ward, groups) == 1.0, t
    assert len(np.unique(groups)) == k
  assert counts[0] == 30 and counts[-1] == 1  # Every image alone; one group.


@pytest.fixture(scope='module')
def calibration():
  """Calibrated on 24 planted sources; used on other planted ones."""
  unit, labels = planted(24, 12, seed=3)
  return sources.calibrate(unit, labels, seed=0)


@pytest.mark.parametrize('num_sources', [2, 7, 30])
def test_a_calibrated_threshold_recovers_planted_sources(calibration,
                                                         num_sources):
  unit, labels = planted(num_sources, 10, seed=10 + num_sources)
  groups = sources.group_by_threshold(unit, calibration['group_threshold'])
  assert len(np.unique(groups)) == num_sources
  assert sk_metrics.adjusted_rand_score(labels, groups) == 1.0


def test_grouping_gives_one_group_and_singletons(calibration):
  t = calibration['group_threshold']
  one, _ = planted(1, 15, seed=4)
  assert list(np.unique(sources.group_by_threshold(one, t))) == [0]
  # Five sources of one image each: five groups of one.
  alone, _ = planted(5, 1, seed=5)
  assert len(np.unique(sources.group_by_threshold(alone, t))) == 5
  assert list(sources.group_by_threshold(alone[:1], t)) == [0]


def test_the_open_set_score_ranks_unknown_sources_above_known_ones(
    calibration):
  unit, labels = planted(10, 12, seed=6)
  known = labels < 5
  in_gallery = known & (np.arange(len(labels)) % 12 < 6)
  _, centroids = sources.centroids(unit[in_gallery], labels[in_gallery])
  queries = ~in_gallery
  _, cosine = sources.nearest(centroids, unit[queries])
  p = sources.unknown_probability(calibration, cosine)
  unknown = ~known[queries]
  assert p[unknown].min() > p[~unknown].max()
  assert p[unknown].mean() > 0.5 > p[~unknown].mean()
  assert calibration['open_set']['auroc'] > 0.99


# ------------------------------------------------- a trained tiny embedding


@pytest.fixture(scope='module')
def run(tmp_path_factory, zoo_cache):
  """A 4-step run of configs/source.py:test and its zoo's image tree."""
  config = source_config.get_config('test')
  config.data.cache_dir = str(zoo_cache)
  workdir = str(tmp_path_factory.mktemp('source_run'))
  train.train_and_evaluate(config, workdir)
  tree = os.path.join(trees.built_zoo_tree(
      config.data.zoo, os.path.join(config.data.cache_dir, 'zoo')), 'images')
  return workdir, tree


def test_training_writes_scores_and_a_calibration(run):
  workdir, _ = run
  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  for key in ('eer', 'ari_given_k', 'ari_estimated_k', 'open_set_auroc'):
    assert key in results['metrics']
  saved = sources.load_calibration(workdir)
  assert saved['step'] == 4 and saved['group_threshold'] > 0
  loaded = network.load(workdir)
  assert network.has_embedding(loaded)
  assert network.embedding_dim(loaded) == 8


def test_gallery_and_predict_name_the_nearest_source(run, tmp_path):
  workdir, tree = run
  path = str(tmp_path / 'gallery.npz')
  assert gallery.run(workdir, tree, path) == 0
  built = gallery.load(path)
  assert len(built.names) == 6 and built.step == 4
  np.testing.assert_allclose(np.linalg.norm(built.centroids, axis=1), 1.0,
                             rtol=1e-5)
  out = tmp_path / 'preds.jsonl'
  folder = os.path.join(tree, built.names[0])
  assert predict.run(workdir, [folder], output=str(out), gallery=path,
                     table=False) == 0
  records = [json.loads(line) for line in out.read_text().splitlines()]
  assert len(records) == 6
  for record in records:
    source = record['source']
    assert source['nearest_source'] in built.names
    assert 0.0 <= source['unknown_probability'] <= 1.0


def test_a_gallery_needs_an_embedding_and_a_readable_file(run, tmp_path):
  workdir, _ = run
  bad = tmp_path / 'bad.npz'
  bad.write_text('not a gallery')
  with pytest.raises(gallery.GalleryError, match='cannot be read'):
    gallery.load(str(bad))
  with pytest.raises(gallery.GalleryError, match='does not exist'):
    gallery.load(str(tmp_path / 'none.npz'))
  with pytest.raises(ValueError, match='no source folder'):
    gallery.source_folders(str(tmp_path))


def test_a_missing_or_damaged_calibration_is_named(run, tmp_path):
  workdir, tree = run
  copy = tmp_path / 'run'
  shutil.copytree(workdir, copy)
  path = copy / sources.CALIBRATION_FILE
  folder = os.path.join(tree, sorted(os.listdir(tree))[0])
  for text, expected in (('{"group', 'cannot be read'),
                         ('[1, 2]', 'holds no calibration'),
                         (None, 'is missing')):
    if text is None:
      path.unlink()
    else:
      path.write_text(text)
    for call in (lambda: cluster.run(str(copy), [folder],
                                     str(tmp_path / 'groups')),
                 lambda: gallery.run(str(copy), tree,
                                     str(tmp_path / 'g.npz'))):
      with pytest.raises(network.CheckpointError,
                         match=f'{sources.CALIBRATION_FILE} {expected}'):
        call()


def _copies(folder, image, names):
  folder.mkdir()
  for name in names:
    Image.fromarray(image).save(folder / name)
  return str(folder)


def test_cluster_uses_the_embedding_and_accepts_one_source_and_singletons(
    run, tmp_path):
  workdir, tree = run
  rng = np.random.default_rng(0)
  image = rng.integers(0, 256, (64, 64, 3), np.uint8)
  # One source: copies of one image are one group, by the calibrated rule.
  same = _copies(tmp_path / 'same', image, ['a.png', 'b.png', 'c.png'])
  assert cluster.run(workdir, [same], str(tmp_path / 'one')) == 0
  summary = json.loads((tmp_path / 'one' / 'groups.json').read_text())
  assert summary['num_groups'] == 1
  assert summary['rule'].startswith('cosine-distance threshold')
  # A single image is one group, not an error.
  single = _copies(tmp_path / 'single', image, ['only.png'])
  assert cluster.run(workdir, [single], str(tmp_path / 'single_out')) == 0
  # Distinct images under a tiny threshold: each its own group.
  gm = sorted(os.listdir(tree))[0]
  assert cluster.run(workdir, [os.path.join(tree, gm)],
                     str(tmp_path / 'alone'), threshold=1e-9) == 0
  summary = json.loads((tmp_path / 'alone' / 'groups.json').read_text())
  assert summary['num_groups'] == 6
  # The parsing features stay one flag away; a parser has no embedding.
  with pytest.raises(network.CheckpointError, match='no source embedding'):
    cluster.resolve_kind('embedding', network.Loaded(
        task='parsing', model=None, variables={}, meta={}, image_size=64,
        step=0, directory='x'))


def test_the_evaluation_writes_tables_and_a_projection(run, tmp_path):
  workdir, tree = run
  out = tmp_path / 'eval'
  result = embeddings_tool.run(workdir, tree, str(out), num_sources=4,
                               subsets=2, gallery_images=3,
                               all_sources=True, projection_sources=3)
  for key in ('eer', 'ari_estimated_k', 'ari_given_k', 'open_set_auroc'):
    assert key in result['summary']
  assert result['all_sources']['num_sources'] == 6
  text = (out / 'embeddings.md').read_text()
  assert 'ARI, k estimated' in text and 'open-set AUROC' in text
  assert os.path.getsize(out / 'projection.png') > 0
  json.loads((out / 'embeddings.json').read_text())  # Strict JSON.


def test_the_commands_need_no_tensorflow_and_fail_in_one_line(run, tmp_path):
  """Galleries, attribution and the evaluation run where `import
  tensorflow` fails (a GPU host without it), as predict and cluster do."""
  workdir, tree = run
  site = tmp_path / 'no_tensorflow'
  site.mkdir()
  (site / 'sitecustomize.py').write_text(
      'import sys\nfor name in ("tensorflow", "tensorflow_datasets"):\n'
      '  sys.modules[name] = None\n')
  env = subprocs.child_env(devices=1)
  env['PYTHONPATH'] = f'{site}:{env["PYTHONPATH"]}'

  def command(*args):
    return subprocess.run([sys.executable, '-m', *map(str, args)], env=env,
                          cwd=subprocs.REPO, capture_output=True, text=True,
                          timeout=600, check=False)

  out = tmp_path / 'gallery.npz'
  done = command('jaxfp.gallery', f'--checkpoint={workdir}', f'--tree={tree}',
                 f'--output={out}')
  assert done.returncode == 0, done.stderr[-2000:]
  done = command('jaxfp.predict', f'--checkpoint={workdir}',
                 f'--gallery={out}', os.path.join(tree, sorted(
                     os.listdir(tree))[0]))
  assert done.returncode == 0, done.stderr[-2000:]
  assert 'P(unknown source)' in done.stdout
  done = command('jaxfp.gallery', f'--checkpoint={workdir}',
                 f'--tree={tmp_path / "nowhere"}', f'--output={out}')
  assert done.returncode == 2
  assert done.stderr.strip().startswith('error: --tree')
  assert 'Traceback' not in done.stderr


def test_gallery_and_embeddings_never_write_into_their_tree(run, tmp_path):
  """Issue 22, case 3 and its class: gallery's --output on an image of
  --tree (or anywhere inside it), and embeddings' --workdir inside --tree,
  are refused before any work; the tree stays as it was."""
  workdir, tree = run
  copy = tmp_path / 'tree'
  shutil.copytree(tree, copy)
  source = sorted(os.listdir(copy))[0]
  image = copy / source / sorted(os.listdir(copy / source))[0]
  before = image.read_bytes()
  listing = sorted(str(p) for p in copy.rglob('*'))
  for output in (image, copy / 'gallery.npz'):
    with pytest.raises(ValueError, match=f'--output {output} (is also an '
                       'input|lies inside the input folder)'):
      gallery.run(workdir, str(copy), str(output))
  with pytest.raises(ValueError, match='--workdir .* lies inside the input'):
    embeddings_tool.run(workdir, str(copy), str(copy / 'report'))
  assert image.read_bytes() == before
  assert sorted(str(p) for p in copy.rglob('*')) == listing
