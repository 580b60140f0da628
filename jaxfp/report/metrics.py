"""Model-parsing metrics on held-out generators, the random-GT and training
prior baselines, z-scores and the parsed count.

Host numpy over a whole evaluation pass: predictions are per image, ground
truth per GM, joined by the GM's row index. Keys are
'<metric>/<hyperparameter>', plus one aggregate per metric (the mean over
hyperparameters) named '<metric>' (`HEADLINE`). What each metric, baseline
and count means, and why: docs/evaluation.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn import metrics as sk_metrics

from jaxfp.core import schema as schema_lib

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
      # With one class only, AUC is undefined and F1 counts false alarms.
      if len(np.unique(truth[valid])) == 2:
        scores = predictions[group][valid, j]
        out[f'loss_auc/{name}'] = float(sk_metrics.roc_auc_score(
            truth[valid], scores))
        out[f'loss_f1/{name}'] = binary_f1(
            truth[valid], (scores > LOSS_THRESHOLD).astype(np.int32))
  return _with_aggregates(out)


def _with_aggregates(out: dict[str, float]) -> dict[str, float]:
  """`out` with each `HEADLINE` metric's mean over its hyperparameters."""
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
  runs = [parsing_metrics(predictions,
                          Labels.of(held_out.shuffled(rng), position),
                          ground_truth.schema)
          for _ in range(num_shuffles)]
  keys = sorted(set().union(*runs))
  def stat(fn):
    return {k: float(fn([r[k] for r in runs if k in r])) for k in keys}
  return stat(np.mean), stat(np.std)


def loss_levels(schema: schema_lib.Schema) -> list[tuple[str, str]]:
  """(name, level) of every loss type: 'coarse', or 'fine (<its group>)'."""
  return [(n, 'coarse') for n in schema.coarse] + [
      (n, f'fine ({schema.coarse[g]})')
      for n, g in zip(schema.fine, schema.fine_to_coarse)]


def direction(metric: str) -> str:
  """'lower' or 'higher': which way `metric` (or 'metric/name') is better."""
  return dict(HEADLINE)[metric.split('/')[0]]


def ordered_keys(metrics: dict[str, float]) -> list[str]:
  """Aggregates first (HEADLINE order), then per-hyperparameter keys."""
  headline = [p for p, _ in HEADLINE if p in metrics]
  return headline + sorted(k for k in metrics if k not in headline)


# ------------------------------------------------------------ significance --

# The one metric per hyperparameter that decides whether it beats chance,
# by kind: continuous L1, discrete macro F1 (accuracy rewards predicting
# the commonest class), loss-type ROC AUC (free of a threshold).
DECIDING = (('continuous', 'continuous_l1'), ('discrete', 'discrete_f1'),
            ('loss', 'loss_auc'))
# A value beats the random baseline only this many shuffle stds above its
# mean: within 2 std, chance alone moves a figure that far often enough.
SIGNIFICANT_Z = 2.0
# Metrics lie in [0, 1]; a spread below this over shuffles is no yardstick
# (docs/evaluation.md: what smaller spreads gave).
_NO_SPREAD = 5e-4


def z_score(metric: str, model: float, mean: float, std: float) -> float:
  """(model - mean) / std, signed so that positive is better.

  NaN when any input is not finite or std is 0: shuffles that never move a
  metric (a column constant across these GMs) give no yardstick. Below
  `_NO_SPREAD` the std counts as 0: float rounding (a sum in another order)
  or nearly constant predictions move a metric that little.
  """
  if (not all(np.isfinite(v) for v in (model, mean, std)) or
      std <= _NO_SPREAD):
    return float('nan')
  z = (model - mean) / std
  return float(-z if direction(metric) == 'lower' else z)


def z_scores(model: dict[str, float], baseline_mean: dict[str, float],
             baseline_std: dict[str, float]) -> dict[str, float]:
  """`z_score` of every metric with a baseline (NaN where undefined)."""
  return {k: z_score(k, v, baseline_mean[k], baseline_std[k])
          for k, v in model.items()
          if k in baseline_mean and k in baseline_std}


