"""`ganqp train`: the loop (loop.py) and its parts: what a run builds and saves (setup.py),
one iteration from a list of phases (phases.py), the periodic work (periodic.py), the run
directory's lock and status (rundir.py), stopping on signals (signals.py)."""
