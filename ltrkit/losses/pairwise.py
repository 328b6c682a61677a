"""pairwise ranking losses."""
