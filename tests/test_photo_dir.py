"""config.answer.photo_dir: a user's camera photographs join the detector's
real class; a bad folder is named before training, a bad file left out."""

import numpy as np
from PIL import Image
import pytest

from configs import fen as fen_config
from jaxfp.tasks import answering
from jaxfp.tasks import parsing


@pytest.fixture
def warnings(monkeypatch):
  seen = []
  monkeypatch.setattr(answering.logging, 'warning',
                      lambda msg, *args: seen.append(msg % args))
  return seen


def _red_photograph(path, size=300):
  pixels = np.zeros((size, size + 40, 3), np.uint8)
  pixels[..., 0] = 255
  Image.fromarray(pixels).save(path)


def test_the_folders_photographs_are_cropped_and_a_bad_file_is_named(
    tmp_path, warnings):
  _red_photograph(tmp_path / 'red.png')
  (tmp_path / 'broken.jpg').write_bytes(b'not a jpeg')
  crops = answering.real_crops(32, 600, 0, photo_dir=str(tmp_path))
  assert crops.shape == (600, 32, 32, 3) and crops.dtype == np.uint8
  red = np.all(crops == np.array([255, 0, 0], np.uint8), axis=(1, 2, 3))
  # One photograph among the 16 bundled ones at each scale: about 1/17.
  assert 10 < red.sum() < 100
  without = answering.real_crops(32, 600, 0)
  assert not np.all(without == np.array([255, 0, 0], np.uint8),
                    axis=(1, 2, 3)).any()
  assert any('broken.jpg' in w for w in warnings), warnings
  assert any('1 unreadable file left out, 1 read' in w for w in warnings)


@pytest.mark.parametrize('case', ['missing', 'empty', 'unreadable'])
def test_a_bad_folder_is_one_error_that_names_it(tmp_path, case):
  folder = tmp_path / 'photos'
  if case != 'missing':
    folder.mkdir()
    (folder / 'notes.txt').write_text('no image here')
  if case == 'unreadable':
    (folder / 'a.png').write_bytes(b'')
  with pytest.raises(ValueError, match='config.answer.photo_dir=.*photos'):
    answering.real_crops(32, 10, 0, photo_dir=str(folder))


def test_the_parsing_task_names_a_bad_folder_before_reading_data(tmp_path):
  config = fen_config.get_config('test')
  config.data.data_dir = str(tmp_path / 'no_data_here')
  config.answer.photo_dir = str(tmp_path / 'no_such_folder')
  with pytest.raises(ValueError, match='no_such_folder.* is not a folder'):
    parsing.ParsingTask(config)
