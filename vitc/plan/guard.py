"""The check `python -m vitc.train` runs before it builds a model: refuse, with the planner's
numbers, a configuration whose predicted peak does not fit in the memory available."""
from .planner import available_memory, format_bytes, parse_bytes, plan

__all__ = ["check_training_fits"]

# vitc.train's optimizer names -> the planner's
_TRAIN_OPTIMIZERS = {"adam": "adam", "adamw": "adamw", "sgd": "sgd_momentum"}


def check_training_fits(model, batch, optimizer="adam", model_kwargs=None, memory_cap=None, force=False, log=print):
    """Raise SystemExit with the planner's breakdown when the predicted peak exceeds memory_cap
    (default MemAvailable); with force, only warn. Returns the Plan (None for a model the planner
    does not model: then nothing is checked and a note is logged)."""
    try:
        p = plan(model, batch, _TRAIN_OPTIMIZERS.get(optimizer, optimizer), model_kwargs=model_kwargs, timing=False)
    except ValueError as e:  # a model outside the planner's family: train without the check
        log(f"note: memory not checked before training ({e})")
        return None
    cap = available_memory() if memory_cap is None else parse_bytes(memory_cap)
    if cap is None or p.peak_bytes + p.input_bytes <= cap:  # (fits() refuses a cap below the parameters)
        return p
    msg = (f"{p}\npredicted peak {format_bytes(p.peak_bytes)} + input batch {format_bytes(p.input_bytes)} does not "
           f"fit in the {format_bytes(cap)} available")
    if force:
        log(f"warning: {msg}; training anyway (--force)")
        return p
    raise SystemExit(f"error: {msg}\n(pass --force to train anyway, or use a smaller --batch-size)")
