"""The connector's error taxonomy and the one place that classifies exceptions.

Every decision about what happens to a failed message is taken from the *category* of the
error, never from its concrete class, so flows never grow their own ``except`` ladders::

    ConnectorError                      (category decides the fate of the message)
    ├── PermanentError                  dead-letter at once: retrying cannot help
    │   ├── InvalidMessage              body is not JSON / violates the schema
    │   ├── UnknownReference            user, case, phase or work type not found in Severa
    │   ├── SeveraRejected              Severa refused the write (Validation, NoPermission, NotFound)
    │   ├── VersionConflict             same version as one applied, other content (connector.flows)
    │   ├── UnmappableRecord            a record cannot be converted without guessing (connector.mapping)
    │   ├── AccountingRejected          the accounting system refused the data (invalid, too large,
    │   │   │                           a duplicate it would not let us adopt)
    │   │   └── AccountingPeriodLocked  the accounting period of the date is locked
    │   └── SuspectedPoisonMessage      fails systemically while others succeed (connector.processing)
    ├── TransientError                  retry with backoff, then dead-letter with the history
    │   ├── SeveraUnavailable           timeout, connection drop, HTTP 5xx, GeneralFailure
    │   ├── AccountingUnavailable       accounting timeout, 5xx, technical error, maintenance;
    │   │                               persisting past the retries: escalated to AccountingOutage
    │   ├── PublishFailed               the broker did not confirm a publish (connector.bus)
    │   │   └── Unroutable              no queue bound for it (a notification: counted, not raised)
    │   ├── LedgerLockTimeout           another task/pod held the entry too long (connector.state);
    │   │                               persisting past the retries: escalated to LedgerUnavailable
    │   ├── LedgerLockLost              the entry's lock was lost while held (connector.state)
    │   └── ProcessingBudgetExceeded    one delivery took longer than its budget (connector.processing)
    ├── SystemicError                   pause consumption, stay alive, report not-ready, probe, resume
    │   ├── SeveraAuthenticationFailed  wrong / regenerated key, API add-on or right missing
    │   ├── SeveraQuotaExceeded         the organisation's daily call quota is spent
    │   ├── SeveraOutage                Severa keeps failing: the circuit is open
    │   ├── AccountingAuthenticationFailed  keys or ids refused by the accounting system
    │   ├── AccountingNoAccess          the integration user lacks the right for a resource
    │   ├── AccountingOutage            the accounting system keeps failing (or is in maintenance)
    │   ├── LedgerUnavailable           the idempotency store is unreachable (connector.state)
    │   └── StoreUnavailable            the dead-letter store is unreachable (connector.dlq.store)
    └── ConfigError                     bad settings at start-up (exit code 2, no traceback)
        └── UsageError                  a command was asked for something it cannot do: an unknown
                                        id, an edit that fails the schema (exit code 2)

Third-party exceptions (zeep, aiohttp, aio-pika) are translated at the adapter edge and re-raised
as one of these ``from`` the original; :func:`classify` maps anything else to a category so that a
bug in our own code is treated as permanent (parked with its traceback) rather than retried forever.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, ClassVar


class Category(enum.StrEnum):
    """What the runtime does with a message whose handling raised."""

    TRANSIENT = "transient"
    PERMANENT = "permanent"
    SYSTEMIC = "systemic"


class ConnectorError(Exception):
    """Root of every error the connector raises on purpose.

    ``reason`` is a short machine-friendly code (goes into DLQ headers and metrics labels);
    the message is a sentence a human can act on. ``context`` carries safe, non-secret details.
    """

    category: Category = Category.PERMANENT
    reason: str = "error"
    #: The dependency itself answered with this error (Severa refused a write, found no such
    #: user): evidence that it is up, used by the circuit (connector.processing).
    answered_by_peer: ClassVar[bool] = False

    def __init__(self, message: str, *, reason: str | None = None, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        self.context: dict[str, Any] = context

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, reason={self.reason!r})"


class PermanentError(ConnectorError):
    category = Category.PERMANENT
    reason = "permanent"


class InvalidMessage(PermanentError):
    """The message body cannot be turned into a valid event."""

    reason = "invalid_message"


class UnknownReference(PermanentError):
    """The event names a user / case / phase / work type that Severa does not know."""

    reason = "unknown_reference"
    answered_by_peer = True

    def __init__(self, message: str, *, kind: str, value: str, **context: Any) -> None:
        super().__init__(message, reason=f"unknown_{kind}", kind=kind, value=value, **context)
        self.kind = kind
        self.value = value


class SeveraRejected(PermanentError):
    """Severa answered with a typed fault that no retry can change."""

    reason = "severa_rejected"
    answered_by_peer = True

    def __init__(self, message: str, *, fault: str, operation: str, **context: Any) -> None:
        super().__init__(
            message, reason=f"severa_{fault.lower()}", fault=fault, operation=operation, **context
        )
        self.fault = fault
        self.operation = operation


class VersionConflict(PermanentError):
    """An event carries the version already applied for its entry, but asks for other content.

    Versions are how the connector orders an entry's changes; two different contents under one
    version cannot be ordered, so neither "unchanged" nor overwriting would be honest. Retrying
    cannot help: the producer must publish the change with a higher version.
    """

    reason = "version_conflict"


class TransientError(ConnectorError):
    """Worth retrying: the same request may succeed a moment later.

    ``outcome_unknown`` is set when a *write* may have landed although we saw no answer (timeout
    after the request was sent, connection dropped mid-response): such a call must never be blindly
    repeated; the caller has to look whether it landed first.
    """

    category = Category.TRANSIENT
    reason = "transient"
    #: The systemic error this one becomes once it survived the in-process retries (an outage of
    #: the dependency rather than a blip), or None to climb the retry ladder (:func:`outage_behind`).
    escalates_to: ClassVar[type[SystemicError] | None] = None

    def __init__(
        self, message: str, *, reason: str | None = None, outcome_unknown: bool = False, **context: Any
    ) -> None:
        super().__init__(message, reason=reason, **context)
        self.outcome_unknown = outcome_unknown


class SeveraUnavailable(TransientError):
    reason = "severa_unavailable"


class SystemicError(ConnectorError):
    """Every message would fail the same way: stop consuming instead of burning messages."""

    category = Category.SYSTEMIC
    reason = "systemic"


class SeveraAuthenticationFailed(SystemicError):
    reason = "severa_authentication_failed"


class SeveraQuotaExceeded(SystemicError):
    reason = "severa_quota_exceeded"


class SeveraOutage(SystemicError):
    reason = "severa_outage"


class UnmappableRecord(PermanentError):
    """A record cannot be converted for the other system without guessing.

    ``field`` names the source field and the message says what to fix there, so the person who
    reads the dead letter can correct the record (in Severa, or in the mapping table) and replay.
    A silently wrong invoice would cost more than a parked one.
    """

    reason = "unmappable_record"

    def __init__(self, message: str, *, field: str, reason: str | None = None, **context: Any) -> None:
        super().__init__(message, reason=reason or "unmappable_record", field=field, **context)
        self.field = field


# --------------------------------------------------------------------------------------------------
# The accounting side, in neutral words: an adapter (adapters/netvisor) maps its system's codes here.
# --------------------------------------------------------------------------------------------------


class AccountingRejected(PermanentError):
    """The accounting system refused the data; ``code`` is its own code, ``fix`` what to change."""

    reason = "accounting_rejected"
    answered_by_peer = True

    def __init__(
        self, message: str, *, code: str, operation: str, reason: str | None = None, **context: Any
    ) -> None:
        super().__init__(
            message, reason=reason or f"accounting_{code.lower()}", code=code, operation=operation, **context
        )
        self.code = code
        self.operation = operation


class AccountingPeriodLocked(AccountingRejected):
    """The period of the record's date is locked: an accountant must open it (or re-date the record)."""

    reason = "accounting_period_locked"


