"""One error tree for soakq.

SoakqError                      base; carries the exit code the CLI uses
├── UserError (exit 2)          bad input: config, flags, files; message says how to fix it
│   ├── ConfigError             a profile, an override layer, a setting
│   └── InputError              a file given to a command (gate, freeze, report)
├── MetricsError (exit 1)       a metric source could not measure an iteration
├── StoreError (exit 1)         the run store refused or lost something
│   ├── FenceError              a stale lock holder tried to commit
│   ├── TransientStoreError     connection trouble: the only kind that is retried
│   └── StoreRefused (exit 2)   Redis says no for good (password, out of memory): configuration
├── Pending (exit 5)            a follower stopped waiting: nobody serves the run (it goes on)
└── RunFailed (exit 1)          the run ended failed
    └── KpiGateFailed (exit 3)  hard KPI gate stopped the run
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Process exit codes of the CLI (README, "Commands"; docs/gates.md)."""

    OK = 0
    FAILED = 1
    BAD_INPUT = 2
    KPI_GATE = 3
    INCONCLUSIVE = 4  # release gate only: the evidence neither passes nor fails the config
    PENDING = 5  # a follower stopped waiting (no worker, no beat tick, --timeout); the run goes on
    INTERRUPTED = 130  # Ctrl-C / SIGTERM stopped an embedded run; `soakq resume` continues it


class SoakqError(Exception):
    """Base of every soakq error."""

    exit_code: ExitCode = ExitCode.FAILED


class UserError(SoakqError):
    """Something the user gave us is wrong; the message says what and how to fix it."""

    exit_code = ExitCode.BAD_INPUT


class ConfigError(UserError):
    """A profile, an override layer or a setting is invalid."""


class InputError(UserError):
    """A file or argument given to a command is unusable."""


class MetricsError(SoakqError):
    """A metric source could not produce the KPIs of one iteration."""


class StoreError(SoakqError):
    """The run store refused an operation or lost data."""


class FenceError(StoreError):
    """A write from a lock holder whose lock or fencing token is stale was refused."""


class TransientStoreError(StoreError):
    """A connection problem that may succeed on retry."""


class StoreRefused(StoreError):
    """The store refuses for a reason retrying cannot fix (a wrong password, Redis out of
    memory under ``noeviction``): a configuration problem, said plainly."""

    exit_code = ExitCode.BAD_INPUT


class Pending(SoakqError):
    """A follower stops waiting on work that nobody serves now (no worker consumes the queue);
    the work itself is not cancelled."""

    exit_code = ExitCode.PENDING


class RunFailed(SoakqError):
    """The run ended with status failed."""


class KpiGateFailed(RunFailed):
    """The hard KPI gate stopped the run."""

    exit_code = ExitCode.KPI_GATE
