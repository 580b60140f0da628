"""The launch scripts: syntax, shellcheck (where installed), dry runs."""

import os
import shutil
import subprocess

import pytest

import subprocs

LAUNCH = subprocs.REPO / 'launch'
SCRIPTS = ('local.sh', 'tpu_pod.sh', 'slurm_gpu.sbatch')
TRAIN = ['python', '-m', 'jaxfp.main', '--config=configs/fen.py:test',
         '--workdir=/tmp/jaxfp run']


def _run(args, env=None, check=True):
  full_env = {k: v for k, v in os.environ.items()
              if not k.startswith(('SLURM_', 'TPU_', 'JAXFP_', 'DRY_RUN'))}
  full_env.update(env or {})
  result = subprocess.run(['bash'] + [str(a) for a in args], env=full_env,
                          capture_output=True, text=True, timeout=60,
                          check=False)
  if check:
    assert result.returncode == 0, result.stderr
  return result


@pytest.mark.parametrize('script', SCRIPTS)
def test_bash_syntax(script):
  _run(['-n', LAUNCH / script])


@pytest.mark.parametrize('script', SCRIPTS)
def test_shellcheck(script):
  if not shutil.which('shellcheck'):
    pytest.skip('shellcheck is not installed (apt-get install shellcheck)')
  result = subprocess.run(['shellcheck', LAUNCH / script],
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout


def test_local_dry_run_starts_n_processes_with_m_devices():
  lines = _run([LAUNCH / 'local.sh', '--dry_run', '--port=1234',
                '--devices_per_process=3', '2', '--'] + TRAIN
               ).stdout.splitlines()
  assert len(lines) == 2
  for i, line in enumerate(lines):
    assert line.startswith('env JAX_PLATFORMS=cpu '
                           'XLA_FLAGS=--xla_force_host_platform_device_count=3 '
                           'JAXFP_COORDINATOR=localhost:1234 '
                           'JAXFP_NUM_PROCESSES=2 '
                           f'JAXFP_PROCESS_ID={i} python -m jaxfp.main ')
    # The argument with a space stays one argument.
    assert line.endswith("'--workdir=/tmp/jaxfp run' &")


# Each process prints its line and then leaves a marker file. Process 2
# fails (status 3) only once the markers of 0 and 1 exist, so their lines
# are out whatever the scheduling; process 0 then waits until the launcher
# stops it, which it does when process 2 fails. No step waits a fixed time.
PROCESSES_SCRIPT = """
import os, pathlib, signal, sys, time
i = int(os.environ['JAXFP_PROCESS_ID'])
print('process', i, 'of', os.environ['JAXFP_NUM_PROCESSES'],
      os.environ['XLA_FLAGS'], flush=True)
markers = pathlib.Path(sys.argv[1])
(markers / f'printed_{i}').touch()
if i == 0:
  signal.pause()  # Until the launcher's SIGTERM.
if i == 2:
  deadline = time.monotonic() + 50
  while not all((markers / f'printed_{p}').exists() for p in (0, 1)):
    assert time.monotonic() < deadline, 'processes 0 and 1 never printed'
    time.sleep(0.05)
  sys.exit(3)
"""


def test_local_runs_every_process_and_reports_the_first_failure(tmp_path):
  markers = tmp_path / 'markers'
  markers.mkdir()
  result = _run([LAUNCH / 'local.sh', '--devices_per_process=1',
                 f'--log_dir={tmp_path}', '3', '--', 'python3', '-c',
                 PROCESSES_SCRIPT, markers], check=False)
  assert result.returncode == 3, result.stderr
  assert 'process 0 of 3 --xla_force_host_platform_device_count=1' in (
      result.stdout)
  assert 'process 1 of 3' in (tmp_path / 'process_1.log').read_text()
  assert 'process 2 of 3' in (tmp_path / 'process_2.log').read_text()
  # Process 0 would have waited forever: the launcher stopped it.
  assert 'a process exited with status 3; stopping' in result.stderr


def test_local_rejects_a_missing_command():
  result = _run([LAUNCH / 'local.sh', '2'], check=False)
  assert result.returncode == 2 and 'Starts N JAX processes' in result.stderr


def test_tpu_dry_run_creates_nothing_unless_asked_and_runs_on_all_workers():
  out = _run([LAUNCH / 'tpu_pod.sh', '--dry_run', '--tpu=pod', '--zone=z',
              '--'] + TRAIN).stdout
  assert 'create' not in out and 'scp' not in out
  (line,) = out.splitlines()
  assert line.startswith('gcloud compute tpus tpu-vm ssh pod --zone=z '
                         '--worker=all ')
  assert 'export JAXFP_DISTRIBUTED=on && python -m jaxfp.main' in line


def test_tpu_dry_run_create_and_setup():
  out = _run([LAUNCH / 'tpu_pod.sh', '--tpu', 'pod', '--zone', 'z',
              '--project', 'p', '--create', '--accelerator', 'v4-32',
              '--version', 'tpu-ubuntu2204-base', '--spot', '--setup',
              '--background', '--'] + TRAIN,
             env={'DRY_RUN': '1'}).stdout.splitlines()
  assert lines_starting(out, 'gcloud compute tpus tpu-vm create pod') == [
      'gcloud compute tpus tpu-vm create pod --zone=z --project=p '
      '--accelerator-type=v4-32 --version=tpu-ubuntu2204-base --spot']
  assert lines_starting(out, 'gcloud compute tpus tpu-vm scp ')
  setup, run = lines_starting(out, 'gcloud compute tpus tpu-vm ssh ')
  pinned = next(line for line in
                (subprocs.REPO / 'requirements.txt').read_text().splitlines()
                if line.startswith('jax=='))
  assert 'pip install -q -r requirements.txt' in setup
  assert f'jax[tpu]=={pinned[len("jax=="):]}' in setup
  assert 'nohup python -m jaxfp.main' in run and 'run.log' in run


def lines_starting(lines, prefix):
  return [line for line in lines if line.startswith(prefix)]


def test_tpu_needs_a_name_and_zone():
  result = _run([LAUNCH / 'tpu_pod.sh', '--dry_run', '--'] + TRAIN,
                check=False)
  assert result.returncode == 2 and '--tpu and --zone' in result.stderr


def test_slurm_dry_run_one_process_per_gpu_and_per_node(tmp_path):
  out = _run([LAUNCH / 'slurm_gpu.sbatch', '--config=configs/fen.py',
              f'--workdir={tmp_path}'], env={'DRY_RUN': '1'}).stdout
  assert out.splitlines()[-1] == (
      'srun --kill-on-bad-exit=1 python -m jaxfp.main '
      f'--config=configs/fen.py --workdir={tmp_path}')
  assert 'JAX_LOCAL_DEVICE_IDS' not in out
  out = _run([LAUNCH / 'slurm_gpu.sbatch', '--config=configs/fen.py',
              '--workdir', str(tmp_path)],
             env={'DRY_RUN': '1', 'REQUEUE': '1', 'SLURM_JOB_ID': '42',
                  'SLURM_NTASKS_PER_NODE': '1', 'SLURM_GPUS_ON_NODE': '4',
                  'SLURM_SUBMIT_DIR': str(subprocs.REPO)}).stdout
  assert 'export JAX_LOCAL_DEVICE_IDS=0,1,2,3' in out.splitlines()
  # No results.json in the workdir yet: the job would requeue itself.
  assert out.splitlines()[-1] == 'scontrol requeue 42'


def test_sbatch_directives_come_before_any_command():
  lines = (LAUNCH / 'slurm_gpu.sbatch').read_text().splitlines()
  first_command = next(i for i, line in enumerate(lines)
                       if line.strip() and not line.startswith('#'))
  directives = [i for i, line in enumerate(lines)
                if line.startswith('#SBATCH')]
  assert directives and max(directives) < first_command
  assert '#SBATCH --signal=TERM@120' in lines
