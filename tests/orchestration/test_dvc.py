"""DVC (dvc.yaml, orchestration/dvc_stage.py): one stage per pipeline group, matching the asset graph (the params
sections its assets read, the upstream table snapshots it loads and the code its assets import as deps); snapshots
are byte-stable and restore the warehouse; and, in a temporary git repository on a tiny synthetic catalogue, `dvc repro`
builds everything, a second `dvc repro` runs nothing, a tokenizer parameter reruns exactly the stages from
`tokenizer` on, and `dvc push` then `dvc pull` into a clone restores every output byte for byte."""

from __future__ import annotations

import ast
import configparser
import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
import yaml

from assets import GROUPS
from orchestration import dvc_stage
from orchestration.dvc_stage import (PARAM_SECTIONS, StageError, group_modules, group_tables, param_sections,
                                     restore_inputs, stage_settings, upstream_groups, write_snapshots)
from tests.assets.test_ranking import FAST_RANKING
from tests.assets.test_retrieval import FAST_RETRIEVAL
from tests.assets.test_sid_tables import FAST_SASREC, FAST_TOKENIZERS
from tests.helpers import SMALL_SYNTHETIC

ROOT = Path(__file__).resolve().parents[2]
DVC = Path(sys.executable).with_name("dvc")
PACKAGES = ("assets", "data_checks", "orchestration", "sid_models")
STAGE_RUNNER = {"orchestration/cli.py", "orchestration/build.py", "orchestration/settings.py",
                "orchestration/dvc_stage.py", "assets/__init__.py"}
COMMAND_TIMEOUT_S = 900


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def paths(entries: list) -> list[str]:
    """dvc.yaml list entries are a path or {path: options}."""
    return [next(iter(entry)) if isinstance(entry, dict) else entry for entry in entries or []]


def imported_files(modules: list[str]) -> set[str]:
    """Project files the modules import, transitively; a package's __init__ counts but is not followed (assets/
    __init__.py imports every asset module to list them, which does not make every stage run them)."""
    def file_of(name: str) -> Path | None:
        base = ROOT.joinpath(*name.split("."))
        return next((p for p in (base / "__init__.py", base.with_suffix(".py")) if p.is_file()), None)

    seen: set[Path] = set()
    todo = list(modules)
    while todo:
        path = file_of(todo.pop())
        if path is None or path in seen:
            continue
        seen.add(path)
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
    return {str(p.relative_to(ROOT)) for p in seen if p.relative_to(ROOT).parts[0] in PACKAGES}


def test_one_stage_per_pipeline_group_in_graph_order():
    stages = dvc_stages()
    assert list(stages) == list(GROUPS) and "refresh" not in stages
    for group, stage in stages.items():
        assert stage["cmd"] == f".venv/bin/python -m orchestration.cli stage {group} --home .sidflow"
        outs = paths(stage["outs"])
        assert (f".sidflow/data/{group}" in outs) == bool(group_tables(group)), group
        assert paths(stage["metrics"]) == [f".sidflow/metrics/{group}.json"]
    assert group_tables("ingest") == ["raw_items", "raw_interactions"]
    assert group_tables("sid_tables") == ["sid_lookup", "baseline_sid_lookup", "sid_importance"]
    assert group_tables("features") == [] and upstream_groups("ingest") == []
    assert upstream_groups("tokenizer") == ["ingest", "validated", "features"]


def test_stage_params_are_the_sections_its_assets_read(settings_for):
    assert set(settings_for().resources()) | {"io_manager"} <= set(PARAM_SECTIONS)  # no resource left unmapped
    params_file = yaml.safe_load((ROOT / "params.yaml").read_text())
    for group, stage in dvc_stages().items():
        assert sorted(stage.get("params") or []) == param_sections(group), group
        assert set(param_sections(group)) <= set(params_file), group
    assert param_sections("tokenizer") == ["tokenizers"]
    assert "tokenizers" not in {p for g in ("ingest", "validated", "features") for p in param_sections(g)}


def test_stage_deps_hold_the_upstream_tables_and_the_code_it_runs():
    stages = dvc_stages()
    for group, stage in stages.items():
        deps = paths(stage["deps"])
        upstream = upstream_groups(group)
        restored = {f".sidflow/data/{name}" for name in upstream if group_tables(name)}
        assert restored <= set(deps), f"{group}: the snapshots it loads, {restored - set(deps)}, are no deps"
        produced_upstream = {out for name in upstream for out in paths(stages[name]["outs"])}
        stray = {dep for dep in deps if dep.startswith(".sidflow/") and dep not in produced_upstream}
        assert not stray, f"{group}: {stray} are no outputs of an upstream stage"
        needed = imported_files(group_modules(group)) | STAGE_RUNNER
        uncovered = {f for f in needed if not any(f == d or f.startswith(d.rstrip("/") + "/") for d in deps)}
        assert not uncovered, f"{group}: imported code {sorted(uncovered)} is no dep"


