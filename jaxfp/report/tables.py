"""Markdown tables, the one way every report, command and file writes them."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def markdown(header: Sequence[object], rows: Iterable[Sequence[object]]
             ) -> str:
  """A header row, the separator, one line per row; cells as str()."""
  lines = [_line(header), '|' + '---|' * len(header)]
  lines += [_line(row) for row in rows]
  return '\n'.join(lines)


def _line(cells: Sequence[object]) -> str:
  return '| ' + ' | '.join(str(c) for c in cells) + ' |'
