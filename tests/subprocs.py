"""Running the trainer and test workers in subprocesses, with a time limit.

Each child writes stdout and stderr to one log file (no pipes to fill up);
a failure or timeout kills every child and shows the end of each log.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax

REPO = pathlib.Path(__file__).resolve().parent.parent
_OUR_ENV = ('JAXFP_COORDINATOR', 'JAXFP_NUM_PROCESSES', 'JAXFP_PROCESS_ID',
            'JAXFP_DISTRIBUTED')


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def child_env(devices: int | None = None,
              compile_cache: str = 'session') -> dict[str, str]:
  """This environment for a CPU child with `devices` simulated devices.

  `compile_cache`: 'session' shares the test session's persistent
  compilation cache (a relaunch loads what earlier runs compiled), 'none'
  gives none, anything else is a directory. The processes of one
  multi-process run must start from the same cache: only process 0 writes
  it, and a process left to compile alone reaches the first collective late,
  where gloo waits 30 s at most.
  """
  env = {k: v for k, v in os.environ.items() if k not in _OUR_ENV}
  env.update(JAX_PLATFORMS='cpu', TF_CPP_MIN_LOG_LEVEL='2',
             PYTHONFAULTHANDLER='1',
             PYTHONPATH=os.pathsep.join(
                 [str(REPO)] + ([env['PYTHONPATH']]
                                if env.get('PYTHONPATH') else [])))
  if devices is not None:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  for name in ('JAX_COMPILATION_CACHE_DIR',
               'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
               'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'):
    env.pop(name, None)
  cache = (jax.config.jax_compilation_cache_dir if compile_cache == 'session'
           else None if compile_cache == 'none' else compile_cache)
  if cache:
    env.update(JAX_COMPILATION_CACHE_DIR=str(cache),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS='0',
               JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES='0')
  return env


class Child:
  """A subprocess whose output goes to `log`."""

  def __init__(self, args, env, log: pathlib.Path):
    self.args = [str(a) for a in args]
    self.log = log
    with open(log, 'wb') as f:
      # A session of its own, so that killing it reaches its children too
      # (the processes launch/local.sh starts).
      self.popen = subprocess.Popen(self.args, env=env, cwd=REPO, stdout=f,
                                    stderr=subprocess.STDOUT,
                                    start_new_session=True)

  def output(self) -> str:
    return self.log.read_text(errors='replace')

  def tail(self, lines: int = 40) -> str:
    return '\n'.join(self.output().splitlines()[-lines:])

  def describe(self) -> str:
    return (f'$ {" ".join(self.args)}\n(exit {self.popen.poll()}; last lines '
            f'of {self.log})\n{self.tail()}')


def kill_all(children) -> None:
  """Stops each child's process group; running Pythons first print their
  threads' stacks into the logs (faulthandler, on SIGABRT)."""
  running = [c for c in children if c.popen.poll() is None]
  for sig, pause_s in ((signal.SIGABRT, 3), (signal.SIGKILL, 0)):
    for c in running:
      try:
        os.killpg(c.popen.pid, sig)
      except ProcessLookupError:
        pass
    time.sleep(pause_s)
  for c in children:
    c.popen.wait()


def wait_all(children, timeout_s: float) -> list[int]:
  """Exit codes of all children; kills them all when one exceeds the time or
  fails, then raises with each one's last lines."""
  deadline = time.monotonic() + timeout_s
  while any(c.popen.poll() is None for c in children):
    failed = [c for c in children if c.popen.poll() not in (None, 0)]
    if failed or time.monotonic() > deadline:
      kill_all(children)
      reason = ('failed' if failed else f'still running after {timeout_s} s')
      raise AssertionError(f'child processes {reason}:\n\n' +
                           '\n\n'.join(c.describe() for c in children))
    time.sleep(0.2)
  codes = [c.popen.returncode for c in children]
  if any(codes):
    raise AssertionError('child processes failed:\n\n' +
                         '\n\n'.join(c.describe() for c in children))
  return codes


def wait_for(predicate, children, timeout_s: float, what: str) -> None:
  """Polls `predicate` until true; fails (killing children) on timeout or if
  a child exits first."""
  deadline = time.monotonic() + timeout_s
  while not predicate():
    if any(c.popen.poll() is not None for c in children) or (
        time.monotonic() > deadline):
      kill_all(children)
      raise AssertionError(f'gave up waiting for {what}:\n\n' +
                           '\n\n'.join(c.describe() for c in children))
    time.sleep(0.2)


def terminate(child: Child) -> None:
  child.popen.send_signal(signal.SIGTERM)


def checkpoint_steps(workdir: pathlib.Path) -> list[int]:
  """Finished Orbax checkpoints (temporary directories are not steps)."""
  root = workdir / 'checkpoints'
  if not root.is_dir():
    return []
  return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit())


def run_forked(cases: dict, folder: pathlib.Path, env: dict[str, str],
               timeout_s: float) -> dict[str, tuple[int, str]]:
  """Runs each case, name: [module, args], as `python -m module args` in a
  process of its own, side by side, forked from one process that made the
  modules' imports once (tests/forked_commands.py). Returns each case's
  exit status and its stdout and stderr together."""
  logs = folder / 'logs'
  logs.mkdir(parents=True)
  spec = {'cases': {name: (module, [str(a) for a in args],
                           str(logs / f'{i}.log'))
                    for i, (name, (module, args)) in enumerate(cases.items())},
          'out': str(folder / 'codes.json')}
  (folder / 'spec.json').write_text(json.dumps(spec))
  # BLAS in one thread: the server forks only while it has one thread; the
  # commands get the environment as given.
  env = dict(env, OPENBLAS_NUM_THREADS='1',
             _FORKED_COMMANDS_ADDED_ENV='OPENBLAS_NUM_THREADS')
  server = Child([sys.executable, REPO / 'tests' / 'forked_commands.py',
                  folder / 'spec.json'], env, folder / 'server.log')
  wait_all([server], timeout_s)
  codes = json.loads((folder / 'codes.json').read_text())
  assert set(codes) == set(cases), server.tail()
  return {name: (codes[name], pathlib.Path(log).read_text(errors='replace'))
          for name, (_, _, log) in spec['cases'].items()}
