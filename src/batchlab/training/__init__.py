"""Training: one run from its resolved configuration to per-epoch records (loop.py), and the ways a
run can be trained otherwise: stacked with its sibling trials (stacked.py) or across processes (ddp.py)."""
