"""`make faults`: the fault suite (see faults/run.py)."""
