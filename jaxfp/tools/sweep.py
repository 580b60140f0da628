"""Runs the named variations of a config one after another, and tables them
(`python -m jaxfp.sweep`; docs/sweeps.md).

A sweep file is a config file (big_vision style) with two functions:

  get_config(arg=None)  the base ConfigDict; --config.<field>=... on the
                        command line changes it for every run
  get_sweep(arg=None)   [(run name, {'dotted.field': value, ...}), ...]

The text after ':' in --config=file.py:arg goes to both. With
`AVERAGE_RUNS = True` (cross-validation folds) the tables also give the
mean ± std of every metric over the runs and, once every run has finished,
the pooled table (`pooled`; <workdir>/pooled.md and pooled.json).

Bold in every table: better than the random-GT baseline at z >= 2 (z =
(model - shuffle mean) / shuffle std, signed so that positive is better),
never merely above its mean. The counts of each run (sweep.md, sweep.csv)
and of the pooled table put the parsed hyperparameters first
(`metrics.parsed_hyperparameters`), those at random-GT z >= 2 beside them.

Run `name` trains and evaluates in <workdir>/<name> (`train_and_evaluate`)
unless it is `finished`; an unfinished one resumes from its latest
checkpoint. A finished run whose config differs from what the sweep now
asks for is an error, so a table never mixes settings silently. At the end,
and whenever the sweep is launched, the finished runs are gathered into
<workdir>/sweep.md and sweep.csv.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import re
import time
from collections.abc import Sequence
from typing import NamedTuple

from absl import logging
from flax import traverse_util
import jax
import ml_collections
import numpy as np

from jaxfp import train
from jaxfp.core import files
from jaxfp.report import metrics as metrics_lib
from jaxfp.report import results as results_lib
from jaxfp.report import tables

RESULTS = 'results.json'
RUN_FILE = 'sweep_run.json'
POOLED = 'pooled'  # pooled.md, pooled.json
Run = tuple[str, dict]


def load_sweep(path: str) -> tuple[list[Run], bool]:
  """(runs, AVERAGE_RUNS) of a sweep file; `path` may end in ':arg'."""
  filename, *args = path.split(':', 1)
  spec = importlib.util.spec_from_file_location('jaxfp_sweep_file', filename)
  if spec is None or not os.path.isfile(filename):
    raise FileNotFoundError(f'sweep file {filename} does not exist')
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  if not hasattr(module, 'get_sweep'):
    raise ValueError(f'{filename} has no get_sweep(): it lists the runs as '
                     '(name, {field: value}) pairs')
  runs = [(name, dict(overrides)) for name, overrides in
          module.get_sweep(*args)]
  check_runs(runs)
  return runs, bool(getattr(module, 'AVERAGE_RUNS', False))


def check_runs(runs: Sequence[Run]) -> None:
  names = [name for name, _ in runs]
  bad = [n for n in names if not re.fullmatch(r'[A-Za-z0-9_.-]+', n)]
  if bad:
    raise ValueError(f'run names must be usable as folder names: {bad}')
  dupes = sorted({n for n in names if names.count(n) > 1})
  if dupes:
    raise ValueError(f'run names appear more than once: {dupes}')
  if not runs:
    raise ValueError('the sweep lists no runs')


def apply_overrides(base: ml_collections.ConfigDict, overrides: dict,
                    name: str = '') -> ml_collections.ConfigDict:
  """A copy of `base` with each 'dotted.field' set; unknown fields raise."""
  config = base.copy_and_resolve_references()
  config.lock()  # An unlocked copy would add an unknown field silently.
  for key, value in overrides.items():
    try:
      config.update_from_flattened_dict({key: value})
    except KeyError:
      raise ValueError(f'run {name!r} overrides config.{key}, which the '
                       'base config does not have') from None
  if not base.is_locked:
    config.unlock()
  return config


def expand(base: ml_collections.ConfigDict, runs: Sequence[Run]
           ) -> list[tuple[str, dict, ml_collections.ConfigDict]]:
  """(name, overrides, config) of every run, all checked before any runs."""
  check_runs(runs)
  return [(name, overrides, apply_overrides(base, overrides, name))
          for name, overrides in runs]


def _flat_config(config: ml_collections.ConfigDict) -> dict:
  # Through JSON, as run.json saves it: tuples become lists, keys sorted.
  return traverse_util.flatten_dict(
      json.loads(config.to_json_best_effort(sort_keys=True)), sep='.')


def _record(run_dir: str) -> dict | None:
  """The run's sweep record (RUN_FILE), or None where it has none."""
  path = os.path.join(run_dir, RUN_FILE)
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _check_same_config(run_dir: str, name: str,
                       config: ml_collections.ConfigDict) -> None:
  record = _record(run_dir)
  if record is None:
    return
  saved = record.get('config', {})
  wanted = _flat_config(config)
  # Fields that exist on one side only come from code changes, not from the
  # sweep: they are worth a warning, not a refusal.
  one_side = sorted(set(saved) ^ set(wanted))
  if one_side:
    logging.warning('Run %s: config fields %s exist only in its saved config '
                    'or only in the current one.', name, one_side)
  changed = sorted(k for k in set(saved) & set(wanted)
                   if saved[k] != wanted[k])
  if changed:
    details = ', '.join(f'{k}: {saved[k]!r} -> {wanted[k]!r}'
                        for k in changed[:6])
    raise ValueError(
        f'run {name!r} in {run_dir} was started with another config ({details}'
        f'{", ..." if len(changed) > 6 else ""}); delete that folder to '
        'run it again, or use another --workdir')


