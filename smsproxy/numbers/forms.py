"""Admin forms of the number pool."""

from __future__ import annotations

from django import forms

from smsproxy.gateway.base import DEFAULT_NUMBER_TYPE, NUMBER_FEATURES, NUMBER_TYPES

# A larger order belongs in `provision_numbers`, which shows its progress line by line.
MAX_ADMIN_QUANTITY = 50


class BuyNumbersForm(forms.Form):
    country = forms.CharField(
        max_length=2,
        min_length=2,
        initial="GB",
        help_text="ISO 3166-1 alpha-2 code, e.g. GB, US.",
    )
    number_type = forms.ChoiceField(
        label="Type",
        choices=[(name, name) for name in NUMBER_TYPES],
        initial=DEFAULT_NUMBER_TYPE,
    )
    features = forms.MultipleChoiceField(
        choices=[(name, name) for name in NUMBER_FEATURES],
        initial=["SMS"],
        widget=forms.CheckboxSelectMultiple,
        help_text="Every number rented has all of these.",
    )
    pattern = forms.RegexField(
        regex=r"^[0-9]*$",
        max_length=20,
        required=False,
        help_text="Digits the numbers should contain, e.g. 7700 (optional).",
        error_messages={"invalid": "Digits only."},
    )
    quantity = forms.IntegerField(min_value=1, max_value=MAX_ADMIN_QUANTITY, initial=1)

    def clean_country(self) -> str:
        return str(self.cleaned_data["country"]).strip().upper()


class ReleaseConfirmForm(forms.Form):
    force = forms.BooleanField(
        required=False,
        label="Also release numbers in live conversations, closing those conversations",
    )
