"""Run a sweep's trials: as Ray Tune trials (local Ray, or a cluster with an address), or one after another.

Each trial is `run_pipeline` on its own run directory, exactly as `gear-trt grow --out DIR/<trial>`
would run it. The run directories are the sweep's state: a trial whose directory holds a finished
run of its options is not launched again, an unfinished one resumes (finished stages are skipped,
a training stage continues from its last epoch), so a killed sweep continues when run again. Ray's
own experiment state (DIR/.ray) is only bookkeeping and starts afresh on every invocation.

Ray is imported only here, and only for a Ray sweep: `pip install 'gear-trt[sweep]'`.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import shutil
import socket
import sys
import textwrap
import time
import traceback
from typing import Any, Callable, Optional, TextIO

from gear_trt.errors import BackendUnavailable, GearError
from gear_trt.sweep.report import ATTEMPT, final, trial_status, write_report
from gear_trt.sweep.spec import Plan, Trial

RAY_DIR = ".ray"  # Ray Tune's bookkeeping inside the sweep directory
TABLE_EVERY_S = 10.0  # the running-trials table is printed at most this often (when it changed) ...
HEARTBEAT_S = 120.0  # ... and at least this often


def run_sweep(plan: Plan, *, address: Optional[str] = None, sequential: bool = False, out: Optional[TextIO] = None) -> dict[str, str]:
    """Run every unfinished trial of `plan`; write the results table and report.

    Returns {trial: status} of the trials that are not done ("failed", "unfinished" after an interrupt, ...).
    """
    todo = [t for t in plan.trials if not t.finished()]
    # before anything is written: without Ray, or without the cluster, stop here
    ray = None if sequential or not todo else _connect(address)
    try:
        plan.out.mkdir(parents=True, exist_ok=True)
        plan.save()
        progress = Progress(plan, out or sys.stderr)
        for t in plan.trials:
            if t not in todo:
                progress.say(f"{t.name}: finished already, reused")
        if todo and ray is None:
            progress.say(f"sweep: {len(todo)} of {len(plan.trials)} trials to run, one after another in this process")
            _run_sequential(plan, todo, progress)
        elif todo:
            _run_ray(ray, plan, todo, progress, address)
    finally:
        if ray is not None:
            ray.shutdown()
    if plan.deploy_cost:
        _deploy_costs(plan, progress)
    paths = write_report(plan)
    left = {t.name: status for t in plan.trials if (status := trial_status(t)) != "done"}
    progress.say(f"sweep: {len(plan.trials) - len(left)}/{len(plan.trials)} trials done; results: " + ", ".join(str(p) for p in paths))
    return left


def run_trial(trial: Trial, *, threads: Optional[int] = None, echo: Callable[[str], None] = print) -> dict[str, Any]:
    """One trial: its run directory, made or resumed by the same code as `gear-trt grow`."""
    import torch

    from gear_trt.pipeline.rundir import RunDir
    from gear_trt.pipeline.stages import GrowOptions, run_pipeline

    if threads is not None:
        torch.set_num_threads(threads)
    echo(f"{ATTEMPT} at {trial.name} on {socket.gethostname()} (pid {os.getpid()}), torch threads {torch.get_num_threads()}")
    run = RunDir.create(trial.path, "grow", resume=trial.path.exists(), argv=trial.argv())  # locks it, as grow does
    try:
        return run_pipeline(run, GrowOptions(**trial.options), echo=echo)
    finally:
        run.release()  # a sequential sweep runs many trials in one process


# -- one after another -----------------------------------------------------------------------------
def _run_sequential(plan: Plan, todo: list[Trial], progress: "Progress") -> None:
    for phase in plan.phases():
        for trial in (t for t in phase if t in todo):
            if _blocked(trial, plan):
                progress.blocked(trial)
                continue
            progress.started(trial)

            def echo(line: str, trial: Trial = trial) -> None:
                _log(trial, line)
                progress.say(f"  {trial.name}: {line}")

            try:
                run_trial(trial, echo=echo)
            except GearError as exc:
                _log(trial, f"error: {exc.message}" + (f" -- fix: {exc.fix}" if exc.fix else ""))
            except Exception as exc:
                _log_exception(trial, exc)
            progress.finished(trial)
            write_report(plan, figures=False)


# -- deployment cost (SPEC deploy_cost: true) ---------------------------------------------------------
def _deploy_costs(plan: Plan, progress: "Progress") -> None:
    """Each finished trial's final model as int8 ONNX, timed in onnxruntime: here in the sweep's process, one
    after another once no trial trains, so every method is timed on the same machine, undisturbed. A trial
    measured already is reused; a failure is logged and retried by the next invocation."""
    statuses = {t.name: trial_status(t) for t in plan.trials}
    if "unfinished" in statuses.values():
        progress.say("deploy cost: not measured, the sweep was interrupted (run the same command again)")
        return
    from gear_trt.pipeline import deploy_cost

    for t in (t for t in plan.trials if statuses[t.name] == "done"):
        start = time.time()
        run = t.run
        try:
            run.lock("sweep deploy_cost")  # nothing else writes the run meanwhile
            try:
                cost, measured = deploy_cost.measure(run, notify=functools.partial(_log, t))
            finally:
                run.release()
        except GearError as exc:
            _log(t, f"deploy cost failed: {exc.message}" + (f" -- fix: {exc.fix}" if exc.fix else ""))
            progress.say(f"FAILED  deploy cost of {t.name}: {exc.message} (log: {t.log})")
            continue
        except Exception as exc:
            _log(t, f"deploy cost failed: {type(exc).__name__}: {exc}")
            _log(t, traceback.format_exc())
            progress.say(f"FAILED  deploy cost of {t.name}: {type(exc).__name__}: {exc} (log: {t.log})")
            continue
        line = (f"int8 {cost['int8_bytes'] / 1000:.1f} KB, onnxruntime p50 {cost['ort_latency_ms']:.3f} ms "
                f"(batch {deploy_cost.BATCH}, {deploy_cost.THREADS} thread)")
        if measured:
            _log(t, f"deploy cost: {line}")
            progress.say(f"deploy cost  {t.name}: {line}  ({_duration(time.time() - start)})")
        else:
            progress.say(f"deploy cost  {t.name}: measured already, reused ({line})")


# -- Ray Tune ----------------------------------------------------------------------------------------
def _connect(address: Optional[str]) -> Any:
    """Ray, initialised: a new local Ray, or joined to the cluster at `address`."""
    from gear_trt._deps import optional_import

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # our own progress lines instead of Tune's status boxes
    ray = optional_import("ray")
    optional_import("ray.tune")
    # after Ctrl-C Tune suggests Tuner.restore(...); here the way to continue is to run the same command again
    logging.getLogger("ray.tune.tune").addFilter(lambda record: "Resume experiment with" not in record.getMessage())
    if address is not None:
        _check_reachable(address)
    try:
        # "local": always a new Ray on this machine, never one found running (a stale /tmp/ray or RAY_ADDRESS)
        ray.init(address=address or "local", include_dashboard=False, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError) as exc:  # Ray's errors for an unreachable or refusing cluster
        if address is None:
            raise
        raise BackendUnavailable(f"cannot join the Ray cluster at {address} ({str(exc).splitlines()[0]})", _JOIN_FIX) from None
    return ray


_JOIN_FIX = ("check the address (`ray status` on the head node prints it); a cluster with token authentication "
             "(Ray >= 2.59) also needs RAY_AUTH_MODE=token and its token on this machine (~/.ray/auth_token)")


def _check_reachable(address: str) -> None:
    """Fail fast on HOST:PORT with nothing listening (ray.init would retry for minutes)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or address.startswith("ray://"):
        return  # "auto", a ray:// client address: Ray checks those itself
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as exc:
        raise BackendUnavailable(f"nothing answers at {address} ({exc})", _JOIN_FIX) from None


