"""listwise ranking losses."""