def test_a_local_directory_is_the_default_remote():
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    name = config["core"]["remote"]
    url = config[f"'remote \"{name}\"'"]["url"]
    assert (ROOT / ".dvc" / url).resolve() == ROOT / ".dvc-remote"
    assert "/.dvc-remote/" in (ROOT / ".gitignore").read_text().splitlines()


@pytest.fixture
def two_groups(monkeypatch):
    """A graph of two groups: `first` writes `catalogue` (any row order) and `interactions` (stored order)."""
    tables = {"first": ["catalogue", "interactions"], "second": []}
    monkeypatch.setattr(dvc_stage, "group_tables", lambda group: tables[group])
    monkeypatch.setattr(dvc_stage, "upstream_groups", lambda group: ["first"] if group == "second" else [])


def fill(con: duckdb.DuckDBPyConnection, catalogue_order: str) -> None:
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""CREATE OR REPLACE TABLE catalogue AS SELECT * FROM (VALUES
                        ('i1', [3, 1], TIMESTAMPTZ '2024-01-02 03:04:05+00', 0.5::FLOAT),
                        ('i2', [2, 7], NULL, 1.5::FLOAT), ('i3', NULL, TIMESTAMPTZ '2024-05-06 00:00:00+00', NULL))
                        AS t(item_id, sid, assigned_at, weight) ORDER BY item_id {catalogue_order}""")
    con.execute("""CREATE OR REPLACE TABLE interactions AS
                   SELECT * FROM (VALUES ('u2', 'i3'), ('u1', 'i2'), ('u1', 'i1')) AS t(user_id, item_id)""")


def test_snapshots_are_byte_stable_and_restore_the_warehouse(tmp_path, two_groups):
    data = tmp_path / "data"
    with duckdb.connect(str(tmp_path / "built.duckdb")) as con:
        fill(con, "ASC")
        first = {p.name: p.read_bytes() for p in write_snapshots(con, data, "first")}
        fill(con, "DESC")  # the same rows stored in another order
        assert {p.name: p.read_bytes() for p in write_snapshots(con, data, "first")} == first
    with duckdb.connect(str(tmp_path / "fresh.duckdb")) as con:
        assert restore_inputs(con, data, "second") == ["catalogue", "interactions"]
        assert con.sql("SELECT user_id FROM interactions ORDER BY rowid").fetchall() == [("u2",), ("u1",), ("u1",)]
        assert con.sql("SELECT item_id, sid, weight FROM catalogue ORDER BY item_id").fetchall() == [
            ("i1", [3, 1], 0.5), ("i2", [2, 7], 1.5), ("i3", None, None)]
        assert restore_inputs(con, data, "second") == []  # the warehouse already holds them
        con.execute("UPDATE catalogue SET weight = 9 WHERE item_id = 'i2'")
        assert restore_inputs(con, data, "second") == ["catalogue"]
        (data / "first" / "interactions.parquet").unlink()
        with pytest.raises(StageError, match=r"interactions.parquet: no snapshot of table interactions"):
            restore_inputs(con, data, "second")


def test_a_stage_refuses_settings_that_dvc_does_not_track(monkeypatch, tmp_path):
    monkeypatch.setenv("SIDFLOW_CONFIG", str(tmp_path / "run.yaml"))
    with pytest.raises(StageError, match="SIDFLOW_CONFIG is set"):
        stage_settings(str(tmp_path / "home"))
    monkeypatch.delenv("SIDFLOW_CONFIG")
    monkeypatch.setenv("SIDFLOW_PARAMS", str(tmp_path / "other.yaml"))
    with pytest.raises(StageError, match="SIDFLOW_PARAMS=.*other.yaml: DVC stages read .*params.yaml"):
        stage_settings(str(tmp_path / "home"))
    with pytest.raises(StageError, match="'refresh' is not a pipeline group"):
        dvc_stage.run_stage("refresh", str(tmp_path / "home"))


def test_a_failing_blocking_check_fails_the_stage_and_writes_no_snapshot(monkeypatch, tmp_path, capsys):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"].update(SMALL_SYNTHETIC)
    params["quality"].update(rating_min=6, rating_max=9)  # every rating is out of range: a hard rule fails, ERROR
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.setattr(dvc_stage, "REPO_ROOT", tmp_path)
    monkeypatch.setenv("SIDFLOW_PARAMS", str(tmp_path / "params.yaml"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))  # restored afterwards; the stage points it into its home
    home = tmp_path / "home"
    assert dvc_stage.run_stage("ingest", str(home)) == 0
    (home / "data" / "validated").mkdir(parents=True)
    (home / "data" / "validated" / "items.parquet").write_bytes(b"an earlier run's")
    assert dvc_stage.run_stage("validated", str(home)) == 1
    assert "interactions.interactions_hard_rules FAILED (ERROR)" in capsys.readouterr().out
    assert (home / "data" / "ingest" / "raw_interactions.parquet").is_file()
    assert not (home / "data" / "validated").exists() and not (home / "metrics" / "validated.json").exists()


# --- the pipeline under DVC, in a temporary repository --------------------------------------------------------------

def tiny_params() -> dict:
    """params.yaml with a catalogue and models small enough for seconds per stage. One torch thread: the stages run
    beside other work on few cores, where two spinning threads per process made training ten times slower."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synthetic"].update(SMALL_SYNTHETIC)
    params["sasrec"] = copy.deepcopy(FAST_SASREC)
    params["sasrec"]["train"].update(epochs=1, torch_threads=1)
    params["tokenizers"] = copy.deepcopy(FAST_TOKENIZERS)
    params["tokenizers"]["adc_sid"]["model"].update(alpha=10, beta=9)
    params["tokenizers"]["adc_sid"]["train"].update(epochs=2, torch_threads=1)
    params["tokenizers"]["rqvae"]["epochs"] = 2
    params["ranking"] = {**copy.deepcopy(FAST_RANKING),
                         "train": {**FAST_RANKING["train"], "epochs": 1, "torch_threads": 1}}
    params["retrieval"] = {**copy.deepcopy(FAST_RETRIEVAL), "tokenizers": ["adc_sid"],
                           "train": {**FAST_RETRIEVAL["train"], "epochs": 1, "valid_users": 50, "valid_beam": 10,
                                     "torch_threads": 1}}
    return params


