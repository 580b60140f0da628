r"""How a checkpoint holds up when its held-out images are perturbed.

  python -m jaxfp.robustness --workdir=runs/fen_cpu
  python -m jaxfp.robustness --workdir=runs/detection_cpu \
      --perturbations=jpeg,blur --output=runs/detection_cpu/robustness

Evaluates the checkpoint on its held-out images once clean and once per
perturbation x severity (`jaxfp.perturbations.SEVERITIES`), compiling the
evaluation once. Writes to --output (default <workdir>/robustness):
robustness.md and robustness.json (the task's headline metrics per
perturbation and severity, beside the clean figure; for parsing also the
random-ground-truth baseline) and one line plot per perturbation
(<name>.png: metric vs severity, clean and baseline as horizontal lines).
"""

from __future__ import annotations

import json
import os

from absl import app
from absl import flags
from absl import logging
import matplotlib
matplotlib.use('Agg')
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

from jaxfp import augment
from jaxfp import evaluate as evaluate_lib
from jaxfp import perturbations
from jaxfp import train

# The metrics a robustness table shows, per task, and which way is better.
HEADLINES = {
    'parsing': (('continuous_l1', 'lower'), ('discrete_accuracy', 'higher'),
                ('loss_auc', 'higher')),
    'detection': (('roc_auc', 'higher'), ('average_precision', 'higher'),
                  ('accuracy', 'higher')),
    'attribution': (('accuracy', 'higher'),),
}


def run(checkpoint: str, *, names=perturbations.NAMES, severities=None,
        config=None) -> dict:
  """{'task', 'step', 'clean': metrics, 'rows': [...]} for one checkpoint.

  Each row: {'perturbation', 'severity', 'metrics', 'baseline_mean' (parsing
  only)}. The clean entry has the baseline too for parsing.
  """
  prepared = evaluate_lib.prepare(checkpoint, config=config)
  severities = severities or perturbations.SEVERITIES

  def score(perturb):
    result = train.evaluate(prepared.p_eval_step, prepared.state,
                            prepared.task, prepared.config,
                            prepared.collection, perturb=perturb)
    return {k: result[k] for k in ('metrics', 'baseline_mean', 'baseline_std')
            if k in result}

  out = {'task': prepared.config.task, 'step': prepared.step,
         'clean': score(None), 'rows': []}
  for name in names:
    for severity in severities[name]:
      logging.info('robustness: %s at %s', name, severity)
      row = score(augment.fixed(name, severity, seed=prepared.config.seed))
      out['rows'].append({'perturbation': name, 'severity': severity, **row})
  return out


def markdown(result: dict) -> str:
  headline = HEADLINES[result['task']]
  names = [m for m, _ in headline]
  parsing = result['task'] == 'parsing'
  header = '| perturbation | severity | ' + ' | '.join(names) + ' |'
  lines = [header, '|---' * (len(names) + 2) + '|']

  def cells(entry):
    out = []
    for m in names:
      value = entry['metrics'].get(m, float('nan'))
      cell = f'{value:.4f}'
      if parsing and m in entry.get('baseline_mean', {}):
        cell += f' (baseline {entry["baseline_mean"][m]:.4f})'
      out.append(cell)
    return ' | '.join(out)

  lines.append(f'| clean | - | {cells(result["clean"])} |')
  for row in result['rows']:
    unit = perturbations.UNITS[row['perturbation']]
    lines.append(f'| {row["perturbation"]} | {unit} {row["severity"]:g} | '
                 f'{cells(row)} |')
  return '\n'.join(lines)


def plot(result: dict, directory: str) -> list[str]:
  """One PNG per perturbation: each headline metric against severity."""
  headline = HEADLINES[result['task']]
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
  with open(os.path.join(directory, 'robustness.md'), 'w') as f:
    f.write(text)
  with open(os.path.join(directory, 'robustness.json'), 'w') as f:
    json.dump(result, f, indent=2)
  plot(result, directory)
  return text


FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('workdir', None, 'The training run to evaluate.')
  flags.DEFINE_string('output', None, 'Where the table and plots go; default '
                      '<workdir>/robustness.')
  flags.DEFINE_list('perturbations', list(perturbations.NAMES),
                    'Which perturbations.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  unknown = set(FLAGS.perturbations) - set(perturbations.NAMES)
  if unknown:
    raise app.UsageError(f'unknown perturbations {sorted(unknown)}; known: '
                         f'{list(perturbations.NAMES)}')
  result = run(FLAGS.workdir, names=FLAGS.perturbations)
  print(write(result, FLAGS.output or os.path.join(FLAGS.workdir,
                                                   'robustness')))


if __name__ == '__main__':
  define_flags()
  app.run(main)
