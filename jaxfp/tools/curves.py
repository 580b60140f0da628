"""Training curves of several runs in one picture, read from TensorBoard files
(`python -m jaxfp.plot_curves`).

One panel per metric (--metrics, default the total loss and the four
fingerprint constraints); each run is one line. Scalars are read from the
event files the trainer's summary writer leaves in each workdir.
"""

from __future__ import annotations

import glob
import math
import os
from collections.abc import Sequence

import numpy as np

DEFAULT_METRICS = ('loss', 'fingerprint_magnitude', 'fingerprint_spectrum',
                   'fingerprint_repetitive', 'fingerprint_symmetry')


def read_scalars(workdir: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """Every scalar tag of the event files in `workdir`: tag -> (steps, values).

  Writers store scalars either as scalar summaries or (tf.summary, as clu
  uses) as rank-0 tensors; both are read. A step logged twice (a resumed
  run) keeps its last value.
  """
  # pylint: disable=g-import-not-at-top
  from tensorboard.backend.event_processing import event_accumulator
  from tensorboard.util import tensor_util
  # pylint: enable=g-import-not-at-top
  files = sorted(glob.glob(os.path.join(workdir, '**', 'events.out.tfevents.*'),
                           recursive=True))
  if not files:
    raise FileNotFoundError(f'no TensorBoard event files under {workdir}')
  series: dict[str, dict[int, float]] = {}
  for path in files:
    acc = event_accumulator.EventAccumulator(
        path, size_guidance={event_accumulator.SCALARS: 0,
                             event_accumulator.TENSORS: 0})
    acc.Reload()
    tags = acc.Tags()
    for tag in tags.get('scalars', []):
      for e in acc.Scalars(tag):
        series.setdefault(tag, {})[e.step] = float(e.value)
    for tag in tags.get('tensors', []):
      for e in acc.Tensors(tag):
        value = tensor_util.make_ndarray(e.tensor_proto)
        if value.ndim == 0 and np.issubdtype(value.dtype, np.number):
          series.setdefault(tag, {})[e.step] = float(value)
  return {tag: (np.array(sorted(points)),
                np.array([points[s] for s in sorted(points)]))
          for tag, points in series.items()}


def plot(runs: Sequence[tuple[str, dict]], metrics: Sequence[str],
         output: str, title: str = '') -> None:
  """One panel per metric, one line per (label, scalars) run; writes PNG."""
  # pylint: disable=g-import-not-at-top
  import matplotlib
  matplotlib.use('Agg')
  from matplotlib import pyplot as plt
  # pylint: enable=g-import-not-at-top
  # With two runs or more, one more panel: each run's total loss relative
  # to the first run's, where lines that overlap above can be told apart.
  relative = len(runs) > 1 and all('loss' in s for _, s in runs)
  panels = len(metrics) + relative
  columns = min(3, panels)
  rows = math.ceil(panels / columns)
  fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.2 * rows),
                           squeeze=False)
  for ax, metric in zip(axes.flat, metrics):
    for i, (label, scalars) in enumerate(runs):
      if metric in scalars:
        steps, values = scalars[metric]
        ax.plot(steps, values, label=label, linewidth=1.4, color=f'C{i}')
    ax.set_title(metric)
    # The repetitive term is a negative max; the others span decades.
    if metric != 'fingerprint_repetitive':
      positive = all(np.all(s[metric][1] > 0) for _, s in runs if metric in s)
      if positive:
        ax.set_yscale('log')
    if ax.get_legend_handles_labels()[0]:  # No run has it: an empty panel.
      ax.legend(fontsize=8)
  if relative:
    ax = axes.flat[len(metrics)]
    base_label, base = runs[0]
    base_steps, base_values = base['loss']
    for i, (label, scalars) in enumerate(runs[1:], start=1):
      steps, values = scalars['loss']
      common, ours, theirs = np.intersect1d(steps, base_steps,
                                            return_indices=True)
      ax.plot(common, 100 * (values[ours] / base_values[theirs] - 1),
              label=label, linewidth=1.4, color=f'C{i}')
    ax.axhline(0, color='gray', linewidth=0.8)
    ax.set_title(f'loss vs {base_label} (%)')
    ax.legend(fontsize=8)
  for ax in list(axes.flat)[:panels]:
    ax.set_xlabel('step')
    ax.grid(alpha=0.3)
  for ax in list(axes.flat)[panels:]:
    ax.axis('off')
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
  fig.savefig(output, dpi=110)
  plt.close(fig)


def compare(workdirs: Sequence[str], labels: Sequence[str] | None,
            metrics: Sequence[str], output: str, title: str = '') -> str:
  """Reads every run, writes the picture; returns a few lines on the runs
  (first and last total loss, missing scalars)."""
  labels = labels or [os.path.basename(os.path.normpath(w)) for w in workdirs]
  if len(labels) != len(workdirs):
    raise ValueError(f'{len(labels)} labels for {len(workdirs)} workdirs')
  runs = [(label, read_scalars(w)) for label, w in zip(labels, workdirs)]
  lines = []
  for label, scalars in runs:
    missing = [m for m in metrics if m not in scalars]
    if missing:
      lines.append(f'{label}: no scalars {missing}; it has '
                   f'{sorted(scalars)}')
    if 'loss' in scalars:
      steps, values = scalars['loss']
      lines.append(f'{label}: loss {values[0]:.4g} at step {steps[0]} -> '
                   f'{values[-1]:.4g} at step {steps[-1]}')
  plot(runs, metrics, output, title)
  lines.append(f'wrote {output}')
  return '\n'.join(lines)
