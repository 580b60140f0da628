"""Deepfake detection: FEN-31 + the binary detection head, 128x128 images.

  --config=configs/detection.py        the published recipe (weights and loss
                                       from the reference; batch 32, Adam 1e-4)
  --config=configs/detection.py:cpu    narrow networks for a 2-core CPU
  --config=configs/detection.py:test   tiny, for the test suite

Real vs fake from folder-per-class images: the built-in real photo crops vs
zoo generators by default; --config.data.source=folder
--config.data.root=DIR for your own DIR/real + DIR/fake.
"""

from configs import classifier


def get_config(preset: str = ''):
  return classifier.classifier_config('detection', fen_depth=31,
                                      task_weight=20.0, preset=preset)
