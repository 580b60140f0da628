"""Inference, the converter and the trainer's step run where TensorFlow is
not installed (a GPU host without it): each command runs in a process in
which `import tensorflow` raises."""

import json
import subprocess
import sys

import numpy as np
from PIL import Image
import pytest

import subprocs

# In the child, `import tensorflow` (and tensorflow_datasets) raises
# ImportError and importlib.util.find_spec answers None: what a machine
# without them does.
BLOCKER = """
import sys

for name in ('tensorflow', 'tensorflow_datasets'):
  sys.modules[name] = None
"""
TIMEOUT_S = 600


@pytest.fixture(scope='module')
def env(tmp_path_factory):
  site = tmp_path_factory.mktemp('no_tensorflow')
  (site / 'sitecustomize.py').write_text(BLOCKER)
  env = subprocs.child_env(devices=1)
  env['PYTHONPATH'] = f'{site}:{env["PYTHONPATH"]}'
  return env


def _run(args, env, expect=0):
  done = subprocess.run([sys.executable, *map(str, args)], env=env,
                        cwd=subprocs.REPO, capture_output=True, text=True,
                        timeout=TIMEOUT_S, check=False)
  assert done.returncode == expect, (
      f'{args}: exit {done.returncode}\n{done.stdout[-3000:]}\n'
      f'{done.stderr[-3000:]}')
  return done


def test_tensorflow_is_blocked(env):
  done = _run(['-c', 'import tensorflow'], env, expect=1)
  assert 'ModuleNotFoundError' in done.stderr


def test_the_trainer_step_and_the_libraries_import(env):
  _run(['-c', 'import jaxfp.train, jaxfp.tasks.parsing, '
        'jaxfp.tasks.classification, jaxfp.inference.predict, '
        'jaxfp.inference.cluster, jaxfp.checkpoints, jaxfp.report.summaries, '
        'jaxfp.data.images, jaxfp.data.splits, jaxfp.data.trees, '
        'jaxfp.data.perturbations, jaxfp.tools.evaluate, jaxfp.bench.run; '
        'from jaxfp import tasks; assert tasks.names()'], env)


def test_the_benchmark_model_rows(env, tmp_path):
  output = tmp_path / 'bench.json'
  _run(['-m', 'jaxfp.benchmark', '--smoke', '--torch=off',
        '--rows=parsing_train,parsing_infer,detection_train,detection_infer',
        f'--output={output}'], env)
  rows = json.loads(output.read_text())['rows']
  assert set(rows) == {'parsing_train', 'parsing_infer', 'detection_train',
                       'detection_infer'}
  assert all(r['jaxfp_images_per_s'] > 0 for r in rows.values())


def test_convert_predict_and_cluster(env, tmp_path):
  torch = pytest.importorskip('torch')
  from jaxfp.pytorch import networks  # pylint: disable=g-import-not-at-top
  torch.manual_seed(0)
  fen = networks.FEN(3, width=8).eval()
  head = networks.DetectionHead(channels=(4, 4, 8, 8, 8), hidden=16,
                                image_size=128).eval()
  weights = tmp_path / 'detector.pth'
  torch.save(networks.published_checkpoint(fen, head, 'detection'), weights)
  done = _run(['-m', 'jaxfp.convert_torch', '--task=detection',
               f'--torch_checkpoint={weights}',
               f'--output={tmp_path / "converted"}'], env)
  assert done.stdout.strip() == str(tmp_path / 'converted' / 'checkpoints')

  rng = np.random.default_rng(0)
  for source in ('a', 'b'):
    (tmp_path / 'images' / source).mkdir(parents=True)
    for i in range(3):
      Image.fromarray(rng.integers(0, 256, (40, 40, 3), np.uint8)).save(
          tmp_path / 'images' / source / f'{i}.png')
  checkpoint = f'--checkpoint={tmp_path / "converted"}'
  done = _run(['-m', 'jaxfp.predict', checkpoint,
               f'--output={tmp_path / "preds.jsonl"}', tmp_path / 'images'],
              env)
  lines = (tmp_path / 'preds.jsonl').read_text().splitlines()
  assert len(lines) == 6 and 'P(fake)' in done.stdout
  _run(['-m', 'jaxfp.cluster', checkpoint, '--num_groups=2',
        f'--workdir={tmp_path / "groups"}', tmp_path / 'images'], env)
  assert (tmp_path / 'groups' / 'groups.json').exists()

  # A user error: one line, no traceback, exit status 2.
  done = _run(['-m', 'jaxfp.predict', f'--checkpoint={tmp_path / "nowhere"}',
               tmp_path / 'images'], env, expect=2)
  assert done.stderr.strip().startswith('error: ')
  assert 'does not exist' in done.stderr and 'Traceback' not in done.stderr