def deciding_keys(schema: schema_lib.Schema) -> list[tuple[str, str, str]]:
  """(kind, hyperparameter, metric key) of every hyperparameter's deciding
  metric, in schema order."""
  names = {'continuous': schema.continuous,
           'discrete': schema.discrete_names,
           'loss': schema.coarse + schema.fine}
  return [(kind, n, f'{metric}/{n}') for kind, metric in DECIDING
          for n in names[kind]]


def is_significant(z: float | None, threshold: float = SIGNIFICANT_Z) -> bool:
  """z at or above `threshold`; the margin keeps a ratio that is exactly
  the threshold on paper (0.1 / 0.05) from missing it by float rounding."""
  return (z is not None and bool(np.isfinite(z)) and
          z >= threshold - 1e-9)


def significance(model: dict[str, float], z: dict[str, float],
                 schema: schema_lib.Schema,
                 threshold: float = SIGNIFICANT_Z) -> dict:
  """How many hyperparameters beat the random baseline at z >= threshold.

  Each hyperparameter counts once, by its deciding metric (`DECIDING`).
  One whose metric or z-score is undefined on these GMs (absent or NaN: a
  loss type all or none of them use, a column the shuffles cannot move)
  is left out of 'defined' and can never count. Whether it also beats the
  training prior is `parsed_hyperparameters`'s question.

  Returns {'threshold', 'significant', 'defined', 'total',
  'significant_keys', 'by_kind': {kind: {'significant', 'defined',
  'total'}}}.
  """
  def count(rows):
    defined = [k for _, _, k in rows if _defined(model, z, k)]
    hits = [k for k in defined if is_significant(z[k], threshold)]
    return hits, {'significant': len(hits), 'defined': len(defined),
                  'total': len(rows)}
  rows = deciding_keys(schema)
  hits, out = count(rows)
  out = {'threshold': threshold, **out, 'significant_keys': hits}
  out['by_kind'] = {kind: count([r for r in rows if r[0] == kind])[1]
                    for kind, _ in DECIDING}
  return out


def _defined(model: dict[str, float], z: dict[str, float], key: str) -> bool:
  """Both the metric and its z-score are finite on these GMs."""
  return bool(np.isfinite(model.get(key, np.nan)) and
              np.isfinite(z.get(key, np.nan)))


def strictly_better(metric: str, model: float, other: float) -> bool:
  """`model` better than `other` on `metric` (lower for L1), ties not."""
  if direction(metric) == 'lower':
    return model < other
  return model > other


# ------------------------------------------------- the training prior -------

def train_prior(train_truth: schema_lib.GroundTruth,
                target_range: np.ndarray | None = None) -> dict:
  """The constants of the second baseline, from the training GMs' truth.

  One value per column, each GM counted once: the median of every
  continuous parameter (the constant that minimises L1, the metric), the
  majority class of every discrete one (ties: the lowest
  class index) and the prevalence of every loss type (the fraction of
  training GMs that used it). Missing labels are ignored; a column with no
  label at all gets NaN (continuous, loss types) or -1 (discrete).

  `target_range` ([C, 2] raw (min, max)): the normalisation of the table
  the prior will be scored against, when it is not the training table's
  (another zoo normalises its columns over its own GMs).
  """
  continuous = train_truth.continuous.astype(np.float64)
  if target_range is not None:
    continuous = renormalize(continuous, train_truth.continuous_range,
                             target_range)
  medians = np.array([np.nanmedian(c) if np.isfinite(c).any() else np.nan
                      for c in continuous.T])
  majority = []
  for j, k in enumerate(train_truth.schema.num_classes):
    labels = train_truth.discrete[:, j]
    labels = labels[labels != schema_lib.MISSING]
    majority.append(int(np.argmax(np.bincount(labels, minlength=k)))
                    if len(labels) else schema_lib.MISSING)
  def prevalence(table):
    known = table != schema_lib.MISSING
    with np.errstate(invalid='ignore'):  # 0 / 0: a column with no label.
      return np.where(known, table, 0).sum(0) / known.sum(0)
  return {'continuous': medians, 'discrete': np.array(majority, np.int64),
          'num_classes': tuple(train_truth.schema.num_classes),
          'coarse': prevalence(train_truth.coarse),
          'fine': prevalence(train_truth.fine)}