class AccountingOutage(SystemicError):
    reason = "accounting_outage"


class AccountingUnavailable(TransientError):
    """Timeout, connection drop, 5xx, a technical error or a maintenance window: try again later."""

    reason = "accounting_unavailable"
    escalates_to = AccountingOutage


class AccountingAuthenticationFailed(SystemicError):
    reason = "accounting_authentication_failed"


class AccountingNoAccess(SystemicError):
    """The integration user has no right for a resource (or the resource is not enabled)."""

    reason = "accounting_no_access"


class ConfigError(ConnectorError):
    """Invalid configuration; raised before anything starts."""

    reason = "config_error"


class UsageError(ConfigError):
    """An ops command was asked for something it cannot do (unknown id, invalid edit, bad filter).

    A :class:`ConfigError` because the fix is the same -- change what you typed -- and so is the
    exit code (2): nothing was changed.
    """

    reason = "usage_error"


def classify(exc: BaseException) -> Category:
    """Return the category of *any* exception raised while handling a message.

    Our own errors carry their category. Anything else is a bug or an untranslated library error:
    permanent, so the message is parked with its traceback instead of looping.
    """
    if isinstance(exc, ConnectorError):
        return exc.category
    return Category.PERMANENT


def outage_behind(exc: BaseException) -> SystemicError | None:
    """A transient failure of a dependency that survived every in-process retry is an outage.

    Dead-lettering would burn every message for the length of the outage, so a transient error
    whose class names a systemic counterpart (:attr:`TransientError.escalates_to`) is escalated to
    it (pause, probe, resume): Severa failing (:class:`SeveraOutage`), the ledger that cannot lock
    in time (a slow-Severa brownout holding locks). Other transient errors are not escalated.
    """
    if isinstance(exc, SeveraUnavailable):
        return SeveraOutage(f"Severa keeps failing: {exc.message}", reason="severa_outage")
    if isinstance(exc, TransientError) and exc.escalates_to is not None:
        return exc.escalates_to(f"keeps failing: {exc.message}", reason=f"{exc.reason}_persistent")
    return None


def reason_of(exc: BaseException) -> str:
    """Short code for metrics labels and DLQ headers."""
    if isinstance(exc, ConnectorError):
        return exc.reason
    return f"unexpected_{type(exc).__name__}"


def describe(exc: BaseException) -> Mapping[str, Any]:
    """The safe, structured description of an error used in logs and dead-letter headers."""
    info: dict[str, Any] = {
        "category": classify(exc).value,
        "class": type(exc).__name__,
        "reason": reason_of(exc),
        "message": exc.message if isinstance(exc, ConnectorError) else str(exc),
    }
    if isinstance(exc, ConnectorError):
        info.update({k: v for k, v in exc.context.items() if isinstance(v, (str, int, float, bool))})
    return info
