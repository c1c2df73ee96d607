"""The shape the code keeps as jobs are added: jobs do not import jobs, the library does not print."""
import ast
import re
from pathlib import Path

LIBRARY = Path(__file__).resolve().parents[1] / "lib" / "ecomlake"


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_job_imports_another_job():
    """What two jobs share lives in the library; only `pipeline` runs other jobs (in order)."""
    jobs = {p.stem for p in (LIBRARY / "jobs").glob("*.py") if p.stem != "__init__"}
    crossing = {p.stem: sorted(m for m in imported_modules(p) if m.startswith("ecomlake.jobs.")
                               and m.split(".")[2] in jobs and m.split(".")[2] != p.stem)
                for p in (LIBRARY / "jobs").glob("*.py") if p.stem != "pipeline"}
    assert {job: modules for job, modules in crossing.items() if modules} == {}
    # the check sees an import written inside a function too
    assert "ecomlake.jobs.clean" in imported_modules(LIBRARY / "jobs" / "pipeline.py")


def test_the_library_does_not_print():
    """Jobs report through logging; stdout carries only the JSON summary line (and help/dry-run text)."""
    printing = [f"{p.relative_to(LIBRARY)}:{n}" for p in sorted(LIBRARY.rglob("*.py"))
                for n, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"(?<![\w.])print\(", line)]
    assert printing == []
