"""Argument checks shared by the layers: TypeError for wrong types, ValueError for bad values."""
import numbers


def check_int(v, name, who, minimum=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{who}: {name} must be an int, got {type(v).__name__}")
    if minimum is not None and v < minimum:
        raise ValueError(f"{who}: {name} must be >= {minimum}, got {v}")
    return int(v)


def check_float(v, name, who, lo=None, hi=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real):
        raise TypeError(f"{who}: {name} must be a number, got {type(v).__name__}")
    v = float(v)
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        rng = f"[{lo if lo is not None else '-inf'}, {hi if hi is not None else 'inf'}]"
        raise ValueError(f"{who}: {name} must be in {rng}, got {v}")
    return v


def check_prob(p, who):
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise TypeError(f"{who}: p must be a number, got {type(p).__name__}")
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"{who}: dropout probability has to be between 0 and 1, but got {p}")
    return float(p)


def pair(v, name, who, minimum=1):
    """An int or a pair of ints -> (a, b), each >= minimum."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{who}: {name} must be an int or a pair of ints, got {v!r}")
        return (check_int(v[0], name, who, minimum), check_int(v[1], name, who, minimum))
    v = check_int(v, name, who, minimum)
    return (v, v)
