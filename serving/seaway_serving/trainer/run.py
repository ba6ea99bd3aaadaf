"""One training run, start to finish: settings in, a :class:`~result.TrainResult` out.

The order is chosen so that the cheap checks fail first: the estimator and the metric are checked
before a byte of data is fetched, the data before anything is fitted, and the bundle is loaded
back through the server's verified loader before it is published, so a run never publishes a
bundle a model pod would refuse.
"""

from __future__ import annotations

import datetime as dt
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import clone

from seaway_serving import __version__, bundle, loader, sources
from seaway_serving import errors as serving_errors
from seaway_serving.trainer import (
    data,
    estimators,
    gate,
    incumbent,
    progress,
    scoring,
    splits,
    store,
)
from seaway_serving.trainer import result as results
from seaway_serving.trainer.errors import (
    BadData,
    FitFailed,
    InvalidSettings,
    TrainFailed,
)
from seaway_serving.trainer.settings import TrainSettings

log = progress.log


def now_utc() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def iso(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def shown(uri: str) -> str:
    """A URI fit for logs and results: no user info, query string or fragment."""
    if urllib.parse.urlsplit(uri).scheme in ("http", "https", "s3"):
        return sources._redact(uri)
    return uri


@dataclass
class _Scores:
    """Per-fold scores of one model, for the gate metric and for the record."""

    gate: list[float] = field(default_factory=list)
    record: list[dict[str, float]] = field(default_factory=list)
    problem: str | None = None

    def mean(self) -> float | None:
        if self.problem is not None or not self.gate:
            return None
        return float(np.mean(self.gate))

    def mean_record(self) -> dict[str, float]:
        if not self.record:
            return {}
        keys = set.intersection(*(set(r) for r in self.record))
        return {k: float(np.mean([r[k] for r in self.record])) for k in sorted(keys)}


def _check_metric(metric: str, task: scoring.Task, estimator: Any, path: str) -> None:
    if metric not in scoring.FOR_TASK[task]:
        kind = "classifier" if task == "classification" else "regressor"
        other = "classifiers" if task == "regression" else "regressors"
        raise InvalidSettings(f"metric {metric} is for {other}; {path} is a {kind} "
                              f"(use one of {', '.join(scoring.FOR_TASK[task])})")
    if metric == "log_loss" and not hasattr(estimator, "predict_proba"):
        raise InvalidSettings(f"metric log_loss needs predict_proba, which {path} does not have "
                              "with these parameters")
    if metric == "roc_auc" and not (hasattr(estimator, "predict_proba")
                                    or hasattr(estimator, "decision_function")):
        raise InvalidSettings(f"metric roc_auc needs predict_proba or decision_function, which "
                              f"{path} does not have")


def _fit(estimator: Any, x: np.ndarray, y: np.ndarray, what: str, interval: float) -> Any:
    model = clone(estimator)
    with progress.step(f"Fitting {type(model).__name__} on {x.shape[0]} rows{what}", interval):
        try:
            model.fit(x, y)
        except Exception as exc:
            raise FitFailed(f"{type(model).__name__} could not be fitted: "
                            f"{type(exc).__name__}: {exc}") from None
    return model


def _target(table: data.Table, task: scoring.Task, target: str) -> np.ndarray:
    if task == "classification":
        return table.y
    try:
        return np.asarray(table.y, dtype=np.float64)
    except (TypeError, ValueError):
        example = data.first_non_number(table.y)
        raise BadData(f"target column {target!r} is not numeric (e.g. {example!r}); a regressor "
                      "predicts numbers") from None


def train(settings: TrainSettings) -> results.TrainResult:
    started = now_utc()
    try:
        settings.work_dir.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix="run-", dir=settings.work_dir))
    except OSError as exc:
        raise TrainFailed(f"cannot create the work directory in {settings.work_dir}: "
                          f"{exc.strerror or exc} (mount a writable volume there, e.g. an "
                          "emptyDir on /tmp)") from None
    interval = settings.progress_interval_s

    # 1. what to train and how to score it: no data needed to refuse a wrong setting
    estimator = estimators.build(settings.estimator, settings.params,
                                 settings.allowed_import_prefixes)
    task = scoring.task_of(estimator)
    if task is None:
        raise InvalidSettings(f"{settings.estimator} is neither a classifier nor a regressor; "
                              "the gate needs one of them")
    _check_metric(settings.metric, task, estimator, settings.estimator)
    fmt = data.format_of(settings.dataset_uri, settings.dataset_format)

    # 2. the data
    with progress.step(f"Fetching dataset {shown(settings.dataset_uri)}", interval):
        fetched = store.fetch(settings.dataset_uri, work / "data",
                              cap=settings.max_dataset_bytes, timeout_s=settings.fetch_timeout_s,
                              env=store.env_for("DATASET"))
    log.info("Dataset is %d bytes, %s", fetched.size, fetched.sha256)
    with progress.step(f"Reading {fmt}", interval):
        frame = data.read(fetched.path, fmt, shown(settings.dataset_uri))
        table = data.select(frame, target=settings.target, features=settings.features,
                            timestamp_column=settings.timestamp_column)
        del frame
    log.info("Read %d rows; using %d (%d without a target), %d features",
             table.rows_read, table.rows, table.dropped_missing_target, len(table.features))
    y = _target(table, task, settings.target)

    # 3. the split
    classification = task == "classification"
    if settings.split == "Holdout":
        folds = [splits.holdout(y, settings.test_share, seed=settings.seed,
                                classification=classification,
                                min_train=settings.min_train_rows,
                                min_test=settings.min_test_rows)]
    else:
        assert table.timestamps is not None
        folds = splits.backtest(table.timestamps, y, settings.cutoff_delta, settings.windows,
                                classification=classification,
                                min_train=settings.min_train_rows,
                                min_test=settings.min_test_rows)
    for i, fold in enumerate(folds, 1):
        span = splits.describe(fold)
        log.info("Split %d of %d: %d training rows, %d scoring rows%s", i, len(folds),
                 fold.train.size, fold.test.size,
                 f" from {span['test_from']} to {span['test_until']}" if span["test_from"]
                 else "")

    # 4. the model in production, verified before it is unpickled
    live: loader.LoadedModel | None = None
    live_columns: list[str] | str = "no incumbent"
    if settings.incumbent_uri is not None:
        with progress.step(f"Loading incumbent {shown(settings.incumbent_uri)}", interval):
            live = incumbent.load(settings.incumbent_uri, work / "incumbent",
                                  digest=settings.incumbent_digest,
                                  allow_unverified=settings.incumbent_allow_unverified,
                                  trusted_types=settings.trusted_types,
                                  max_bytes=settings.max_bundle_bytes,
                                  timeout_s=settings.fetch_timeout_s,
                                  env=store.env_for("INCUMBENT"))
        log.info("Incumbent %s verified: %s", live.manifest.estimator, live.digest)
        live_columns = incumbent.columns_for(live, list(table.frame.columns), table.features)
        if live.manifest.task != task:
            live_columns = (f"it is a {live.manifest.task} model and the candidate a {task} "
                            "model")

    # 5. fit and score, fold by fold
    x_live: np.ndarray | None = None
    if live is not None and isinstance(live_columns, list):
        try:
            x_live = table.numeric(live_columns)
        except BadData as exc:  # a column the candidate does not use, and not numeric
            live_columns = str(exc)
    cand = _Scores()
    inc = _Scores(problem=live_columns if isinstance(live_columns, str) and live else None)
    windows: list[results.Window] = []
    model: Any = None
    for i, fold in enumerate(folds, 1):
        what = f" (window {i} of {len(folds)})" if len(folds) > 1 else ""
        model = _fit(estimator, table.x[fold.train], y[fold.train], what, interval)
        x_test, y_test = table.x[fold.test], y[fold.test]
        with progress.step(f"Scoring on {fold.test.size} rows{what}", interval):
            try:
                value = scoring.score(model, x_test, y_test, settings.metric)
            except scoring.ScoreError as exc:
                raise BadData(f"cannot score the candidate with {settings.metric}: {exc}") from None
            cand.gate.append(value)
            cand.record.append(scoring.all_metrics(model, x_test, y_test, task))
            inc_value: float | None = None
            if live is not None and x_live is not None and inc.problem is None:
                x_fold = x_live[fold.test]
                try:
                    inc_value = scoring.score(live.estimator, x_fold, y_test, settings.metric)
                    inc.gate.append(inc_value)
                    inc.record.append(scoring.all_metrics(live.estimator, x_fold, y_test, task))
                except scoring.ScoreError as exc:
                    inc.problem = str(exc)
        windows.append(results.Window(
            train_rows=int(fold.train.size), test_rows=int(fold.test.size),
            **splits.describe(fold), candidate_score=gate.decimal_string(value),
            incumbent_score=None if inc_value is None else gate.decimal_string(inc_value)))
        log.info("Candidate %s = %s%s", settings.metric, gate.decimal_string(value),
                 "" if inc_value is None else
                 f"; incumbent {settings.metric} = {gate.decimal_string(inc_value)}")
    if inc.problem is not None and live is not None:
        log.warning("The incumbent could not be scored: %s", inc.problem)

    # 6. the model to ship: the one scored, or (refit) the same recipe on every row
    train_rows = folds[-1].train
    if settings.refit:
        train_rows = np.arange(table.rows)
        model = _fit(estimator, table.x, y, " (refit on every row)", interval)
    cand_score = cand.mean()
    assert cand_score is not None
    cand_text = gate.decimal_string(cand_score)
    inc_mean = inc.mean()
    inc_text = None if inc_mean is None else gate.decimal_string(inc_mean)
    decision = gate.decide(settings.metric, cand_text, incumbent=inc_text,
                           incumbent_given=live is not None, incumbent_problem=inc.problem,
                           min_score=settings.min_score,
                           min_improvement=settings.min_improvement)
    log.info("Gate %s: %s", "passed" if decision.passed else "failed", decision.reason)

    # 7. the bundle, proven loadable by the server's loader before it is published
    code_version = settings.code_version or f"seaway-train {__version__}"
    bundle_dir = work / "bundle"
    with progress.step("Writing the bundle", interval):
        try:
            manifest = bundle.create_from_estimator(
                model, bundle_dir, name=settings.name, fmt=settings.bundle_format,
                data=table.x[train_rows], feature_names=table.features,
                metrics=cand.mean_record() | {settings.metric: cand_score},
                code_version=code_version)
        except Exception as exc:
            raise FitFailed(f"cannot bundle the fitted model: {type(exc).__name__}: "
                            f"{exc}") from None
        try:
            loader.load(bundle_dir, loader.Policy(
                max_bytes=manifest.size_bytes, pinned_digest=manifest.sha256,
                trusted_types=tuple(settings.trusted_types)))
        except serving_errors.StartupError as exc:
            raise FitFailed(f"the bundle does not pass the server's checks: {exc}") from None
    assert manifest.sha256 is not None
    run_id = settings.run_id or f"{started:%Y%m%dT%H%M%SZ}-{manifest.sha256[7:19]}"
    files = [(manifest.model_file, (bundle_dir / manifest.model_file).read_bytes()),
             (bundle.MANIFEST_FILE, (bundle_dir / bundle.MANIFEST_FILE).read_bytes())]
    with progress.step(f"Publishing the bundle to {shown(settings.output_uri)}", interval):
        output_env = store.env_for("OUTPUT")
        uri = store.publish(files, settings.output_uri, run_id,
                            timeout_s=settings.fetch_timeout_s, env=output_env)
        result = results.TrainResult(
            status="Succeeded",
            bundle=results.BundleRef(uri=uri, digest=manifest.sha256, format=manifest.format,
                                     name=manifest.name, version=manifest.version),
            metric=settings.metric,
            higher_is_better=gate.HIGHER_IS_BETTER[settings.metric],
            candidate=results.Candidate(score=cand_text, metrics=cand.mean_record()),
            incumbent=None if settings.incumbent_uri is None else results.Incumbent(
                uri=shown(settings.incumbent_uri), digest=live.digest if live else None,
                score=inc_text, metrics=inc.mean_record() if inc_text else {},
                problem=inc.problem),
            gate=results.Gate(min_score=settings.min_score,
                              min_improvement=settings.min_improvement,
                              improvement=decision.improvement, passed=decision.passed,
                              reason=decision.reason),
            split=results.SplitInfo(
                kind=settings.split,
                test_fraction=settings.test_fraction if settings.split == "Holdout" else None,
                seed=settings.seed if settings.split == "Holdout" else None,
                cutoff=settings.cutoff if settings.split == "Backtest" else None,
                windows=windows),
            rows=results.Rows(read=table.rows_read, used=table.rows,
                              dropped_missing_target=table.dropped_missing_target,
                              train=int(train_rows.size),
                              test=int(sum(f.test.size for f in folds))),
            dataset=results.DatasetInfo(uri=shown(settings.dataset_uri), format=fmt,
                                        sha256=fetched.sha256, bytes=fetched.size,
                                        target=settings.target, features=table.features,
                                        timestamp_column=settings.timestamp_column),
            estimator=results.EstimatorInfo(import_path=settings.estimator,
                                            params=settings.params,
                                            estimator_class=manifest.estimator, task=task),
            refit=settings.refit, code_version=code_version,
            trainer=f"seaway-train {__version__}", started_at=iso(started),
            finished_at=iso(now_utc()))
        store.publish([(results.RESULT_FILE, (result.to_json(indent=2) + "\n").encode())],
                      settings.output_uri, run_id, timeout_s=settings.fetch_timeout_s,
                      env=output_env)
    log.info("Published %s (%s)", uri, manifest.sha256)
    return result
