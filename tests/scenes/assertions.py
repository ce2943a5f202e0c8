"""The assertion every bad-input test of `scenes` makes: an error that names the file, then what is wrong."""

import re

import pytest

from scenes.errors import InvalidInputError


def raises_naming(path, *fragments):
    """pytest.raises for an InvalidInputError whose message names `path` (and contains the fragments, in order)."""
    pattern = re.escape(str(path)) + "".join(f"(?s:.*){re.escape(f)}" for f in fragments)
    return pytest.raises(InvalidInputError, match=pattern)
