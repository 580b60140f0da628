"""Groups images that likely come from the same generator
(`python -m jaxfp.cluster`).

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

import numpy as np
from sklearn import cluster as sk_cluster
from sklearn import metrics as sk_metrics

from jaxfp.data import images as images_lib
from jaxfp.inference import network
from jaxfp.report import plots
from jaxfp.report import tables

EMBEDDINGS = ('features', 'spectrum')


def embed(loaded: network.Loaded, files, *, kind: str = 'features',
          batch_size: int = 32):
  """(kept files, [N, D] embeddings, failures) for readable images."""
  if kind not in EMBEDDINGS:
    raise ValueError(f'embedding {kind!r}: use one of {EMBEDDINGS}')
  run_batch = network.predict_fn(loaded)
  failures, kept, vectors = [], [], []
  for paths, images in images_lib.batches(
      files, loaded.image_size, 'resize', batch_size, failures,
      mean=loaded.mean, std=loaded.std):
    out = run_batch(images)
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


def report(workdir, files, sim, labels, k, score, ari=None) -> str:
  os.makedirs(workdir, exist_ok=True)
  groups = {int(g): [files[i] for i in np.flatnonzero(labels == g)]
            for g in np.unique(labels)}
  summary = {'num_images': len(files), 'num_groups': int(k),
             'silhouette': score, 'adjusted_rand_index': ari,
             'groups': {str(g): m for g, m in groups.items()}}
  with open(os.path.join(workdir, 'groups.json'), 'w') as f:
    json.dump(summary, f, indent=2)
  root = os.path.commonpath([os.path.abspath(f) for f in files])
  root = root if os.path.isdir(root) else os.path.dirname(root)
  rows = []
  for g, members in groups.items():
    shown = ', '.join(os.path.relpath(os.path.abspath(m), root)
                      for m in members[:3])
    more = f' (+{len(members) - 3} more)' if len(members) > 3 else ''
    rows.append([g, len(members), shown + more])
  text = '\n'.join([
      f'{len(files)} images in {k} groups (silhouette {score:.3f})' +
      (f'; adjusted Rand index vs parent folders {ari:.3f}'
       if ari is not None else ''), '',
      tables.markdown(['group', 'images', 'examples'], rows)])
  with open(os.path.join(workdir, 'groups.md'), 'w') as f:
    f.write(text + '\n')
  plots.similarity(os.path.join(workdir, 'similarity.png'), sim, labels)
  return text


def run(checkpoint: str, paths, workdir: str, *, kind: str = 'features',
        num_groups: int = 0, max_groups: int = 20,
        score_parent_folders: bool = False, batch_size: int = 32) -> int:
  """The cluster command: groups the images under `paths`, writes the
  report to `workdir` and prints it. Returns the exit status: 0 every input
  used, 1 some skipped; fewer than 2 readable images is a ValueError."""
  loaded = network.load(checkpoint)
  files, problems = images_lib.find_images(paths)
  kept, vectors, failures = embed(loaded, files, kind=kind,
                                  batch_size=batch_size)
  for path, reason in problems + failures:
    print(f'skipped {path}: {reason}', file=sys.stderr)
  if len(kept) < 2:
    raise ValueError('fewer than 2 readable images to group')
  unit = normalize(vectors)
  labels, k, score = group(unit, num_groups, max_groups)
  ari = None
  if score_parent_folders:
    truth = [os.path.basename(os.path.dirname(p)) for p in kept]
    ari = float(sk_metrics.adjusted_rand_score(truth, labels))
  print(report(workdir, kept, unit @ unit.T, labels, k, score, ari))
  return 1 if problems or failures else 0
