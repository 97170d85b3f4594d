"""Digests: the numbers in README.md and docs/ are generated from the committed records."""

from __future__ import annotations

import re

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


def _section(text: str, start: str, end: str) -> str:
    return text[text.index(start) : text.index(end)].replace("\u2212", "-")  # README writes U+2212


def test_readme_answer_quotes_only_what_the_records_give():
    """README's answer bullets are prose, not digest blocks; every number they quote must still be one the
    committed records give (a part's record moving on without README following is caught here)."""
    readme = digest.documents()[0].read_text()  # README.md
    review = _section(readme, "- **The review study**", "- **A mechanism corrected.**")
    review = re.sub(r"<!-- digest:.*?<!-- /digest:[^>]*-->", "", review, flags=re.S)  # checked by the test above
    review = re.sub(r"~~.*?~~", "", review, flags=re.S)  # struck through: a number withdrawn, quoted as such
    table = digest.render("primary:study_review")
    quoted = re.findall(r"\[[-+]\d+\.\d, [-+]\d+\.\d\]|[-+]\d+\.\d|\b0\.\d{3}\b", review)
    assert len(quoted) >= 3, review  # the bullet quotes intervals, estimates and p-values
    assert [q for q in quoted if q not in table] == []
    # the long study's re-read: the range of its bonus intervals' far ends and of the detectable effects
    long_bullet = _section(readme, "- **No effect of the exploration bonus", "- **The review study**")
    rows = [
        r.split(" | ") for r in digest.render("reanalysis:study_long:study_review").splitlines() if r.startswith("| ")
    ][2:]
    bonus = [r for r in rows if r[0].startswith("| bonus")]
    far = {r[1].split(" k=")[0]: round(float(r[6])) for r in bonus}
    lo, hi = min(far, key=far.get), max(far, key=far.get)
    assert f"{far[lo]} ({lo})" in long_bullet and f"{far[hi]} ({hi})" in long_bullet
    single = [float(r[7].split(" ")[0]) for r in rows]
    holm = [float(r[7].split("(")[1].split(" ")[0]) for r in rows]
    assert f"~{round(min(single))}–{round(max(single))} points as single tests" in long_bullet
    assert f"~{round(min(holm))}–{round(max(holm))} at the family's corrected level" in long_bullet
