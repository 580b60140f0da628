r"""Runs a checkpoint on image files and folders and reports what it sees.

  python -m jaxfp.predict --checkpoint=runs/fen_cpu photo.png suspicious/
  python -m jaxfp.predict --checkpoint=runs/det --output=scores.jsonl \
      --panels_dir=panels/ /data/images
  python -m jaxfp.predict --checkpoint=runs/fen_cpu --summary --quiet \
      --output=source_a.jsonl /data/source_a   # + source_a.summary.{json,md}

See `jaxfp.inference.predict`. Exit status: 0 all inputs processed, 1 some
skipped, 2 nothing processed or a user error (a bad flag or checkpoint).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.data import images
from jaxfp.inference import predict

FLAGS = flags.FLAGS


def define_flags():
  """The command line's flags (defined only when run as a program)."""
  flags.DEFINE_string('checkpoint', None, 'A training workdir, its '
                      'checkpoints/ folder, or a converted published '
                      'checkpoint.')
  flags.DEFINE_string('output', None, 'Write one JSON object per image here.')
  flags.DEFINE_string('panels_dir', None, 'Write image | fingerprint | '
                      'spectrum PNGs here.')
  flags.DEFINE_enum('resize', 'resize', images.RESIZE_POLICIES,
                    'How images of another size become the input size.')
  flags.DEFINE_integer('batch_size', 32, 'Images per compiled call.',
                       lower_bound=1)
  flags.DEFINE_bool('quiet', False, 'No per-image table on the terminal.')
  flags.DEFINE_bool('summary', False, 'The inputs are images of one source: '
                    'also print one summary of all of them and, with '
                    '--output, write it beside it as <output>.summary.json '
                    'and .summary.md.')
  flags.DEFINE_string('gallery', None, 'A gallery of known sources '
                      '(python -m jaxfp.gallery): report each image\'s '
                      'nearest source and P(unknown).')


@console.command
def main(argv):
  if len(argv) < 2:
    raise app.UsageError('give at least one image file or folder')
  if FLAGS.checkpoint is None:
    raise app.UsageError('--checkpoint is required')
  return predict.run(FLAGS.checkpoint, argv[1:], policy=FLAGS.resize,
                     batch_size=FLAGS.batch_size, output=FLAGS.output,
                     panels_dir=FLAGS.panels_dir, table=not FLAGS.quiet,
                     summary=FLAGS.summary, gallery=FLAGS.gallery)


if __name__ == '__main__':
  define_flags()
  console.run(main)
