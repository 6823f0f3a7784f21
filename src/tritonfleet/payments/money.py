"""Money is an integer number of credit base units, never a float."""

from typing import NewType

Credit = NewType("Credit", int)
