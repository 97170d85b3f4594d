"""Digests: the numbers in README.md and docs/ are generated from the committed records."""

from __future__ import annotations

import pytest

from hrl_core.errors import HrlError
from hrl_core.lab import digest


def test_the_committed_documents_hold_what_the_records_give(capsys):
    assert digest.main(["--check"]) == 0, capsys.readouterr().out


def test_a_block_is_filled_from_its_record_and_a_hand_edit_is_found(tmp_path):
    name = "notebook:executed/study_cql.ipynb#pooled-over-settings"
    doc = tmp_path / "doc.md"
    doc.write_text(f"intro\n<!-- digest:{name} -->\n| made up | 1.0 |\n<!-- /digest:{name} -->\nend\n")
    assert digest.refresh(doc, check_only=True) == [name]
    assert "made up" in doc.read_text()  # a check never writes
    assert digest.refresh(doc) == [name]
    text = doc.read_text()
    assert "made up" not in text and "member init (warmstart - vanilla)" in text and text.endswith("end\n")
    assert digest.refresh(doc, check_only=True) == []  # now in step with the record
    row = "member init (warmstart - vanilla) | 2 | +"
    doc.write_text(text.replace(row, row + "9"))  # one digit changed by hand
    assert digest.refresh(doc, check_only=True) == [name]


def test_bad_digest_names_are_one_line_errors():
    with pytest.raises(HrlError, match="no heading #no-such-section"):
        digest.render("notebook:executed/study_cql.ipynb#no-such-section")
    with pytest.raises(HrlError, match="unknown digest"):
        digest.render("efects:study_long")
