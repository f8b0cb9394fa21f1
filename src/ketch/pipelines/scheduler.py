"""Recurring runs: triggers and the scheduler thread that fires them.

A trigger is a cron schedule or a periodic one (every ``interval_second``),
both bounded by optional ``start_time``/``end_time``. Cron expressions take
KFP's six fields (seconds first, ``?`` allowed), the classic five fields,
the ``@hourly``-style names, and ``@every <duration>`` (``@every 1h30m``).
Times are UTC.

Firing is restart-safe. For each due time the scheduler first commits, in one
write transaction that re-reads the row, the new ``last_scheduled_at`` and a
``pending_since`` mark; then it creates the run and clears the mark. A second
scheduler (another server on the same database) that lost the race sees the
advanced time and does nothing. If the process dies between the two steps,
the next start finds the mark, looks for a run of that recurring run created
after it, and creates the run only when there is none: a fire happens once.

``max_concurrency`` counts the recurring run's runs that are still PENDING,
RUNNING or CANCELING; a due time waits while the limit is reached.
``no_catchup=False`` fires every missed time in order (backfill);
``no_catchup=True`` fires only the newest due time and skips the others.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from croniter import croniter
from sqlalchemy import func, select

from ketch.core.errors import InvalidSpec, KetchError
from ketch.core.store.db import Database, retry_locked
from ketch.core.timestamps import utcnow
from ketch.pipelines.catalog import Catalog
from ketch.pipelines.owners import ACTIVE_STATES
from ketch.pipelines.tables import KfpRecurringRunRow, PipelineRunRow

log = logging.getLogger(__name__)

MAX_CONCURRENCY = 10
MAX_BACKLOG_STEPS = 100_000  # how far a catch-up walks before giving up on a trigger
PENDING_GRACE = timedelta(seconds=30)  # a fire mark younger than this may still be in flight
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


class Submitter(Protocol):
    """What runs are submitted through (the run service)."""

    def submit(
        self,
        spec: dict[str, Any],
        *,
        parameters: dict[str, Any] | None = None,
        display_name: str | None = None,
        namespace: str = "default",
        experiment_id: str | None = None,
        pipeline_id: str | None = None,
        pipeline_version_id: str | None = None,
        recurring_run_id: str | None = None,
        enable_caching: bool | None = None,
        pipeline_root: str | None = None,
    ) -> str: ...


def aware(value: datetime | None) -> datetime | None:
    """Datetimes read back from SQLite are naive; they are stored in UTC."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _every_seconds(expr: str) -> float | None:
    text = expr.strip()
    if not text.startswith("@every"):
        return None
    rest = text[len("@every") :].strip().replace(" ", "")
    if not rest or _DURATION.sub("", rest):
        raise InvalidSpec(
            f"{expr!r}: @every needs a duration like 30s, 5m or 1h30m",
            field="trigger.cron_schedule.cron",
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(rest))
    if seconds < 1:
        raise InvalidSpec(
            f"{expr!r}: the interval must be at least 1s", field="trigger.cron_schedule.cron"
        )
    return seconds


def check_cron(expr: str) -> str:
    """``expr`` stripped, or InvalidSpec naming what is wrong with it."""
    text = (expr or "").strip()
    where = "trigger.cron_schedule.cron"
    if not text:
        raise InvalidSpec("the cron expression is empty", field=where)
    if text.startswith("@every"):
        _every_seconds(text)
        return text
    fields = text.split()
    six = len(fields) == 6
    if not text.startswith("@") and len(fields) not in (5, 6):
        raise InvalidSpec(
            f"{text!r} has {len(fields)} fields; use 6 (seconds minutes hours day-of-month month "
            "day-of-week, as KFP) or 5",
            field=where,
        )
    if not croniter.is_valid(text, second_at_beginning=six):
        raise InvalidSpec(f"{text!r} is not a valid cron expression", field=where)
    return text


