"""Shared helpers of the Python package's tests (run with pytest from the repository root after `pip install .`)."""
import os
import shlex

import pytest

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden")
CASES = sorted(d for d in os.listdir(GOLDEN) if os.path.isfile(os.path.join(GOLDEN, d, "cmd.txt")))
INPUTS = ("P1.hkl", "A.mat", "sources.txt")


def case_args(case):
    """Line 1 of the case's cmd.txt: the arguments after the program name, without the redirection."""
    with open(os.path.join(GOLDEN, case, "cmd.txt")) as f:
        line = f.readline()
    words = shlex.split(line.split(">")[0])
    prog = next(i for i, w in enumerate(words) if w.endswith("nanoBragg"))
    return words[prog + 1:]


@pytest.fixture
def in_case(monkeypatch, tmp_path):
    """Copies a case's inputs into a fresh folder and makes it the current one (files relative to it)."""
    def enter(case):
        for name in INPUTS:
            src = os.path.join(GOLDEN, case, name)
            if os.path.exists(src):
                with open(src, "rb") as a, open(tmp_path / name, "wb") as b:
                    b.write(a.read())
        monkeypatch.chdir(tmp_path)
        return tmp_path
    return enter


# b_triclinic on a 64x64 detector: a small case with a structure-factor table, for derivative and refinement tests
SMALL = ["-cell", "70", "80", "90", "75", "85", "95", "-misset", "10", "20", "30", "-hkl", "P1.hkl", "-Na", "4",
         "-Nb", "5", "-Nc", "6", "-lambda", "1", "-distance", "100", "-pixel", "0.1", "-detpixels", "64",
         "-oversample", "1"]
