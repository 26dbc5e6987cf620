"""OpenAPI tightening drf-spectacular cannot infer from the serializers.

The serializers check these rules themselves, with the error codes of DESIGN.md §7 (a count of
participants other than two is `invalid_participants`, not DRF's `min_length`), so the schema
states them here instead of through field arguments that would change those errors.
"""

from __future__ import annotations

from typing import Any

# Characters a phone number may be written with: digits, '+', spaces, brackets, dots, dashes.
PHONE_NUMBER_PATTERN = r"^[0-9+() .\-]{3,32}$"


def tighten_schema(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook (SPECTACULAR_SETTINGS["POSTPROCESSING_HOOKS"])."""
    schemas = result.get("components", {}).get("schemas", {})
    participants = schemas.get("ConversationCreateInput", {}).get("properties", {})
    if "participants" in participants:
        participants["participants"].update({"minItems": 2, "maxItems": 2})
    number = schemas.get("ParticipantInput", {}).get("properties", {}).get("number")
    if number is not None:
        number["pattern"] = PHONE_NUMBER_PATTERN
    for path in result.get("paths", {}).values():
        for operation in path.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") == "query" and parameter.get("name") == "number":
                    parameter["schema"]["pattern"] = PHONE_NUMBER_PATTERN
    return result
