"""Groups images that likely come from the same generator
(`python -m jaxfp.cluster`; docs/inference.md): the published work's
"coordinated disinformation" use, many images of one source.

Each image is embedded by the checkpoint's network. --embedding=auto (the
default) takes the source embedding when the checkpoint has one (a run of
configs/source.py), grouped as `jaxfp.inference.sources` does: at the
threshold calibrated on the run's held-out generators (--threshold
overrides it), or by Ward linkage into --num_groups. Else the parsing
network's 'features' (the last hidden layer the heads read) or the
fingerprint's 'spectrum' (log magnitude, average-pooled to 16x16), each
standardised and scaled to unit length (`normalize`), then grouped by Ward
linkage (`group`): into --num_groups groups or, if that is 0, the number
in [2, --max_groups] with the best silhouette; one group when no split
scores above --min_silhouette or the images embed alike.

Writes to --workdir (checked before any work, `report`): groups.json (each
group's members, the number of groups and how it was chosen), groups.md
and similarity.png (images ordered by group); with --score_parent_folders,
the adjusted Rand index against each image's parent folder.
"""

from __future__ import annotations

import os
import sys

from absl import logging
import numpy as np
from sklearn import metrics as sk_metrics

from jaxfp.core import files
from jaxfp.data import images as images_lib
from jaxfp.inference import network
from jaxfp.inference import sources
from jaxfp.report import plots
from jaxfp.report import tables

EMBEDDINGS = ('auto', 'embedding', 'features', 'spectrum')


def resolve_kind(kind: str, loaded: network.Loaded) -> str:
  """'auto' as the checkpoint allows: its source embedding if it has one."""
  if kind not in EMBEDDINGS:
    raise ValueError(f'embedding {kind!r}: use one of {EMBEDDINGS}')
  has = network.has_embedding(loaded)
  if kind == 'auto':
    return 'embedding' if has else 'features'
  if kind == 'embedding' and not has:
    raise network.CheckpointError(
        f'{loaded.directory}: a {loaded.task!r} checkpoint has no source '
        'embedding; use --embedding=features or a run of configs/source.py')
  return kind


def embed(loaded: network.Loaded, files, *, kind: str = 'auto',
          batch_size: int = 32):
  """(kept files, [N, D] embeddings, failures) for readable images."""
  kind = resolve_kind(kind, loaded)

  def vector(out):
    if kind in ('features', 'embedding'):
      return out[kind]
    s = np.log1p(out['spectrum'])
    n, h, w = s.shape
    return s[:, :h // 16 * 16, :w // 16 * 16].reshape(
        n, 16, h // 16, 16, w // 16).mean(axis=(2, 4)).reshape(n, -1)

  return network.vectors_of_files(loaded, files, vector,
                                  batch_size=batch_size)


def normalize(vectors: np.ndarray) -> np.ndarray:
  """Standardised embeddings scaled to unit length (rows).

  Dimensions that do not vary (beyond float rounding) are set to 0, not
  blown up to unit variance: identical images then stay identical, instead
  of becoming random directions.
  """
  spread = vectors.std(0)
  varies = spread > 1e-6 * (np.abs(vectors).max() + 1e-30)
  z = np.where(varies, (vectors - vectors.mean(0)) / np.where(varies, spread,
                                                              1.0), 0.0)
  return z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)


def group(unit: np.ndarray, num_groups: int = 0, max_groups: int = 20,
          min_silhouette: float = 0.0) -> tuple[np.ndarray, int, float]:
  """Ward clustering of unit-length rows: labels, groups, silhouette.

  On unit vectors Euclidean distance is a monotone function of cosine
  similarity. With num_groups=0 the number of groups in [2, max_groups]
  with the best silhouette score is chosen, unless no split scores above
  `min_silhouette` (or the images do not differ at all): then one group,
  whose silhouette is undefined (NaN).
  """
  n = len(unit)

  def silhouette(labels, k):
    return (float(sk_metrics.silhouette_score(unit, labels))
            if 1 < k < n else float('nan'))

  if num_groups:
    if not 1 <= num_groups <= n:
      raise ValueError(f'--num_groups={num_groups} must lie in [1, {n}] for '
                       f'{n} images')
    labels = sources.group_into(unit, num_groups)
    return labels, num_groups, silhouette(labels, num_groups)
  one = (np.zeros(n, int), 1, float('nan'))
  if n < 3 or np.ptp(unit, axis=0).max() <= 1e-9:
    return one
  best = None
  for k in range(2, min(max_groups, n - 1) + 1):
    labels = sources.group_into(unit, k)
    score = silhouette(labels, k)
    if best is None or score > best[2]:
      best = (labels, k, score)
  return best if best[2] > min_silhouette else one