def _run_ray(ray: Any, plan: Plan, todo: list[Trial], progress: "Progress", address: Optional[str]) -> None:
    from ray import tune

    if address is None:
        _prepare_data(todo, progress)
    resources = plan.resources or {"cpu": 1.0, **({"gpu": 1.0} if ray.cluster_resources().get("GPU", 0) > 0 else {})}
    total = ray.cluster_resources()
    progress.say(f"sweep: {len(todo)} of {len(plan.trials)} trials to run on {'Ray at ' + address if address else 'local Ray'} "
                 f"({total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs; per trial: "
                 + ", ".join(f"{v:g} {k}" for k, v in resources.items()) + ")")
    trainable = tune.with_resources(tune.with_parameters(_ray_trial, trials={t.name: t.to_json() for t in todo}), resources)
    for i, phase in enumerate(plan.phases(), 1):
        names = []
        for t in phase:
            if t not in todo:
                continue
            if _blocked(t, plan):
                progress.blocked(t)
            else:
                names.append(t.name)
        if not names:
            continue
        storage = plan.out / RAY_DIR
        shutil.rmtree(storage / f"phase{i}", ignore_errors=True)
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search(names)},
            tune_config=tune.TuneConfig(trial_dirname_creator=lambda trial: str(trial.config["trial"])),
            run_config=tune.RunConfig(name=f"phase{i}", storage_path=str(storage), verbose=0,
                                      failure_config=tune.FailureConfig(max_failures=0),
                                      callbacks=[_callback(plan, progress)]),
        )
        tuner.fit()
        if any(trial_status(t) == "unfinished" for t in phase if t.name in names):
            break  # interrupted (Ctrl-C): stop here, a re-run continues


