"""Ablation sweeps: each file is a base config plus the runs that vary it.

  python -m jaxfp.sweep --config=configs/sweeps/<name>.py[:preset] \
      --workdir=runs/<name> [--config.<field>=<value> ...]

`get_config(preset)` gives the base config, `get_sweep(preset)` the
(run name, {dotted field: value}) pairs (see `jaxfp.sweep`). The preset is a
configs/fen.py preset: 'cpu' (the default here, sized for a 2-core CPU),
'cpu_fen' (the default of the sweeps that vary the FEN: the CPU preset has
none), 'published' (the published recipe) or 'test' (tiny, for the test
suite).
"""

import ml_collections

from configs import fen

DEFAULT_PRESET = 'cpu'


def base_config(preset: str | None = None, default: str = DEFAULT_PRESET
                ) -> ml_collections.ConfigDict:
  """configs/fen.py with `preset` ('' and 'published': the published one),
  `default` when none is given; without the per-image answer, which no
  sweep table reads (--config.answer.enabled=True brings it back)."""
  config = fen.get_config(default if preset is None else preset)
  config.answer.enabled = False
  return config
