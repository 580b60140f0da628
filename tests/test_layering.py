"""The package's layers: every import goes down (docs/layout.md).

Reads the imports of every module under jaxfp/ and configs/ (with `ast`,
lazy imports inside functions included), maps each module to its layer
and reports what breaks the rules below. The checker runs on a copy of the
tree with planted bad imports too, to show that it catches them.
"""

from __future__ import annotations

import ast
import gc
import hashlib
import pathlib
import re
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent

# Top to bottom. A unit is a package (a folder) or a single module; a
# module may import its own unit and the units of lower layers.
LAYERS = (
    ('commands', ('jaxfp/main.py', 'jaxfp/evaluate.py', 'jaxfp/sweep.py',
                  'jaxfp/robustness.py', 'jaxfp/predict.py',
                  'jaxfp/cluster.py', 'jaxfp/convert_torch.py',
                  'jaxfp/benchmark.py', 'jaxfp/plot_curves.py',
                  'jaxfp/reference.py', 'jaxfp/gallery.py',
                  'jaxfp/embeddings.py', 'jaxfp/answers.py')),
    ('tools', ('jaxfp/tools', 'jaxfp/bench', 'jaxfp/pytorch')),
    ('trainer', ('jaxfp/train.py', 'jaxfp/steps.py', 'jaxfp/tasks')),
    ('inference', ('jaxfp/inference',)),
    ('services', ('jaxfp/data', 'jaxfp/report', 'jaxfp/checkpoints.py')),
    ('models', ('jaxfp/models', 'jaxfp/losses', 'jaxfp/zoo')),
    ('core', ('jaxfp/core', 'jaxfp/__init__.py')),
)
# Imports across units of one layer that the layout allows: the trainer
# runs the tasks with its step library; the benchmark's PyTorch column, imported only when torch
# is installed (so only inside a function).
SAME_LAYER = {('jaxfp/train.py', 'jaxfp/tasks'): 'any',
              ('jaxfp/train.py', 'jaxfp/steps.py'): 'any',
              ('jaxfp/bench', 'jaxfp/pytorch'): 'lazy'}
# Who may import what lives outside the layers.
TORCH_USERS = ('jaxfp/pytorch',)
ORBAX_USERS = ('jaxfp/checkpoints.py', 'jaxfp/core/distributed.py')
CONFIG_IMPORTS = ('ml_collections', 'configs', '__future__')


def _unit_layers():
  return {unit: depth for depth, (_, units) in enumerate(LAYERS)
          for unit in units}


def _unit_of(path: str, units) -> str | None:
  """The unit of a file path relative to the repository ('jaxfp/x/y.py')."""
  if path in units:
    return path
  parts = path.split('/')
  for n in range(len(parts) - 1, 0, -1):
    folder = '/'.join(parts[:n])
    if folder in units:
      return folder
  return None


def _module_path(name: str, root: pathlib.Path) -> str | None:
  """'jaxfp.data.images' -> 'jaxfp/data/images.py' (or a package's
  __init__.py), if it is a file of the tree."""
  base = name.replace('.', '/')
  for candidate in (f'{base}.py', f'{base}/__init__.py'):
    if (root / candidate).is_file():
      return candidate
  return None


def _parse(path: pathlib.Path) -> ast.Module:
  """The file's syntax tree, parsed with the garbage collector paused.

  CPython 3.11 keeps one AST recursion counter per interpreter: a finalizer
  that parses too, run by a collection inside this parse, makes it raise
  `SystemError: AST constructor recursion depth mismatch`. Traceback
  formatting parses, and asyncio tasks that Orbax leaves with an
  unretrieved exception format theirs when they are collected: this test
  failed so after the damaged-checkpoint tests.
  """
  source = path.read_text()
  gc.disable()
  try:
    return ast.parse(source, filename=str(path))
  finally:
    gc.enable()


