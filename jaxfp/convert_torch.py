r"""Published PyTorch checkpoints -> jaxfp checkpoints (needs torch).

    python -m jaxfp.convert_torch --task=detection \
        --torch_checkpoint=model.pth --output=runs/detection_published

See `jaxfp.pytorch.convert`. Prints the checkpoint directory. Exit status:
0, or 2 for a user error (a bad flag, a file that is not a published
checkpoint of --task, an --output that already holds one).
"""

from absl import app
from absl import flags

from jaxfp.core import console
from jaxfp.pytorch import convert

FLAGS = flags.FLAGS


def define_flags() -> None:
  # From __main__ only: importers have flags of their own ('task' clashes).
  flags.DEFINE_enum('task', None, convert.TASKS,
                    'Which published network the file holds.')
  flags.DEFINE_string('torch_checkpoint', None, 'Published .pth/.pt file.')
  flags.DEFINE_string('output', None, 'Directory for the checkpoint.')
  flags.mark_flags_as_required(['task', 'torch_checkpoint', 'output'])


@console.command
def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments {argv[1:]}')
  print(convert.write_checkpoint(FLAGS.torch_checkpoint, FLAGS.task,
                                 FLAGS.output))


if __name__ == '__main__':
  define_flags()
  console.run(main)
