"""Model-parsing metrics on held-out generators, and the random baseline.

Everything here runs on the host in numpy over a whole evaluation pass:
predictions are per image, ground truth per GM, joined by the GM's row index.

  continuous parameters   L1 error in normalised [0, 1] units
  discrete parameters     accuracy and macro F1 (over the classes that occur
                          in the truth or the predictions, as sklearn does)
  loss types (coarse and  ROC AUC of P(used), and F1 of P(used) > 0.5; both
  fine)                   only where both classes occur among the held-out
                          GMs (otherwise AUC is undefined, and F1 would only
                          count false alarms)

Keys are '<metric>/<hyperparameter>', plus one aggregate per metric (the mean
over hyperparameters) named '<metric>' (`HEADLINE`).

The baseline is the paper's random ground truth: every column of the held-out
table is permuted across GMs independently (same marginal distribution, no
relation to the images), and the same predictions are scored against it.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn import metrics as sk_metrics

from jaxfp.core import schema as schema_lib
from jaxfp.report import tables

# Aggregates, in the order reports show them, and which way is better.
HEADLINE = (('continuous_l1', 'lower'), ('discrete_accuracy', 'higher'),
            ('discrete_f1', 'higher'), ('loss_auc', 'higher'),
            ('loss_f1', 'higher'))
# P(loss type used) above this counts as predicting "used" for F1.
LOSS_THRESHOLD = 0.5


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


def binary_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
  """F1 of the positive class (1), sklearn's; NaN when there is no positive
  in either (0 / 0)."""
  return float(sk_metrics.f1_score(np.asarray(truth) == 1,
                                   np.asarray(predicted) == 1,
                                   zero_division=np.nan))


def macro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
  """sklearn's macro F1: the unweighted mean of per-class F1 over the
  classes in the truth or the predictions (so never 0 / 0)."""
  return float(sk_metrics.f1_score(truth, predicted, average='macro'))


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
      truth = labels.discrete[valid, j]
      out[f'discrete_accuracy/{param.name}'] = float(np.mean(guess == truth))
      out[f'discrete_f1/{param.name}'] = macro_f1(truth, guess)
  for group in ('coarse', 'fine'):
    for j, name in enumerate(getattr(schema, group)):
      truth = getattr(labels, group)[:, j]
      valid = truth != schema_lib.MISSING
      if len(np.unique(truth[valid])) == 2:
        scores = predictions[group][valid, j]
        out[f'loss_auc/{name}'] = float(sk_metrics.roc_auc_score(
            truth[valid], scores))
        out[f'loss_f1/{name}'] = binary_f1(
            truth[valid], (scores > LOSS_THRESHOLD).astype(np.int32))
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


def direction(metric: str) -> str:
  """'lower' or 'higher': which way `metric` (or 'metric/name') is better."""
  return dict(HEADLINE)[metric.split('/')[0]]


def beats(metric: str, model: float, baseline: float) -> bool:
  """Better than the baseline (by more than float rounding)."""
  margin = 1e-9 * max(1.0, abs(baseline))
  if direction(metric) == 'lower':
    return model < baseline - margin
  return model > baseline + margin


def ordered_keys(metrics: dict[str, float]) -> list[str]:
  """Aggregates first (HEADLINE order), then per-hyperparameter keys."""
  headline = [p for p, _ in HEADLINE if p in metrics]
  return headline + sorted(k for k in metrics if k not in headline)


def markdown_table(model: dict[str, float], baseline_mean: dict[str, float],
                   baseline_std: dict[str, float]) -> str:
  """One row per metric: model, baseline mean +- std, and which is better."""
  headline = [p for p, _ in HEADLINE]
  rows = []
  for key in ordered_keys(model):
    if key not in baseline_mean:
      continue
    m, b, s = model[key], baseline_mean[key], baseline_std[key]
    name = f'**{key}**' if key in headline else key
    verdict = 'yes' if beats(key, m, b) else 'no'
    rows.append([name, f'{m:.4f}', f'{b:.4f} ± {s:.4f}', verdict])
  return tables.markdown(
      ['metric', 'model', 'random GT baseline', 'beats baseline'], rows)


def _cells(key, model, mean, std):
  """Model value (bold if it beats the baseline mean) and the baseline."""
  if key not in model or key not in mean:
    return ['–', '–']
  m = f'{model[key]:.3f}'
  if beats(key, model[key], mean[key]):
    m = f'**{m}**'
  return [m, f'{mean[key]:.3f} ± {std[key]:.3f}']


def grouped_tables(model: dict[str, float], baseline_mean: dict[str, float],
                   baseline_std: dict[str, float],
                   schema: schema_lib.Schema) -> str:
  """The readable report: aggregates, then one row per hyperparameter.

  Model values that beat the baseline mean are in bold; the baseline column
  says by how much chance alone moves each figure (its std over shuffles).
  A dash marks a metric left undefined on these GMs (one class only).
  """
  summary = []
  for prefix, better in HEADLINE:
    summary.append([f'{prefix} ({better} is better)'] +
                   _cells(prefix, model, baseline_mean, baseline_std))
  cont = [[name] + _cells(f'continuous_l1/{name}', model, baseline_mean,
                          baseline_std) for name in schema.continuous]
  disc = [[p.name, str(p.num_classes)] +
          _cells(f'discrete_accuracy/{p.name}', model, baseline_mean,
                 baseline_std) +
          _cells(f'discrete_f1/{p.name}', model, baseline_mean, baseline_std)
          for p in schema.discrete]
  loss_rows = [(name, 'coarse') for name in schema.coarse] + [
      (name, f'fine ({schema.coarse[g]})')
      for name, g in zip(schema.fine, schema.fine_to_coarse)]
  loss = [[name, level] +
          _cells(f'loss_auc/{name}', model, baseline_mean, baseline_std) +
          _cells(f'loss_f1/{name}', model, baseline_mean, baseline_std)
          for name, level in loss_rows]
  baseline = 'baseline'
  return '\n\n'.join([
      tables.markdown(['aggregate (mean over hyperparameters)', 'model',
                       'random GT baseline'], summary),
      'Continuous parameters: L1 error in normalised [0, 1] units (lower is '
      'better)\n\n' + tables.markdown(['parameter', 'L1', baseline], cont),
      'Discrete parameters: accuracy and macro F1\n\n' + tables.markdown(
          ['parameter', 'classes', 'accuracy', baseline, 'macro F1',
           baseline], disc),
      f'Loss types: ROC AUC and F1 at P(used) > {LOSS_THRESHOLD}\n\n' +
      tables.markdown(
          ['loss type', 'level', 'AUC', baseline, 'F1', baseline], loss),
  ])
