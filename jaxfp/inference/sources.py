"""Source embeddings in use: grouping by a calibrated distance, the nearest
known source, and the calibration of both on labelled embeddings.

Embeddings are unit vectors (`jaxfp.models.embedding`); distances are
cosine distances, 1 - cos, in [0, 2]. Grouping (`group_by_threshold`)
counts the groups by average linkage cut at a threshold and forms them by
Ward linkage into that many. A known source is the normalised mean of its
images' embeddings (a centroid; `jaxfp.inference.gallery`), and a query's
P(unknown) = sigmoid(a * cosine to the nearest centroid + b). `calibrate`
fits the threshold and a, b on sources the network never trained on; the
result is kept in the run folder (`CALIBRATION_FILE`). Each rule's reason
and measurements: docs/embeddings.md.
"""

from __future__ import annotations

import json
import os

from absl import logging
import numpy as np
from sklearn import cluster as sk_cluster
from sklearn import linear_model

from jaxfp import checkpoints
from jaxfp.core import files
from jaxfp.report import sources as scores

CALIBRATION_FILE = 'source_calibration.json'
# Thresholds tried, in cosine distance.
THRESHOLDS = np.round(np.arange(0.02, 1.21, 0.02), 2)
# Half-width of the window over which the calibration's score is averaged.
SMOOTHING = 0.06
# Images of each known source in a simulated gallery.
GALLERY_IMAGES = 10


def group_by_threshold(unit: np.ndarray, threshold: float) -> np.ndarray:
  """Group labels 0..k-1 of unit rows: k from average linkage on cosine
  distance cut at `threshold`, the groups from Ward linkage into k."""
  if threshold <= 0:
    raise ValueError(f'grouping threshold {threshold}: must be above 0')
  return _cuts(unit, [threshold])[0]


def group_into(unit: np.ndarray, num_groups: int) -> np.ndarray:
  """Group labels of unit rows into exactly `num_groups` groups: Ward
  linkage."""
  if not 1 <= num_groups <= len(unit):
    raise ValueError(f'{num_groups} groups of {len(unit)} images')
  if num_groups == 1:
    return np.zeros(len(unit), int)
  return sk_cluster.AgglomerativeClustering(
      n_clusters=num_groups, linkage='ward').fit_predict(unit)


def count_groups(unit: np.ndarray, thresholds) -> list[int]:
  """For each threshold, the number of groups of average linkage on cosine
  distance cut there (groups merged while closer than the threshold)."""
  n = len(unit)
  if n < 2:
    return [n for _ in thresholds]
  tree = sk_cluster.AgglomerativeClustering(
      n_clusters=None, distance_threshold=0.0, compute_full_tree=True,
      linkage='average', metric='cosine').fit(unit)
  # sklearn's own rule for distance_threshold: one merge per distance below.
  return [n - int(np.sum(tree.distances_ < t)) for t in thresholds]


def _cuts(unit: np.ndarray, thresholds) -> list[np.ndarray]:
  """`group_by_threshold` at every threshold, from two fitted trees.

  The Ward tree's merges are applied in order with a union-find: its
  partition into k groups is that of its first n - k merges (what
  scikit-learn's n_clusters=k returns), so every count needs no refit.
  """
  n = len(unit)
  counts = count_groups(unit, thresholds)
  if n < 2:
    return [np.zeros(n, int) for _ in thresholds]
  children = sk_cluster.AgglomerativeClustering(
      n_clusters=None, distance_threshold=0.0, compute_full_tree=True,
      linkage='ward').fit(unit).children_
  root = np.arange(2 * n - 1)

  def find(i):
    while root[i] != i:
      root[i] = root[root[i]]
      i = root[i]
    return i

  by_merges, merged = {}, 0
  for merges in sorted({n - k for k in counts}):
    while merged < merges:
      a, b = children[merged]
      node = n + merged
      root[find(a)] = node
      root[find(b)] = node
      merged += 1
    leaves = np.array([find(i) for i in range(n)])
    by_merges[merges] = np.unique(leaves, return_inverse=True)[1]
  return [by_merges[n - k] for k in counts]