def _read_results(path: str) -> dict | None:
  """A run's results.json, or None: where there is none, and (with a
  warning) where it does not parse as results (a file left empty or cut
  short by a crash or a full disk)."""
  if not os.path.exists(path):
    return None
  try:
    with open(path) as f:
      results = json.load(f)
  except (OSError, ValueError) as e:
    logging.warning('%s cannot be read (%s); the run counts as unfinished.',
                    path, e)
    return None
  if not isinstance(results, dict) or not isinstance(
      results.get('metrics'), dict):
    logging.warning('%s holds no metrics; the run counts as unfinished.',
                    path)
    return None
  return results


def finished(run_dir: str, config: ml_collections.ConfigDict) -> bool:
  """Whether the run in `run_dir` finished with `config`: its results parse,
  are of its last step (config.num_train_steps, or when that is 0 the
  steps its config.num_epochs resolved to, in its sweep record), and its
  sweep record exists (its config is compared by `_check_same_config`)."""
  path = os.path.join(run_dir, RESULTS)
  results = _read_results(path)
  if results is None:
    return False
  record = _record(run_dir)
  if record is None:
    logging.warning('%s has no %s: not a run of this sweep; it counts as '
                    'unfinished.', run_dir, RUN_FILE)
    return False
  last = config.num_train_steps
  if last <= 0:  # Epochs: resolved by the launch that finished the run.
    last = record.get('num_train_steps')
  if results.get('step') != last:
    logging.warning('%s is of step %s, not of the last step %s; the run '
                    'counts as unfinished.', path, results.get('step'), last)
    return False
  return True


class Outcome(NamedTuple):
  """What `run_sweep` did: the markdown table, and the signal that stopped
  a run (None when no run was stopped)."""
  table: str
  signal: str | None


def run_sweep(base: ml_collections.ConfigDict, runs: Sequence[Run],
              workdir: str, *, only: Sequence[str] = (),
              average: bool = False) -> Outcome:
  """Runs every unfinished run (or those in `only`), then writes the tables.

  Returns the markdown table (also in <workdir>/sweep.md) and the signal
  that stopped a run, if one did: the sweep then stops early, tables
  written, and the next launch resumes.
  """
  expanded = expand(base, runs)
  stopped_by = None
  unknown = sorted(set(only) - {name for name, _, _ in expanded})
  if unknown:
    raise ValueError(f'--runs names runs the sweep does not have: {unknown}')
  files.check_output_folder(workdir, 'workdir')
  for name, overrides, config in expanded:
    run_dir = os.path.join(workdir, name)
    _check_same_config(run_dir, name, config)
    if only and name not in only:
      continue
    if finished(run_dir, config):
      logging.info('Run %s is finished (%s); not running it again.',
                   name, os.path.join(run_dir, RESULTS))
      continue
    logging.info('Run %s: %s', name, overrides or 'the base config')
    os.makedirs(run_dir, exist_ok=True)
    record = {'name': name, 'overrides': overrides,
              'config': _flat_config(config)}
    _write_json(os.path.join(run_dir, RUN_FILE), record)
    start, start_cpu = time.time(), time.process_time()
    result = train.train_and_evaluate(config, run_dir)
    # Of the launch that finished the run. CPU seconds too: wall time
    # depends on what else the machine runs.
    record['wall_s'] = round(time.time() - start, 1)
    record['cpu_s'] = round(time.process_time() - start_cpu, 1)
    record['num_train_steps'] = result.get('num_train_steps')
    _write_json(os.path.join(run_dir, RUN_FILE), record)
    if result.get('preempted'):
      stopped_by = result.get('signal')
      logging.warning('Run %s was stopped (%s) at step %s; launch the sweep '
                      'again to resume it.', name, stopped_by,
                      result.get('step'))
      break
  table = write_tables(workdir, [(n, o) for n, o, c in expanded
                                 if finished(os.path.join(workdir, n), c)],
                       average=average, num_runs=len(expanded), config=base)
  return Outcome(table, stopped_by)