def _imports(path: pathlib.Path, root: pathlib.Path):
  """(imported module, line, lazy) of every import statement in a file;
  `from a import b` names a.b when that is a module of the tree."""
  tree = _parse(path)
  top_level = {id(node) for node in tree.body}
  for node in ast.walk(tree):
    lazy = id(node) not in top_level
    if isinstance(node, ast.Import):
      for alias in node.names:
        yield alias.name, node.lineno, lazy
    elif isinstance(node, ast.ImportFrom):
      module = node.module or ''
      if node.level:  # Relative: resolved against the importing package.
        package = path.relative_to(root).parent.parts
        package = package[:len(package) - (node.level - 1)]
        module = '.'.join(package + ((module,) if module else ()))
      for alias in node.names:
        full = f'{module}.{alias.name}'
        yield (full if _module_path(full, root) else module), node.lineno, lazy


_IMPORTS = {}


def _imports_once(path: pathlib.Path, root: pathlib.Path,
                  files: tuple[str, ...]):
  """_imports(path, root), read once per content of the file: a check reads
  every file twice (its rules, then its cycles), and a planted-import test
  checks its tree before and after changing one file. Keyed by the tree,
  its files (where imports resolve) and the file's bytes."""
  key = (str(root), files, path.relative_to(root).as_posix(),
         hashlib.sha256(path.read_bytes()).hexdigest())
  if key not in _IMPORTS:
    _IMPORTS[key] = tuple(_imports(path, root))
  return _IMPORTS[key]


def check(root: pathlib.Path) -> list[str]:
  """Every import under root/jaxfp and root/configs that breaks a rule."""
  unit_layer = _unit_layers()
  problems = []
  files = sorted(p for folder in ('jaxfp', 'configs')
                 for p in (root / folder).rglob('*.py'))
  names = tuple(p.relative_to(root).as_posix() for p in files)
  for path in files:
    source = path.relative_to(root).as_posix()
    for name, line, lazy in _imports_once(path, root, names):
      where = f'{source}:{line} imports {name}'
      top = name.split('.')[0]
      if source.startswith('configs/'):
        if top not in CONFIG_IMPORTS:
          problems.append(f'{where}: configs import only ml_collections and '
                          'each other')
        continue
      src_unit = _unit_of(source, unit_layer)
      if src_unit is None:
        problems.append(f'{source}: in no layer; add it to LAYERS')
        continue
      if top == 'torch' and not source.startswith(TORCH_USERS):
        problems.append(f'{where}: torch belongs in jaxfp/pytorch')
      if top == 'orbax' and source not in ORBAX_USERS:
        problems.append(f'{where}: checkpoint I/O belongs in '
                        'jaxfp/checkpoints.py')
      if top == 'configs' and unit_layer[src_unit] != 0:
        problems.append(f'{where}: the library gets its settings from its '
                        'callers; only commands read configs/')
      if top != 'jaxfp':
        continue
      target = _module_path(name, root)
      dst_unit = target and _unit_of(target, unit_layer)
      if dst_unit is None:
        problems.append(f'{where}: not a module of the tree')
        continue
      if dst_unit == src_unit:
        continue
      allowed = SAME_LAYER.get((src_unit, dst_unit))
      if allowed == 'any' or (allowed == 'lazy' and lazy):
        continue
      if unit_layer[dst_unit] <= unit_layer[src_unit]:
        src_layer = LAYERS[unit_layer[src_unit]][0]
        dst_layer = LAYERS[unit_layer[dst_unit]][0]
        problems.append(f'{where}: {dst_unit} ({dst_layer}) is not below '
                        f'{src_unit} ({src_layer})')
  return problems + _cycles(root, files, names)


def _cycles(root: pathlib.Path, files, names) -> list[str]:
  """Import cycles between modules of jaxfp (lazy imports included)."""
  graph = {}
  for path in files:
    source = path.relative_to(root).as_posix()
    if source.startswith('jaxfp/'):
      graph[source] = {t for name, _, _ in _imports_once(path, root, names)
                       if name.split('.')[0] == 'jaxfp'
                       and (t := _module_path(name, root)) and t != source}
  problems, state = [], {}

  def visit(node, stack):
    state[node] = 'open'
    for nxt in sorted(graph.get(node, ())):
      if state.get(nxt) == 'open':
        cycle = stack[stack.index(nxt):] + [nxt]
        problems.append('import cycle: ' + ' -> '.join(cycle))
      elif nxt not in state:
        visit(nxt, stack + [nxt])
    state[node] = 'done'

  for node in sorted(graph):
    if node not in state:
      visit(node, [node])
  return problems


