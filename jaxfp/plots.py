"""Pictures of results, written as PNG files (matplotlib, no screen needed)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
matplotlib.use('Agg')  # Files only; no display on servers and CI.
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
from sklearn import metrics as sk_metrics


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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


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
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