def _write_json(path, payload):
  if jax.process_index():  # Every process runs the sweep; one writes.
    return
  files.write_json(path, payload, indent=2)


def gather(workdir: str, runs: Sequence[Run]) -> list[dict]:
  """The results of the runs that have readable ones, in sweep order."""
  rows = []
  for name, overrides in runs:
    results = _read_results(os.path.join(workdir, name, RESULTS))
    if results is None:
      continue
    record = _record(os.path.join(workdir, name)) or {}
    closed = results.get('closed_set') or {}
    rows.append({'run': name, 'overrides': overrides,
                 'step': results.get('step'), 'wall_s': record.get('wall_s'),
                 'cpu_s': record.get('cpu_s'),
                 'metrics': results.get('metrics', {}),
                 'baseline_mean': results.get('baseline_mean', {}),
                 'baseline_std': results.get('baseline_std', {}),
                 'significance': results.get('significance'),
                 'parsed': results.get('parsed'),
                 'closed_significance': closed.get('significance'),
                 'closed_parsed': closed.get('parsed')})
  return rows


def _describe(overrides: dict) -> str:
  return ', '.join(f'{k}={v}' for k, v in overrides.items()) or 'base config'


def _is_headline(key: str) -> bool:
  return key in dict(metrics_lib.HEADLINE)


def _z(row, key) -> float:
  """z of the run's metric against its own random-GT shuffles (NaN where
  there is none, e.g. another task's metric)."""
  try:
    return metrics_lib.z_score(key, row['metrics'][key],
                               row['baseline_mean'][key],
                               row['baseline_std'][key])
  except KeyError:  # No baseline, or not a parsing metric.
    return float('nan')


def _cell(row, key) -> str:
  if key not in row['metrics']:
    return '–'
  m = row['metrics'][key]
  text = f'{m:.3f}'
  if key in row['baseline_mean']:
    b, s = row['baseline_mean'][key], row['baseline_std'].get(key, 0.0)
    if metrics_lib.is_significant(_z(row, key)):
      text = f'**{text}**'
    text += f' [{b:.3f} ± {s:.3f}]'
  return text


def _of(counted, key: str) -> str:
  """'<counted[key]> of <defined>'; '–' without the count (no train prior,
  or results of before it)."""
  return f'{counted[key]} of {counted["defined"]}' if counted else '–'


def _counts(row) -> list:
  """parsed, at z >= 2 (held out), then the same of the closed set: the
  stricter count first."""
  return [_of(row.get('parsed'), 'parsed'),
          _of(row.get('significance'), 'significant'),
          _of(row.get('closed_parsed'), 'parsed'),
          _of(row.get('closed_significance'), 'significant')]


def _spread(values) -> tuple[float, float]:
  values = np.asarray(values, np.float64)
  return float(np.mean(values)), float(np.std(values))


def average_rows(rows: Sequence[dict]) -> dict[str, dict]:
  """Per metric: mean and std over runs of the model and of the baseline.

  Also in how many runs it beats its own baseline at z >= 2.
  """
  keys = metrics_lib.ordered_keys(
      {k: 0.0 for r in rows for k in r['metrics']})
  out = {}
  for key in keys:
    have = [r for r in rows if key in r['metrics']]
    model = _spread([r['metrics'][key] for r in have])
    stats = {'runs': len(have), 'model': model}
    with_base = [r for r in have if key in r['baseline_mean']]
    if with_base:
      stats['baseline'] = _spread([r['baseline_mean'][key]
                                   for r in with_base])
      stats['significant'] = sum(metrics_lib.is_significant(_z(r, key))
                                 for r in with_base)
    out[key] = stats
  return out