def renormalize(values: np.ndarray, from_range: np.ndarray,
                to_range: np.ndarray) -> np.ndarray:
  """Normalised continuous values of one table in the units of another.

  Columns whose ranges are unknown (NaN, e.g. the published tables) or
  equal are returned unchanged; a target column of zero width maps to 0,
  as `schema.read_csv` maps a constant column.
  """
  values = np.array(values, np.float64)
  lo, hi = from_range[:, 0], from_range[:, 1]
  to_lo, to_hi = to_range[:, 0], to_range[:, 1]
  for j in range(values.shape[-1]):
    known = np.isfinite([lo[j], hi[j], to_lo[j], to_hi[j]]).all()
    if not known or (lo[j] == to_lo[j] and hi[j] == to_hi[j]):
      continue
    raw = lo[j] + values[..., j] * (hi[j] - lo[j])
    width = to_hi[j] - to_lo[j]
    values[..., j] = (raw - to_lo[j]) / width if width else 0.0
  return values


def prior_predictions(prior: dict, num_images: int) -> dict:
  """The prior's constants as per-image predictions that `parsing_metrics`
  scores: the median, a one-hot of the majority class, P(used) = the
  prevalence (a constant score, so its ROC AUC is 0.5 by definition)."""
  def tile(v):
    return np.tile(np.asarray(v, np.float64)[None], (num_images, 1))
  discrete = []
  for cls, k in zip(prior['discrete'], prior['num_classes']):
    onehot = np.zeros(k) if cls == schema_lib.MISSING else np.eye(k)[cls]
    discrete.append(np.tile(onehot[None], (num_images, 1)))
  return {'continuous': tile(prior['continuous']),
          'discrete': tuple(discrete), 'coarse': tile(prior['coarse']),
          'fine': tile(prior['fine'])}


def _score_prior(predictions: dict, labels: Labels,
                 schema: schema_lib.Schema) -> dict[str, float]:
  """`parsing_metrics` of the prior's predictions, without the columns the
  prior leaves undefined (no training label: NaN, or an all-zero one-hot),
  which would otherwise score as if it predicted class 0 or P = 0."""
  bad = set()
  continuous = np.asarray(predictions['continuous'], np.float64)
  for j, name in enumerate(schema.continuous):
    if not np.isfinite(continuous[:, j]).all():
      bad.add(f'continuous_l1/{name}')
  for p, probs in zip(schema.discrete, predictions['discrete']):
    if (np.asarray(probs).sum(axis=-1) == 0).any():
      bad |= {f'discrete_accuracy/{p.name}', f'discrete_f1/{p.name}'}
  clean = dict(predictions, continuous=np.nan_to_num(continuous))
  for group in ('coarse', 'fine'):
    scores = np.asarray(predictions[group], np.float64)
    for j, name in enumerate(getattr(schema, group)):
      if not np.isfinite(scores[:, j]).all():
        bad |= {f'loss_auc/{name}', f'loss_f1/{name}'}
    clean[group] = np.nan_to_num(scores, nan=0.5)
  out = parsing_metrics(clean, labels, schema)
  for key in bad:
    out.pop(key, None)
  return _with_aggregates(out)  # Over what is left.


def prior_values(prior: dict, schema: schema_lib.Schema) -> dict:
  """The prior's constants by name, for results.json (None: undefined)."""
  def num(v):
    return float(v) if np.isfinite(v) else None
  return {
      'continuous_median': {n: num(v) for n, v in
                          zip(schema.continuous, prior['continuous'])},
      'discrete_majority': {
          p.name: (None if c == schema_lib.MISSING else p.classes[c])
          for p, c in zip(schema.discrete, prior['discrete'])},
      'loss_prevalence': {n: num(v) for n, v in zip(
          schema.coarse + schema.fine,
          np.concatenate([prior['coarse'], prior['fine']]))},
  }


