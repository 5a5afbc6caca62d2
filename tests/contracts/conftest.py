"""The peers the real adapters of the contract suites talk to: the Graph simulator over
HTTP (tests/m365/conftest.py) and a machine of fake session commands
(tests/workstation/conftest.py)."""

from tests.m365.conftest import graph_sim  # noqa: F401
from tests.workstation.conftest import machine  # noqa: F401