def test_imports_go_down_the_layers():
  problems = check(REPO)
  assert not problems, '\n'.join(problems)


@pytest.fixture()
def copy(tmp_path):
  for folder in ('jaxfp', 'configs'):
    shutil.copytree(REPO / folder, tmp_path / folder,
                    ignore=shutil.ignore_patterns('__pycache__'))
  return tmp_path


def _plant(root: pathlib.Path, module: str, line: str) -> None:
  with open(root / module, 'a') as f:
    f.write(f'\n\ndef _planted():\n  {line}\n')


@pytest.mark.parametrize('module,line,expected', [
    ('jaxfp/core/schema.py', 'from jaxfp import train',
     'jaxfp/core/schema.py:.* imports jaxfp.train: jaxfp/train.py '
     r'\(trainer\) is not below jaxfp/core \(core\)'),
    ('jaxfp/models/fen.py', 'from jaxfp.losses import fingerprint',
     'jaxfp/losses .models. is not below jaxfp/models'),
    ('jaxfp/inference/network.py', 'from jaxfp.tasks import parsing',
     'jaxfp/tasks .trainer. is not below jaxfp/inference'),
    ('jaxfp/data/images.py', 'import torch', 'torch belongs in jaxfp/pytorch'),
    ('jaxfp/train.py', 'import orbax.checkpoint',
     'checkpoint I/O belongs in jaxfp/checkpoints.py'),
    ('configs/common.py', 'from jaxfp.data import augment',
     'configs import only ml_collections'),
    ('jaxfp/data/gm_folders.py', 'from configs import data',
     'only commands read configs'),
])
def test_the_checker_reports_a_planted_import(copy, module, line, expected):
  assert not check(copy)
  _plant(copy, module, line)
  problems = check(copy)
  assert any(re.search(expected, p) for p in problems), problems


def test_a_downward_import_is_no_problem(copy):
  _plant(copy, 'jaxfp/inference/network.py', 'from jaxfp.data import images')
  assert not check(copy)


def test_the_checker_reports_a_planted_cycle(copy):
  _plant(copy, 'jaxfp/core/spectrum.py', 'from jaxfp.core import schema')
  _plant(copy, 'jaxfp/core/schema.py', 'from jaxfp.core import spectrum')
  problems = check(copy)
  assert any(p.startswith('import cycle:') and 'jaxfp/core/schema.py' in p
             for p in problems), problems


class _ParsesWhenCollected:
  """Garbage (a reference cycle) whose finalizer parses, as a collected
  asyncio task that formats its exception's traceback does, and leaves
  another such cycle behind while `budget` lasts: whenever a collection
  runs, one is there to collect."""

  budget = 0

  def __init__(self):
    self.cycle = self

  def __del__(self):
    ast.parse('x = (1 + 2) * 3')
    if _ParsesWhenCollected.budget > 0:
      _ParsesWhenCollected.budget -= 1
      _ParsesWhenCollected()


def test_a_finalizer_that_parses_does_not_break_the_checker():
  threshold = gc.get_threshold()
  _ParsesWhenCollected.budget = 10_000
  _ParsesWhenCollected()
  gc.set_threshold(1)  # A collection at nearly every allocation.
  try:
    tree = _parse(REPO / 'jaxfp' / 'inference' / 'predict.py')
  finally:
    gc.set_threshold(*threshold)
    _ParsesWhenCollected.budget = 0
    gc.collect()
  assert isinstance(tree, ast.Module) and tree.body


def test_every_module_is_in_a_layer():
  units = _unit_layers()
  unplaced = [p.relative_to(REPO).as_posix()
              for p in (REPO / 'jaxfp').rglob('*.py')
              if _unit_of(p.relative_to(REPO).as_posix(), units) is None]
  assert not unplaced
