"""What Vonage's SMS error codes mean, for people reading a failed message in the admin.

Two code spaces share small numbers: the SMS API's `status` in the answer to a send (the
outbox keeps it as the message's error code when the send is refused) and the delivery
receipt's `err-code` (kept on the part, and on the message when a receipt fails it). The
caller says which one it holds. Only the gateway knows Vonage's wire format, so the tables
live here; the admin asks `sms_error_description`.
"""

from __future__ import annotations

# The SMS API's `status` of a refused send (VONAGE.md; Vonage's "API Errors: SMS API").
SEND_STATUSES: dict[str, str] = {
    "1": "Throttled: sending faster than the account's limit (retried later)",
    "2": "Missing parameters: the request lacked a required field",
    "3": "Invalid parameters: a value in the request was not valid",
    "4": "Invalid credentials: the API key or secret is wrong or disabled",
    "5": "Internal error at Vonage (retried later)",
    "6": "Invalid message: Vonage could not process it (an unrecognised number prefix, say)",
    "7": "Number barred: the recipient is on a blocklist",
    "8": "Partner account barred: the Vonage account is suspended",
    "9": "Partner quota violation: not enough credit to send",
    "10": "Too many existing binds: too many simultaneous connections",
    "11": "Account not enabled for the SMS API over HTTP",
    "12": "Message too long",
    "14": "Invalid signature: the request signature did not verify",
    "15": "Invalid sender address: the sender is not allowed for this destination",
    "16": "Invalid TTL",
    "19": "Facility not allowed for this account",
    "20": "Invalid message class",
    "22": "Invalid network code",
    "23": "Invalid callback URL",
    "29": "Non-whitelisted destination: a trial account may only text its test numbers",
    "32": "Signature and API secret both given (only one is allowed)",
    "33": "Number de-activated: the recipient's number is no longer in use",
}

# What the gateway records when no status came back at all (see ProviderError.code).
TRANSPORT_CODES: dict[str, str] = {
    "timeout": "Vonage did not answer in time (the send is retried)",
    "connection": "Vonage could not be reached (the send is retried)",
    "client-ref": "The client reference is longer than Vonage accepts",
}

# A delivery receipt's `err-code` (VONAGE.md; Vonage's delivery receipt error codes).
RECEIPT_ERRORS: dict[str, str] = {
    "1": "Unknown: not delivered, and the carrier gave no reason",
    "2": "Absent subscriber (temporary): the phone was unreachable; a retry may succeed",
    "3": "Absent subscriber (permanent): the number is no longer active",
    "4": "Call barred by user: the recipient or their operator blocks these messages",
    "5": "Portability error: a problem with the number's porting between operators",
    "6": "Anti-spam rejection: a carrier's spam filter blocked the message",
    "7": "Handset busy: the phone could not take the message then; a retry may succeed",
    "8": "Network error: the carrier's network failed; a retry may succeed",
    "9": "Illegal number: the recipient asked not to get messages from this sender",
    "10": "Illegal message: a message parameter was wrong (the encoding, say)",
    "11": "Unroutable: Vonage found no route to deliver the message",
    "12": "Destination unreachable: no route to the number; check it is right",
    "13": "Subscriber age restriction: the recipient may not receive this message",
    "14": "Number blocked by carrier: the recipient's plan does not allow these messages",
    "15": "Pre-paid: the recipient's pre-paid account has not enough credit",
    "16": "Gateway quota exceeded",
    "99": "General error: a routing failure at Vonage or the carrier",
}


def sms_error_description(*, code: str, receipt: bool) -> str:
    """What `code` means: a delivery receipt's `err-code` when `receipt`, else a send's status.

    "" for a code Vonage does not document (or one the service itself gave, such as a
    blocked forward's): the stored error text then says it all.
    """
    code = code.strip()
    if receipt:
        return RECEIPT_ERRORS.get(code, "")
    return SEND_STATUSES.get(code) or TRANSPORT_CODES.get(code, "")
