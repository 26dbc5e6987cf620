"""Vonage's SMS webhooks: read into typed objects (inbound SMS, delivery receipts), and built.

Vonage's field names (`msisdn`, `messageId`, `concat-ref`, `err-code`, `network-code`, `price`,
...) are spelled here and nowhere else; the proxy app receives `InboundSms` and
`DeliveryReceipt`. The three encodings (GET query, POST form, POST JSON) are flattened into one
dict of strings by `signatures.webhook_params` before they get here.

The builders (`inbound_sms_params`, `delivery_receipt_params`) are for whatever plays Vonage's
part: `simulate_sms`, the sandbox provider's receipts, the benchmarks.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils import timezone

from smsproxy.common.errors import ApplicationError

from .encoding import is_gsm7
from .signatures import sign_params

# A delivery receipt's `status` values that carry news about a part (Vonage's DLR statuses).
RECEIPT_STATUSES = ("accepted", "buffered", "delivered", "failed", "rejected", "expired", "unknown")

_E164_DIGITS_RE = re.compile(r"[1-9][0-9]{6,14}")


class WebhookIgnored(Exception):
    """A well-formed webhook we deliberately do not act on (an unknown receipt status, ...).

    The view answers it 200 and logs a warning: any other answer makes Vonage retry the same
    request for a day or more, and no retry would change our answer.
    """


def e164_from_vonage(value: str) -> str | None:
    """Vonage's "447700900123" (or "+447700900123") as "+447700900123"; None if not a number."""
    digits = value.strip().removeprefix("+")
    return f"+{digits}" if _E164_DIGITS_RE.fullmatch(digits) else None


# The largest price a message or part can store (numeric(10, 5)); a larger one is not a price.
MAX_PRICE = Decimal("99999.99999")


def params_clean(params: dict[str, str]) -> dict[str, str]:
    """The values without NUL characters, which no field of Vonage's carries and PostgreSQL
    cannot store in text: a NUL in a signed or unsigned webhook must not become a 500 that
    Vonage then retries for a day (DESIGN §8). Signatures are checked on the raw values."""
    return {key: value.replace("\x00", "") for key, value in params.items()}


def malformed(detail: str, field: str, problem: str) -> ApplicationError:
    """The error for a webhook parameter that is missing or unusable (answered 400)."""
    return ApplicationError(detail, code="malformed", fields={field: [problem]})


@dataclass(frozen=True)
class InboundSms:
    vonage_message_id: str
    sender: str  # E.164 with '+', or an alphanumeric sender id as received
    recipient: str  # E.164 with '+': our number
    text: str
    concat_ref: str = ""
    concat_total: int = 0
    concat_part: int = 0

    @property
    def is_part(self) -> bool:
        return bool(self.concat_ref) and self.concat_total > 1


def inbound_sms_parse(params: dict[str, str]) -> InboundSms:
    """Read an inbound-SMS webhook's parameters.

    ApplicationError(code="malformed") when unusable; WebhookIgnored for a well-formed SMS we
    cannot store (a sender id longer than any network sends).
    """
    params = params_clean(params)
    for field in ("msisdn", "to", "messageId"):
        if not params.get(field, "").strip():
            raise malformed(f"Inbound SMS without {field}.", field, "This field is required.")
    vonage_message_id = params["messageId"].strip()
    if len(vonage_message_id) > 64:
        raise malformed("messageId is longer than 64 characters.", "messageId", "Too long.")
    recipient = e164_from_vonage(params["to"])
    if recipient is None:
        raise malformed(f"`to` {params['to']!r} is not a phone number.", "to", "Not a number.")
    raw_sender = params["msisdn"].strip()
    sender = e164_from_vonage(raw_sender)
    if sender is None:
        # An alphanumeric sender id ("Vonage", a short code): stored, never routed or answered.
        if len(raw_sender) > 16:
            raise WebhookIgnored(
                f"Inbound SMS {vonage_message_id} from a sender id of {len(raw_sender)} "
                "characters (16 at most): ignored."
            )
        sender = raw_sender
    sms_type = params.get("type", "text").strip().lower() or "text"
    # A binary SMS carries `data`/`udh` rather than text: nothing a person can read is forwarded.
    text = "" if sms_type == "binary" else params.get("text", "")
    concat_ref = params.get("concat-ref", "").strip()
    concat_total = concat_part = 0
    if params.get("concat", "").strip().lower() == "true" or concat_ref:
        if not concat_ref or len(concat_ref) > 32:
            raise malformed("A concatenated part needs a concat-ref.", "concat-ref", "Invalid.")
        try:
            concat_total = int(params.get("concat-total", ""))
            concat_part = int(params.get("concat-part", ""))
        except ValueError:
            raise malformed(
                "concat-total and concat-part must be integers.", "concat-part", "Not a number."
            ) from None
        if not 1 <= concat_part <= concat_total <= 255:
            raise malformed(
                f"concat-part {concat_part} of concat-total {concat_total} is out of range.",
                "concat-part",
                "Out of range.",
            )
    return InboundSms(
        vonage_message_id=vonage_message_id,
        sender=sender,
        recipient=recipient,
        text=text,
        concat_ref=concat_ref if concat_total > 1 else "",
        concat_total=concat_total if concat_total > 1 else 0,
        concat_part=concat_part if concat_total > 1 else 0,
    )


