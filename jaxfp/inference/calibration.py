"""Calibrated probabilities and intervals of a parse, fitted on held-out
generators' images (pure numpy: fitted at the end of a run, applied by
`predict`).

  temperature   one per discrete hyperparameter and per loss type: the
                probabilities' logits divided by T, with T chosen on a grid
                to minimise the negative log-likelihood of the held-out
                truth. One number per head cannot reorder a head's classes,
                so accuracy, F1 and AUC stay as they were; only confidence
                moves.
  conformal     one half-width per continuous hyperparameter: the
                ceil((n + 1) c) / n quantile of the held-out |prediction -
                truth| (split conformal), so that an interval of that
                half-width covers a new generator's value with probability
                about c when held-out and new generators are alike.
"""

from __future__ import annotations

import math

import numpy as np

# Temperatures tried: from much sharper (0.05) to much flatter (20).
TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 241))
_EPS = 1e-7


def _log(p: np.ndarray) -> np.ndarray:
  return np.log(np.clip(np.asarray(p, np.float64), _EPS, 1.0))


def scale_classes(probabilities: np.ndarray, temperature: float
                  ) -> np.ndarray:
  """Class probabilities [N, k] with their logits divided by T."""
  z = _log(probabilities) / temperature
  z -= z.max(axis=-1, keepdims=True)
  e = np.exp(z)
  return e / e.sum(axis=-1, keepdims=True)


def scale_binary(p_used: np.ndarray, temperature: float) -> np.ndarray:
  """P(used) [N] with its logit divided by T."""
  p = np.clip(np.asarray(p_used, np.float64), _EPS, 1 - _EPS)
  return 1.0 / (1.0 + np.exp(-(np.log(p) - np.log1p(-p)) / temperature))


def fit_temperature(probabilities: np.ndarray, labels: np.ndarray) -> float:
  """T minimising the NLL of `labels`: [N] class indices for [N, k]
  probabilities, or 0/1 for [N] P(used). Labels < 0 (missing) are left
  out; with no label left, or one class only, T = 1 (nothing to learn)."""
  labels = np.asarray(labels)
  keep = labels >= 0
  probabilities, labels = np.asarray(probabilities)[keep], labels[keep]
  if len(labels) == 0 or len(np.unique(labels)) < 2:
    return 1.0
  best, best_nll = 1.0, math.inf
  for t in TEMPERATURES:
    if probabilities.ndim == 1:
      p = scale_binary(probabilities, t)
      nll = -np.mean(np.where(labels == 1, _log(p), _log(1 - p)))
    else:
      p = scale_classes(probabilities, t)
      nll = -np.mean(_log(p[np.arange(len(labels)), labels]))
    if nll < best_nll - 1e-12:
      best, best_nll = float(t), nll
  return best


def conformal_half_width(predicted: np.ndarray, truth: np.ndarray,
                         coverage: float) -> float:
  """Split-conformal half-width of `coverage` from [N] predictions and
  truths (NaN truths left out); NaN when too few remain for it."""
  truth = np.asarray(truth, np.float64)
  keep = np.isfinite(truth)
  residuals = np.sort(np.abs(np.asarray(predicted, np.float64)[keep] -
                             truth[keep]))
  n = len(residuals)
  rank = math.ceil((n + 1) * coverage)
  if n == 0 or rank > n:
    return float('nan')
  return float(residuals[rank - 1])


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               num_bins: int = 15) -> tuple[float, dict]:
  """ECE over equal-width confidence bins, and the reliability diagram's
  data: per bin its mean confidence, accuracy and count."""
  confidence = np.asarray(confidence, np.float64)
  correct = np.asarray(correct, np.float64)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  which = np.clip(np.digitize(confidence, edges[1:-1]), 0, num_bins - 1)
  count = np.bincount(which, minlength=num_bins)
  with np.errstate(invalid='ignore'):  # An empty bin's means are NaN.
    conf = np.bincount(which, confidence, num_bins) / count
    acc = np.bincount(which, correct, num_bins) / count
  ece = np.nansum(count * np.abs(conf - acc)) / max(len(confidence), 1)
  return float(ece), {'confidence': conf.tolist(), 'accuracy': acc.tolist(),
                      'count': count.tolist()}
