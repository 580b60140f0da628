"""jaxfp.plot_curves: training curves read back from the trainer's writer."""

import os

import numpy as np

from jaxfp.report import summaries
from jaxfp.tools import curves


def _run(workdir, losses):
  writer = summaries.writer(str(workdir), chief=True)
  for step, loss in enumerate(losses, start=1):
    writer.write_scalars(step, {'loss': loss, 'fingerprint_magnitude': 0.5})
  writer.flush()
  writer.close()


def test_scalars_read_back_and_one_picture(tmp_path):
  _run(tmp_path / 'a', [3.0, 2.0, 1.0])
  _run(tmp_path / 'b', [3.0, 2.5, 2.0])
  steps, values = curves.read_scalars(str(tmp_path / 'a'))['loss']
  np.testing.assert_array_equal(steps, [1, 2, 3])
  np.testing.assert_allclose(values, [3.0, 2.0, 1.0])
  output = tmp_path / 'curves.png'
  text = curves.compare([str(tmp_path / 'a'), str(tmp_path / 'b')], None,
                        ['loss', 'fingerprint_spectrum'], str(output))
  assert 'a: loss 3 at step 1 -> 1 at step 3' in text
  assert "b: no scalars ['fingerprint_spectrum']" in text
  assert os.path.getsize(output) > 0
