"""A job's identity and a row's provenance: what the run_id hashes (and does not), the code state,
libraries, machine and heap a row records, and the refusal to write committed results from a dirty tree."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny_suites import tiny_spec, write_tiny_suite

from harness.cli.main import main
from harness.results import provenance
from harness.results.store import read_rows
from harness.run.orchestrate import run_suite
from harness.suite.load import load_suite

ROOT = Path(__file__).resolve().parent.parent


def ids(path: Path, *overrides: str, device: str | None = None) -> list[str]:
    return [j.run_id for j in load_suite(path, list(overrides), device=device).jobs]


def test_auto_is_the_resolved_device(tmp_path: Path) -> None:
    """On a machine without CUDA, device auto gives the ids of device cpu, and cuda others."""
    import torch

    path = write_tiny_suite(tmp_path, name="ident")
    cpu, cuda = ids(path, device="cpu"), ids(path, device="cuda")
    assert set(cpu).isdisjoint(cuda)
    assert ids(path, device="auto") == (cuda if torch.cuda.is_available() else cpu)
    assert {j.device for j in load_suite(path, [], device="auto").jobs} == {
        "cuda" if torch.cuda.is_available() else "cpu"}


def test_names_are_not_hashed_what_changes_numbers_is(tmp_path: Path) -> None:
    path = write_tiny_suite(tmp_path, name="ident")
    base = ids(path)
    renamed = tmp_path / "other.yaml"
    renamed.write_text(path.read_text().replace("name: ident", "name: other").replace("name: a,", "name: a2,")
                       .replace("baseline: a", "baseline: a2"))
    assert ids(renamed) == base
    assert ids(path, "train.lr=0.002")[:4] != base[:4]  # training jobs: every train key
    assert ids(path, "train.lr=0.002")[4:] == base[4:]  # a cost cell: the lr changes no cost
    assert ids(path, "train.grad_clip=0")[4:] != base[4:]  # clipping off is another step
    assert ids(path, "train.grad_clip=0.5")[4:] == base[4:]  # ... its threshold is not
    assert ids(path, "train.precision=bf16")[4:] != base[4:]
    assert ids(path, "train.threads=2") != base


def test_the_heap_policy_is_part_of_the_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.core import heap

    path = write_tiny_suite(tmp_path, name="ident")
    base = load_suite(path).jobs
    monkeypatch.setattr(heap, "_state", "system")
    system = load_suite(path).jobs
    assert {j.heap for j in base} == {"pinned"} and "heap" not in base[0].identity()
    assert [j.run_id for j in base] != [j.run_id for j in system]
    assert all(j.identity()["heap"] == "system" for j in system)


def test_renaming_a_variant_or_the_suite_retrains_nothing(tmp_path: Path) -> None:
    path = write_tiny_suite(tmp_path, name="ident")
    results = tmp_path / "results"
    first = run_suite(load_suite(path), results, quiet=True)
    assert first.ran == 6
    rows = list(read_rows(first.results_path))
    renamed = tmp_path / "ident2.yaml"
    text = path.read_text().replace("name: ident", "name: ident2")
    renamed.write_text(text.replace("name: b,", "name: pre,"))
    again = run_suite(load_suite(renamed), results, quiet=True)
    assert again.ran == 0 and again.reused == 6
    copied = {r["run_id"]: r for r in read_rows(again.results_path)}
    for old in rows:
        new = copied[old["run_id"]]
        assert new["suite"] == "ident2" and new["metrics"] == old["metrics"] and new["curve"] == old["curve"]
        assert new["variant"] == ("pre" if old["variant"] == "b" else old["variant"])
        assert new["reused_from"] == {"suite": "ident", "variant": old["variant"], "task": old["task"]}
    # a variant renamed inside the same suite: stored again under its new name, nothing trained
    inside = tmp_path / "ident.yaml"
    inside.write_text(path.read_text().replace("name: b,", "name: b-pre,"))
    third = run_suite(load_suite(inside), results, quiet=True)
    assert third.ran == 0 and third.reused == 3  # two seeds and the cost cell of b


def test_two_variants_that_are_one_job_are_refused(refused_suite) -> None:  # noqa: ANN001
    line = refused_suite(tiny_spec(name="dup", variants=[{"name": "a", "model": "vanilla"},
                                                         {"name": "b", "model": "vanilla"}]))
    assert "variants[1].name" in line and "same job as variant 'a'" in line, line


def test_rows_record_code_libraries_machine_and_heap(tmp_path: Path) -> None:
    import torch

    path = write_tiny_suite(tmp_path, name="prov")
    summary = run_suite(load_suite(path), tmp_path / "results", quiet=True)
    row = next(read_rows(summary.results_path))
    code = row["code"]
    assert set(code) == {"commit", "dirty", "source", "files"}
    assert code["source"] == provenance.source_hash()
    files = code["files"]
    for needed in ("harness/models/vanilla.py", "harness/models/blocks.py", "harness/tasks/algorithmic.py",
                   "harness/measure/step.py", "harness/run/train.py"):
        assert needed in files, needed
    assert files["harness/models/vanilla.py"] == provenance.file_hash(ROOT / "harness/models/vanilla.py")
    assert not any(f.startswith("harness/analysis/") for f in files)  # the report does not make numbers
    assert set(row["libraries"]) == set(provenance.LIBRARIES)
    assert row["libraries"]["torch"] == torch.__version__
    assert row["machine"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert row["heap"] in ("pinned", "system") and row["schema_version"] == 3
    assert row["suite_file"] == str(path)


def test_code_differences_name_the_files_two_arms_disagree_on() -> None:
    a = {"code": {"dirty": False, "files": {"harness/x.py": "1", "harness/y.py": "2"}}}
    b = {"code": {"dirty": False, "files": {"harness/x.py": "1", "harness/z.py": "3"}}}
    c = {"code": {"dirty": False, "files": {"harness/x.py": "9"}}}
    dirty = {"code": {"dirty": True, "files": None}}
    assert provenance.code_differences([a, b]) == {"unknown": 0, "files": []}
    assert provenance.code_differences([a, b, c]) == {"unknown": 0, "files": ["harness/x.py"]}
    assert provenance.code_differences([a, dirty]) == {"unknown": 1, "files": []}


def test_a_run_into_committed_results_from_a_dirty_tree_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """results/ is tracked by git: with harness/ differing from the commit (simulated) and a job to
    train, harness run exits 2 with one line and writes nothing; --allow-dirty goes ahead."""
    assert provenance.tracked_by_git(ROOT / "results") and not provenance.tracked_by_git(tmp_path)
    monkeypatch.setattr(provenance, "git_state", lambda: ("abc", ["harness/models/vanilla.py"]))
    path = write_tiny_suite(tmp_path, name="dirtyprobe")
    before = sorted(p.name for p in (ROOT / "results").iterdir())
    code = main(["run", str(path), "--results-dir", str(ROOT / "results"), "--no-report"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert "uncommitted changes (harness/models/vanilla.py)" in err[0] and "--allow-dirty" in err[0]
    assert sorted(p.name for p in (ROOT / "results").iterdir()) == before
    # into a folder git does not track, the same dirty tree may write
    assert main(["run", str(path), "--results-dir", str(tmp_path / "mine"), "--no-report"]) == 0
