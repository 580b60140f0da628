r"""Scores a source embedding on generators it never saw.

  python -m jaxfp.embeddings --checkpoint=runs/source \
      --tree=$JAXFP_CACHE/zoo/zoo-<hash>/images --workdir=runs/source/unseen

--tree holds one folder of images per source (a zoo's images/ folder: one
per generator). Writes embeddings.md, embeddings.json and projection.png;
see `jaxfp.tools.embeddings`. Exit status: 0, or 2 for a user error.
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.tools import embeddings

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string('checkpoint', None, 'A source-embedding run.')
  flags.DEFINE_string('tree', None, 'One folder of images per source.')
  flags.DEFINE_string('workdir', None, 'Where the report is written.')
  flags.DEFINE_integer('num_sources', 48, 'Sources per random draw.',
                       lower_bound=2)
  flags.DEFINE_integer('subsets', 10, 'Random draws of --num_sources.',
                       lower_bound=1)
  flags.DEFINE_integer('gallery_images', 10, 'Open set: gallery images per '
                       'known source.', lower_bound=1)
  flags.DEFINE_integer('min_images', 2, 'Sources with fewer images are left '
                       'out.', lower_bound=2)
  flags.DEFINE_bool('all_sources', False, 'Also score all sources at once '
                    '(average linkage over every image: memory grows with '
                    'the square of the images).')
  flags.DEFINE_integer('projection_sources', 16, 'Sources in projection.png.',
                       lower_bound=1)
  flags.DEFINE_integer('seed', 0, 'Seed of the draws.')
  flags.DEFINE_integer('batch_size', 64, 'Images per compiled call.',
                       lower_bound=1)


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  if not (FLAGS.checkpoint and FLAGS.tree and FLAGS.workdir):
    raise app.UsageError('usage: --checkpoint=RUN --tree=DIR --workdir=OUT')
  embeddings.run(FLAGS.checkpoint, FLAGS.tree, FLAGS.workdir,
                 num_sources=FLAGS.num_sources, subsets=FLAGS.subsets,
                 gallery_images=FLAGS.gallery_images, seed=FLAGS.seed,
                 min_images=FLAGS.min_images,
                 all_sources=FLAGS.all_sources,
                 projection_sources=FLAGS.projection_sources,
                 batch_size=FLAGS.batch_size)


if __name__ == '__main__':
  define_flags()
  console.run(main)
