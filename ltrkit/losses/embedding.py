"""embedding ranking losses."""
