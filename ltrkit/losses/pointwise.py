"""pointwise ranking losses."""