def report(workdir, paths, sim, labels, k, score, ari=None, rule=None
           ) -> str:
  """Writes groups.json, groups.md and similarity.png; returns the text.
  File names are shown printable (`images.shown`). `rule`: how the number
  of groups was chosen, when not by the silhouette."""
  os.makedirs(workdir, exist_ok=True)
  names = [images_lib.shown(f) for f in paths]
  groups = {int(g): [names[i] for i in np.flatnonzero(labels == g)]
            for g in np.unique(labels)}
  summary = {'num_images': len(names), 'num_groups': int(k),
             'silhouette': score, 'rule': rule, 'adjusted_rand_index': ari,
             'groups': {str(g): m for g, m in groups.items()}}
  files.write_json(os.path.join(workdir, 'groups.json'), summary, indent=2)
  root = os.path.commonpath([os.path.abspath(f) for f in paths])
  root = root if os.path.isdir(root) else os.path.dirname(root)
  rows = []
  for g in groups:
    members = [paths[i] for i in np.flatnonzero(labels == g)]
    shown = ', '.join(images_lib.shown(os.path.relpath(os.path.abspath(m),
                                                       root))
                      for m in members[:3])
    more = f' (+{len(members) - 3} more)' if len(members) > 3 else ''
    rows.append([g, len(members), shown + more])
  quality = (rule if rule else
             f'silhouette {score:.3f}' if np.isfinite(score) else
             'one group: no split separates them' if k == 1 else
             'silhouette undefined')
  text = '\n'.join([
      f'{len(names)} images in {k} group{"s" * (k != 1)} ({quality})' +
      (f'; adjusted Rand index vs parent folders {ari:.3f}'
       if ari is not None else ''), '',
      tables.markdown(['group', 'images', 'examples'], rows)])
  files.write_text(os.path.join(workdir, 'groups.md'), text + '\n')
  plots.similarity(os.path.join(workdir, 'similarity.png'), sim, labels)
  return text


def run(checkpoint: str, paths, workdir: str, *, kind: str = 'auto',
        num_groups: int = 0, max_groups: int = 20,
        min_silhouette: float = 0.0, score_parent_folders: bool = False,
        batch_size: int = 32, threshold: float = 0.0) -> int:
  """The cluster command: groups the images under `paths`, writes the
  report to `workdir` and prints it. Returns the exit status: 0 every input
  used, 1 some skipped. Settings that cannot work (fewer than 2 readable
  images, more groups than images, a workdir that cannot be written) are
  ValueErrors or OSErrors, raised before the embedding work where they can
  be known then. With the source embedding one image is one group."""
  if kind not in EMBEDDINGS:
    raise ValueError(f'embedding {kind!r}: use one of {EMBEDDINGS}')
  if num_groups < 0 or max_groups < 2 or batch_size < 1 or threshold < 0:
    raise ValueError(f'--num_groups={num_groups} (0 = estimate), '
                     f'--max_groups={max_groups} (2 or more), '
                     f'--batch_size={batch_size} (1 or more) and '
                     f'--threshold={threshold} (0 = calibrated, else above '
                     '0): out of range')
  workdir = files.check_output_folder(workdir, '--workdir', inputs=paths)
  loaded = network.load(checkpoint)
  kind = resolve_kind(kind, loaded)
  if kind == 'embedding' and not num_groups and not threshold:
    threshold = float(sources.calibration_of(
        loaded.directory, loaded.step)['group_threshold'])
  found, problems = images_lib.find_images(paths)
  if num_groups > len(found):
    raise ValueError(f'--num_groups={num_groups}, but there are only '
                     f'{len(found)} images')
  kept, vectors, failures = embed(loaded, found, kind=kind,
                                  batch_size=batch_size)
  for path, reason in problems + failures:
    print(f'skipped {images_lib.one_line(path)}: {reason}', file=sys.stderr)
  if len(kept) < (1 if kind == 'embedding' else 2):
    raise ValueError(f'fewer than {1 if kind == "embedding" else 2} readable '
                     'images to group')
  rule = None
  if kind == 'embedding':
    # Already unit vectors in the space the threshold was calibrated in:
    # standardising them (`normalize`) would move every distance.
    unit = vectors
    k = min(num_groups, len(kept))
    if k:
      labels, rule = sources.group_into(unit, k), f'{k} groups asked for'
    else:
      labels = sources.group_by_threshold(unit, threshold)
      rule = f'cosine-distance threshold {threshold:.3g}'
    k, score = len(np.unique(labels)), float('nan')
  else:
    unit = normalize(vectors)
    labels, k, score = group(unit, min(num_groups, len(kept)), max_groups,
                             min_silhouette)
  if num_groups > len(kept):
    logging.warning('--num_groups=%d, but only %d images could be read: %d '
                    'groups.', num_groups, len(kept), len(kept))
  ari = None
  if score_parent_folders:
    truth = [os.path.basename(os.path.dirname(p)) for p in kept]
    ari = float(sk_metrics.adjusted_rand_score(truth, labels))
  print(report(workdir, kept, unit @ unit.T, labels, k, score, ari, rule))
  return 1 if problems or failures else 0