def _ray_trial(config: dict[str, Any], trials: dict[str, dict[str, Any]]) -> None:
    """The Ray Tune trainable: one trial in a Ray worker, torch threads = its CPU share."""
    import ray

    trial = Trial.from_json(trials[config["trial"]])
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
    trial.log.parent.mkdir(parents=True, exist_ok=True)
    with open(trial.log, "a", encoding="utf-8") as log, \
            contextlib.redirect_stdout(_WithoutBars(log)), contextlib.redirect_stderr(_WithoutBars(log)):
        try:
            run_trial(trial, threads=max(1, int(cpus)), echo=lambda line: _log(trial, line))
        except GearError as exc:
            _log(trial, f"error: {exc.message}" + (f" -- fix: {exc.fix}" if exc.fix else ""))
            raise
        except Exception as exc:
            _log_exception(trial, exc)
            raise


class _WithoutBars(io.TextIOBase):
    """The trial's stdout/stderr into its log, less progress bars (the sweep shows its own progress)."""

    def __init__(self, log: TextIO) -> None:
        self.log, self.in_bar = log, False

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        bar_end = self.in_bar and text == "\n"  # a closed bar ends its line
        self.in_bar = "\r" in text  # tqdm redraws a bar with a carriage return
        if not self.in_bar and not bar_end:
            self.log.write(text)
            self.log.flush()
        return len(text)


def _callback(plan: Plan, progress: "Progress") -> Any:
    from ray.tune.progress_reporter import TrialProgressCallback

    by_name = {t.name: t for t in plan.trials}

    class Callback(TrialProgressCallback):  # a TrialProgressCallback, so Tune does not add its own printer
        def on_trial_result(self, iteration, trials, trial, result, **info):
            pass

        def on_trial_start(self, iteration, trials, trial, **info):
            progress.started(by_name[trial.config["trial"]])

        def on_trial_complete(self, iteration, trials, trial, **info):
            progress.finished(by_name[trial.config["trial"]])
            write_report(plan, figures=False)

        def on_trial_error(self, iteration, trials, trial, **info):
            progress.finished(by_name[trial.config["trial"]])
            write_report(plan, figures=False)

        def on_step_end(self, iteration, trials, **info):
            progress.tick()

    return Callback()


def _prepare_data(todo: list[Trial], progress: "Progress") -> None:
    """Decode each data source into the packed cache once, before trials start decoding it side by side."""
    from gear_trt.data import load_source

    for data in dict.fromkeys(t.options["data"] for t in todo):
        progress.say(f"sweep: preparing data {data}")
        for split in ("train", "test"):
            load_source(data, split, progress=False)


