"""The parsing results a run reports: tables of the held-out GMs beside the
closed set, the per-image predictions file, and folds pooled into one table.

A "scored split" is what `metrics.score_split` returns for one set of
images. The tables show the parsed count first and mark a value in bold
only when it beats the random-GT baseline at z >= 2 (`caption`, in every
table). predictions.npz (beside results.json) holds one split's per-image
predictions, so that folds can be pooled and scored once (`pool`) without
rerunning a network.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence

import jax
import numpy as np

from jaxfp.core import files
from jaxfp.core import schema as schema_lib
from jaxfp.report import metrics as metrics_lib
from jaxfp.report import tables

PREDICTIONS = 'predictions.npz'
DASH = '–'
KIND_TITLES = {'continuous': 'continuous (L1)',
               'discrete': 'discrete (macro F1)',
               'loss': 'loss types (AUC)'}


def caption(num_shuffles: int) -> str:
  """What every parsing table's figures and bold mean."""
  z = metrics_lib.SIGNIFICANT_Z
  return (
      f'**Bold: beats the random-GT baseline at z >= {z:g}**, where z = '
      '(model - random-GT mean) / random-GT std, signed so that positive is '
      'better (L1: lower is better); a value inside that noise is not bold, '
      'even above the mean. Random GT: the same predictions scored against '
      'the ground truth with each column shuffled across these GMs (mean ± '
      f'std over {num_shuffles} shuffles). Train prior: a second baseline '
      "that predicts the training GMs' median (continuous: L1's optimal "
      'constant), majority class (discrete) and prevalence as P(used) (loss '
      'types: a constant score, so its AUC is 0.5). Each hyperparameter '
      'counts once, by its deciding metric: continuous L1, discrete macro '
      f'F1, loss-type AUC. **Parsed**: at z >= {z:g} AND better than the '
      'train prior (continuous: the 95% interval of a paired bootstrap over '
      f'GMs of |model - truth| - |prior - truth| below 0, '
      f'{metrics_lib.BOOTSTRAP_RESAMPLES} resamples; discrete: macro F1 '
      'above the prior\'s; loss types: AUC above 0.5); the summary counts '
      f'these first, those at z >= {z:g} beside them. '
      f'{DASH}: undefined on these GMs (a loss type that all or none of them '
      'use; a column the shuffles cannot move), never counted.')


def _num(value, digits=3) -> str:
  if value is None or not np.isfinite(value):
    return DASH
  return f'{value:.{digits}f}'


def cells(scored: dict | None, key: str) -> list[str]:
  """model (bold at z >= 2) | random GT mean ± std | z | train prior."""
  if scored is None or key not in scored['metrics']:
    return [DASH] * 4
  model = scored['metrics'][key]
  z = scored['z'].get(key)
  text = _num(model)
  if metrics_lib.is_significant(z):
    text = f'**{text}**'
  mean, std = scored['baseline_mean'].get(key), scored['baseline_std'].get(
      key)
  base = DASH if mean is None else f'{_num(mean)} ± {_num(std)}'
  z_text = DASH if z is None or not np.isfinite(z) else f'{z:+.1f}'
  prior = (scored.get('train_prior') or {}).get(key)
  return [text, base, z_text, _num(prior)]


def _count(c: dict) -> str:
  return f'{c["significant"]} of {c["defined"]} ({c["total"]})'


def parsed_text(scored: dict, kind: str | None = None, bold: str = ''
                ) -> str:
  """'parsed: N of D (T); z >= 2: K' of a scored split (or one kind):
  the stricter count first, the random-GT count beside it; without a
  prior only the latter."""
  counted = scored['significance']
  counted = counted if kind is None else counted['by_kind'][kind]
  z = f'z >= {metrics_lib.SIGNIFICANT_Z:g}: {counted["significant"]}'
  parsed = scored.get('parsed')
  if parsed is None:
    return f'parsed: {DASH} (no train prior); {z} of {counted["defined"]}'
  parsed = parsed if kind is None else parsed['by_kind'][kind]
  return (f'parsed: {bold}{parsed["parsed"]} of {parsed["defined"]}{bold} '
          f'({parsed["total"]}); {z}')


