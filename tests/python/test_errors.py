"""Every failure raises dualbragg.Error carrying the library's message."""
import numpy as np
import pytest

import dualbragg
from conftest import SMALL


def test_bad_flag():
    with pytest.raises(dualbragg.Error, match="unknown flag '-bogus'") as e:
        dualbragg.Simulation(["-cell", "100", "-bogus", "1"])
    assert e.value.code == 1  # DB_ERR_ARGUMENT


def test_non_numeric_value():
    with pytest.raises(dualbragg.Error, match="-distance"):
        dualbragg.Simulation("-cell 100 -default_F 1 -distance far")


def test_missing_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(dualbragg.Error, match="nothere.hkl") as e:
        dualbragg.Simulation("-cell 100 -hkl nothere.hkl")
    assert e.value.code == 2  # DB_ERR_IO


def test_malformed_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.hkl").write_text("1 2 3 4\n1 2 x 5\n")
    with pytest.raises(dualbragg.Error, match="bad.hkl"):
        dualbragg.Simulation("-cell 100 -hkl bad.hkl")


def test_bad_parameter_name():
    sim = dualbragg.Simulation("-cell 100 -default_F 1 -detpixels 8")
    with pytest.raises(dualbragg.Error, match="unknown parameter 'nope'"):
        sim.run(grad=["a", "nope"])
    with pytest.raises(dualbragg.Error, match="unknown parameter 'cell'"):
        sim.set_params({"cell": 3})
    with pytest.raises(dualbragg.Error, match="unknown parameter"):
        sim.get_params(["phi"])


def test_refused_value_names_parameter_and_changes_nothing():
    sim = dualbragg.Simulation("-cell 100 -default_F 1 -detpixels 8")
    with pytest.raises(dualbragg.Error, match="distance") as e:
        sim.set_params({"a": 101, "distance": -5})
    assert e.value.code != 0
    assert sim.get_params(["a", "distance"]) == {"a": 100.0, "distance": 100.0}


def test_bad_boxes_and_shapes():
    sim = dualbragg.Simulation("-cell 100 -default_F 1 -detpixels 8")
    with pytest.raises(dualbragg.Error):
        sim.select_boxes([[5, 2, 0, 3]])  # xmin > xmax: the library's refusal
    with pytest.raises(dualbragg.Error, match="integers"):
        sim.select_boxes([[0.5, 2, 0, 3]])
    with pytest.raises(dualbragg.Error, match="shape"):
        sim.refine(np.zeros((4, 4)), ["a"])


def test_refine_refusal_message(in_case):
    """An inseparable pair (phi0 and misset_z share the spindle axis here) is refused by name, as in C."""
    in_case("b_triclinic")
    args = [a for a in SMALL]
    i = args.index("-misset")
    args[i + 1:i + 4] = ["0", "0", "0"]
    sim = dualbragg.Simulation(args + ["-spindle_axis", "0", "0", "1"])
    obs = sim.run()
    with pytest.raises(dualbragg.Error, match="phi0|misset_z"):
        sim.refine(obs, ["phi0", "misset_z"], boxes=[[0, 63, 0, 63]])
