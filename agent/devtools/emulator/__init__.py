"""A local emulator of the Tencent Cloud IAI API 3.0 (`faceagent emulator`; `make_server` in tests, demo, bench).

As strict as the documentation makes the service (limits.py, stated from the API pages and the official SDK,
never imported from the client), and able to do to a client every ordering a real cloud can: answer late, apply
late, apply then fail, apply then drop, let another writer in. docs/emulator.md is its manual.

Modules, in the order a request meets them: server (HTTP, transport faults, /_control), gateway (signature,
token, clock, version, region, rate), service (preparing and applying calls, answers), the rules per action
(groups, persons, faces, search; their image fields in uploads), images (format rules, faces, quality and
similarity emulations), state (groups, persons, faces, busy persons, pending applications), faults and control
(what a test can inject and how it says so), limits (the documented numbers and codes).
"""

from agent.devtools.emulator.command import cmd_emulator
from agent.devtools.emulator.faults import Faults
from agent.devtools.emulator.server import DEMO_SECRET_ID, DEMO_SECRET_KEY, EmulatorServer, make_server

__all__ = ["DEMO_SECRET_ID", "DEMO_SECRET_KEY", "EmulatorServer", "Faults", "cmd_emulator", "make_server"]
