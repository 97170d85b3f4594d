"""Where offline data comes from: located once, fallbacks said out loud, failures leave nothing."""

from __future__ import annotations

import pytest

from hrl_core.data.d4rl import locate
from hrl_core.data.sources import locate_source, read_source
from hrl_core.errors import HrlError
from tests.conftest import write_d4rl_slice


@pytest.fixture
def offline(monkeypatch):
    """Every HTTP(S) request goes to a closed local port: a machine without network."""
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")


def test_a_failed_download_leaves_no_folder_behind(tmp_path, monkeypatch, offline):
    target = tmp_path / "new" / "cache"
    monkeypatch.setenv("D4RL_DATASET_DIR", str(target))
    with pytest.raises(HrlError, match="download failed"):
        locate("hopper-medium-v2")
    assert not (tmp_path / "new").exists()


def test_auto_falls_back_to_generated_data_and_says_so(tmp_path, monkeypatch, offline, d4rl_dir, capsys):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    gen = tmp_path / "generated" / "hopper_medium-v2.hdf5"
    gen.parent.mkdir()
    write_d4rl_slice(d4rl_dir / "hopper_medium-v2.hdf5", gen, 3000)
    file = locate_source("hopper-medium-v2", "auto")
    assert file.path == gen and file.source == "generated"
    assert file.note.startswith(f"hopper_medium-v2.hdf5 not found in {tmp_path}") and str(gen) in file.note
    data = read_source(file)
    assert data.provenance["source_note"] == file.note
    assert f"hrl: note: {file.note}" in capsys.readouterr().err
    # Located without downloading (grid --dry_run): the same file, no note needed.
    assert locate_source("hopper-medium-v2", "auto", allow_download=False).path == gen
