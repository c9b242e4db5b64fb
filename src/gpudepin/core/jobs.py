"""Job and task state machines: every legal transition written down, every other refused.

A job moves ``submitted → funded → running → completed | failed | cancelled``. A task
moves ``pending → assigned → submitted → accepted | rejected``; an expired assignment
goes back to ``pending``; a rejected task is retried as ``pending`` until it runs out of
attempts, and then its job fails with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gpudepin.core.errors import Conflict


class JobState(StrEnum):
    SUBMITTED = "submitted"
    FUNDED = "funded"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


class TaskState(StrEnum):
    PENDING = "pending"
    ASSIGNED = "assigned"
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.FUNDED, JobState.FAILED, JobState.CANCELLED}),
    JobState.FUNDED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}),
    JobState.COMPLETED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.PENDING: frozenset({TaskState.ASSIGNED, TaskState.CANCELLED}),
    # back to pending when the assignment expires
    TaskState.ASSIGNED: frozenset({TaskState.SUBMITTED, TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.SUBMITTED: frozenset({TaskState.ACCEPTED, TaskState.REJECTED}),
    # an audit that proves an accepted result wrong rejects it after the fact
    TaskState.ACCEPTED: frozenset({TaskState.REJECTED}),
    # a rejected result is redone by another attempt, if any are left
    TaskState.REJECTED: frozenset({TaskState.PENDING, TaskState.CANCELLED}),
    TaskState.CANCELLED: frozenset(),
}

TERMINAL_JOB_STATES = frozenset({JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED})
DEFAULT_MAX_ATTEMPTS = 3


def job_transition(current: JobState | str, target: JobState | str) -> JobState:
    """Return ``target`` if a job may move there from ``current``; raise Conflict if not."""
    cur, tgt = JobState(current), JobState(target)
    if tgt not in JOB_TRANSITIONS[cur]:
        raise Conflict(
            f"a job cannot go from {cur} to {tgt}",
            hint="The job has moved on; look at it with `gpudepin jobs show ID`.",
        )
    return tgt


def task_transition(current: TaskState | str, target: TaskState | str) -> TaskState:
    """Return ``target`` if a task may move there from ``current``; raise Conflict if not."""
    cur, tgt = TaskState(current), TaskState(target)
    if tgt not in TASK_TRANSITIONS[cur]:
        raise Conflict(f"a task cannot go from {cur} to {tgt}")
    return tgt


@dataclass(frozen=True)
class RetryDecision:
    """What happens to a task that lost its assignment or had its result rejected."""

    state: TaskState
    fail_job_reason: str | None = None


def after_lost_attempt(
    attempts: int, max_attempts: int, task_label: str, why: str
) -> RetryDecision:
    """Requeue a task after a failed attempt, or fail its job once attempts run out."""
    if attempts >= max_attempts:
        return RetryDecision(
            TaskState.CANCELLED,
            f"task {task_label} failed {attempts} times (last: {why})",
        )
    return RetryDecision(TaskState.PENDING)


def job_progress_state(task_states: list[TaskState]) -> JobState | None:
    """The state a running job moves to given its tasks, or None to stay running."""
    if task_states and all(s is TaskState.ACCEPTED for s in task_states):
        return JobState.COMPLETED
    return None
