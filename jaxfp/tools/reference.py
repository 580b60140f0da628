"""A non-deep reference parser: spectra and colour statistics into linear
models, fitted and scored on the trainer's split (`python -m jaxfp.reference`;
measured in docs/parsing.md).

It answers one question: is a hyperparameter's trace in the images at all?
If this reference beats the random-ground-truth baseline on unseen generators
and the deep parser does not, the parser loses the signal; if neither does,
the data lacks it.

Features of one image: `jaxfp.core.image_features`. Model (`Reference`):
features standardised, PCA to `pca_dim` components, then one model per
hyperparameter: ridge regression for each continuous column (with `kernel`,
an RBF kernel ridge, its penalty and width cross-validated), logistic
regression for each discrete column and each loss type. With
`per_generator` every GM is one example (`by_generator`) and each of its
images gets the GM's prediction: can all of a generator's images tell what
one cannot (the architecture counts, docs/parsing.md)? `Reference.predict`
returns the parsing task's prediction dict, so
`jaxfp.report.metrics.parsing_metrics` and `random_baseline` score both
alike.

On a dataset (`run`): fitted on the images the trainer trains on (its
config's GMs, `jaxfp.data.gm_folders.load_info`), scored as the trainer is
on the held-out GMs and the closed set (every image once, not augmented);
results.md / results.json in the trainer's form, and with `compare`
comparison.md: a parser run's figures and the reference's side by side.
"""

from __future__ import annotations

import json
import os

from absl import logging
import ml_collections
import numpy as np
from sklearn import compose
from sklearn import decomposition
from sklearn import kernel_ridge
from sklearn import linear_model
from sklearn import model_selection
from sklearn import preprocessing

from jaxfp.core import console
from jaxfp.core import files
from jaxfp.core import image_features
from jaxfp.core import schema as schema_lib
from jaxfp.data import splits
from jaxfp.report import metrics as metrics_lib
from jaxfp.report import results as results_lib
from jaxfp.report import tables
from jaxfp.tasks import common


# -------------------------------------------------------------------- model


class Reference:
  """Standardise, PCA, one linear model per hyperparameter."""

  def __init__(self, schema: schema_lib.Schema, *, pca_dim: int = 64,
               ridge_alpha: float = 1.0, logistic_c: float = 1.0,
               kernel: bool = False, seed: int = 0):
    if pca_dim < 1:
      raise ValueError(f'pca_dim is {pca_dim}; must be at least 1')
    self.schema = schema
    self.pca_dim = pca_dim
    self.ridge_alpha = ridge_alpha
    self.logistic_c = logistic_c
    self.kernel = kernel
    self.seed = seed

  def settings(self) -> dict:
    return {'pca_dim': self.pca_dim, 'ridge_alpha': self.ridge_alpha,
            'logistic_c': self.logistic_c, 'kernel': self.kernel,
            'seed': self.seed, 'pool': image_features.POOL,
            'sigma': image_features.SIGMA}

  def _regressor(self, z, y):
    if not self.kernel:
      return linear_model.Ridge(self.ridge_alpha).fit(z, y)
    # The RBF width in units of the embedding's dimension: 1 / d is
    # scikit-learn's 'scale' for standardised inputs.
    grid = {'alpha': [0.03, 0.1, 0.3, 1.0],
            'gamma': [g / z.shape[1] for g in (0.1, 0.3, 1.0, 3.0)]}
    folds = model_selection.KFold(5, shuffle=True, random_state=self.seed)
    search = model_selection.GridSearchCV(
        kernel_ridge.KernelRidge(kernel='rbf'), grid, cv=folds,
        scoring='neg_mean_absolute_error')
    # Kernel ridge has no intercept: far from every fitted example it
    # predicts 0, so it fits the targets' deviations from their mean.
    return compose.TransformedTargetRegressor(
        search, transformer=preprocessing.StandardScaler()).fit(z, y)

  def _embed(self, feats):
    return self._pca.transform(self._scaler.transform(feats))

  def fit(self, feats: np.ndarray, labels: metrics_lib.Labels) -> Reference:
    """feats [N, d]; labels: the images' ground truth (`metrics.Labels`)."""
    if len(feats) < 2:
      raise ValueError(f'the reference needs at least 2 training images, '
                       f'got {len(feats)}')
    self._scaler = preprocessing.StandardScaler().fit(feats)
    dim = min(self.pca_dim, feats.shape[0], feats.shape[1])
    self._pca = decomposition.PCA(dim, random_state=self.seed).fit(
        self._scaler.transform(feats))
    z = self._embed(feats)
    self._continuous = []
    for j in range(len(self.schema.continuous)):
      y = labels.continuous[:, j]
      ok = ~np.isnan(y)
      self._continuous.append(self._regressor(z[ok], y[ok])
                              if ok.any() else None)
    self._discrete, self._coarse, self._fine = (
        [self._classifier(z, y[:, j]) for j in range(y.shape[1])]
        for y in (labels.discrete, labels.coarse, labels.fine))
    return self

  def _classifier(self, z, y):
    ok = y != schema_lib.MISSING
    classes = np.unique(y[ok])
    if len(classes) < 2:  # Constant (or absent) in training: predict it.
      return int(classes[0]) if len(classes) else None
    return linear_model.LogisticRegression(
        C=self.logistic_c, max_iter=2000).fit(z[ok], y[ok])

  @staticmethod
  def _probabilities(model, z, num_classes):
    out = np.zeros((len(z), num_classes), np.float64)
    if model is None:
      out[:] = 1.0 / num_classes
    elif isinstance(model, int):
      out[:, model] = 1.0
    else:
      # A class absent from training keeps probability 0.
      out[:, model.classes_] = model.predict_proba(z)
    return out

  def _used(self, models, z):
    """P(loss type used), [N, len(models)]."""
    return _columns([self._probabilities(m, z, 2)[:, 1] for m in models],
                    len(z))

  def predict(self, feats: np.ndarray) -> dict:
    """The parsing task's prediction dict for features [N, d]."""
    z = self._embed(feats)
    n = len(z)
    continuous = _columns([np.full(n, 0.5) if m is None else m.predict(z)
                           for m in self._continuous], n)
    return {
        # The network's sigmoid keeps its outputs in [0, 1]; so does this.
        'continuous': np.clip(continuous, 0.0, 1.0),
        'discrete': tuple(self._probabilities(m, z, p.num_classes)
                          for m, p in zip(self._discrete,
                                          self.schema.discrete)),
        'coarse': self._used(self._coarse, z),
        'fine': self._used(self._fine, z),
    }


