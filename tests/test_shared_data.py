"""Real-data tests never go quiet: a missing shared file is a skip that says why, and a failure
where CI requires the data (VILAB_REQUIRE_DATA=1)."""

from __future__ import annotations

import pytest

from tests import conftest


def test_a_missing_file_skips_with_the_reason(monkeypatch):
    monkeypatch.setattr(conftest, "REQUIRE_DATA", False)
    with pytest.raises(pytest.skip.Exception, match="no-such-file.csv is not present"):
        conftest.shared_data("no-such-file.csv")


def test_a_missing_file_fails_where_the_data_is_required(monkeypatch):
    monkeypatch.setattr(conftest, "REQUIRE_DATA", True)
    with pytest.raises(pytest.fail.Exception, match="VILAB_REQUIRE_DATA=1 requires it"):
        conftest.shared_data("no-such-file.csv")
