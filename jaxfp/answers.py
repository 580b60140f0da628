r"""How honest a parsing run's per-image answer is, on generators and
photographs it never saw.

  python -m jaxfp.answers --checkpoint=runs/fen_cpu --zoo_seed=37 \
      --workdir=runs/answers37
  python -m jaxfp.answers --checkpoint=runs/fen_cpu --tree=DIR --workdir=OUT

See `jaxfp.tools.answers` for what it measures. Exit status: 0, or 2 for a
user error (a bad flag, tree or checkpoint).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.inference import network
from jaxfp.tools import answers

FLAGS = flags.FLAGS


def define_flags() -> None:
  flags.DEFINE_string('checkpoint', None, 'A parsing run with an answer '
                      'file (answer.npz).')
  flags.DEFINE_string('tree', None, 'Generators it never saw: a GM-folder '
                      'tree with ground_truth.csv.')
  flags.DEFINE_integer('zoo_seed', None, "Or the run's zoo with this seed "
                       '(built into the cache first if needed).')
  flags.DEFINE_string('workdir', None, 'Where the report is written.')
  flags.DEFINE_integer('num_photographs', 1200, 'Crops of the test '
                       'photographs.', lower_bound=10)
  flags.DEFINE_bool('study', False, 'Also fit detectors with and without '
                    'augmentation and on one family only.')
  flags.DEFINE_integer('seed', 0, 'Seed of the photograph crops.')


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  if not FLAGS.checkpoint or not FLAGS.workdir:
    raise app.UsageError('give --checkpoint and --workdir')
  if (FLAGS.tree is None) == (FLAGS.zoo_seed is None):
    raise app.UsageError('give one of --tree and --zoo_seed')
  tree = FLAGS.tree or answers.zoo_tree(network.load(FLAGS.checkpoint),
                                        FLAGS.zoo_seed)
  result = answers.run(FLAGS.checkpoint, tree, FLAGS.workdir,
                       num_photographs=FLAGS.num_photographs,
                       with_study=FLAGS.study, seed=FLAGS.seed)
  print('\n' + result['text'], flush=True)


if __name__ == '__main__':
  define_flags()
  console.run(main)