def run_command(command: list, cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("SIDFLOW_CONFIG", "SIDFLOW_PARAMS", "SIDFLOW_HOME")}
    env.update(DVC_NO_ANALYTICS="1", OMP_NUM_THREADS="1")
    env.update({f"GIT_{role}_{field}": value for role in ("AUTHOR", "COMMITTER")
                for field, value in (("NAME", "sidflow"), ("EMAIL", "sidflow@localhost"))})
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=COMMAND_TIMEOUT_S)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{' '.join(map(str, command))} failed ({done.returncode}):\n{output[-6000:]}"
    return output


def make_repository(directory: Path) -> Path:
    """The project's files (tracked, or new and not ignored) in a fresh git repository with tiny params."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60).stdout.split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file():
            (directory / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, directory / name)
    (directory / "params.yaml").write_text(yaml.safe_dump(tiny_params(), sort_keys=False))
    (directory / ".venv").symlink_to(ROOT / ".venv")
    run_command(["git", "init", "-q"], directory)
    (directory / ".git" / "info" / "exclude").write_text("/.venv\n")  # `.venv/` in .gitignore skips no symlink
    run_command(["git", "add", "-A"], directory)
    run_command(["git", "commit", "-qm", "sidflow"], directory)
    return directory


def stages_run(output: str) -> list[str]:
    return re.findall(r"Running stage '([^']+)'", output)


def tracked_outputs(repo: Path) -> dict[str, bytes]:
    home = repo / ".sidflow"
    return {str(p.relative_to(home)): p.read_bytes() for part in ("data", "artifacts", "metrics", "plots")
            for p in sorted((home / part).rglob("*")) if p.is_file()}


def test_dvc_repro_reruns_what_changed_and_push_pull_restores_the_outputs(tmp_path):
    repo = make_repository(tmp_path / "repo")
    first = run_command([DVC, "repro"], repo)
    assert stages_run(first) == list(GROUPS)
    assert f"with {repo / 'params.yaml'} ->" in first  # the stages ran the repository's code and params
    home = repo / ".sidflow"
    assert {p.name for p in (home / "data" / "sid_tables").iterdir()} == {
        "sid_lookup.parquet", "baseline_sid_lookup.parquet", "sid_importance.parquet"}
    assert list((home / "artifacts" / "export").glob("ranker-*/ranking_model.onnx"))
    tokenizer = yaml.safe_load((home / "metrics" / "tokenizer.json").read_text())["sid_tokenizer"]
    assert tokenizer["entropy"] > 0 and tokenizer["utilization"] > 0
    assert yaml.safe_load((home / "metrics" / "export.json").read_text())[
        "ranking_model_onnx"]["ranking_model_onnx_parity"]["passed"] is True
    assert (home / "plots" / "tokenizer" / "sid_tokenizer.codebook_usage.png").read_bytes()[:4] == b"\x89PNG"

    assert stages_run(run_command([DVC, "repro"], repo)) == []
    assert "Data and pipelines are up to date" in run_command([DVC, "status"], repo)

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["tokenizers"]["adc_sid"]["model"]["alpha"] = 5
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert stages_run(run_command([DVC, "repro"], repo)) == ["tokenizer", "sid_tables", "downstream", "export"]

    run_command(["git", "add", "dvc.lock", "params.yaml"], repo)
    run_command(["git", "commit", "-qm", "alpha 5"], repo)
    run_command([DVC, "push"], repo)
    clone = tmp_path / "clone"
    run_command(["git", "clone", "-q", repo, clone], tmp_path)
    run_command([DVC, "remote", "modify", "--local", "storage", "url", repo / ".dvc-remote"], clone)
    run_command([DVC, "pull"], clone)
    restored, built = tracked_outputs(clone), tracked_outputs(repo)
    assert restored.keys() == built.keys() and restored == built
    assert "Data and pipelines are up to date" in run_command([DVC, "status"], clone)
