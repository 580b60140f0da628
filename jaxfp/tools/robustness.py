"""How a checkpoint holds up when its held-out images are perturbed
(`python -m jaxfp.robustness`).

Evaluates the checkpoint on its held-out images once clean and once per
perturbation x severity (`jaxfp.data.perturbations.SEVERITIES`), compiling
the evaluation once. Writes robustness.md and robustness.json (the task's
headline metrics (`jaxfp.tasks`) per perturbation and severity, beside the
clean figure; for parsing also the random-ground-truth baseline) and one
line plot per perturbation
(<name>.png: metric vs severity, clean and baseline as horizontal lines).
"""

from __future__ import annotations

import os

from absl import logging
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from jaxfp import steps
from jaxfp.core import console
from jaxfp.core import files
from jaxfp.data import perturbations
from jaxfp.report import tables
from jaxfp.tools import evaluate as evaluate_lib


def run(checkpoint: str, *, names=perturbations.NAMES, severities=None,
        config=None) -> dict:
  """{'task', 'step', 'headline', 'clean': metrics, 'rows': [...]} for one
  checkpoint; 'headline': the task's (metric, which way is better) pairs.

  Each row: {'perturbation', 'severity', 'metrics', 'baseline_mean' (parsing
  only)}. The clean entry has the baseline too for parsing.
  """
  prepared = evaluate_lib.prepare(checkpoint, config=config)
  with console.native_output_hushed():
    # pylint: disable-next=g-import-not-at-top
    from jaxfp.data import augment  # tf.data maps: TensorFlow from here on.
  severities = severities or perturbations.SEVERITIES

  def score(perturb):
    result = steps.evaluate(prepared.p_eval_step, prepared.state,
                            prepared.task, prepared.config,
                            prepared.collection, perturb=perturb)
    return {k: result[k] for k in ('metrics', 'baseline_mean', 'baseline_std')
            if k in result}

  out = {'task': prepared.config.task, 'step': prepared.step,
         'headline': [list(h) for h in prepared.task.headline],
         'clean': score(None), 'rows': []}
  for name in names:
    for severity in severities[name]:
      logging.info('robustness: %s at %s', name, severity)
      row = score(augment.fixed(name, severity, seed=prepared.config.seed))
      out['rows'].append({'perturbation': name, 'severity': severity, **row})
  return out


def markdown(result: dict) -> str:
  names = [m for m, _ in result['headline']]

  def cells(entry):
    out = []
    for m in names:
      value = entry['metrics'].get(m, float('nan'))
      cell = f'{value:.4f}'
      if m in entry.get('baseline_mean', {}):
        cell += f' (baseline {entry["baseline_mean"][m]:.4f})'
      out.append(cell)
    return out

  rows = [['clean', '-', *cells(result['clean'])]]
  for row in result['rows']:
    unit = perturbations.UNITS[row['perturbation']]
    rows.append([row['perturbation'], f'{unit} {row["severity"]:g}',
                 *cells(row)])
  return tables.markdown(['perturbation', 'severity', *names], rows)


def plot(result: dict, directory: str) -> list[str]:
  """One PNG per perturbation: each headline metric against severity."""
  headline = result['headline']
  written = []
  for name in dict.fromkeys(r['perturbation'] for r in result['rows']):
    rows = [r for r in result['rows'] if r['perturbation'] == name]
    x = [r['severity'] for r in rows]
    fig, axes = plt.subplots(1, len(headline),
                             figsize=(4.2 * len(headline), 3.4),
                             squeeze=False)
    for ax, (metric, direction) in zip(axes[0], headline):
      ax.plot(x, [r['metrics'].get(metric, float('nan')) for r in rows],
              'o-', label='perturbed')
      ax.axhline(result['clean']['metrics'].get(metric, float('nan')),
                 color='green', ls='--', label='clean')
      if 'baseline_mean' in result['clean']:
        ax.plot(x, [r['baseline_mean'].get(metric, float('nan'))
                    for r in rows], 's:', color='gray',
                label='random GT baseline')
      ax.set(xlabel=perturbations.UNITS[name],
             title=f'{metric} ({direction} is better)')
      if name == 'jpeg':
        ax.invert_xaxis()  # Lower quality is more severe.
      ax.legend(fontsize=7)
    fig.suptitle(f'{result["task"]} under {name} (step {result["step"]})')
    fig.tight_layout()
    path = os.path.join(directory, f'{name}.png')
    fig.savefig(path, dpi=110)
    plt.close(fig)
    written.append(path)
  return written


def write(result: dict, directory: str) -> str:
  os.makedirs(directory, exist_ok=True)
  table = markdown(result)
  text = (f'Robustness of the {result["task"]} checkpoint (step '
          f'{result["step"]}) on its held-out images\n\n{table}\n')
  files.write_text(os.path.join(directory, 'robustness.md'), text)
  files.write_json(os.path.join(directory, 'robustness.json'), result,
                   indent=2)
  plot(result, directory)
  return text
