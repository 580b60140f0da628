"""Image attribution: FEN-17 + the attribution head on the spectrum, 128x128.

  --config=configs/attribution.py        the published recipe (5 classes: real
                                         + 4 generators; batch 32, Adam 1e-4)
  --config=configs/attribution.py:cpu    narrow networks for a 2-core CPU
  --config=configs/attribution.py:test   tiny, for the test suite

Classes are folders: the built-in real photo crops + one folder per zoo
generator by default; --config.data.source=folder --config.data.root=DIR for
your own DIR/<class>/ tree.
"""

from configs import classifier


def get_config(preset: str = ''):
  return classifier.classifier_config('attribution', fen_depth=17,
                                      task_weight=10.0, preset=preset)