def markdown(rows: Sequence[dict], num_runs: int, average: bool) -> str:
  """One row per finished run (headline metrics), then the averages."""
  if not rows:
    return f'No run of the {num_runs} has finished yet.'
  keys = [k for k in metrics_lib.ordered_keys(
      {k: 0.0 for r in rows for k in r['metrics']}) if _is_headline(k)]
  if not keys:  # Another task's metrics: show them all.
    keys = sorted({k for r in rows for k in r['metrics']})
  has_baseline = any(r['baseline_mean'] for r in rows)
  counts = any(r.get('significance') for r in rows)
  z = metrics_lib.SIGNIFICANT_Z
  intro = (f'{len(rows)} of {num_runs} runs finished. Each cell: model'
           + (' [random GT baseline mean ± std over shuffles]; **bold: '
              f'better than the baseline at z >= {z:g}** (z = (model - '
              'mean) / std, positive = better), not merely above its mean.'
              if has_baseline else '.')
           + (' Held out / closed set, of the hyperparameters defined '
              '(by continuous L1, discrete macro F1, loss-type AUC): parsed '
              f'(at z >= {z:g} and better than the train prior: a paired '
              'bootstrap over GMs for continuous L1, macro F1 above the '
              "prior's, AUC above 0.5), and at random-GT z >= "
              f'{z:g}.' if counts else '')
           + (' Last row: mean ± std over the runs of the model [and of the '
              "runs' baseline means]." if average else ''))
  table = []
  for r in rows:
    wall = f'{r["wall_s"] / 60:.1f} min' if r['wall_s'] else '–'
    extra = _counts(r) if counts else []
    table.append([r['run'], _describe(r['overrides']), r['step']] +
                 [_cell(r, k) for k in keys] + extra + [wall])
  header = (['run', 'changes', 'step', *keys] +
            (['held out: parsed', f'held out: z >= {z:g}',
              'closed set: parsed', f'closed set: z >= {z:g}']
             if counts else []) + ['wall time'])
  if not average:
    return f'{intro}\n\n{tables.markdown(header, table)}'
  stats = average_rows(rows)
  def fmt(key):  # Every key of `rows` is in `stats`.
    s = stats[key]
    text = '{:.3f} ± {:.3f}'.format(*s['model'])
    if 'baseline' in s:
      text += ' [{:.3f} ± {:.3f}]'.format(*s['baseline'])
    return text
  table.append([f'mean ± std over {len(rows)} runs', '', ''] +
               [fmt(k) for k in keys] + ([''] * 4 if counts else []) + [''])
  per_metric = []
  for key, s in stats.items():
    name = f'**{key}**' if _is_headline(key) else key
    base = ('{:.4f} ± {:.4f}'.format(*s['baseline']) if 'baseline' in s
            else '–')
    beats = (f'{s["significant"]}/{s["runs"]}' if 'significant' in s
             else '–')
    per_metric.append([name, '{:.4f} ± {:.4f}'.format(*s['model']), base,
                       beats])
  return '\n\n'.join([
      intro, tables.markdown(header, table),
      f'Every metric over the {len(rows)} runs: mean ± std of the model and '
      "of each run's baseline mean, and in how many runs it beats its own "
      f'random-GT baseline at z >= {z:g}.',
      tables.markdown(['metric', 'model', 'random GT baseline',
                       f'runs at z >= {z:g}'], per_metric)])


# sweep.csv's counts: parsed first, then at random-GT z >= 2, of defined.
COUNT_COLUMNS = ('parsed', 'random_gt_z2', 'defined', 'closed_parsed',
                 'closed_random_gt_z2', 'closed_defined')


def _count_values(row) -> list:
  """`COUNT_COLUMNS` of a run ('' where a count is missing)."""
  out = []
  for parsed, counted in ((row.get('parsed'), row.get('significance')),
                          (row.get('closed_parsed'),
                           row.get('closed_significance'))):
    out += [(parsed or {}).get('parsed', ''),
            (counted or {}).get('significant', ''),
            (counted or {}).get('defined', '')]
  return out


def write_csv(path: str, rows: Sequence[dict], average: bool) -> None:
  """Every metric of every run, with its baseline mean and std, after the
  counts: parsed first, then at random-GT z >= 2, of those defined."""
  keys = metrics_lib.ordered_keys({k: 0.0 for r in rows
                                   for k in r['metrics']})
  header = ['run', 'changes', 'step', 'wall_s', 'cpu_s', *COUNT_COLUMNS]
  for k in keys:
    header += [k, f'{k}:baseline_mean', f'{k}:baseline_std']
  def line(r):
    out = [r['run'], _describe(r['overrides']), r['step'], r['wall_s'],
           r['cpu_s'], *_count_values(r)]
    for k in keys:
      out += [r['metrics'].get(k), r['baseline_mean'].get(k),
              r['baseline_std'].get(k)]
    return out
  with io.StringIO(newline='') as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(line(r) for r in rows)
    if average and rows:
      stats = average_rows(rows)
      for label, i in (('mean', 0), ('std', 1)):
        out = [label, f'{label} over {len(rows)} runs', '', '', '',
               *[''] * len(COUNT_COLUMNS)]
        for k in keys:
          s = stats[k]
          out += [s['model'][i], s['baseline'][i] if 'baseline' in s else '',
                  '']
        writer.writerow(out)
    files.write_text(path, f.getvalue())