@dataclass(frozen=True)
class Trigger:
    cron: str | None
    interval: float | None
    start: datetime | None
    end: datetime | None

    @classmethod
    def of(cls, row: Any) -> Trigger:
        interval = float(row.interval_second) if row.interval_second else None
        cron = row.cron
        if cron is not None:
            every = _every_seconds(cron)
            if every is not None:
                cron, interval = None, every
        return cls(cron, interval, aware(row.start_time), aware(row.end_time))

    def after(self, t: datetime) -> datetime:
        """The first schedule time strictly after ``t``."""
        if self.interval is not None:
            return t + timedelta(seconds=self.interval)
        assert self.cron is not None
        six = len(self.cron.split()) == 6
        return croniter(self.cron, t, second_at_beginning=six).get_next(datetime)

    def latest_at_or_before(self, t: datetime, base: datetime) -> datetime | None:
        """The newest schedule time in ``(base, t]``, or None."""
        if self.interval is not None:
            steps = int((t - base).total_seconds() // self.interval)
            return base + timedelta(seconds=steps * self.interval) if steps >= 1 else None
        assert self.cron is not None
        six = len(self.cron.split()) == 6
        prev = croniter(self.cron, t + timedelta(microseconds=1), second_at_beginning=six).get_prev(
            datetime
        )
        return prev if prev > base else None

    def base(self, last: datetime | None, created: datetime) -> datetime:
        """The time the next schedule time follows: the last fire, else the start, else creation."""
        if last is not None and (self.start is None or last >= self.start):
            return last
        return self.start if self.start is not None else created

    def due(self, base: datetime, now: datetime, *, latest_only: bool) -> datetime | None:
        """The schedule time to fire now: after ``base``, not after ``now`` or the end."""
        limit = now if self.end is None else min(now, self.end)
        if latest_only:
            return self.latest_at_or_before(limit, base)
        first = self.after(base)
        return first if first <= limit else None

    def next_after(self, base: datetime) -> datetime | None:
        t = self.after(base)
        return None if self.end is not None and t > self.end else t


class Scheduler:
    """A thread that fires the enabled recurring runs through ``runs.submit``: one of
    the capability's services (:mod:`ketch.core.services`), started after the run
    service and stopped before it."""

    def __init__(self, runs: Submitter, database: Database, *, max_wait: float = 1.0):
        self.runs = runs
        self.database = database
        self.catalog = Catalog(database)
        self.max_wait = max_wait
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Fire recurring runs from now on (and make sure the default experiment, which
        KFP always has, exists)."""
        if self._thread is not None:
            return
        self.catalog.default_experiment()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ketch-kfp-scheduler", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self) -> None:
        """Look at the schedules now (after one was created, enabled or changed)."""
        self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:
                log.exception("the recurring-run scheduler failed; trying again")
                wait = self.max_wait
            self._wake.wait(max(0.02, min(wait, self.max_wait)))
            self._wake.clear()

    # ------------------------------------------------------------ one pass

    def tick(self, now: datetime | None = None) -> float:
        """Fire what is due; return the seconds until the next known due time."""
        now = now or utcnow()
        with self.database.session(readonly=True) as s:
            rows = s.execute(
                select(
                    KfpRecurringRunRow.id,
                    KfpRecurringRunRow.cron,
                    KfpRecurringRunRow.interval_second,
                    KfpRecurringRunRow.start_time,
                    KfpRecurringRunRow.end_time,
                    KfpRecurringRunRow.created_at,
                    KfpRecurringRunRow.last_scheduled_at,
                    KfpRecurringRunRow.pending_since,
                    KfpRecurringRunRow.no_catchup,
                    KfpRecurringRunRow.max_concurrency,
                ).where(KfpRecurringRunRow.mode == "ENABLE")
            ).all()
        wait = self.max_wait
        for row in rows:
            if self._stop.is_set():
                break
            try:
                next_due = self._serve(row, now)
            except Exception:
                log.exception("recurring run %s could not be scheduled", row.id)
                continue
            if next_due is not None:
                wait = min(wait, (next_due - utcnow()).total_seconds())
        return wait

    def _serve(self, row: Any, now: datetime) -> datetime | None:
        pending = aware(row.pending_since)
        if pending is not None:
            if now - pending < PENDING_GRACE:
                return None
            self._recover(row.id, pending)
            return now
        try:
            trigger = Trigger.of(row)
        except InvalidSpec as exc:
            self._record_error(row.id, str(exc))
            return None
        last = aware(row.last_scheduled_at)
        for _ in range(MAX_BACKLOG_STEPS):
            created = aware(row.created_at)
            assert created is not None
            base = trigger.base(last, created)
            due = trigger.due(base, now, latest_only=bool(row.no_catchup))
            if due is None:
                return trigger.next_after(base)
            if self._active(row.id) >= max(1, row.max_concurrency):
                return None  # wait for a run to finish
            claimed = self._claim(row.id, last, due)
            if claimed is None:
                return now  # someone else moved it; look again
            self._fire(claimed, due)
            last = due
        return now

    def _active(self, recurring_run_id: str) -> int:
        with self.database.session(readonly=True) as s:
            return int(
                s.execute(
                    select(func.count())
                    .select_from(PipelineRunRow)
                    .where(
                        PipelineRunRow.recurring_run_id == recurring_run_id,
                        PipelineRunRow.state.in_(ACTIVE_STATES),
                    )
                ).scalar_one()
            )

    def _claim(self, rid: str, expected: datetime | None, due: datetime) -> dict[str, Any] | None:
        """Advance ``last_scheduled_at`` to ``due`` if nobody else did; return what to submit."""

        def write() -> dict[str, Any] | None:
            with self.database.session() as s:
                row = s.get(KfpRecurringRunRow, rid, with_for_update=True)
                if row is None or row.mode != "ENABLE" or row.pending_since is not None:
                    return None
                if aware(row.last_scheduled_at) != expected:
                    return None
                row.last_scheduled_at = due
                row.pending_since = utcnow()
                return _submission(row)

        return retry_locked(write)

    def _fire(self, job: dict[str, Any], scheduled: datetime) -> None:
        error: str | None = None
        try:
            run_id = self.runs.submit(
                job["pipeline_spec"],
                parameters=job["parameters"],
                display_name=f"{job['display_name']} {scheduled.strftime('%Y-%m-%d %H-%M-%S')}",
                namespace=job["namespace"],
                experiment_id=job["experiment_id"],
                pipeline_id=job["pipeline_id"],
                pipeline_version_id=job["pipeline_version_id"],
                recurring_run_id=job["id"],
                pipeline_root=job["pipeline_root"],
            )
            self.catalog.set_run_meta(
                run_id, service_account=job["service_account"], scheduled_at=scheduled
            )
            log.info(
                "recurring run %s fired run %s (scheduled at %s)", job["id"], run_id, scheduled
            )
        except KetchError as exc:
            error = f"the run scheduled at {scheduled.isoformat()} could not be created: {exc}"
            log.warning("recurring run %s: %s", job["id"], error)
        except Exception as exc:
            error = (
                f"the run scheduled at {scheduled.isoformat()} could not be created: internal error"
            )
            log.exception("recurring run %s could not fire: %s", job["id"], exc)
        self._clear_pending(job["id"], error)

    def _clear_pending(self, rid: str, error: str | None) -> None:
        def write() -> None:
            with self.database.session() as s:
                row = s.get(KfpRecurringRunRow, rid)
                if row is not None:
                    row.pending_since = None
                    row.error = error
                    if error is not None:
                        row.updated_at = utcnow()

        retry_locked(write)

    def _record_error(self, rid: str, error: str) -> None:
        def write() -> None:
            with self.database.session() as s:
                row = s.get(KfpRecurringRunRow, rid)
                if row is not None and row.error != error:
                    row.error = error

        retry_locked(write)

    def _recover(self, rid: str, pending: datetime) -> None:
        """Finish a fire whose run may not have been created (the process stopped)."""
        with self.database.session(readonly=True) as s:
            made = s.execute(
                select(func.count())
                .select_from(PipelineRunRow)
                .where(PipelineRunRow.recurring_run_id == rid, PipelineRunRow.created_at >= pending)
            ).scalar_one()
            row = s.get(KfpRecurringRunRow, rid)
            job = _submission(row) if row is not None else None
            scheduled = aware(row.last_scheduled_at) if row is not None else None
        if job is None or scheduled is None:
            return
        if made:
            self._clear_pending(rid, None)
            return
        log.info(
            "recurring run %s: creating the run scheduled at %s that was not created",
            rid,
            scheduled,
        )
        self._fire(job, scheduled)


def _submission(row: KfpRecurringRunRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "display_name": row.display_name,
        "namespace": row.namespace,
        "experiment_id": row.experiment_id,
        "pipeline_id": row.pipeline_id,
        "pipeline_version_id": row.pipeline_version_id,
        "pipeline_spec": row.pipeline_spec,
        "parameters": dict(row.parameters or {}),
        "pipeline_root": row.pipeline_root,
        "service_account": row.service_account,
    }


def check_trigger(trigger: Any) -> dict[str, Any]:
    """Check a KFP ``Trigger`` body; return the row fields it sets."""
    from ketch.pipelines.filters import get_field, parse_time

    if not isinstance(trigger, dict):
        raise InvalidSpec(
            "a recurring run needs a trigger (cron_schedule or periodic_schedule)", field="trigger"
        )
    cron = get_field(trigger, "cron_schedule")
    periodic = get_field(trigger, "periodic_schedule")
    if bool(cron) == bool(periodic):
        raise InvalidSpec(
            "give exactly one of trigger.cron_schedule and trigger.periodic_schedule",
            field="trigger",
        )
    schedule: dict[str, Any] = cron or periodic
    if not isinstance(schedule, dict):
        raise InvalidSpec("the schedule must be an object", field="trigger")
    where = "trigger.cron_schedule" if cron else "trigger.periodic_schedule"
    start_raw, end_raw = get_field(schedule, "start_time"), get_field(schedule, "end_time")
    start = parse_time(start_raw, f"{where}.start_time") if start_raw else None
    end = parse_time(end_raw, f"{where}.end_time") if end_raw else None
    if start is not None and end is not None and end <= start:
        raise InvalidSpec("end_time must be after start_time", field=f"{where}.end_time")
    fields: dict[str, Any] = {
        "start_time": start,
        "end_time": end,
        "cron": None,
        "interval_second": None,
    }
    if cron:
        fields["cron"] = check_cron(str(get_field(schedule, "cron") or ""))
    else:
        raw = get_field(schedule, "interval_second")
        try:
            interval = int(raw)
        except (TypeError, ValueError):
            raise InvalidSpec(
                f"interval_second {raw!r} is not a whole number of seconds",
                field=f"{where}.interval_second",
            ) from None
        if interval < 1:
            raise InvalidSpec(
                "interval_second must be at least 1", field=f"{where}.interval_second"
            )
        fields["interval_second"] = interval
    return fields