def centroids(unit: np.ndarray, labels: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
  """(sorted distinct labels, their unit mean embeddings [S, D])."""
  names = np.unique(labels)
  means = np.stack([unit[labels == k].mean(axis=0) for k in names])
  norms = np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
  return names, means / norms


def nearest(known: np.ndarray, unit: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray]:
  """(index of the nearest row of `known`, its cosine) for each query."""
  cosine = unit @ known.T
  index = np.argmax(cosine, axis=1)
  return index, cosine[np.arange(len(unit)), index]


def unknown_probability(calibration: dict, cosine: np.ndarray) -> np.ndarray:
  """P(the query's source is not in the gallery), from its nearest cosine."""
  o = calibration['open_set']
  z = o['coef'] * np.asarray(cosine, np.float64) + o['intercept']
  return 1.0 / (1.0 + np.exp(-z))


def simulate_galleries(unit: np.ndarray, labels: np.ndarray, *, rounds: int,
                       seed: int, gallery_images: int = GALLERY_IMAGES
                       ) -> tuple[np.ndarray, np.ndarray]:
  """(nearest cosine, unknown?) of the queries of `rounds` simulated
  galleries: in each, a random half of the sources is known (up to
  `gallery_images` images each form its centroid, its other images are
  queries) and every image of the other half is an unknown query. Needs
  at least 2 sources (`calibrate` checks)."""
  rng = np.random.default_rng(seed)
  sources = np.unique(labels)
  cos, unknown = [], []
  for _ in range(rounds):
    order = rng.permutation(sources)
    known = order[:max(1, len(order) // 2)]
    in_gallery = np.zeros(len(labels), bool)
    for k in known:
      members = rng.permutation(np.flatnonzero(labels == k))
      # Keep at least one query of each known source.
      in_gallery[members[:min(gallery_images, len(members) - 1)]] = True
    is_known = np.isin(labels, known)
    gallery = in_gallery & is_known
    if not gallery.any():
      continue
    _, means = centroids(unit[gallery], labels[gallery])
    queries = ~gallery
    _, c = nearest(means, unit[queries])
    cos.append(c)
    unknown.append(~is_known[queries])
  return np.concatenate(cos), np.concatenate(unknown)


def calibrate(unit: np.ndarray, labels: np.ndarray, *, seed: int = 0,
              subsets: int = 8, rounds: int = 20) -> dict:
  """The grouping threshold that maximises the mean ARI over subsets of
  the sources, and the open-set model, a logistic regression of "unknown"
  on the nearest cosine over `rounds` simulated galleries
  (`simulate_galleries`), from labelled unit embeddings of sources the
  network did not train on. Needs at least 2 sources."""
  labels = np.asarray(labels)
  sources = np.unique(labels)
  if len(sources) < 2:
    raise ValueError(f'calibration needs at least 2 sources, got '
                     f'{len(sources)}')
  rng = np.random.default_rng(seed)
  # Subsets of a quarter, half and all of the sources: folders of few and
  # of many sources should both be grouped well.
  sizes = sorted({max(2, len(sources) // 4), max(2, len(sources) // 2)})
  draws = [sources] + [rng.choice(sources, size, replace=False)
                       for size in sizes for _ in range(subsets)]
  ari = np.zeros(len(THRESHOLDS))
  for chosen in draws:
    rows = np.isin(labels, chosen)
    for t, cut in enumerate(_cuts(unit[rows], THRESHOLDS)):
      ari[t] += scores.grouping(labels[rows], cut)['ari'] / len(draws)
  # The curve falls steeply past its peak (sources merge) and gently before
  # it (outliers split off), and its peak on one calibration set is off by a
  # few hundredths on another; so the threshold maximises the mean score over
  # a window of +-SMOOTHING, which keeps it below a cliff. Ties: the middle.
  width = int(round(SMOOTHING / (THRESHOLDS[1] - THRESHOLDS[0])))
  padded = np.pad(ari, width, mode='edge')
  smooth = np.convolve(padded, np.ones(2 * width + 1) / (2 * width + 1),
                       mode='valid')
  tied = np.flatnonzero(smooth >= smooth.max() - 1e-9)
  best = int(tied[len(tied) // 2])

  cosine, unknown = simulate_galleries(unit, labels, rounds=rounds,
                                       seed=seed)
  model = linear_model.LogisticRegression().fit(cosine[:, None], unknown)
  verification = scores.verification(unit, labels, seed=seed)
  return {
      'rule': 'count: average linkage cut at the threshold; groups: Ward',
      'group_threshold': float(THRESHOLDS[best]),
      'group_ari': float(ari[best]),
      'smoothing': SMOOTHING,
      'group_ari_by_threshold': {f'{t:.2f}': float(a)
                                 for t, a in zip(THRESHOLDS, ari)},
      'open_set': {'coef': float(model.coef_[0, 0]),
                   'intercept': float(model.intercept_[0]),
                   'gallery_images': GALLERY_IMAGES,
                   'auroc': scores.open_set_auroc(unknown, -cosine),
                   'rounds': rounds},
      'verification': verification,
      'num_sources': int(len(sources)),
      'num_images': int(len(labels)),
  }


def calibration_path(run_dir: str) -> str:
  return os.path.join(run_dir, CALIBRATION_FILE)


def run_dir_of(checkpoint_directory: str) -> str:
  """The run folder of a CheckpointManager directory (<run>/checkpoints)."""
  return os.path.dirname(os.path.abspath(checkpoint_directory))


def save_calibration(run_dir: str, calibration: dict) -> str:
  path = calibration_path(run_dir)
  files.write_json(path, calibration, indent=2)
  return path


def load_calibration(run_dir: str) -> dict | None:
  """The calibration kept in `run_dir`, or None when there is none."""
  path = calibration_path(run_dir)
  if not os.path.isfile(path):
    return None
  try:
    with open(path, encoding='utf-8') as f:
      calibration = json.load(f)
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise checkpoints.CheckpointError(
        f'{path} cannot be read ({e}); evaluate the run again to rewrite '
        'it') from None
  if not isinstance(calibration, dict) or 'group_threshold' not in calibration:
    raise checkpoints.CheckpointError(
        f'{path} holds no calibration (no group_threshold); evaluate the run '
        'again to rewrite it')
  return calibration


def calibration_of(checkpoint_directory: str, step: int) -> dict:
  """The calibration kept beside a checkpoint's run; an error naming the
  file if there is none, a warning if another step wrote it."""
  run_dir = run_dir_of(checkpoint_directory)
  calibration = load_calibration(run_dir)
  if calibration is None:
    raise checkpoints.CheckpointError(
        f'{calibration_path(run_dir)} is missing: the source task writes it '
        'when it evaluates (cluster can go without it: --threshold or '
        '--num_groups)')
  if calibration.get('step') not in (None, step):
    logging.warning('the calibration in %s is of step %s, the checkpoint is '
                    'step %d', run_dir, calibration.get('step'), step)
  return calibration
