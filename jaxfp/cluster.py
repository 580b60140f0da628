r"""Groups images that likely come from the same generator.

  python -m jaxfp.cluster --checkpoint=runs/fen_cpu --workdir=groups/ FOLDER
  python -m jaxfp.cluster --checkpoint=runs/fen_cpu --num_groups=8 \
      --score_parent_folders --workdir=groups/ zoo_images/

Each image is embedded by its estimated fingerprint: --embedding=features
(default) takes the parsing network's last hidden layer (what the heads read)
and --embedding=spectrum the log magnitude spectrum of the fingerprint,
average-pooled to 16x16. Embeddings are standardised and scaled to unit
length (so distances follow cosine similarity); scikit-learn's agglomerative
clustering (Ward linkage) groups them, into --num_groups groups or, if that
is 0, into the number of groups in [2, --max_groups] with the best
silhouette score. This is the "coordinated
disinformation" use of the published work: many images, one source.

Writes to --workdir: groups.json (members of each group, the chosen number
and its silhouette), groups.md (a readable table) and similarity.png (the
similarity matrix with images ordered by group). With --score_parent_folders
each image's parent folder is taken as its true source and the adjusted Rand
index against it is reported.
"""

from __future__ import annotations

import json
import os
import sys

from absl import app
from absl import flags
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn import cluster as sk_cluster
from sklearn import metrics as sk_metrics

from jaxfp import image_files
from jaxfp import inference

EMBEDDINGS = ('features', 'spectrum')

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string('checkpoint', None, 'A training workdir or checkpoint.')
  flags.DEFINE_string('workdir', None, 'Where the report is written.')
  flags.DEFINE_enum('embedding', 'features', EMBEDDINGS, 'What is compared.')
  flags.DEFINE_integer('num_groups', 0, 'Number of groups; 0 = estimate.')
  flags.DEFINE_integer('max_groups', 20, 'Largest number of groups tried.')
  flags.DEFINE_bool('score_parent_folders', False, 'Report the adjusted Rand '
                    'index against the images\' parent folders.')
  flags.DEFINE_integer('batch_size', 32, 'Images per compiled call.')