# ------------------------------------------------- parsed: the strict count --

# The paired bootstrap over GMs that decides whether a continuous parameter
# beats the prior: resamples, two-sided interval, and a fixed seed, so that
# a report says the same on every run of the same predictions.
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_LEVEL = 0.95
BOOTSTRAP_SEED = 0


def per_gm_means(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
  """The mean of per-image `values` over each GM's images (GMs in the order
  of their rows): a GM with many images weighs no more than one with few."""
  _, inverse = np.unique(rows, return_inverse=True)
  sums = np.bincount(inverse, weights=np.asarray(values, np.float64))
  return sums / np.bincount(inverse)


def paired_bootstrap(differences: np.ndarray, *,
                     num_resamples: int = BOOTSTRAP_RESAMPLES,
                     level: float = BOOTSTRAP_LEVEL,
                     seed: int = BOOTSTRAP_SEED) -> dict:
  """The mean of per-GM paired `differences` and the percentile interval
  (`level`) of that mean over GMs resampled with replacement.

  Returns {'difference', 'interval': [low, high], 'num_gms'}; NaNs for no
  GM.
  """
  d = np.asarray(differences, np.float64)
  if not len(d):
    return {'difference': float('nan'),
            'interval': [float('nan'), float('nan')], 'num_gms': 0}
  picks = np.random.default_rng(seed).integers(0, len(d),
                                                (num_resamples, len(d)))
  tail = 50.0 * (1.0 - level)
  low, high = np.percentile(d[picks].mean(axis=1), [tail, 100.0 - tail])
  return {'difference': float(d.mean()), 'interval': [float(low),
                                                      float(high)],
          'num_gms': int(len(d))}


def l1_against_prior(model: np.ndarray, prior: np.ndarray, truth: np.ndarray,
                     rows: np.ndarray, seed: int = BOOTSTRAP_SEED) -> dict:
  """`paired_bootstrap` of |model - truth| - |prior - truth| per GM (one
  continuous column; images without a label or a prior left out); the
  model beats the prior when the interval lies entirely below 0."""
  valid = np.isfinite(truth) & np.isfinite(prior)
  diff = (np.abs(np.asarray(model, np.float64) - truth) -
          np.abs(np.asarray(prior, np.float64) - truth))
  test = paired_bootstrap(per_gm_means(diff[valid], rows[valid])
                          if valid.any() else [], seed=seed)
  test['beats_prior'] = bool(test['interval'][1] < 0)
  return test


def parsed_count(model: dict[str, float], z: dict[str, float],
                 prior_metrics: dict[str, float], predictions: dict,
                 prior: dict, labels: Labels, rows: np.ndarray,
                 schema: schema_lib.Schema,
                 threshold: float = SIGNIFICANT_Z) -> dict:
  """The stricter count from figures already computed (`score_split`'s);
  see `parsed_hyperparameters` for what it returns."""
  per, names = {}, []
  for kind, name, key in deciding_keys(schema):
    entry = {'kind': kind, 'metric': key, 'defined': _defined(model, z, key),
             'z': z.get(key), 'beats_random_gt': False, 'beats_prior': None,
             'parsed': False}
    if entry['defined']:
      entry['beats_random_gt'] = is_significant(z[key], threshold)
      # Where the prior is undefined (NaN), 'beats_prior' stays None.
      prior_value = prior_metrics.get(key, np.nan)
      if kind == 'loss':  # A constant P(used) ranks nothing: the prior's AUC.
        entry['beats_prior'] = strictly_better(key, model[key], 0.5)
      elif kind == 'discrete' and np.isfinite(prior_value):
        entry['beats_prior'] = strictly_better(key, model[key], prior_value)
      elif kind == 'continuous' and np.isfinite(prior_value):
        j = schema.continuous.index(name)
        test = l1_against_prior(
            predictions['continuous'][:, j],
            np.asarray(prior['continuous'], np.float64)[:, j],
            labels.continuous[:, j], rows)
        entry['beats_prior'] = test.pop('beats_prior')
        entry['prior_test'] = test
      entry['parsed'] = bool(entry['beats_random_gt'] and
                             entry['beats_prior'])
    if entry['parsed']:
      names.append(name)
    per[name] = entry
  def count(kinds):
    chosen = [e for e in per.values() if e['kind'] in kinds]
    return {'parsed': sum(e['parsed'] for e in chosen),
            'beats_random_gt': sum(e['beats_random_gt'] for e in chosen),
            'beats_prior': sum(bool(e['beats_prior']) for e in chosen),
            'defined': sum(e['defined'] for e in chosen),
            'total': len(chosen)}
  return {**count({k for k, _ in DECIDING}), 'names': names,
          'by_kind': {k: count({k}) for k, _ in DECIDING},
          'hyperparameters': per}


def parsed_hyperparameters(predictions: dict, rows: np.ndarray,
                           ground_truth: schema_lib.GroundTruth,
                           prior: dict, *, num_shuffles: int,
                           seed: int) -> dict:
  """Which hyperparameters are parsed: at random-GT z >= 2 AND better than
  the training prior (docs/evaluation.md), each by its deciding metric.

  Args: as `score_split` (per-image `predictions`, each image's GM row in
    `ground_truth`, the prior's per-image predictions, the shuffles).

  Returns {'parsed', 'beats_random_gt', 'beats_prior', 'defined', 'total'
  (counts over the schema's hyperparameters), 'names' (the parsed ones, in
  schema order), 'by_kind': {kind: the same counts}, 'hyperparameters':
  {name: {'kind', 'metric', 'defined', 'z' (random GT), 'beats_random_gt',
  'beats_prior' (None: the prior is undefined), 'parsed' (bool),
  'prior_test' (continuous only: the paired bootstrap, {'difference',
  'interval', 'num_gms'})}}}. A hyperparameter undefined on these GMs
  (`significance`) is never parsed. The same dict is
  `score_split(...)['parsed']` and results.json's 'parsed'.
  """
  return score_split(predictions, rows, ground_truth, prior=prior,
                     num_shuffles=num_shuffles, seed=seed)['parsed']


# ------------------------------------------------------- one scored split --

def score_split(predictions: dict, rows: np.ndarray,
                ground_truth: schema_lib.GroundTruth, *,
                prior: dict | None, num_shuffles: int,
                seed: int) -> dict:
  """Every figure a results table shows for one set of images.

  Args:
    predictions: per image, as `parsing_metrics` takes them.
    rows: per image, its GM's row in `ground_truth`.
    ground_truth: a table holding every GM of `rows`.
    prior: per image, the training-prior baseline's
      predictions (`prior_predictions`, or one fold's per image when folds
      are pooled); None: no prior baseline.
    num_shuffles, seed: the random-ground-truth baseline.

  Returns {'metrics', 'baseline_mean', 'baseline_std', 'z', 'train_prior'
  (the prior's metrics, or None), 'parsed' (`parsed_hyperparameters`; None
  without a prior), 'significance', 'num_images', 'num_gms'}.
  """
  schema = ground_truth.schema
  labels = Labels.of(ground_truth, rows)
  model = parsing_metrics(predictions, labels, schema)
  mean, std = random_baseline(predictions, ground_truth, rows,
                              num_shuffles=num_shuffles, seed=seed)
  z = z_scores(model, mean, std)
  prior_metrics = parsed = None
  if prior is not None:
    prior_metrics = _score_prior(prior, labels, schema)
    parsed = parsed_count(model, z, prior_metrics, predictions, prior,
                          labels, np.asarray(rows), schema)
  return {'metrics': model, 'baseline_mean': mean, 'baseline_std': std,
          'z': z, 'train_prior': prior_metrics, 'parsed': parsed,
          'significance': significance(model, z, schema),
          'num_images': int(len(rows)),
          'num_gms': int(len(np.unique(rows)))}
