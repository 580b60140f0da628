"""Pictures of results, written as PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence
import textwrap

import matplotlib
matplotlib.use('Agg')  # Files only; no display on servers and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn import metrics as sk_metrics


def _save(fig, path: str) -> None:
  """Writes `fig` as a PNG and frees it (pyplot keeps every open figure)."""
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def roc_curve(path: str, labels: np.ndarray, scores: np.ndarray,
              title: str = 'ROC') -> None:
  """ROC curve of binary `labels` (1 = positive) against `scores`."""
  fpr, tpr, _ = sk_metrics.roc_curve(labels, scores)
  auc = sk_metrics.roc_auc_score(labels, scores)
  fig, ax = plt.subplots(figsize=(4.5, 4.5))
  ax.plot(fpr, tpr, lw=2, label=f'AUC = {auc:.3f}')
  ax.plot([0, 1], [0, 1], ls='--', c='gray', lw=1, label='chance')
  ax.set(xlabel='false positive rate', ylabel='true positive rate',
         xlim=(0, 1), ylim=(0, 1.01), title=title)
  ax.legend(loc='lower right')
  _save(fig, path)


def confusion_matrix(path: str, matrix: np.ndarray,
                     class_names: Sequence[str],
                     title: str = 'Confusion matrix') -> None:
  """Counts with true classes as rows, predicted as columns."""
  matrix = np.asarray(matrix)
  n = len(class_names)
  fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.8 * n))
  ax.imshow(matrix, cmap='Blues')
  for i in range(n):
    for j in range(n):
      ax.text(j, i, str(int(matrix[i, j])), ha='center', va='center',
              color='white' if matrix[i, j] > matrix.max() / 2 else 'black')
  ax.set_xticks(range(n), class_names, rotation=45, ha='right')
  ax.set_yticks(range(n), class_names)
  ax.set(xlabel='predicted', ylabel='true', title=title)
  _save(fig, path)


def panel_grid(path: str, panels: np.ndarray, names: Sequence[str],
               column_titles: Sequence[str] = ('image', 'fingerprint',
                                               'log |FFT| of fingerprint'),
               title: str = '') -> None:
  """Rows of side-by-side panels [N, H, k*W, 3] in [0, 1], one per name.

  Each panel is k equal-width pictures (`summaries.fingerprint_panels` gives
  image | fingerprint | spectrum); many rows wrap into several columns.
  """
  panels = np.clip(np.asarray(panels, np.float32), 0.0, 1.0)
  n, height, width = panels.shape[:3]
  k = len(column_titles)
  cols = max(1, int(np.ceil(n / 12)))
  rows = int(np.ceil(n / cols))
  aspect = width / height
  fig, axes = plt.subplots(rows, cols, squeeze=False,
                           figsize=(cols * (1.2 + 1.3 * aspect),
                                    0.6 + 1.35 * rows))
  for i, ax in enumerate(axes.T.ravel()):  # Fill column by column.
    ax.set_xticks([])
    ax.set_yticks([])
    if i >= n:
      ax.axis('off')
      continue
    ax.imshow(panels[i], interpolation='nearest')
    ax.set_ylabel(names[i], rotation=0, ha='right', va='center', fontsize=8)
    for j in range(1, k):  # Thin separators between the k pictures.
      ax.axvline(j * width / k - 0.5, c='white', lw=1)
    if i % rows == 0:
      ax.set_xticks([(j + 0.5) * width / k for j in range(k)], column_titles,
                    fontsize=7)
      ax.xaxis.tick_top()
  if title:
    fig.suptitle(title, fontsize=9)
  _save(fig, path)


def baseline_bars(path: str, groups: Sequence[tuple[str, Sequence[str]]],
                  model: dict[str, float], baseline_mean: dict[str, float],
                  baseline_std: dict[str, float],
                  labels: dict[str, str] | None = None,
                  title: str = '', prior: dict[str, float] | None = None
                  ) -> None:
  """Horizontal bars of the model beside the baseline (error bars: its std).

  Args:
    path: PNG file to write.
    groups: (subplot title, metric keys) pairs, one subplot each; keys that
      `model` lacks (undefined metrics) are left out.
    model, baseline_mean, baseline_std: metric key -> value.
    labels: metric key -> its tick label (default: the part after '/').
    title: figure title.
    prior: metric key -> the training-prior baseline, drawn as a black
      tick on the baseline's bar.
  """
  labels = labels or {}
  groups = [(t, [k for k in keys if k in model and k in baseline_mean])
            for t, keys in groups]
  groups = [(t, keys) for t, keys in groups if keys]
  if not groups:
    return
  cols = 2 if len(groups) > 2 else 1
  rows = [groups[i:i + cols] for i in range(0, len(groups), cols)]
  heights = [0.9 + 0.3 * max(len(keys) for _, keys in row) for row in rows]
  fig, axes = plt.subplots(len(rows), cols, squeeze=False,
                           figsize=(6.0 * cols, sum(heights) + 0.9),
                           gridspec_kw={'height_ratios': heights},
                           layout='constrained')
  for ax, (group_title, keys) in zip(axes.ravel(), groups):
    y = np.arange(len(keys))
    ax.barh(y - 0.2, [model[k] for k in keys], height=0.4, label='model',
            color='tab:blue')
    ax.barh(y + 0.2, [baseline_mean[k] for k in keys], height=0.4,
            xerr=[baseline_std.get(k, 0.0) for k in keys], capsize=2,
            label='random GT baseline (error bar: ± std over shuffles)',
            color='tab:gray', alpha=0.7)
    if prior:
      shown = [(i, prior[k]) for i, k in enumerate(keys)
               if prior.get(k) is not None and np.isfinite(prior[k])]
      if shown:
        ax.scatter([v for _, v in shown], [i + 0.2 for i, _ in shown],
                   marker='|', s=120, c='black', zorder=3,
                   label='train prior baseline')
    ax.set_yticks(y, [labels.get(k, k.split('/')[-1]) for k in keys],
                  fontsize=7)
    ax.set_ylim(len(keys) - 0.4, -0.6)  # First key on top.
    ax.set_xlim(left=0)  # Every metric here is >= 0.
    ax.set_title(group_title, fontsize=9)
    ax.tick_params(axis='x', labelsize=7)
  for ax in axes.ravel()[len(groups):]:
    ax.axis('off')
  handles, names = axes[0, 0].get_legend_handles_labels()
  fig.legend(handles, names, loc='outside lower center', ncols=2, fontsize=8)
  if title:
    fig.suptitle(title, fontsize=10)
  fig.savefig(path, dpi=120)
  plt.close(fig)


def similarity(path: str, sim: np.ndarray, labels: np.ndarray) -> None:
  """A similarity matrix with its rows and columns ordered by group."""
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
  _save(fig, path)


def embedding_map(path: str, xy: np.ndarray, labels: np.ndarray,
                  title: str = '') -> None:
  """A 2-D projection of embeddings [N, 2], one colour per source (integer
  `labels`); each source's name-free index is written at its mean."""
  labels = np.asarray(labels)
  names = np.unique(labels)
  colours = plt.get_cmap('tab20', max(len(names), 1))
  markers = 'osD^v<>P*X'
  fig, ax = plt.subplots(figsize=(7, 6))
  for i, name in enumerate(names):
    rows = labels == name
    ax.scatter(xy[rows, 0], xy[rows, 1], s=10, color=colours(i % 20),
               marker=markers[(i // 20) % len(markers)], alpha=0.8,
               linewidths=0)
    cx, cy = xy[rows].mean(axis=0)
    ax.text(cx, cy, str(i), fontsize=7, ha='center', va='center')
  ax.set(xticks=[], yticks=[])
  # Wrapped: a tree's path made the one-line title wider than the figure.
  ax.set_title('\n'.join(textwrap.wrap(title, 80)), fontsize=9)
  _save(fig, path)


def reliability(path: str, panels) -> None:
  """Reliability diagrams side by side: panels of (title, bins, ece), bins
  as `inference.calibration.expected_calibration_error` gives them."""
  panels = list(panels)
  fig, axes = plt.subplots(1, max(len(panels), 1),
                           figsize=(3.2 * max(len(panels), 1), 3.4),
                           squeeze=False)
  for ax, (title, bins, ece) in zip(axes[0], panels):
    conf = np.asarray(bins['confidence'], np.float64)
    acc = np.asarray(bins['accuracy'], np.float64)
    count = np.asarray(bins['count'], np.float64)
    edges = np.linspace(0, 1, len(count) + 1)
    centres = (edges[:-1] + edges[1:]) / 2
    shown = count > 0
    ax.bar(centres[shown], acc[shown], width=1 / len(count), alpha=0.6,
           edgecolor='k', linewidth=0.4, label='accuracy')
    ax.plot(conf[shown], acc[shown], 'o', ms=3, color='C3',
            label='mean confidence')
    ax.plot([0, 1], [0, 1], 'k--', lw=0.8)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel='confidence',
           ylabel='accuracy')
    ax.set_title(f'{title}\nECE {ece:.3f}', fontsize=9)
  if panels:  # None when no probability was identifiable: an empty frame.
    axes[0][0].legend(fontsize=7, loc='upper left')
  _save(fig, path)
