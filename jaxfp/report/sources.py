"""Scores of source embeddings: verification, grouping, open-set detection.

Pure numpy and scikit-learn on unit embeddings [N, D] and integer source
labels [N]:
  verification   every pair of images, same source or not, scored by cosine
                 similarity: equal error rate (EER) and ROC AUC;
  grouping       adjusted Rand index and normalised mutual information of
                 predicted groups against the true sources;
  open set       ROC AUC of an "unknown source" score, queries of unknown
                 sources being the positives.
"""

from __future__ import annotations

import numpy as np
from sklearn import metrics as sk_metrics

# Pairs scored at most: all pairs of 2,000 images (2M); more images are
# subsampled, with every same-source pair kept up to the same budget.
MAX_PAIRS = 2_000_000


def pairs(labels: np.ndarray, *, max_pairs: int = MAX_PAIRS, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray]:
  """Index pairs (i < j) of images: all of them, or a uniform sample of
  `max_pairs` when there are more."""
  n = len(labels)
  total = n * (n - 1) // 2
  if total <= max_pairs:
    return np.triu_indices(n, 1)
  rng = np.random.default_rng(seed)
  i = rng.integers(0, n, 2 * max_pairs)
  j = rng.integers(0, n, 2 * max_pairs)
  keep = i < j
  return i[keep][:max_pairs], j[keep][:max_pairs]


def equal_error_rate(same: np.ndarray, scores: np.ndarray
                     ) -> tuple[float, float]:
  """(EER, score threshold at the EER) of `scores` (higher = same).

  The EER is where the false-accept and false-reject rates cross, read at
  the ROC point where they are closest (their mean there).
  """
  same = np.asarray(same, bool)
  if same.all() or not same.any():
    return float('nan'), float('nan')
  fpr, tpr, thresholds = sk_metrics.roc_curve(same, scores)
  fnr = 1.0 - tpr
  k = int(np.argmin(np.abs(fpr - fnr)))
  return float((fpr[k] + fnr[k]) / 2), float(thresholds[k])


def verification(unit: np.ndarray, labels: np.ndarray, *, seed: int = 0
                 ) -> dict:
  """EER, ROC AUC and the cosine at the EER over same/different pairs."""
  i, j = pairs(labels, seed=seed)
  same = labels[i] == labels[j]
  cosine = np.einsum('nd,nd->n', unit[i], unit[j])
  eer, threshold = equal_error_rate(same, cosine)
  auc = (float(sk_metrics.roc_auc_score(same, cosine))
         if 0 < same.sum() < len(same) else float('nan'))
  return {'eer': eer, 'pair_auc': auc, 'eer_cosine': threshold,
          'num_pairs': int(len(same)), 'num_same_pairs': int(same.sum())}


def grouping(truth: np.ndarray, predicted: np.ndarray) -> dict:
  """ARI, NMI and the number of groups of a partition."""
  return {'ari': float(sk_metrics.adjusted_rand_score(truth, predicted)),
          'nmi': float(sk_metrics.normalized_mutual_info_score(truth,
                                                               predicted)),
          'num_groups': int(len(np.unique(predicted))),
          'num_sources': int(len(np.unique(truth)))}


def open_set_auroc(unknown: np.ndarray, scores: np.ndarray) -> float:
  """ROC AUC of `scores` (higher = more likely unknown) for queries whose
  source is not in the gallery (`unknown` True); NaN without both kinds."""
  unknown = np.asarray(unknown, bool)
  if unknown.all() or not unknown.any():
    return float('nan')
  return float(sk_metrics.roc_auc_score(unknown, scores))
