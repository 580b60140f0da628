"""Runs many short commands, each `python -m MODULE ARGS` in a process of
its own, paying the imports once.

Started by a test as one subprocess:

  python tests/forked_commands.py SPEC.json

SPEC.json: {"cases": {name: [module, [args...], log_path]}, "out": path}.
This process imports what the command modules import (not the command
modules themselves: each runs afresh as __main__, defining its flags, as
under `python -m`), then forks one child per case. A child sends its
stdout and stderr to its log, runs its module with runpy as `python -m`
would, and exits as that process would (an uncaught exception: its
traceback and status 1). The exit status of every case goes to "out" as
JSON.

Forking is safe only in a process of one thread: BLAS is held to one thread
here (OPENBLAS_NUM_THREADS=1, given back to the children's environment), and
if any library started a thread anyway, each case runs as a plain
`python -m` subprocess instead: slower, the same result.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import os
import runpy
import subprocess
import sys

# Set by the test for this process only; the commands see their own value.
ADDED_ENV = '_FORKED_COMMANDS_ADDED_ENV'


def _imports_of(module: str) -> list[str]:
  """The modules `module`'s top level imports."""
  spec = importlib.util.find_spec(module)
  with open(spec.origin, encoding='utf-8') as f:
    tree = ast.parse(f.read())
  names = []
  for node in tree.body:
    if isinstance(node, ast.Import):
      names += [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0:
      names.append(node.module)
      # `from package import module` imports the module too.
      names += [f'{node.module}.{a.name}' for a in node.names]
  return names


def _preload(modules) -> None:
  for module in modules:
    for name in _imports_of(module):
      try:
        importlib.import_module(name)
      except ImportError:
        pass  # A name imported from a module, not a module.


def _single_threaded() -> bool:
  return len(os.listdir('/proc/self/task')) == 1


def _child_environ() -> None:
  for name in os.environ.pop(ADDED_ENV, '').split(','):
    if name:
      os.environ.pop(name, None)


def _run_case(module: str, args: list[str], log: str) -> None:
  """In the forked child: becomes `python -m module args > log 2>&1`."""
  _child_environ()
  fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
  os.dup2(fd, 1)
  os.dup2(fd, 2)
  os.close(fd)
  sys.argv = [module] + list(args)  # runpy sets argv[0] to the file.
  runpy.run_module(module, run_name='__main__', alter_sys=True)
  sys.exit(0)


def main() -> None:
  with open(sys.argv[1], encoding='utf-8') as f:
    spec = json.load(f)
  cases = spec['cases']
  _preload(sorted({module for module, _, _ in cases.values()}))
  codes = {}
  if _single_threaded():
    pids = {}
    for name, (module, args, log) in cases.items():
      sys.stdout.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        # Whatever happens here ends this child as `python -m` would end:
        # the exception propagates out of this process, never back into
        # the loop.
        _run_case(module, args, log)
      pids[name] = pid
    for name, pid in pids.items():
      _, status = os.waitpid(pid, 0)
      codes[name] = os.waitstatus_to_exitcode(status)
  else:
    print('forked_commands: imports started threads; running each case as '
          'a plain subprocess', flush=True)
    env = dict(os.environ)
    for name in env.pop(ADDED_ENV, '').split(','):
      if name:
        env.pop(name, None)
    children = {}
    for name, (module, args, log) in cases.items():
      with open(log, 'wb') as f:
        children[name] = subprocess.Popen(
            [sys.executable, '-m', module, *args], env=env, stdout=f,
            stderr=subprocess.STDOUT)
    for name, child in children.items():
      codes[name] = child.wait()
  with open(spec['out'], 'w', encoding='utf-8') as f:
    json.dump(codes, f)


if __name__ == '__main__':
  main()
