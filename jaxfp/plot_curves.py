r"""Training curves of several runs in one picture, from their TensorBoard
files (how docs/mixed_precision_loss.png was made).

  python -m jaxfp.plot_curves --workdirs=/tmp/f32,/tmp/bf16 \
      --labels=float32,bfloat16 --output=docs/mixed_precision_loss.png

See `jaxfp.tools.curves`. Exit status: 0, or 2 for a user error (a bad
flag, a workdir without event files).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.tools import curves

FLAGS = flags.FLAGS


def define_flags():
  flags.DEFINE_list('workdirs', None, 'Run directories to compare.')
  flags.DEFINE_list('labels', None, 'One label per workdir (default: the '
                    'directory names).')
  flags.DEFINE_list('metrics', list(curves.DEFAULT_METRICS),
                    'Scalar tags, one panel each.')
  flags.DEFINE_string('output', 'docs/mixed_precision_loss.png',
                      'PNG to write.')
  flags.DEFINE_string('title', '', 'Figure title.')
  flags.mark_flags_as_required(['workdirs'])


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  print(curves.compare(FLAGS.workdirs, FLAGS.labels, FLAGS.metrics,
                       FLAGS.output, FLAGS.title))


if __name__ == '__main__':
  define_flags()
  console.run(main)
