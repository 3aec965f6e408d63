"""The `sidflow` command line: `demo`, `run --config FILE`, `ui`, `arrivals COUNT` (new synthetic items for the
refresh), `stage GROUP` (one DVC stage, dvc.yaml)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import dagster as dg

from assets import GROUPS
from orchestration.build import PIPELINE, build_definitions
from orchestration.settings import REPO_ROOT, ConfigError, RunSettings, load_settings

CLI_JOB = "sidflow_cli_run"
LOG_LEVEL_CONFIG = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def prepare_dagster_home(settings: RunSettings) -> Path:
    """DAGSTER_HOME lives under SIDFLOW_HOME, with the project's dagster.yaml (telemetry off, warehouse pool)."""
    dagster_home = settings.home.home_path / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    source = REPO_ROOT / "dagster.yaml"
    if not target.exists() or target.read_bytes() != source.read_bytes():
        shutil.copyfile(source, target)
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    return dagster_home


def run_pipeline(settings: RunSettings, selection: str | None = None,
                 instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Materialise the selected assets (default: the pipeline, every group but `refresh`) with their checks,
    in this process."""
    asset_selection = dg.AssetSelection.from_string(selection) if selection else PIPELINE
    job = dg.define_asset_job(CLI_JOB, selection=asset_selection)
    defs = build_definitions(settings, extra_jobs=[job])
    if instance is None:
        prepare_dagster_home(settings)
        instance = dg.DagsterInstance.get()
    return defs.resolve_job_def(CLI_JOB).execute_in_process(instance=instance, raise_on_error=False,
                                                            run_config=LOG_LEVEL_CONFIG)


def materialisations(result: dg.ExecuteInProcessResult) -> list[dg.AssetMaterialization]:
    return [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]


def summarise(result: dg.ExecuteInProcessResult) -> tuple[str, bool]:
    """A plain-text report of a run (materialised assets, check results, skipped steps) and whether it is
    healthy: the run succeeded and no ERROR check failed."""
    lines = []
    for mat in materialisations(result):
        rows, summary = mat.metadata.get("dagster/row_count"), mat.metadata.get("summary")
        shown = f"rows={rows.value}" if rows else summary.value if summary else ""
        lines.append(f"  materialised {mat.asset_key.to_user_string():<24} {shown}".rstrip())
    healthy = result.success
    for evaluation in result.get_asset_check_evaluations():
        state = "passed" if evaluation.passed else f"FAILED ({evaluation.severity.value})"
        lines.append(f"  check {evaluation.asset_key.to_user_string()}.{evaluation.check_name:<22} {state}"
                     + (f": {evaluation.description}" if not evaluation.passed and evaluation.description else ""))
        healthy &= evaluation.passed or evaluation.severity != dg.AssetCheckSeverity.ERROR
    skipped = not_materialised(result)
    if skipped:
        lines.append(f"  not materialised (blocked or failed upstream): {', '.join(skipped)}")
    failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    for failure in failures:
        error = failure.step_failure_data.error
        while error is not None and error.cause is not None:  # the user's error, not the framework's wrapper
            error = error.cause
        lines.append(f"  step {failure.step_key} failed: {error.message.strip() if error else ''}")
    return "\n".join(lines), healthy


def not_materialised(result: dg.ExecuteInProcessResult) -> list[str]:
    """Selected assets that did not materialise: a failed step, or steps after a failed blocking check
    (the in-process executor does not start them and records no event for them)."""
    done = {mat.asset_key for mat in materialisations(result)}
    return sorted(k.to_user_string() for k in result.job_def.asset_layer.selected_asset_keys - done)


def _report(settings: RunSettings, result: dg.ExecuteInProcessResult, seconds: float) -> int:
    text, healthy = summarise(result)
    print(f"\nsidflow: run {result.run_id[:8]} {'succeeded' if healthy else 'FAILED'} in {seconds:.1f} s")
    print(text)
    print(f"  warehouse: {settings.home.warehouse_path}")
    return 0 if healthy else 1


def _settings(args) -> RunSettings:
    try:
        return load_settings(config=getattr(args, "config", None), home=args.home)
    except ConfigError as err:
        sys.exit(f"sidflow: {err}")


def cmd_run(args) -> int:
    settings = _settings(args)
    if args.command == "demo" and settings.source.kind != "synthetic":
        sys.exit("sidflow: `demo` runs the synthetic catalogue; SIDFLOW_CONFIG names other sources (use `run`)")
    print(f"sidflow: {args.command} on {settings.source.describe()} -> {settings.home.home_path}")
    start = time.perf_counter()
    result = run_pipeline(settings, selection=getattr(args, "select", None))
    return _report(settings, result, time.perf_counter() - start)


def cmd_ui(args) -> int:
    settings = _settings(args)
    prepare_dagster_home(settings)
    env = dict(os.environ, SIDFLOW_HOME=str(settings.home.home_path))
    if args.config:
        env["SIDFLOW_CONFIG"] = str(Path(args.config).resolve())
    dagster = Path(sys.executable).with_name("dagster")
    command = [str(dagster), "dev", "-m", "orchestration.definitions", "-h", args.host, "-p", str(args.port)]
    print(f"sidflow: Dagster UI on http://{args.host}:{args.port} (Ctrl-C stops it)")
    os.execve(command[0], command, env)
    return 0  # not reached


def cmd_arrivals(args) -> int:
    """A batch of synthetic new items into the landing folder, for the refresh sensor to pick up."""
    from assets.sources.landing import synthetic_params
    from assets.sources.synthetic_arrivals import land_arrivals

    settings = _settings(args)
    if settings.source.kind != "synthetic":
        sys.exit("sidflow: `arrivals` makes new items for the synthetic catalogue; land your own files instead")
    if args.count < 1:
        sys.exit(f"sidflow: arrivals COUNT must be >= 1, got {args.count}")
    path = land_arrivals(settings.refresh.landing_path(settings.home), synthetic_params(settings.source), args.count)
    print(f"sidflow: {args.count} new items landed in {path}")
    return 0


def cmd_stage(args) -> int:
    # Imported here: dvc_stage runs its group through run_pipeline and summarise of this module.
    from orchestration.dvc_stage import StageError, run_stage
    try:
        return run_stage(args.group, args.home)
    except StageError as err:
        sys.exit(f"sidflow: {err}")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sidflow", description="Semantic IDs for recommender catalogues, on Dagster.")
    sub = p.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="materialise the whole asset graph on the built-in synthetic catalogue")
    run = sub.add_parser("run", help="materialise the asset graph on the sources of a run config")
    run.add_argument("--config", required=True, help="run config YAML (see README: Your own data)")
    ui = sub.add_parser("ui", help="start the Dagster UI (binds to 127.0.0.1 by default)")
    ui.add_argument("--config", help="run config YAML; default: the synthetic catalogue")
    ui.add_argument("--host", default="127.0.0.1")
    ui.add_argument("--port", type=int, default=3000)
    arrivals = sub.add_parser("arrivals", help="land a batch of new synthetic items for the refresh sensor")
    arrivals.add_argument("count", type=int, help="items in the batch")
    arrivals.add_argument("--config", help="run config YAML; default: the synthetic catalogue")
    stage = sub.add_parser("stage", help="run one asset group as its DVC stage (dvc.yaml; use `dvc repro`): "
                                         "restore upstream snapshots, materialise, snapshot the group's tables")
    stage.add_argument("group", choices=GROUPS)
    for command in (demo, run):
        command.add_argument("--select", help="Dagster asset selection, e.g. 'group:ingest or group:validated' "
                                              "(default: every asset)")
    for command in (demo, run, ui, stage, arrivals):
        command.add_argument("--home", help="where runs write (default: $SIDFLOW_HOME or ./.sidflow)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"ui": cmd_ui, "stage": cmd_stage, "arrivals": cmd_arrivals}
    return commands.get(args.command, cmd_run)(args)


if __name__ == "__main__":
    sys.exit(main())
