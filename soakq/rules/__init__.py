"""The rules: pure functions that judge and change a run (docs/tuner.md, docs/gates.md).

``kpi_gate`` (an iteration's verdict), ``thresholds`` and ``ranges`` (the tables it reads),
``tuner`` (proposed deltas), ``guards`` (oscillation, velocity, cooldown), ``apply`` (a delta on a
value), ``freeze`` (stable configuration), ``release_window`` and ``release_gate`` (the run-level
verdict). Everything here takes its inputs as arguments and returns values with reasons.
"""