@dataclass(frozen=True)
class DeliveryReceipt:
    vonage_message_id: str
    status: str  # one of RECEIPT_STATUSES
    error_code: str = ""
    client_ref: str = ""
    price: Decimal | None = None
    network: str = ""
    # The receipt's `to` (the number that sent our SMS) and `msisdn` (its recipient), E.164
    # with '+'; empty when the receipt does not carry them.
    sender: str = ""
    recipient: str = ""


def receipt_parse(params: dict[str, str]) -> DeliveryReceipt:
    """Read a receipt webhook's parameters.

    ApplicationError(code="malformed") when unusable; WebhookIgnored for a status we do not
    know (one Vonage added later): Vonage would retry a refused receipt for three days.
    """
    params = params_clean(params)
    for field in ("messageId", "status"):
        if not params.get(field, "").strip():
            raise malformed(f"Delivery receipt without {field}.", field, "This field is required.")
    vonage_message_id = params["messageId"].strip()
    status = params["status"].strip().lower()
    if len(vonage_message_id) > 64:
        raise malformed("messageId is longer than 64 characters.", "messageId", "Too long.")
    if status not in RECEIPT_STATUSES:
        raise WebhookIgnored(
            f"Delivery receipt {vonage_message_id} with unknown status {status[:32]!r}: ignored."
        )
    error_code = params.get("err-code", "").strip()
    return DeliveryReceipt(
        vonage_message_id=vonage_message_id,
        status=status,
        error_code="" if error_code == "0" else error_code[:32],
        client_ref=params.get("client-ref", "").strip(),
        price=_price(params.get("price", "")),
        network=params.get("network-code", "").strip()[:16],
        sender=_receipt_number(params.get("to", "")),
        recipient=_receipt_number(params.get("msisdn", "")),
    )


def _price(value: str) -> Decimal | None:
    """A receipt's price, or None when it is not one we can store (not a number, infinite,
    negative, or beyond MAX_PRICE): the receipt's status matters more than its price, and
    refusing it would only make Vonage send the same unusable price again for three days."""
    try:
        price = Decimal(value.strip())
    except InvalidOperation:
        return None
    if not price.is_finite() or not Decimal(0) <= price <= MAX_PRICE:
        return None
    return price.quantize(Decimal("0.00001"))


def _receipt_number(value: str) -> str:
    """A receipt's number as E.164; a value that is not a number is kept as it is, so that it
    never matches ours (an empty one means the receipt does not name that number)."""
    return e164_from_vonage(value) or value.strip()


# --- Building webhooks, as Vonage sends them -------------------------------------------------

# Vonage's `message-timestamp` (UTC) and a receipt's `scts` (the carrier's YYMMDDHHMM).
_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S"
_SCTS_FORMAT = "%y%m%d%H%M"


def _wire_number(number: str) -> str:
    """E.164 with '+' → Vonage's digits; an alphanumeric sender id is sent as it is."""
    return number.strip().removeprefix("+")


def _api_key() -> str:
    return settings.VONAGE_API_KEY or "sandbox"


def inbound_sms_params(
    *,
    sender: str,
    recipient: str,
    text: str,
    message_id: str,
    received_at: datetime | None = None,
) -> dict[str, str]:
    """The parameters of Vonage's inbound-SMS webhook for a single-part text (unsigned).

    `sender` and `recipient` are E.164 with '+' (or an alphanumeric sender id).
    """
    words = text.split()
    return {
        "msisdn": _wire_number(sender),
        "to": _wire_number(recipient),
        "messageId": message_id,
        "text": text,
        "type": "text" if is_gsm7(text) else "unicode",
        "keyword": words[0].upper() if words else "",
        "message-timestamp": (received_at or timezone.now()).strftime(_TIMESTAMP_FORMAT),
        "api-key": _api_key(),
    }


def delivery_receipt_params(
    *,
    message_id: str,
    sender: str,
    recipient: str,
    status: str = "delivered",
    error_code: str = "0",
    client_ref: str = "",
    price: Decimal = Decimal(0),
    network: str = "",
    delivered_at: datetime | None = None,
) -> dict[str, str]:
    """The parameters of Vonage's delivery receipt for one part of a sent SMS (unsigned).

    `sender` is the number the SMS was sent from (the receipt's `to`), `recipient` the number it
    went to (the receipt's `msisdn`); both E.164 with '+'.
    """
    at = delivered_at or timezone.now()
    return {
        "msisdn": _wire_number(recipient),
        "to": _wire_number(sender),
        "network-code": network,
        "messageId": message_id,
        "price": f"{price:.8f}",
        "status": status,
        "scts": at.strftime(_SCTS_FORMAT),
        "err-code": error_code,
        "api-key": _api_key(),
        "client-ref": client_ref,
        "message-timestamp": at.strftime(_TIMESTAMP_FORMAT),
    }


def webhook_sign_as_configured(params: dict[str, str]) -> dict[str, str]:
    """`params` signed as Vonage signs webhooks (with a fresh `nonce`) when
    `VONAGE_SIGNATURE_SECRET` is set; unchanged otherwise."""
    if not settings.VONAGE_SIGNATURE_SECRET:
        return params
    return sign_params(
        {**params, "nonce": secrets.token_hex(16)},
        secret=settings.VONAGE_SIGNATURE_SECRET,
        method=settings.VONAGE_SIGNATURE_METHOD,
    )
