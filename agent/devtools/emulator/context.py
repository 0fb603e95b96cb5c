"""What every action's rules work on: the account's data, the faults in force, and the face checker."""

from __future__ import annotations

from dataclasses import dataclass

from agent.devtools.emulator.faults import Faults
from agent.devtools.emulator.images import FaceChecker
from agent.devtools.emulator.state import EmulatorState


@dataclass
class Context:
    state: EmulatorState
    faults: Faults
    checker: FaceChecker
