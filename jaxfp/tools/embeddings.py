"""Scores a source embedding on a folder-per-source tree of generators it
never saw (`python -m jaxfp.embeddings`).

Every image of the tree is embedded once; then, on `subsets` random draws of
`num_sources` sources (and, with `all_sources`, on all of them at once):

  verification  EER and ROC AUC over every same/different-source pair of
                images, scored by cosine similarity;
  grouping      ARI and NMI against the true sources, with the number of
                groups given (Ward linkage into k) and estimated (average
                linkage cut at the checkpoint's calibrated threshold);
  open set      half the draw's sources are known: `gallery_images` images of
                each form the gallery, their other images are known queries;
                every image of the other half is an unknown query. ROC AUC of
                the calibrated P(unknown), closed-set accuracy of the nearest
                known source on known queries, and how well P(unknown) is
                calibrated (its mean for each kind, the Brier score).

Writes embeddings.md (tables: mean ± std over draws), embeddings.json (every
draw) and projection.png (t-SNE of `projection_sources` sources, one colour
each) to the workdir.
"""

from __future__ import annotations

import os

import numpy as np
from sklearn import manifold

from jaxfp.core import files
from jaxfp.inference import gallery as gallery_lib
from jaxfp.inference import network
from jaxfp.inference import sources
from jaxfp.report import plots
from jaxfp.report import sources as scores
from jaxfp.report import tables

# (key, label, better) of the table's rows.
ROWS = (
    ('eer', 'verification EER', 'lower'),
    ('pair_auc', 'verification ROC AUC', 'higher'),
    ('ari_estimated_k', 'ARI, k estimated', 'higher'),
    ('nmi_estimated_k', 'NMI, k estimated', 'higher'),
    ('groups_estimated', 'groups estimated', ''),
    ('ari_given_k', 'ARI, k given', 'higher'),
    ('nmi_given_k', 'NMI, k given', 'higher'),
    ('open_set_auroc', 'open-set AUROC', 'higher'),
    ('closed_set_accuracy', 'closed-set top-1 accuracy (known queries)',
     'higher'),
    ('p_unknown_known', 'mean P(unknown), known queries', 'lower'),
    ('p_unknown_unknown', 'mean P(unknown), unknown queries', 'higher'),
    ('open_set_brier', 'Brier score of P(unknown)', 'lower'),
)