def embed(loaded: inference.Loaded, files, *, kind: str = 'features',
          batch_size: int = 32):
  """(kept files, [N, D] embeddings, failures) for readable images."""
  if kind not in EMBEDDINGS:
    raise ValueError(f'embedding {kind!r}: use one of {EMBEDDINGS}')
  run = inference.predict_fn(loaded)
  failures, kept, vectors = [], [], []
  for paths, images in image_files.batches(
      files, loaded, 'resize', batch_size, failures):
    out = run(images)
    if kind == 'features':
      v = out['features']
    else:
      s = np.log1p(out['spectrum'])
      n, h, w = s.shape
      v = s[:, :h // 16 * 16, :w // 16 * 16].reshape(
          n, 16, h // 16, 16, w // 16).mean(axis=(2, 4)).reshape(n, -1)
    kept += paths
    vectors.append(v[:len(paths)])
  if not kept:
    return [], np.zeros((0, 0), np.float32), failures
  return kept, np.concatenate(vectors).astype(np.float64), failures


def normalize(vectors: np.ndarray) -> np.ndarray:
  """Standardised embeddings scaled to unit length (rows)."""
  z = (vectors - vectors.mean(0)) / (vectors.std(0) + 1e-8)
  return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


def group(unit: np.ndarray, num_groups: int = 0,
          max_groups: int = 20) -> tuple[np.ndarray, int, float]:
  """Ward clustering of unit-length rows: labels, groups, silhouette.

  On unit vectors Euclidean distance is a monotone function of cosine
  similarity. With num_groups=0 the number of groups in [2, max_groups]
  with the best silhouette score is chosen.
  """
  n = len(unit)

  def fit(k):
    return sk_cluster.AgglomerativeClustering(
        n_clusters=k, linkage='ward').fit_predict(unit)

  def silhouette(labels, k):
    return (float(sk_metrics.silhouette_score(unit, labels))
            if 1 < k < n else float('nan'))

  if num_groups:
    if not 1 <= num_groups <= n:
      raise ValueError(f'num_groups={num_groups} must lie in [1, {n}] for '
                       f'{n} images')
    labels = fit(num_groups)
    return labels, num_groups, silhouette(labels, num_groups)
  if n < 3:
    return np.zeros(n, int), 1, float('nan')
  best = None
  for k in range(2, min(max_groups, n - 1) + 1):
    labels = fit(k)
    score = silhouette(labels, k)
    if best is None or score > best[2]:
      best = (labels, k, score)
  return best


def _plot(path, sim, labels):
  order = np.argsort(labels, kind='stable')
  fig, ax = plt.subplots(figsize=(6, 5))
  im = ax.imshow(sim[np.ix_(order, order)], cmap='viridis', vmin=-1, vmax=1)
  bounds = np.flatnonzero(np.diff(labels[order])) + 0.5
  for b in bounds:
    ax.axhline(b, c='white', lw=0.6)
    ax.axvline(b, c='white', lw=0.6)
  ax.set(title='Fingerprint similarity (images ordered by group)',
         xlabel='image', ylabel='image')
  fig.colorbar(im, ax=ax, label='cosine similarity')
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def report(workdir, files, sim, labels, k, score, ari=None) -> str:
  os.makedirs(workdir, exist_ok=True)
  groups = {int(g): [files[i] for i in np.flatnonzero(labels == g)]
            for g in np.unique(labels)}
  summary = {'num_images': len(files), 'num_groups': int(k),
             'silhouette': score, 'adjusted_rand_index': ari,
             'groups': {str(g): m for g, m in groups.items()}}
  with open(os.path.join(workdir, 'groups.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  lines = [f'{len(files)} images in {k} groups (silhouette {score:.3f})' +
           (f'; adjusted Rand index vs parent folders {ari:.3f}'
            if ari is not None else ''), '',
           '| group | images | examples |', '|---|---|---|']
  root = os.path.commonpath([os.path.abspath(f) for f in files])
  root = root if os.path.isdir(root) else os.path.dirname(root)
  for g, members in groups.items():
    shown = ', '.join(os.path.relpath(os.path.abspath(m), root)
                      for m in members[:3])
    more = f' (+{len(members) - 3} more)' if len(members) > 3 else ''
    lines.append(f'| {g} | {len(members)} | {shown}{more} |')
  text = '\n'.join(lines)
  with open(os.path.join(workdir, 'groups.md'), 'w') as f:
    f.write(text + '\n')
  _plot(os.path.join(workdir, 'similarity.png'), sim, labels)
  return text


def main(argv):
  paths = argv[1:]
  if not paths or not FLAGS.checkpoint or not FLAGS.workdir:
    raise app.UsageError('usage: --checkpoint=DIR --workdir=OUT FOLDER...')
  loaded = inference.load_for_command_line(FLAGS.checkpoint)
  if loaded is None:
    return 2
  files, problems = image_files.find_images(paths)
  kept, vectors, failures = embed(loaded, files, kind=FLAGS.embedding,
                                  batch_size=FLAGS.batch_size)
  for path, reason in problems + failures:
    print(f'skipped {path}: {reason}', file=sys.stderr)
  if len(kept) < 2:
    print('error: fewer than 2 readable images to group', file=sys.stderr)
    return 2
  unit = normalize(vectors)
  labels, k, score = group(unit, FLAGS.num_groups, FLAGS.max_groups)
  sim = unit @ unit.T
  ari = None
  if FLAGS.score_parent_folders:
    truth = [os.path.basename(os.path.dirname(p)) for p in kept]
    ari = float(sk_metrics.adjusted_rand_score(truth, labels))
  print(report(FLAGS.workdir, kept, sim, labels, k, score, ari))
  return 1 if problems or failures else 0


if __name__ == '__main__':
  define_flags()
  app.run(lambda argv: sys.exit(main(argv)))
