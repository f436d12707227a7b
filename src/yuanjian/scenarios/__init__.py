"""Application scenarios: calls, proposals, demand surveys, contests (Art. 8)."""
