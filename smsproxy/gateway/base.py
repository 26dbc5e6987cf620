"""The SMS provider boundary: typed results, typed errors and the interface both providers satisfy.

Numbers cross this boundary as E.164 strings with a leading `+` ("+447700900123"); each provider
converts to its own wire format at the edge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol, runtime_checkable

DEFAULT_NUMBER_TYPE = "mobile-lvn"
NUMBER_TYPES = ("mobile-lvn", "landline", "landline-toll-free")
NUMBER_FEATURES = ("SMS", "VOICE", "MMS")
CLIENT_REF_MAX_LENGTH = 40  # Vonage's limit for an SMS's `client-ref`
NUMBERS_PAGE_SIZE = 100  # the Numbers API's largest page


@dataclass(frozen=True)
class AvailableNumber:
    """A number offered by a search, not yet rented."""

    msisdn: str
    country: str
    type: str
    features: tuple[str, ...]
    monthly_cost: Decimal | None = None


@dataclass(frozen=True)
class OwnedNumber:
    """A number the account rents, as the provider lists it."""

    msisdn: str
    country: str
    type: str
    features: tuple[str, ...]
    inbound_url: str = ""


@dataclass(frozen=True)
class NumberInsight:
    """Number Insight basic: the canonical form of a real number."""

    e164: str
    country: str  # ISO 3166-1 alpha-2


@dataclass(frozen=True)
class SentPart:
    """One part of a sent SMS: a long text is split by the provider into several."""

    message_id: str
    price: Decimal | None = None
    network: str = ""


@dataclass(frozen=True)
class SendResult:
    parts: tuple[SentPart, ...]

    @property
    def message_ids(self) -> list[str]:
        return [part.message_id for part in self.parts]

    @property
    def price(self) -> Decimal | None:
        prices = [part.price for part in self.parts if part.price is not None]
        return sum(prices, Decimal(0)) if prices else None


class ProviderError(Exception):
    """A call to the provider failed. `transient` says whether retrying later may succeed.

    `code` and `text` are the provider's own (an SMS status like "1", an HTTP status like "429",
    or "timeout"/"connection" when no answer came).
    """

    transient = False

    def __init__(
        self,
        text: str,
        code: str = "",
        *,
        http_status: int | None = None,
        accepted_parts: tuple[SentPart, ...] = (),
    ) -> None:
        super().__init__(text)
        self.text = text
        self.code = code
        self.http_status = http_status
        # Parts of a multi-part send that were accepted before one failed: kept so that no
        # message id (and no receipt) is lost.
        self.accepted_parts = accepted_parts

    def __str__(self) -> str:
        kind = "transient" if self.transient else "permanent"
        return f"{self.text} (code {self.code or '-'}, {kind})"


class TransientProviderError(ProviderError):
    """Retry later: throttled, provider internal error, HTTP 429/5xx, timeout, connection."""

    transient = True


class PermanentProviderError(ProviderError):
    """Retrying will not help: bad credentials, invalid number, no credit, barred, ..."""


class NumberUnavailableError(PermanentProviderError):
    """Buying failed because the number is no longer available (Vonage answers HTTP 420)."""


class InvalidNumberError(PermanentProviderError):
    """Number Insight says the number is not a valid phone number."""


class NumberNotOwnedError(PermanentProviderError):
    """The account does not rent this number (update/cancel of a number we do not have)."""


def check_client_ref(client_ref: str) -> None:
    """Refuse, before anything is sent, a `client-ref` longer than Vonage accepts."""
    if len(client_ref) > CLIENT_REF_MAX_LENGTH:
        raise PermanentProviderError(
            f"client-ref {client_ref!r} is longer than {CLIENT_REF_MAX_LENGTH} characters.",
            "client-ref",
        )


@runtime_checkable
class SmsProvider(Protocol):
    name: str

    def search_numbers(
        self,
        *,
        country: str,
        type: str = DEFAULT_NUMBER_TYPE,
        features: tuple[str, ...] = ("SMS",),
        pattern: str = "",
        size: int = 10,
        index: int = 1,
    ) -> list[AvailableNumber]:
        """Numbers on offer: page `index` (1-based) of `size` numbers (at most 100)."""
        ...

    def buy_number(self, *, country: str, msisdn: str) -> None: ...

    def configure_number(self, *, country: str, msisdn: str, inbound_url: str) -> None: ...

    def cancel_number(self, *, country: str, msisdn: str) -> None: ...

    def list_owned_numbers(self, *, country: str = "") -> list[OwnedNumber]: ...

    def insight_basic(self, *, number: str, country: str = "") -> NumberInsight: ...

    def send_sms(
        self,
        *,
        sender: str,
        recipient: str,
        text: str,
        client_ref: str,
        callback_url: str,
    ) -> SendResult: ...
