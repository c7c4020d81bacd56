"""The hand-written tables a user reads first name every registered regularizer: a new one that is missing from
them fails here, not in a reader's hands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from regbench import regularizers

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("page", ["README.md", "docs/regularizers.md"])
def test_the_regularizer_tables_name_every_registered_regularizer(page):
    rows = set(re.findall(r"^\| `(\w+)` \|", (ROOT / page).read_text(), flags=re.M))
    assert set(regularizers.REGULARIZERS) <= rows, f"{page} lacks {set(regularizers.REGULARIZERS) - rows}"


def test_every_link_between_the_pages_resolves():
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).is_file(), f"{page.name} links to {target}, which does not exist"
