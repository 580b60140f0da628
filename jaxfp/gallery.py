r"""Builds a gallery of known sources for open-set attribution.

  python -m jaxfp.gallery --checkpoint=runs/source --tree=known/ \
      --output=runs/source/gallery.npz
  python -m jaxfp.predict --checkpoint=runs/source \
      --gallery=runs/source/gallery.npz suspicious/

--tree holds one folder per known source (TREE/<source>/**/*.png; real
photographs are one more source). See `jaxfp.inference.gallery`. Exit
status: 0 every image used, 1 some skipped, 2 a user error (a bad flag,
checkpoint or tree).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.data import images
from jaxfp.inference import gallery

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string('checkpoint', None, 'A source-embedding run '
                      '(configs/source.py) or its checkpoints.')
  flags.DEFINE_string('tree', None, 'One folder of images per known source.')
  flags.DEFINE_string('output', None, 'The gallery file to write (.npz).')
  flags.DEFINE_enum('resize', 'resize', images.RESIZE_POLICIES,
                    'How images of another size become the input size.')
  flags.DEFINE_integer('batch_size', 32, 'Images per compiled call.',
                       lower_bound=1)


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}; the sources are '
                         'the folders of --tree')
  if not (FLAGS.checkpoint and FLAGS.tree and FLAGS.output):
    raise app.UsageError('usage: --checkpoint=RUN --tree=DIR '
                         '--output=FILE.npz')
  return gallery.run(FLAGS.checkpoint, FLAGS.tree, FLAGS.output,
                     batch_size=FLAGS.batch_size, policy=FLAGS.resize)


if __name__ == '__main__':
  define_flags()
  console.run(main)
