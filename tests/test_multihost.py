"""Several processes on this machine, joined by jaxfp.distributed (gloo).

Two processes of two simulated CPU devices each must train like one process
of four on the same global batch; and the whole trainer, started by
launch/local.sh, must checkpoint, stop on SIGTERM and resume.
"""

import json
import re
import sys

import jax
import numpy as np
import pytest

from jaxfp.core import distributed
import multihost_worker as worker
import subprocs

WORKER_TIMEOUT_S = 400
TRAINER_TIMEOUT_S = 400


def test_explicit_values_come_from_flags_over_the_environment():
  env = {'JAXFP_COORDINATOR': 'h:1', 'JAXFP_NUM_PROCESSES': '4',
         'JAXFP_PROCESS_ID': '3'}
  plan = distributed.resolve(environ=env)
  assert plan.initialize and plan.source == 'explicit'
  assert (plan.coordinator_address, plan.num_processes,
          plan.process_id) == ('h:1', 4, 3)
  # No detector may override explicit values.
  assert plan.cluster_detection_method == 'deactivate'
  plan = distributed.resolve('other:2', None, 0, environ=env)
  assert (plan.coordinator_address, plan.num_processes,
          plan.process_id) == ('other:2', 4, 0)
  assert not distributed.resolve(environ=env, mode='off').initialize


def test_no_cluster_is_one_process_and_bad_values_fail_clearly():
  assert distributed.resolve(environ={}) == distributed.Plan(
      initialize=False, source='single')
  assert not distributed.resolve(num_processes=1, environ={}).initialize
  with pytest.raises(ValueError, match=r"not \['process_id'\]"):
    distributed.resolve('h:1', 2, environ={})
  with pytest.raises(ValueError, match='0 <= process_id < num_processes'):
    distributed.resolve('h:1', 2, 2, environ={})
  with pytest.raises(ValueError, match='host:port'):
    distributed.resolve('h', 2, 0, environ={})
  with pytest.raises(ValueError, match='JAXFP_NUM_PROCESSES'):
    distributed.resolve(environ={'JAXFP_NUM_PROCESSES': 'two'})
  with pytest.raises(ValueError, match='distributed mode'):
    distributed.resolve(environ={'JAXFP_DISTRIBUTED': 'yes'})


def test_clusters_are_left_to_jax_detection():
  slurm = {'SLURM_JOB_ID': '7', 'SLURM_STEP_NODELIST': 'node[1-2]',
           'SLURM_PROCID': '1', 'SLURM_LOCALID': '0', 'SLURM_NTASKS': '16'}
  plan = distributed.resolve(environ=slurm)
  assert plan.initialize and plan.cluster_detection_method == 'slurm'
  assert plan.coordinator_address is None  # JAX derives it.
  # A one-task step is a single process.
  assert not distributed.resolve(
      environ={**slurm, 'SLURM_NTASKS': '1'}).initialize
  plan = distributed.resolve(environ={'TPU_WORKER_HOSTNAMES': 'a,b'})
  assert plan.cluster_detection_method == 'gketpu'
  # 'on' with nothing detected lets every JAX detector try.
  plan = distributed.resolve(environ={'JAXFP_DISTRIBUTED': 'on'})
  assert plan.initialize and plan.cluster_detection_method is None


def _updates(after, before):
  return {k: after[k] - before[k] for k in before}


