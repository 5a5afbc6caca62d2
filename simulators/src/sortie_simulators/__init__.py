"""Protocol simulators Sortie is developed and tested against.

Each simulator is a FastAPI app built by a factory (`graph.create_app`, `cas.create_app`,
`entapps.create_app`, `workstations.create_app`); nothing happens at import time. Run one
as a process with `python -m sortie_simulators <graph|cas|entapps|workstations> --port N`.
Every simulator keeps its state in memory and exposes it under `/_sim/` for tests.
"""

__version__ = "0.1.0"