def summary_table(splits: Sequence[tuple[str, dict | None]]) -> str:
  """One column per split: sizes, the counts (parsed first, then at
  random-GT z >= 2; of the defined hyperparameters, all of them in
  brackets), and the aggregates."""
  header = [''] + [title for title, _ in splits]
  def row(label, fn):
    return [label] + [DASH if s is None else fn(s) for _, s in splits]
  z = metrics_lib.SIGNIFICANT_Z
  rows = [row('GMs, images', lambda s: f'{s["num_gms"]}, {s["num_images"]}'),
          row(f'hyperparameters parsed (z >= {z:g} and beat the train '
              f'prior), of those defined (all); at z >= {z:g}',
              lambda s: parsed_text(s, bold='**'))]
  for kind, _ in metrics_lib.DECIDING:
    rows.append(row(f'- {KIND_TITLES[kind]}',
                    lambda s, k=kind: parsed_text(s, k)))
  def beats_prior(s):
    parsed = s.get('parsed')
    return (DASH if parsed is None else
            f'{parsed["beats_prior"]} of {parsed["defined"]}')
  rows.append(row('beating the train prior (of defined)', beats_prior))
  for key, better in metrics_lib.HEADLINE:
    def agg(s, key=key):
      model, base, z_text, prior = cells(s, key)
      return f'{model} [{base}; z {z_text}; prior {prior}]'
    rows.append(row(f'{key} ({better} is better)', agg))
  return tables.markdown(header, rows)


def _parsed_cell(scored: dict | None, name: str) -> str:
  """'yes' / 'no' for one hyperparameter; a dash where undecided."""
  entry = ((scored or {}).get('parsed') or {}).get(
      'hyperparameters', {}).get(name)
  if entry is None or not entry['defined']:
    return DASH
  return 'yes' if entry['parsed'] else 'no'


def deciding_table(splits: Sequence[tuple[str, dict | None]],
                   schema: schema_lib.Schema) -> str:
  """Per hyperparameter, its deciding metric in every split, side by side,
  and whether it is parsed there."""
  header = ['hyperparameter', 'metric']
  for title, _ in splits:
    header += [title, 'random GT', 'z', 'train prior', 'parsed']
  rows = []
  for _, name, key in metrics_lib.deciding_keys(schema):
    row = [name, key.split('/')[0]]
    for _, scored in splits:
      row += cells(scored, key) + [_parsed_cell(scored, name)]
    rows.append(row)
  return tables.markdown(header, rows)


def full_tables(scored: dict, schema: schema_lib.Schema) -> str:
  """Every metric of one split, by kind of hyperparameter."""
  beside = ['random GT', 'z', 'train prior']
  cont = [[n] + cells(scored, f'continuous_l1/{n}') for n in schema.continuous]
  disc = [[p.name, str(p.num_classes)] +
          cells(scored, f'discrete_accuracy/{p.name}') +
          cells(scored, f'discrete_f1/{p.name}') for p in schema.discrete]
  loss = [[n, level] + cells(scored, f'loss_auc/{n}') +
          cells(scored, f'loss_f1/{n}')
          for n, level in metrics_lib.loss_levels(schema)]
  return '\n\n'.join([
      'Continuous parameters: L1 error in normalised [0, 1] units (lower is '
      'better)\n\n' + tables.markdown(['parameter', 'L1'] + beside, cont),
      'Discrete parameters: accuracy and macro F1\n\n' + tables.markdown(
          ['parameter', 'classes', 'accuracy'] + beside + ['macro F1'] +
          beside, disc),
      f'Loss types: ROC AUC and F1 at P(used) > {metrics_lib.LOSS_THRESHOLD}'
      '\n\n' + tables.markdown(['loss type', 'level', 'AUC'] + beside + ['F1']
                               + beside, loss),
  ])


def report(splits: Sequence[tuple[str, dict | None, str]],
           schema: schema_lib.Schema, num_shuffles: int, *,
           full: bool = True) -> str:
  """The markdown of results.md below its header: the caption, the summary
  and the deciding metrics of every split side by side, then (if `full`)
  each split's full tables. `splits`: (title, scored split or None, note),
  the note saying why a split is missing or what it is."""
  pairs = [(title, scored) for title, scored, _ in splits]
  notes = [f'{title}: {note}' for title, _, note in splits if note]
  parts = [caption(num_shuffles)]
  parts += ['\n'.join(f'- {n}' for n in notes)] if notes else []
  parts += [summary_table(pairs),
            'Per hyperparameter, its deciding metric:\n\n' +
            deciding_table(pairs, schema)]
  for title, scored in pairs if full else ():
    if scored is not None:
      parts.append(f'### {title}: every metric\n\n' +
                   full_tables(scored, schema))
  return '\n\n'.join(parts)


def json_split(scored: dict | None) -> dict | None:
  """The JSON form of a scored split (results.json)."""
  if scored is None:
    return None
  keys = ('num_images', 'num_gms', 'parsed', 'metrics', 'baseline_mean',
          'baseline_std', 'z', 'train_prior', 'significance')
  return {k: scored.get(k) for k in keys}


