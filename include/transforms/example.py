"""An example transform: loyalty tier from lifetime value, full name, and language from country.

Named in a definition as ``transform: {function: transforms.example:enrich, reads: [...], returns: [...]}``
(README, "Computed fields"). Columns arrive as Arrow-backed text, exactly as extracted; convert what you
need, vectorised: this runs once per staged part, not once per row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Lowest lifetime value of each tier, best first; the names are the TIER dropdown's choices.
TIERS = (("Platinum", 1175.0), ("Gold", 465.0), ("Silver", 170.0), ("Bronze", 0.0))
LANGUAGE_BY_COUNTRY = {
    "AE": "ar", "AU": "en", "BG": "bg", "BR": "pt", "CA": "en", "CN": "zh", "DE": "de", "EG": "ar", "ES": "es_ES",
    "FR": "fr", "GB": "en", "GR": "el", "IT": "it", "JP": "ja", "KR": "ko", "NL": "nl", "PL": "pl", "SE": "sv",
    "UA": "uk", "US": "en",
}  # fmt: skip


def enrich(profiles: pd.DataFrame) -> pd.DataFrame:
    """``tier``, ``full_name`` and ``language`` for every row, in the frame's own index."""
    value = pd.to_numeric(profiles["lifetime_value"], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    tier = np.select([value >= floor for _, floor in TIERS], [name for name, _ in TIERS], default=None)
    first = profiles["first_name"].fillna("").str.strip()
    last = profiles["last_name"].fillna("").str.strip()
    return pd.DataFrame(
        {
            "tier": tier,
            "full_name": (first + " " + last).str.strip(),
            "language": profiles["country"].str.upper().map(LANGUAGE_BY_COUNTRY),
        },
        index=profiles.index,
    )
