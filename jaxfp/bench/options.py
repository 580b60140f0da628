"""What the benchmark measures; the command fills it from flags, tests build
it directly."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import ml_collections

ROWS = ('parsing_train', 'parsing_infer', 'detection_train',
        'detection_infer', 'input_pipeline')


@dataclasses.dataclass
class Options:
  """What to measure.

  `parsing_config` and `detection_config` are the recipes of the rows
  (configs/fen.py and configs/detection.py: the published ones, their
  `:test` presets for --smoke); the benchmark sets their batch and dtype.
  """
  parsing_config: ml_collections.ConfigDict
  detection_config: ml_collections.ConfigDict
  rows: Sequence[str] = ROWS
  parsing_batch: int = 16
  detection_batch: int = 32
  warmup: int = 2
  repeats: int = 5
  min_repeat_s: float = 0.2
  dtype: str = 'float32'
  torch: str = 'auto'  # 'auto' | 'on' | 'off'.
  torch_threads: int = 0  # 0 = torch's default.
  peak_flops: float | None = None
  data_gms: int = 4
  data_images_per_gm: int = 128
  data_workers: int = 2
  smoke: bool = False
  profile_dir: str | None = None
  profile_steps: int = 3
  output: str | None = None

  def __post_init__(self):
    unknown = sorted(set(self.rows) - set(ROWS))
    if unknown:
      raise ValueError(f'unknown rows {unknown}; known: {list(ROWS)}')
    if self.torch not in ('auto', 'on', 'off'):
      raise ValueError(f"torch={self.torch!r}: use 'auto', 'on' or 'off'")
    jnp.dtype(self.dtype)
    if self.smoke:
      # One tiny step a row: what the test suite runs.
      self.parsing_batch = self.detection_batch = 2
      self.warmup, self.repeats, self.min_repeat_s = 0, 1, 0.0
      self.data_gms, self.data_images_per_gm, self.data_workers = 2, 4, 0
      self.profile_steps = 1