def _blocked(trial: Trial, plan: Plan) -> bool:
    return trial.after is not None and trial_status(next(t for t in plan.trials if t.name == trial.after)) != "done"


def _log(trial: Trial, line: str) -> None:
    """Append to the trial's logs/trial.log (opened per line: survives kills, readable on a shared disk)."""
    from gear_trt.pipeline.rundir import now_iso

    trial.log.parent.mkdir(parents=True, exist_ok=True)
    with open(trial.log, "a", encoding="utf-8") as f:
        f.write(f"{now_iso()} {line.rstrip()}\n")


def _log_exception(trial: Trial, exc: BaseException) -> None:
    _log(trial, f"error: {type(exc).__name__}: {exc}")
    _log(trial, traceback.format_exc())


# -- progress ----------------------------------------------------------------------------------------
class Progress:
    """One line per finished trial, and a table of the running ones (read from their run directories)."""

    def __init__(self, plan: Plan, out: TextIO) -> None:
        self.plan, self.out = plan, out
        self.running: dict[str, float] = {}  # name -> start time
        self.done = sum(t.finished() for t in plan.trials)
        self._shown: Optional[list[tuple[str, str]]] = None
        self._shown_at = 0.0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    def started(self, trial: Trial) -> None:
        self.running[trial.name] = time.time()
        self.say(f"started  {trial.name}")

    def blocked(self, trial: Trial) -> None:
        self.say(f"skipped  {trial.name}: it copies the size of {trial.after}, which did not finish")

    def finished(self, trial: Trial) -> None:
        start = self.running.pop(trial.name, None)
        took = f"  ({_duration(time.time() - start)})" if start else ""
        status = trial_status(trial)
        if status == "done":
            self.done += 1
            f = final(trial.run.read_summary() or {})
            robust = "n/a" if f["robust_acc"] is None else f"{100 * f['robust_acc']:.1f}%"
            self.say(f"[{self.done}/{len(self.plan.trials)}] done  {trial.name}: clean {100 * f['clean_acc']:.1f}%  robust {robust}  "
                     f"{f['params']:,} params  training {f['seconds']:.1f} s{took}")
        else:
            self.say(f"FAILED  {trial.name}: {_last_error(trial)} (log: {trial.log}){took}")

    def tick(self) -> None:
        """Print the running trials' table when it changed (at most every TABLE_EVERY_S) or as a heartbeat."""
        if not self.running:
            return
        now = time.time()
        by_name = {t.name: t for t in self.plan.trials}
        rows = [(name, _latest_line(by_name[name])) for name in self.running]
        changed = rows != self._shown
        if (changed and now - self._shown_at >= TABLE_EVERY_S) or now - self._shown_at >= HEARTBEAT_S:
            self._shown, self._shown_at = rows, now
            width = max(len(n) for n, _ in rows)
            lines = [f"running ({len(rows)}):"] + [
                f"  {n.ljust(width)}  {_duration(now - self.running[n]):>7}  {line}" for n, line in rows]
            self.say("\n".join(lines))


def _duration(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def _latest_line(trial: Trial) -> str:
    """The last line of the trial's most recently written stage log: its stage and epoch."""
    logs_dir = trial.run.logs
    logs = [p for p in logs_dir.glob("*.log") if p != trial.log] if logs_dir.is_dir() else []
    if not logs:
        return "starting"
    newest = max(logs, key=lambda p: p.stat().st_mtime)
    with contextlib.suppress(OSError, IndexError):
        line = newest.read_text(encoding="utf-8", errors="replace").splitlines()[-1]
        return textwrap.shorten(line.split(" ", 1)[-1], 90, placeholder=" ...")  # without the timestamp
    return newest.stem


def _last_error(trial: Trial) -> str:
    with contextlib.suppress(OSError):
        lines = [ln for ln in trial.log.read_text(encoding="utf-8", errors="replace").splitlines() if " error: " in ln]
        if lines:
            return lines[-1].split(" error: ", 1)[1]
    return "did not finish"