def test_two_processes_of_two_devices_match_one_process_of_four(tmp_path):
  assert jax.local_device_count() >= 4, 'conftest sets 4 CPU devices'
  task, state, batches = worker.problem()
  one, losses_one = worker.run_steps(task, state, batches,
                                     devices=jax.devices()[:4])

  port = subprocs.free_port()
  env = subprocs.child_env(devices=2, compile_cache='none')
  children = [
      subprocs.Child(
          [sys.executable, subprocs.REPO / 'tests' / 'multihost_worker.py',
           f'--coordinator_address=localhost:{port}', '--num_processes=2',
           f'--process_id={p}', f'--out={tmp_path / f"process_{p}.npz"}'],
          env, tmp_path / f'process_{p}.log')
      for p in range(2)]
  subprocs.wait_all(children, WORKER_TIMEOUT_S)
  results = [dict(np.load(tmp_path / f'process_{p}.npz')) for p in range(2)]

  before = worker.flat((state.params, state.batch_stats))
  expected = _updates(worker.flat((one.params, one.batch_stats)), before)
  largest = max(float(np.abs(u).max()) for u in expected.values())
  worst = worst_abs = 0.0
  for p, got in enumerate(results):
    assert int(got['process_count']) == 2 and int(got['device_count']) == 4
    np.testing.assert_allclose(got['losses'], losses_one, rtol=1e-5,
                               err_msg=f'process {p}')
    # Every process holds the same (all-reduced) parameters.
    for name in before:
      np.testing.assert_array_equal(got[name], results[0][name],
                                    err_msg=name)
    # The tolerance of tests/test_train.py: each tensor's update to 1e-4 of
    # its own scale; tensors whose true gradient is zero (conv biases before
    # BatchNorm) hold rounding noise, below 1e-3 of the largest update.
    updates = _updates(got, before)
    for name, want in expected.items():
      scale = float(np.abs(want).max())
      reference = scale if scale > 1e-3 * largest else largest
      tolerance = 1e-4 * scale if scale > 1e-3 * largest else 1e-3 * largest
      diff = float(np.abs(updates[name] - want).max())
      worst = max(worst, diff / reference)
      worst_abs = max(worst_abs, diff)
      np.testing.assert_allclose(updates[name], want, rtol=0, atol=tolerance,
                                 err_msg=f'process {p}: {name}')
  print(f'2x2 vs 1x4: largest parameter difference {worst_abs:.2e} '
        f'({worst:.2e} of its update scale; largest update {largest:.2e})')


def trainer_args(workdir, cache, num_train_steps):
  return [sys.executable, '-m', 'jaxfp.main', '--config=configs/fen.py:test',
          f'--workdir={workdir}', f'--config.data.cache_dir={cache}',
          f'--config.num_train_steps={num_train_steps}',
          '--config.checkpoint_every_steps=2',
          '--config.eval_every_steps=1000']


def test_local_launcher_trains_stops_on_sigterm_and_resumes(tmp_path,
                                                            zoo_cache):
  workdir = tmp_path / 'run'
  launcher = subprocs.REPO / 'launch' / 'local.sh'
  # A cache of this run's own: the first launch compiles everything in both
  # processes, the relaunch loads it in both.
  env = subprocs.child_env(compile_cache=str(tmp_path / 'jax-cache'))

  def launch(num_train_steps, name):
    logs = tmp_path / name
    return subprocs.Child(
        ['bash', launcher, '2', '--devices_per_process=2',
         f'--log_dir={logs}', '--'] +
        trainer_args(workdir, zoo_cache, num_train_steps),
        env, tmp_path / f'{name}.log'), logs / 'process_1.log'

  first, first_other = launch(1000, 'first')
  subprocs.wait_for(lambda: subprocs.checkpoint_steps(workdir), [first],
                    TRAINER_TIMEOUT_S, 'the first checkpoint')
  subprocs.terminate(first)
  subprocs.wait_all([first], TRAINER_TIMEOUT_S)
  saved = re.findall(r'saving step (\d+) and exiting', first.output())
  assert len(saved) == 1, first.tail()
  stop_step = int(saved[0])
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step
  assert not (workdir / 'results.json').exists()
  # Process 1 logs warnings only: it stopped at the same step.
  other = first_other.read_text()
  assert f'saving step {stop_step} and exiting' in other
  assert 'Resuming' not in other and 'steps_per_sec' not in other

  second, second_other = launch(stop_step + 2, 'second')
  subprocs.wait_all([second], TRAINER_TIMEOUT_S)
  assert (f'Resuming from the checkpoint of step {stop_step}'
          in second.output())
  with open(workdir / 'results.json') as f:
    assert json.load(f)['step'] == stop_step + 2
  assert subprocs.checkpoint_steps(workdir)[-1] == stop_step + 2
  # The table is printed, and results written, by process 0 alone.
  assert 'its deciding metric' not in second_other.read_text()
  assert 'its deciding metric' in second.output()
