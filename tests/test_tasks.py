"""The task registry and the contract every task keeps."""

import pkgutil

import pytest

from jaxfp import tasks
from jaxfp.tasks import common

# What `common.Task` says each task class defines (the metric names and the
# model are set per instance, from the config).
REQUIRED = ('id_keys', 'example_key', 'data', 'loss', 'eval_outputs', 'score',
            'report', 'scalars', 'meta')


def test_every_module_that_defines_tasks_is_registered():
  """A new task module left out of MODULES would be a task no config can
  reach."""
  defining = set()
  for info in pkgutil.iter_modules(tasks.__path__):
    module = __import__(f'jaxfp.tasks.{info.name}', fromlist=['TASKS'])
    if hasattr(module, 'TASKS'):
      defining.add(info.name)
  assert defining == set(tasks.MODULES)


@pytest.mark.parametrize('name', tasks.names())
def test_every_task_keeps_the_contract(name):
  cls = tasks.get(name)
  assert issubclass(cls, common.Task)
  missing = [m for m in REQUIRED if not hasattr(cls, m)]
  assert not missing, f'{name} lacks {missing}'


def test_an_unknown_task_names_the_known_ones():
  with pytest.raises(ValueError, match=r"config.task='nope': use one of "
                     r"\('parsing'"):
    tasks.get('nope')
