"""Notifications driven by the ledger's events: notices read from the notification log, routed
to the notifiers of each workflow's lane, delivered at least once (see `delivery`).

The modules, innermost first: `notices` (which events are worth telling, as `Notice`),
`notifier` (the protocol), `webhook`, `command` and `log` (one per kind of notifier),
`config` (``[notifiers.NAME]``) and `delivery` (`deliver_notices`, the `Delivery` aggregate).
"""

from ledger.notify.config import check_routes, load_notifiers
from ledger.notify.delivery import (
    Delivery,
    DeliveryFailure,
    DeliveryReport,
    Sent,
    deliver_notices,
    delivery_state,
)
from ledger.notify.notices import Notice, read_notices
from ledger.notify.notifier import Notifier, NotifierFailed
from ledger.notify.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, signature

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "Delivery",
    "DeliveryFailure",
    "DeliveryReport",
    "Notice",
    "Notifier",
    "NotifierFailed",
    "Sent",
    "check_routes",
    "deliver_notices",
    "delivery_state",
    "load_notifiers",
    "read_notices",
    "signature",
]