# ------------------------------------------------------ predictions file --

def _arrays(prefix: str, predictions: dict) -> dict[str, np.ndarray]:
  heads = {k: predictions[k] for k in ('continuous', 'coarse', 'fine')}
  heads.update({f'discrete_{j}': probs
                for j, probs in enumerate(predictions['discrete'])})
  return {prefix + k: np.asarray(v, np.float32) for k, v in heads.items()}


def _predictions(prefix: str, data, num_discrete: int) -> dict:
  return {'continuous': data[f'{prefix}continuous'],
          'discrete': tuple(data[f'{prefix}discrete_{j}']
                            for j in range(num_discrete)),
          'coarse': data[f'{prefix}coarse'], 'fine': data[f'{prefix}fine']}


def write_predictions(path: str, predictions: dict, rows: np.ndarray,
                      ground_truth: schema_lib.GroundTruth,
                      prior: dict | None, step: int) -> None:
  """One split's per-image predictions, written whole (temp file + rename).

  Holds: the predictions; 'gm' (each image's GM name); 'label_*' (each
  image's ground truth); 'prior_*' (the training prior's per-image
  predictions, absent without one); 'ground_truth' (JSON of the table of
  these GMs); 'step'.
  """
  present = sorted(set(int(r) for r in rows))
  truth = ground_truth.select([ground_truth.gm_names[r] for r in present])
  labels = metrics_lib.Labels.of(ground_truth, rows)
  arrays = _arrays('', predictions)
  if prior is not None:
    arrays.update(_arrays('prior_', prior))
  arrays.update({
      'gm': np.array([ground_truth.gm_names[r] for r in rows], np.str_),
      'label_continuous': labels.continuous, 'label_discrete':
      labels.discrete, 'label_coarse': labels.coarse,
      'label_fine': labels.fine,
      'ground_truth': np.array(json.dumps(truth.to_dict())),
      'step': np.array(step)})
  buffer = io.BytesIO()
  np.savez_compressed(buffer, **arrays)
  files.write_bytes(path, buffer.getvalue())


def read_predictions(path: str) -> dict:
  """{'predictions', 'prior' (or None), 'gm', 'ground_truth', 'step'} of a
  file `write_predictions` wrote."""
  with np.load(path, allow_pickle=False) as data:
    truth = schema_lib.GroundTruth.from_dict(
        json.loads(str(data['ground_truth'])))
    num_discrete = len(truth.schema.discrete)
    has_prior = 'prior_continuous' in data.files
    return {'predictions': _predictions('', data, num_discrete),
            'prior': (_predictions('prior_', data, num_discrete)
                      if has_prior else None),
            'gm': data['gm'].astype(str), 'ground_truth': truth,
            'step': int(data['step'])}


def pool(parts: Sequence[dict]) -> tuple[dict, np.ndarray,
                                         schema_lib.GroundTruth, dict | None]:
  """Several splits' predictions (`read_predictions`) as one split:
  (predictions, rows, ground truth, prior or None).

  The splits must hold disjoint GMs of one schema (the folds of one
  cross-validation): every GM is then scored once, on the predictions of
  the one run that held it out. Each image keeps its own run's training
  prior. A ValueError says what does not fit.
  """
  if not parts:
    raise ValueError('no predictions to pool')
  schema = parts[0]['ground_truth'].schema
  seen = {}
  for i, part in enumerate(parts):
    if part['ground_truth'].schema != schema:
      raise ValueError('the runs to pool have different ground-truth '
                       'schemas')
    for gm in part['ground_truth'].gm_names:
      if gm in seen:
        raise ValueError(f'GM {gm!r} is held out by runs {seen[gm]} and {i}: '
                         'only disjoint held-out sets (folds) are pooled')
      seen[gm] = i
  truths = [p['ground_truth'] for p in parts]
  names = tuple(n for t in truths for n in t.gm_names)
  truth = schema_lib.GroundTruth(
      schema=schema, gm_names=names,
      continuous_range=truths[0].continuous_range,
      **{k: np.concatenate([getattr(t, k) for t in truths])
         for k in ('continuous', 'discrete', 'coarse', 'fine')})
  index = {n: i for i, n in enumerate(names)}
  rows = np.array([index[g] for p in parts for g in p['gm']], np.int64)
  def concat(preds):
    return jax.tree.map(lambda *a: np.concatenate(a), *preds)
  predictions = concat([p['predictions'] for p in parts])
  priors = [p['prior'] for p in parts]
  prior = None if any(p is None for p in priors) else concat(priors)
  return predictions, rows, truth, prior
