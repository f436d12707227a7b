"""Standards as versioned policy data with effective dates (Art. 6)."""