def score_draw(unit: np.ndarray, labels: np.ndarray, calibration: dict,
               rng: np.random.Generator, *, gallery_images: int) -> dict:
  """Every metric of the module docstring on one draw of sources."""
  verification = scores.verification(unit, labels)
  names = np.unique(labels)
  given = scores.grouping(labels, sources.group_into(unit, len(names)))
  estimated = scores.grouping(labels, sources.group_by_threshold(
      unit, calibration['group_threshold']))
  out = {'num_sources': int(len(names)), 'num_images': int(len(labels)),
         'eer': verification['eer'], 'pair_auc': verification['pair_auc'],
         'ari_given_k': given['ari'], 'nmi_given_k': given['nmi'],
         'ari_estimated_k': estimated['ari'],
         'nmi_estimated_k': estimated['nmi'],
         'groups_estimated': estimated['num_groups']}
  if len(names) < 2:
    return out
  known = rng.permutation(names)[:len(names) // 2]
  in_gallery = np.zeros(len(labels), bool)
  for name in known:
    members = rng.permutation(np.flatnonzero(labels == name))
    in_gallery[members[:min(gallery_images, len(members) - 1)]] = True
  gallery_names, centroids = sources.centroids(unit[in_gallery],
                                               labels[in_gallery])
  queries = ~in_gallery
  index, cosine = sources.nearest(centroids, unit[queries])
  p_unknown = sources.unknown_probability(calibration, cosine)
  unknown = ~np.isin(labels[queries], known)
  hits = gallery_names[index] == labels[queries]
  out.update(
      open_set_auroc=scores.open_set_auroc(unknown, p_unknown),
      closed_set_accuracy=float(hits[~unknown].mean()),
      p_unknown_known=float(p_unknown[~unknown].mean()),
      p_unknown_unknown=float(p_unknown[unknown].mean()),
      open_set_brier=float(np.mean((p_unknown - unknown) ** 2)),
      gallery_sources=int(len(known)))
  return out


def _summary(draws: list[dict]) -> dict:
  """Mean and std over draws of every metric (NaNs left out)."""
  out = {}
  for key, _, _ in ROWS:
    values = np.array([d[key] for d in draws if key in d], np.float64)
    values = values[np.isfinite(values)]
    if len(values):
      out[key] = {'mean': float(values.mean()), 'std': float(values.std()),
                  'n': int(len(values))}
  return out


def _cell(stats: dict | None, key: str) -> str:
  if stats is None:
    return '–'
  digits = 1 if key == 'groups_estimated' else 3
  if stats['n'] == 1:
    return f'{stats["mean"]:.{digits}f}'
  return f'{stats["mean"]:.{digits}f} ± {stats["std"]:.{digits}f}'


def _short(tree: str) -> str:
  """The tree's last two path parts (a zoo's tree is always 'images')."""
  parts = os.path.normpath(os.path.abspath(tree)).split(os.sep)
  return '/'.join(parts[-2:])


def run(checkpoint: str, tree: str, workdir: str, *, num_sources: int = 48,
        subsets: int = 10, gallery_images: int = 10, seed: int = 0,
        min_images: int = 2, all_sources: bool = False,
        projection_sources: int = 16, batch_size: int = 64) -> dict:
  """Embeds `tree`, scores the draws, writes the report; returns it."""
  if num_sources < 2 or subsets < 1 or gallery_images < 1:
    raise ValueError(f'--num_sources={num_sources} (2 or more), --subsets='
                     f'{subsets} and --gallery_images={gallery_images} (1 or '
                     'more): out of range')
  workdir = files.check_output_folder(workdir, '--workdir', inputs=[tree])
  loaded = network.load(checkpoint)
  network.require_embedding(loaded, 'embeddings')
  calibration = sources.calibration_of(loaded.directory, loaded.step)
  folders = {name: paths for name, paths in
             gallery_lib.source_folders(tree).items()
             if len(paths) >= min_images}
  if len(folders) < num_sources:
    raise ValueError(f'--tree {tree!r} has {len(folders)} sources with '
                     f'{min_images}+ images; --num_sources={num_sources}')
  owner = {p: name for name, ps in folders.items() for p in ps}
  kept, unit, failures = gallery_lib.embed_files(
      loaded, list(owner), batch_size=batch_size, progress=True)
  names = sorted(folders)
  labels = np.array([names.index(owner[p]) for p in kept])

  rng = np.random.default_rng(seed)
  draws = []
  for _ in range(subsets):
    chosen = rng.choice(len(names), num_sources, replace=False)
    rows = np.isin(labels, chosen)
    draws.append(dict(score_draw(unit[rows], labels[rows], calibration, rng,
                                 gallery_images=gallery_images),
                      sources=[names[i] for i in sorted(chosen)]))
  everything = None
  if all_sources:
    everything = score_draw(unit, labels, calibration, rng,
                            gallery_images=gallery_images)

  shown = rng.choice(len(names), min(projection_sources, len(names)),
                     replace=False)
  rows = np.isin(labels, shown)
  xy = manifold.TSNE(2, init='pca', random_state=seed,
                     perplexity=min(30.0, max(2.0, rows.sum() / 4))
                     ).fit_transform(unit[rows])
  plots.embedding_map(
      os.path.join(workdir, 'projection.png'), xy, labels[rows],
      title=f't-SNE of the source embedding: {len(shown)} sources of '
      f'{_short(tree)}, one colour each')

  summary = _summary(draws)
  counts = [len(ps) for ps in folders.values()]
  header = (f'Source embedding of {loaded.directory} (step {loaded.step}) on '
            f'{tree}: {len(names)} sources, {len(kept)} images '
            f'({min(counts)}-{max(counts)} per source). Mean ± std over '
            f'{subsets} random draws of {num_sources} sources; grouping '
            f'threshold {calibration["group_threshold"]:.2f} and P(unknown) '
            'calibrated on the run\'s held-out training generators; open '
            f'set: half of each draw\'s sources known, {gallery_images} '
            'images each in the gallery.')
  header_row = ['metric', f'{num_sources} sources']
  columns = [summary]
  if everything is not None:
    header_row.append(f'all {len(names)} sources')
    columns.append(_summary([everything]))  # One value: no ± std.
  table_rows = [[label + (f' ({better} is better)' if better else '')] +
                [_cell(column.get(key), key) for column in columns]
                for key, label, better in ROWS]
  text = f'{header}\n\n{tables.markdown(header_row, table_rows)}\n'
  files.write_text(os.path.join(workdir, 'embeddings.md'), text)
  result = {'checkpoint': loaded.directory, 'step': loaded.step,
            'tree': tree, 'num_sources': len(names),
            'num_images': len(kept), 'draw_size': num_sources,
            'gallery_images': gallery_images, 'seed': seed,
            'calibration_threshold': calibration['group_threshold'],
            'summary': summary, 'all_sources': everything, 'draws': draws,
            'skipped': [[p, r] for p, r in failures]}
  files.write_json(os.path.join(workdir, 'embeddings.json'), result, indent=2)
  print(text)
  return result
