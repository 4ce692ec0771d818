"""Other languages read the contract from generated files: web/contract.js and docs/mobile.md's tensor
table are exactly what web/make_contract.py renders from runtime/contract.py, and they say what it says."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest

from edgevae.runtime import contract

from conftest import REPO, load_script

Capture = pytest.CaptureFixture[str]


def make_contract() -> ModuleType:
    return load_script(REPO / "web" / "make_contract.py", "make_contract")


def test_the_committed_files_are_the_scripts_output() -> None:
    script = make_contract()
    assert (REPO / "web" / "contract.js").read_text() == script.contract_js(), "run python web/make_contract.py"
    doc = (REPO / "docs" / "mobile.md").read_text()
    assert doc == script.mobile_doc(doc), "run python web/make_contract.py"
    assert script.main(["--check"]) == 0


def test_contract_js_holds_the_contracts_names_and_tolerances() -> None:
    text = (REPO / "web" / "contract.js").read_text()
    data = json.loads(re.search(r"Object\.freeze\((\{.*\})\);", text, re.S).group(1))
    for graph, spec in contract.GRAPHS.items():
        assert [t["name"] for t in data["graphs"][graph]["inputs"]] == spec.input_names
        assert [t["name"] for t in data["graphs"][graph]["outputs"]] == spec.output_names
    assert list(data["graphs"]) == list(contract.GRAPHS)
    assert data["tolerance"] == contract.TOLERANCE and data["relativeTolerance"] == contract.RELATIVE_TOLERANCE
    assert {k: v["suffix"] for k, v in data["variants"].items()} == {k: v.suffix for k, v in contract.VARIANTS.items()}
    assert (data["goldenDataFile"], data["goldenSpecFile"]) == (contract.GOLDEN_DATA_FILE, contract.GOLDEN_SPEC_FILE)


def test_the_table_lists_every_tensor_with_its_dtype_and_shape() -> None:
    doc = (REPO / "docs" / "mobile.md").read_text()
    for graph, spec in contract.GRAPHS.items():
        for kind, tensors in (("input", spec.inputs), ("output", spec.outputs)):
            for t in tensors:
                assert f"| {graph} | `{t.name}` | {kind} | {t.dtype} | [{', '.join(t.shape)}] |" in doc


def test_the_readme_and_the_web_page_link_the_mobile_page() -> None:
    assert "(docs/mobile.md)" in (REPO / "README.md").read_text()
    assert "(mobile.md)" in (REPO / "docs" / "web.md").read_text()


def test_a_stale_file_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Capture) -> None:
    script = make_contract()
    stale = tmp_path / "contract.js"
    stale.write_text("export const CONTRACT = {};\n")
    monkeypatch.setattr(script, "CONTRACT_JS", stale)
    monkeypatch.setattr(script, "REPO", tmp_path.parent)
    monkeypatch.setattr(script, "MOBILE_DOC", REPO / "docs" / "mobile.md")
    assert script.main(["--check"]) == 1
    assert "contract.js differs from runtime/contract.py" in capsys.readouterr().out
