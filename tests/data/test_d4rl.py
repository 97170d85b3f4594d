"""The D4RL HDF5 reader on the shipped layout and on the variants real files have."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hrl_core.data.d4rl import download, load_dataset, locate, read_hdf5
from hrl_core.errors import HrlError
from tests.conftest import write_d4rl_slice


def test_reads_shipped_file_with_provenance(d4rl_dir):
    path = d4rl_dir / "hopper_medium-v2.hdf5"
    data = read_hdf5(path)
    with h5py.File(path) as f:
        n = len(f["rewards"])
        np.testing.assert_array_equal(data.observations, f["observations"][:])
        np.testing.assert_array_equal(data.next_observations, f["next_observations"][:])
        np.testing.assert_array_equal(data.terminals, f["terminals"][:].astype(bool))
    assert len(data) == n
    assert data.observations.dtype == np.float32 and data.terminals.dtype == bool
    prov = data.provenance
    assert prov["file_size_bytes"] == path.stat().st_size
    assert len(prov["sha256"]) == 64
    # The stand-in describes itself; the reader must not call it real D4RL.
    assert prov["hdf5_attrs"]["env_id"] == "Hopper-v4"
    assert prov["kind"].startswith("not D4RL")


def test_float_flags_and_extra_groups(d4rl_dir, tmp_path):
    src = d4rl_dir / "hopper_medium-v2.hdf5"
    plain = read_hdf5(write_d4rl_slice(src, tmp_path / "a.hdf5", 3000))
    odd = read_hdf5(write_d4rl_slice(src, tmp_path / "b.hdf5", 3000, float_flags=True, extra_groups=True))
    np.testing.assert_array_equal(plain.terminals, odd.terminals)
    np.testing.assert_array_equal(plain.rewards, odd.rewards)
    assert odd.provenance["hdf5_groups"] == ["infos", "metadata"]


def test_missing_next_observations_are_derived_within_trajectories(d4rl_dir, tmp_path):
    src = d4rl_dir / "hopper_medium-v2.hdf5"
    n = 3000
    full = read_hdf5(write_d4rl_slice(src, tmp_path / "a.hdf5", n))
    derived = read_hdf5(write_d4rl_slice(src, tmp_path / "b.hdf5", n, drop_next=True))
    assert derived.provenance["next_observations"] == "derived"
    # Every kept non-terminal row's derived successor equals the file's own one.
    ends = full.terminals | full.timeouts
    keep = ~full.timeouts
    keep[-1] = bool(full.terminals[-1])
    assert len(derived) == keep.sum()
    nonterm = ~derived.terminals
    np.testing.assert_array_equal(derived.next_observations[nonterm], full.next_observations[keep][nonterm])
    # The cut-off trajectory at the end of the slice lost its last row, which has no successor.
    assert ends.sum() > 0 and len(derived) < n


def test_truncated_file_is_one_clear_error(d4rl_dir, tmp_path):
    bad = tmp_path / "hopper_medium-v2.hdf5"
    bad.write_bytes((d4rl_dir / "hopper_medium-v2.hdf5").read_bytes()[:4096])
    with pytest.raises(HrlError, match="not a readable HDF5 file"):
        read_hdf5(bad)


def test_file_without_d4rl_keys(tmp_path):
    path = tmp_path / "x.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations", data=np.zeros((3, 2)))
    with pytest.raises(HrlError, match="lacks the D4RL keys"):
        read_hdf5(path)


def test_lookup_uses_d4rl_names_and_env_var(d4rl_env):
    assert locate("halfcheetah-medium-v2") == d4rl_env / "halfcheetah_medium-v2.hdf5"
    assert load_dataset("hopper-medium-v2").provenance["dataset"] == "hopper-medium-v2"


def test_absent_file_without_download_names_file_and_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    with pytest.raises(HrlError) as err:
        locate("hopper-medium-v2", allow_download=False)
    assert "hopper_medium-v2.hdf5" in str(err.value) and str(tmp_path) in str(err.value)
    with pytest.raises(HrlError, match="unknown dataset"):
        locate("walker2d-expert-v9")


def test_download_is_checked_then_renamed(d4rl_dir, tmp_path):
    """The real download path, fed by a file:// URL (no network needed)."""
    good_src = write_d4rl_slice(d4rl_dir / "hopper_medium-v2.hdf5", tmp_path / "src.hdf5", 500)
    dest = tmp_path / "cache" / "hopper_medium-v2.hdf5"
    download(good_src.as_uri(), dest)
    assert len(read_hdf5(dest)) > 0
    assert not list(dest.parent.glob("*.part"))

    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"<html>not found</html>")
    dest2 = tmp_path / "cache" / "halfcheetah_medium-v2.hdf5"
    with pytest.raises(HrlError):
        download(junk.as_uri(), dest2)
    assert not dest2.exists() and not list(dest2.parent.glob("*.part"))
