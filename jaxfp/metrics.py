"""Model-parsing metrics on held-out generators, and the random baseline.

Everything here runs on the host in numpy over a whole evaluation pass:
predictions are per image, ground truth per GM, joined by the GM's row index.
Continuous parameters are scored by L1 error in normalised [0, 1] units,
discrete ones by accuracy, loss types by ROC AUC (only where both classes occur
among the held-out GMs; otherwise the AUC is undefined and left out).

The baseline is the paper's random ground truth: every column of the held-out
table is permuted across GMs independently (same marginal distribution, no
relation to the images), and the same predictions are scored against it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn import metrics as sk_metrics

from jaxfp import schema as schema_lib

# Aggregates, in the order reports show them, and which way is better.
HEADLINE = (('continuous_l1', 'lower'), ('discrete_accuracy', 'higher'),
            ('loss_auc', 'higher'))


@dataclasses.dataclass(frozen=True)
class Labels:
  """Per-image labels: rows of a ground-truth table looked up by GM."""
  continuous: np.ndarray
  discrete: np.ndarray
  coarse: np.ndarray
  fine: np.ndarray

  @classmethod
  def of(cls, ground_truth: schema_lib.GroundTruth, rows: np.ndarray):
    return cls(ground_truth.continuous[rows], ground_truth.discrete[rows],
               ground_truth.coarse[rows], ground_truth.fine[rows])


def parsing_metrics(predictions: dict, labels: Labels,
                    schema: schema_lib.Schema) -> dict[str, float]:
  """Per-hyperparameter and aggregated metrics.

  Args:
    predictions: {'continuous': [N, C] in [0, 1], 'discrete': sequence of
      [N, k_d] class probabilities, 'coarse': [N, K] and 'fine': [N, F]
      probabilities that the loss type was used}.
    labels: the images' ground truth (NaN / -1 where missing).
    schema: names of the columns.
  """
  out = {}
  for j, name in enumerate(schema.continuous):
    valid = ~np.isnan(labels.continuous[:, j])
    if valid.any():
      out[f'continuous_l1/{name}'] = float(np.mean(np.abs(
          predictions['continuous'][valid, j] - labels.continuous[valid, j])))
  for j, param in enumerate(schema.discrete):
    valid = labels.discrete[:, j] != schema_lib.MISSING
    if valid.any():
      guess = np.argmax(predictions['discrete'][j][valid], axis=-1)
      out[f'discrete_accuracy/{param.name}'] = float(
          np.mean(guess == labels.discrete[valid, j]))
  for group in ('coarse', 'fine'):
    for j, name in enumerate(getattr(schema, group)):
      truth = getattr(labels, group)[:, j]
      valid = truth != schema_lib.MISSING
      if len(np.unique(truth[valid])) == 2:
        out[f'loss_auc/{name}'] = float(sk_metrics.roc_auc_score(
            truth[valid], predictions[group][valid, j]))
  for prefix, _ in HEADLINE:
    values = [v for k, v in out.items() if k.startswith(prefix + '/')]
    out[prefix] = float(np.mean(values)) if values else float('nan')
  return out


def random_baseline(predictions: dict, ground_truth: schema_lib.GroundTruth,
                    rows: np.ndarray, *, num_shuffles: int,
                    seed: int) -> tuple[dict[str, float], dict[str, float]]:
  """Mean and standard deviation of each metric over shuffled ground truths.

  `rows` index `ground_truth`; only the GMs that occur in `rows` are shuffled
  among themselves.
  """
  present = np.unique(rows)
  position = np.searchsorted(present, rows)
  held_out = ground_truth.select([ground_truth.gm_names[r] for r in present])
  rng = np.random.default_rng(seed)
  runs = []
  for _ in range(num_shuffles):
    shuffled = held_out.shuffled(rng)
    runs.append(parsing_metrics(predictions, Labels.of(shuffled, position),
                                ground_truth.schema))
  keys = sorted(set().union(*runs))
  def stat(fn):
    return {k: float(fn([r[k] for r in runs if k in r])) for k in keys}
  return stat(np.mean), stat(np.std)


def beats(metric: str, model: float, baseline: float) -> bool:
  prefix = metric.split('/')[0]
  direction = dict(HEADLINE)[prefix]
  return model < baseline if direction == 'lower' else model > baseline


def markdown_table(model: dict[str, float], baseline_mean: dict[str, float],
                   baseline_std: dict[str, float]) -> str:
  """One row per metric: model, baseline mean +- std, and which is better."""
  lines = ['| metric | model | random GT baseline | beats baseline |',
           '|---|---|---|---|']
  headline = [p for p, _ in HEADLINE]
  ordered = headline + sorted(k for k in model if k not in headline)
  for key in ordered:
    if key not in model or key not in baseline_mean:
      continue
    m, b, s = model[key], baseline_mean[key], baseline_std[key]
    name = f'**{key}**' if key in headline else key
    verdict = 'yes' if beats(key, m, b) else 'no'
    lines.append(f'| {name} | {m:.4f} | {b:.4f} ± {s:.4f} | {verdict} |')
  return '\n'.join(lines)