def pooled(workdir: str, runs: Sequence[Run],
           config: ml_collections.ConfigDict) -> tuple[dict | None, str]:
  """The runs' held-out predictions pooled and scored once: (scored split
  with 'runs' and 'gms', or None; a note saying what was pooled or why
  not). Folds hold out disjoint GMs, so every GM is scored once, on the
  predictions of the run that never saw it."""
  paths = [os.path.join(workdir, name, results_lib.PREDICTIONS)
           for name, _ in runs]
  missing = [name for (name, _), p in zip(runs, paths)
             if not os.path.exists(p)]
  if missing:
    return None, (f'not pooled: runs {missing} wrote no '
                  f'{results_lib.PREDICTIONS}')
  try:
    predictions, rows, truth, prior = results_lib.pool(
        [results_lib.read_predictions(p) for p in paths])
  except ValueError as e:
    return None, f'not pooled: {e}'
  scored = metrics_lib.score_split(
      predictions, rows, truth, prior=prior,
      num_shuffles=config.num_baseline_shuffles, seed=config.seed)
  scored.update(runs=[name for name, _ in runs], gms=list(truth.gm_names),
                schema=truth.schema)
  return scored, (f'{len(runs)} runs pooled: {scored["num_gms"]} GMs, '
                  f'{scored["num_images"]} images, each GM scored once by '
                  'the run that held it out')


def write_tables(workdir: str, runs: Sequence[Run], *,
                 average: bool = False, num_runs: int | None = None,
                 config: ml_collections.ConfigDict | None = None) -> str:
  """<workdir>/sweep.md and sweep.csv of the `runs` with results (of
  `num_runs` in the sweep, default all of them); the markdown. With
  `average` (folds), `config` (the base: shuffles and seed) and every run
  finished, also the pooled table (`pooled`), in sweep.md and in
  <workdir>/pooled.md and pooled.json."""
  rows = gather(workdir, runs)
  total = len(runs) if num_runs is None else num_runs
  text = markdown(rows, total, average)
  scored = None
  if average and config is not None and config.get('task') == 'parsing':
    if rows and len(rows) == total:
      scored, note = pooled(workdir, [(r['run'], r['overrides'])
                                      for r in rows], config)
    else:
      note = (f'not pooled yet: {len(rows)} of {total} runs have '
              'finished')
    pooled_text = f'Pooled held-out table: {note}.'
    if scored is not None:  # The summary, then the results tables.
      pooled_text += '\n\n' + results_lib.report(
          [('pooled held out', scored, '')], scored['schema'],
          config.num_baseline_shuffles)
    text += '\n\n' + pooled_text
  if jax.process_index() == 0:
    files.write_text(os.path.join(workdir, 'sweep.md'), text + '\n')
    write_csv(os.path.join(workdir, 'sweep.csv'), rows, average)
    if scored is not None:
      files.write_text(os.path.join(workdir, f'{POOLED}.md'),
                       pooled_text + '\n')
      files.write_json(os.path.join(workdir, f'{POOLED}.json'), {
          'runs': scored['runs'], 'gms': scored['gms'],
          'num_baseline_shuffles': config.num_baseline_shuffles,
          **results_lib.json_split(scored)}, indent=2)
  return text


def listing(base: ml_collections.ConfigDict, path: str) -> str:
  """'name: overrides' of every run of the sweep file `path`, checked."""
  runs, _ = load_sweep(path)
  expand(base, runs)  # Fails on a bad override before anything is listed.
  return '\n'.join(f'{name}: {_describe(overrides)}'
                   for name, overrides in runs)


def run_file(base: ml_collections.ConfigDict, path: str, workdir: str, *,
             only: Sequence[str] = ()) -> Outcome:
  """`run_sweep` of the runs of the sweep file `path` over `base`."""
  runs, average = load_sweep(path)
  return run_sweep(base, runs, workdir, only=only, average=average)
