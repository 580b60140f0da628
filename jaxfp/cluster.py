r"""Groups images that likely come from the same generator.

  python -m jaxfp.cluster --checkpoint=runs/fen_cpu --workdir=groups/ FOLDER
  python -m jaxfp.cluster --checkpoint=runs/fen_cpu --num_groups=8 \
      --score_parent_folders --workdir=groups/ zoo_images/
  python -m jaxfp.cluster --checkpoint=runs/source --workdir=groups/ FOLDER

See `jaxfp.inference.cluster`. Exit status: 0 every image used, 1 some
skipped, 2 a user error (a bad flag or checkpoint, fewer than 2 images).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.inference import cluster

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string('checkpoint', None, 'A training workdir or checkpoint.')
  flags.DEFINE_string('workdir', None, 'Where the report is written.')
  flags.DEFINE_enum('embedding', 'auto', cluster.EMBEDDINGS,
                    'What is compared: auto = the source embedding when the '
                    'checkpoint has one, else the parsing features.')
  flags.DEFINE_integer('num_groups', 0, 'Number of groups; 0 = estimate.',
                       lower_bound=0)
  flags.DEFINE_integer('max_groups', 20, 'Largest number of groups tried.',
                       lower_bound=2)
  flags.DEFINE_float('min_silhouette', 0.0, 'Estimating: one group unless '
                     'a split scores a silhouette above this (0.25: "no '
                     'substantial structure" below it, Kaufman & '
                     'Rousseeuw).')
  flags.DEFINE_float('threshold', 0.0, 'Source embedding: the cosine '
                     'distance below which groups merge; 0 = the one '
                     'calibrated on the run\'s held-out generators.',
                     lower_bound=0.0)
  flags.DEFINE_bool('score_parent_folders', False, 'Report the adjusted Rand '
                    "index against the images' parent folders.")
  flags.DEFINE_integer('batch_size', 32, 'Images per compiled call.',
                       lower_bound=1)


@console.command
def main(argv):
  if len(argv) < 2 or not FLAGS.checkpoint or not FLAGS.workdir:
    raise app.UsageError('usage: --checkpoint=DIR --workdir=OUT FOLDER...')
  return cluster.run(FLAGS.checkpoint, argv[1:], FLAGS.workdir,
                     kind=FLAGS.embedding, num_groups=FLAGS.num_groups,
                     max_groups=FLAGS.max_groups,
                     min_silhouette=FLAGS.min_silhouette,
                     score_parent_folders=FLAGS.score_parent_folders,
                     batch_size=FLAGS.batch_size, threshold=FLAGS.threshold)


if __name__ == '__main__':
  define_flags()
  console.run(main)
