"""Read a CSV into a DataFrame with refusals that say what to fix (missing file, empty file, no header)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from diffsight.errors import DiffsightError
from diffsight.tasks.tables.schema import check_table

__all__ = ["read_table"]


def read_table(path: str | Path) -> pd.DataFrame:
    """The CSV at ``path`` as a DataFrame; empty cells (and NA, NaN, null, ...) are missing values."""
    path = Path(path)
    if not path.is_file():
        raise DiffsightError(f"no such file: {path}")
    try:
        frame = pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise DiffsightError(f"{path} is empty: give a CSV with a header row and data rows") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as err:
        raise DiffsightError(f"{path} is not a readable CSV ({err}); check its delimiter and encoding") from None
    return check_table(frame)