def _columns(columns: list[np.ndarray], n: int) -> np.ndarray:
  """[n, len(columns)], also for a schema without such columns."""
  return np.stack(columns, axis=1) if columns else np.zeros((n, 0))


def by_generator(feats: np.ndarray, rows: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Per-image features [N, d] and ground-truth rows [N] as one example per
  GM: ([G, 2d] mean and std over its images, its row [G], the example of
  each image [N]), GMs in order of first appearance."""
  gms, first, index = np.unique(rows, return_index=True, return_inverse=True)
  order = np.argsort(first)  # Keep the images' order of GMs.
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  index = rank[index.reshape(-1)]
  pooled = np.stack([np.concatenate([feats[index == g].mean(axis=0),
                                     feats[index == g].std(axis=0)])
                     for g in range(len(gms))])
  return pooled, gms[order], index


def each_image(predictions: dict, index: np.ndarray) -> dict:
  """Per-GM predictions given to each of its images."""
  return {k: (tuple(p[index] for p in v) if isinstance(v, tuple)
              else v[index]) for k, v in predictions.items()}


def fit(feats: np.ndarray, labels: metrics_lib.Labels,
        schema: schema_lib.Schema, **kwargs) -> Reference:
  """A `Reference` fitted on features [N, d] and the images' labels."""
  return Reference(schema, **kwargs).fit(feats, labels)


def score(predictions: dict, ground_truth: schema_lib.GroundTruth,
          rows: np.ndarray, *, num_shuffles: int, seed: int,
          train_truth: schema_lib.GroundTruth | None = None) -> dict:
  """Every figure of a results table, as the parsing task computes it
  (`metrics.score_split`): the random-GT baseline and z-scores, and with
  `train_truth` (the fitted GMs' table) the training-prior baseline."""
  prior = None
  if train_truth is not None:
    prior = metrics_lib.prior_predictions(
        metrics_lib.train_prior(train_truth, ground_truth.continuous_range),
        len(rows))
  return metrics_lib.score_split(predictions, rows, ground_truth,
                                 prior=prior, num_shuffles=num_shuffles,
                                 seed=seed)


# ------------------------------------------------------------ on a dataset


def _check_config(config: ml_collections.ConfigDict) -> None:
  task = config.get('task', 'parsing')
  if task != 'parsing':
    raise ValueError(f'config.task is {task!r}: the reference parses '
                     'generators (a model-parsing config such as '
                     'configs/fen.py)')
  if config.data.image_size % image_features.POOL:
    raise ValueError(f'config.data.image_size is {config.data.image_size}; '
                     f'the reference needs a multiple of {image_features.POOL}')


def run(config: ml_collections.ConfigDict, workdir: str, *,
        pca_dim: int = 64, ridge_alpha: float = 1.0, logistic_c: float = 1.0,
        kernel: bool = False, per_generator: bool = False,
        compare: str | None = None) -> dict:
  """Fits the reference on the config's training GMs, scores it on its
  held-out GMs, writes results.md / results.json (and comparison.md with
  `compare`, a parser run's workdir or results.json) to `workdir`.

  Returns the result dict (as the parsing task's `score`, plus 'text').
  """
  _check_config(config)
  workdir = files.check_output_folder(workdir, '--workdir')
  parser_results = _read_results(compare) if compare else None
  info = common.gm_folder_data().load_info(config.data)
  gt = info.ground_truth
  logging.info('Reference: training on %d GMs (%d images), holding out %d '
               'GMs (%d images)', len(info.train_gms), info.num_train_images,
               len(info.test_gms), info.num_test_images)
  if parser_results is not None:
    _check_same_split(parser_results, info, compare)

  with console.quietly('Reading images and computing features'):
    train_images, train_rows = common.read_images(config.data, info, 'train')
    test_images, test_rows = common.read_images(config.data, info, 'test')
    closed_images, closed_rows = common.read_images(config.data, info,
                                                    'closed_set')
    train_feats = image_features.features(train_images)
    test_feats = image_features.features(test_images)
    if per_generator:
      train_feats, train_rows, _ = by_generator(train_feats, train_rows)

  with console.quietly('Fitting the reference'):
    model = fit(train_feats, metrics_lib.Labels.of(gt, train_rows),
                gt.schema, pca_dim=pca_dim, ridge_alpha=ridge_alpha,
                logistic_c=logistic_c, kernel=kernel, seed=config.seed)
  train_truth = gt.select(info.train_gms)

  def scored(feats, rows):
    if per_generator:
      pooled, _, index = by_generator(feats, rows)
      predictions = each_image(model.predict(pooled), index)
    else:
      predictions = model.predict(feats)
    return score(predictions, gt, rows, seed=config.seed,
                 num_shuffles=config.num_baseline_shuffles,
                 train_truth=train_truth)

  result = scored(test_feats, test_rows)
  # The closed set, as the parser's: held-back images of the fitted GMs.
  result['closed_set'] = (
      scored(image_features.features(closed_images), closed_rows)
      if len(closed_rows) else None)
  result['per_generator'] = per_generator
  result['text'] = _report(result, workdir, config, info, model)
  if parser_results is not None:
    text = comparison(parser_results, result)
    files.write_text(os.path.join(workdir, 'comparison.md'), text + '\n')
    result['text'] += '\n\n' + text
  return result


def _report(result: dict, workdir: str, config: ml_collections.ConfigDict,
            info: splits.DataInfo, model: Reference) -> str:
  """results.md and results.json, in the parsing task's form."""
  shuffles = config.num_baseline_shuffles
  regression = 'RBF kernel ridge' if model.kernel else 'ridge'
  examples = ('one example per GM: the mean and std of its images\' '
              'features, ' if result['per_generator'] else '')
  header = (
      f'Parsing metrics of the non-deep reference (residual spectra and '
      f'colour statistics, {examples}PCA to {model.pca_dim}, {regression} '
      f'and logistic regressions) fitted on {len(info.train_gms)} GMs '
      f'({info.num_train_images} images): held out, {result["num_gms"]} GMs '
      f'never seen in fitting ({result["num_images"]} images).')
  closed = result['closed_set']
  splits_shown = [
      ('held out', result, f'train prior from the {len(info.train_gms)} '
       'fitted GMs'),
      ('closed set', closed, '' if closed is not None else
       'none: config.data.closed_set_fraction holds back no image')]
  table = results_lib.report(splits_shown, info.ground_truth.schema,
                             shuffles)
  shown = results_lib.report(splits_shown, info.ground_truth.schema,
                             shuffles, full=False)
  payload = {
      'model': 'reference',
      'reference': {**model.settings(),
                    'per_generator': result['per_generator']},
      'test_gms': list(info.test_gms), 'train_gms': list(info.train_gms),
      'num_train_images': info.num_train_images,
      'num_baseline_shuffles': shuffles,
      **results_lib.json_split(result),
      'closed_set': results_lib.json_split(closed)}
  files.write_text(os.path.join(workdir, 'results.md'),
                   f'{header}\n\n{table}\n')
  files.write_json(os.path.join(workdir, 'results.json'), payload, indent=2)
  return f'{header}\n\n{shown}'


# ------------------------------------------------------------- side by side


def _read_results(path: str) -> dict:
  """A parser run's results.json (given the file or its workdir)."""
  if os.path.isdir(path):
    path = os.path.join(path, 'results.json')
  try:
    with open(path, encoding='utf-8') as f:
      results = json.load(f)
  except FileNotFoundError:
    raise FileNotFoundError(f'--compare: {path} does not exist (give a '
                            'parser run\'s workdir or its results.json)'
                            ) from None
  except json.JSONDecodeError as e:
    raise ValueError(f'--compare: {path} is not JSON ({e})') from None
  missing = [k for k in ('metrics', 'baseline_mean', 'baseline_std',
                         'test_gms') if k not in (results or {})]
  if not isinstance(results, dict) or missing:
    raise ValueError(f'--compare: {path} is not a parsing run\'s results '
                     f'(no {", ".join(missing) or "object"})')
  return results


def _check_same_split(results: dict, info: splits.DataInfo,
                      where: str) -> None:
  if sorted(results['test_gms']) != sorted(info.test_gms):
    raise ValueError(
        f'--compare: {where} held out {len(results["test_gms"])} GMs '
        f'{sorted(results["test_gms"])[:6]}..., the config holds out '
        f'{sorted(info.test_gms)[:6]}...: give the run\'s config (or '
        '--config.data.test_gms=<its GMs>) so both are scored on the same '
        'GMs')


def _z(results: dict, key: str) -> float:
  """A result's z-score of `key` (NaN where undefined), from its 'z' or
  from its metrics and baseline (results written before z-scores)."""
  def value(table):
    v = (results.get(table) or {}).get(key)
    return float('nan') if v is None else float(v)
  if 'z' in results:
    return value('z')
  return metrics_lib.z_score(key, value('metrics'), value('baseline_mean'),
                             value('baseline_std'))


def _parsed(results: dict, name: str) -> bool | None:
  """Whether a result's `parsed` count has `name` parsed; None where it
  has no count (no train prior, or results of before the count)."""
  entry = ((results.get('parsed') or {}).get('hyperparameters') or {}).get(
      name)
  return None if entry is None else bool(entry['parsed'])


def _parsed_by(parser: dict, reference: dict, name: str) -> str:
  """Who parses `name`: 'both', 'parser', 'reference', 'neither' ('–':
  a side without the count)."""
  p, r = _parsed(parser, name), _parsed(reference, name)
  if p is None or r is None:
    return '–'
  return {(True, True): 'both', (True, False): 'parser',
          (False, True): 'reference', (False, False): 'neither'}[(p, r)]


def _parsed_count(results: dict) -> str:
  parsed = results.get('parsed')
  return '–' if not parsed else f'{parsed["parsed"]} of {parsed["defined"]}'


def comparison(parser: dict, reference: dict) -> str:
  """One row per hyperparameter, by its deciding metric (`metrics.DECIDING`):
  the parser and the reference (results in the form of results.json), each
  with its z-score against its own random-GT shuffles (the baselines differ:
  each shuffles the ground truth under its own predictions), which is
  better, and which parses it (results' 'parsed'). A metric either leaves
  undefined is a dash and counts for neither."""
  deciding = tuple(f'{metric}/' for _, metric in metrics_lib.DECIDING)
  keys = [k for k in metrics_lib.ordered_keys(reference['metrics'])
          if k.startswith(deciding) and k in parser['metrics']]
  rows = []
  counts = {'defined': 0, 'parser': 0, 'reference': 0, 'parser_better': 0,
            'reference_better': 0}
  for key in keys:
    values = {name: (_z(r, key), r['metrics'][key])
              for name, r in (('parser', parser), ('reference', reference))}
    if not all(z == z and m is not None for z, m in values.values()):
      rows.append(key.split('/', 1)[::-1] + ['–'] * 6)
      continue
    counts['defined'] += 1
    row = key.split('/', 1)[::-1]
    for name, (z, m) in values.items():
      hit = metrics_lib.is_significant(z)
      counts[name] += hit
      row += [f'**{m:.3f}**' if hit else f'{m:.3f}', f'{z:+.1f}']
    (_, p), (_, r) = values['parser'], values['reference']
    better = ('parser' if metrics_lib.strictly_better(key, p, r) else
              'reference' if metrics_lib.strictly_better(key, r, p) else
              'tie')
    if better != 'tie':
      counts[f'{better}_better'] += 1
    rows.append(row + [better, _parsed_by(parser, reference, row[0])])
  header = (
      f'The parser and the non-deep reference on the same '
      f'{len(parser["test_gms"])} held-out GMs, each hyperparameter by its '
      'deciding metric. Parsed (z >= 2 and better than its own train '
      f'prior): {_parsed_count(parser)} for the parser, '
      f'{_parsed_count(reference)} for the reference. '
      'Bold: beats its own random-GT baseline at z >= 2. '
      f'Of the {counts["defined"]} hyperparameters defined for both, '
      f'{counts["parser"]} are at z >= 2 for the parser, '
      f'{counts["reference"]} for the reference; the parser is better than '
      f'the reference on {counts["parser_better"]}, the reference on '
      f'{counts["reference_better"]}.')
  return header + '\n\n' + tables.markdown(
      ['hyperparameter', 'metric', 'parser', 'z', 'reference', 'z',
       'better', 'parsed by'], rows)
