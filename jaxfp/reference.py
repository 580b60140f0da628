r"""Fits the non-deep reference parser on a config's training GMs and scores
it on its held-out GMs, as the trainer scores the network.

  python -m jaxfp.reference --config=configs/fen.py:cpu --workdir=runs/ref_cpu
  python -m jaxfp.reference --config=configs/fen.py:cpu --workdir=runs/ref_cpu \
      --compare=runs/fen_cpu
  python -m jaxfp.reference --config=configs/fen.py:cpu --workdir=runs/ref_gm \
      --per_generator --kernel   # can all of a GM's images tell?

Writes results.md and results.json to --workdir in the trainer's form, and
with --compare (a parser run's workdir or results.json, held out on the same
GMs) comparison.md: both side by side. See `jaxfp.tools.reference`. Exit
status: 0, or 2 for a user error (a bad flag or config field, a run of
other held-out GMs).
"""

from absl import app
from absl import flags
from ml_collections import config_flags

from jaxfp.core import console
from jaxfp.tools import reference

FLAGS = flags.FLAGS


def define_flags() -> None:
  # From __main__ only: tests import commands whose flags share names.
  flags.DEFINE_string('workdir', None, 'Where results.md / results.json go.')
  config_flags.DEFINE_config_file(
      'config', None, 'The trainer\'s config: which data, which GMs are held '
      'out, how many baseline shuffles.', lock_config=False)
  flags.DEFINE_string('compare', None, 'A parser run (its workdir or '
                      'results.json) to put side by side in comparison.md.')
  flags.DEFINE_integer('pca_dim', 64, 'PCA components of the features.',
                       lower_bound=1)
  flags.DEFINE_float('ridge_alpha', 1.0, 'Ridge penalty (continuous '
                     'columns).', lower_bound=0.0)
  flags.DEFINE_float('logistic_c', 1.0, 'Inverse L2 penalty of the logistic '
                     'regressions (discrete columns, loss types).',
                     lower_bound=1e-12)
  flags.DEFINE_bool('kernel', False, 'RBF kernel ridge for the continuous '
                    'columns, its penalty and width cross-validated.')
  flags.DEFINE_bool('per_generator', False, 'One example per GM (mean and '
                    'std of its images\' features); each image gets its '
                    'GM\'s prediction.')


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if FLAGS.config is None or not FLAGS.workdir:
    raise app.UsageError('give --config and --workdir')
  result = reference.run(FLAGS.config, FLAGS.workdir, pca_dim=FLAGS.pca_dim,
                         ridge_alpha=FLAGS.ridge_alpha,
                         logistic_c=FLAGS.logistic_c, kernel=FLAGS.kernel,
                         per_generator=FLAGS.per_generator,
                         compare=FLAGS.compare)
  print('\n' + result['text'], flush=True)


if __name__ == '__main__':
  define_flags()
  console.run(main)
