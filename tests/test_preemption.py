"""SIGTERM: the trainer saves a checkpoint, exits 0, and the next launch
resumes from it."""

import json
import os
import re
import signal
import sys

import pytest

from jaxfp.core import preemption
import subprocs

TRAINER_TIMEOUT_S = 400


def test_signal_is_recorded_not_fatal_and_the_handler_restored():
  before = signal.getsignal(signal.SIGTERM)
  with preemption.StopOnSignal() as stop:
    assert not stop.requested(1)
    os.kill(os.getpid(), signal.SIGTERM)
    assert stop.requested(2)
    assert stop.reason == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is before


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGHUP])
def test_ctrl_c_and_a_closed_terminal_stop_like_sigterm(signum):
  """Ctrl-C and a closed terminal (ssh dropped, tmux pane killed) ask the
  loop to save and stop, as SIGTERM does; their runs exit with the
  shell's 128 + signal, a saved SIGTERM run with 0."""
  # As a terminal delivers them: a background job (CI under nohup) starts
  # with both ignored, and ignored signals stay ignored.
  inherited = signal.signal(signum, signal.SIG_DFL)
  try:
    with preemption.StopOnSignal() as stop:
      os.kill(os.getpid(), signum)
      assert stop.requested(1)
      assert stop.reason == signal.Signals(signum).name
    assert signal.getsignal(signum) is signal.SIG_DFL
  finally:
    signal.signal(signum, inherited)
  assert preemption.exit_status(stop.reason) == 128 + signum
  assert preemption.exit_status('SIGTERM') is None
  assert preemption.exit_status(None) is None


def test_sigterm_saves_the_step_exits_zero_and_the_next_launch_resumes(
    tmp_path, zoo_cache):
  workdir = tmp_path / 'run'
  env = subprocs.child_env(devices=4)

  def launch(num_train_steps, name):
    return subprocs.Child(
        [sys.executable, '-m', 'jaxfp.main', '--config=configs/fen.py:test',
         f'--workdir={workdir}', f'--config.data.cache_dir={zoo_cache}',
         f'--config.num_train_steps={num_train_steps}',
         '--config.checkpoint_every_steps=2',
         '--config.eval_every_steps=1000'],
        env, tmp_path / f'{name}.log')

  first = launch(1000, 'first')
  subprocs.wait_for(lambda: subprocs.checkpoint_steps(workdir), [first],
                    TRAINER_TIMEOUT_S, 'the first checkpoint')
  subprocs.terminate(first)
  assert subprocs.wait_all([first], TRAINER_TIMEOUT_S) == [0]
  saved = re.findall(r'Stop requested \(SIGTERM\): saving step (\d+)',
                     first.output())
  assert len(saved) == 1, first.tail()
  stop_step = int(saved[0])
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step
  assert not (workdir / 'results.json').exists()

  second = launch(stop_step + 2, 'second')
  subprocs.wait_all([second], TRAINER_TIMEOUT_S)
  assert (f'Resuming from the checkpoint of step {stop_step}'
          in second.output())
  with open(workdir / 'results.json') as f:
    assert json.load(f)['step'] == stop_step + 2
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step + 2


# The trainer's command, whose process sends itself SIGINT (as Ctrl-C does)
# right after a hook: after the checkpoint of step 2 is saved ('loop'), or
# when the task is created, before the loop ('start-up').
CTRL_C = """
import os, signal, sys
from jaxfp import checkpoints, main, tasks
from jaxfp.core import console
# A terminal delivers Ctrl-C; a background job (CI under nohup) ignores
# SIGINT, and the handlers keep an ignored signal ignored.
signal.signal(signal.SIGINT, signal.default_int_handler)
where = sys.argv.pop(1)
save, create = checkpoints.save, tasks.create

def save_then_interrupt(manager, state, step, meta):
  save(manager, state, step, meta)
  if where == 'loop' and step == 2:
    os.kill(os.getpid(), signal.SIGINT)

def interrupt_then_create(config, **kwargs):
  if where == 'start-up':
    os.kill(os.getpid(), signal.SIGINT)
  return create(config, **kwargs)

checkpoints.save, tasks.create = save_then_interrupt, interrupt_then_create
console.run(main.main)
"""


def test_ctrl_c_saves_like_sigterm_and_exits_130(tmp_path, zoo_cache):
  """Issue 22, case 7: Ctrl-C (SIGINT) in the loop saves the step it
  reached and exits 130 without a traceback; before the loop it unwinds
  and releases the workdir's lock. The next launch resumes."""
  env = subprocs.child_env(devices=1)
  children = {}
  for where in ('loop', 'start-up'):
    children[where] = subprocs.Child(
        [sys.executable, '-c', CTRL_C, where, '--config=configs/fen.py:test',
         f'--workdir={tmp_path / where}',
         f'--config.data.cache_dir={zoo_cache}',
         '--config.num_train_steps=1000', '--config.checkpoint_every_steps=2',
         '--config.eval_every_steps=1000'],
        env, tmp_path / f'{where}.log')
  for where, child in children.items():
    assert child.popen.wait(TRAINER_TIMEOUT_S) == 130, child.describe()
    assert 'Traceback' not in child.output(), child.describe()
    assert not (tmp_path / where / 'jaxfp.lock').exists()
  saved = re.findall(r'Stop requested \(SIGINT\): saving step (\d+)',
                     children['loop'].output())
  assert saved == ['3'], children['loop'].tail()
  assert subprocs.checkpoint_steps(tmp_path / 'loop')[-1] == 3
  assert subprocs.checkpoint_steps(tmp_path / 'start-up') == []


def test_an_ignored_signal_stays_ignored():
  """A trainer started in the background of a script (`cmd &`) ignores
  SIGINT; the stop handlers must not make it interruptible."""
  previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
  try:
    with preemption.StopOnSignal() as stop:
      assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
      os.kill(os.getpid(), signal.SIGINT)
      assert not stop.requested(1)
    with preemption.interrupt_on_signal():
      assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
  finally:
    signal.signal(signal.SIGINT, previous)
