r"""How a checkpoint holds up when its held-out images are perturbed.

  python -m jaxfp.robustness --workdir=runs/fen_cpu
  python -m jaxfp.robustness --workdir=runs/detection_cpu \
      --perturbations=jpeg,blur --output=runs/detection_cpu/robustness

See `jaxfp.tools.robustness`. Writes to --output (default
<workdir>/robustness). Exit status: 0, or 2 for a user error (a bad flag or
checkpoint).
"""

import os

from absl import app
from absl import flags

from jaxfp import checkpoints
from jaxfp.core import console
from jaxfp.core import files
from jaxfp.data import perturbations
from jaxfp.tools import robustness

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_string('workdir', None, 'The training run to evaluate.')
  flags.DEFINE_string('output', None, 'Where the table and plots go; default '
                      '<workdir>/robustness.')
  flags.DEFINE_list('perturbations', list(perturbations.NAMES),
                    'Which perturbations.')


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  unknown = set(FLAGS.perturbations) - set(perturbations.NAMES)
  if unknown:
    raise app.UsageError(f'unknown perturbations {sorted(unknown)}; known: '
                         f'{list(perturbations.NAMES)}')
  checkpoints.find(FLAGS.workdir)  # A missing run fails before any output.
  output = files.check_output_folder(
      FLAGS.output or os.path.join(FLAGS.workdir, 'robustness'), '--output')
  result = robustness.run(FLAGS.workdir, names=FLAGS.perturbations)
  print(robustness.write(result, output))


if __name__ == '__main__':
  define_flags()
  console.run(main)
