"""Tools for testing l2rl plugins: small fakes and the component conformance checker.

A plugin author's test is typically one line::

    from l2rl.testing import check_component
    check_component(MyComponent, {"strength": 0.5})

See ``docs/writing-a-component.md``.
"""

from l2rl.testing.conformance import (
    ConformanceError,
    ConformanceReport,
    check_agent,
    check_component,
    orphan_gradients,
)
from l2rl.testing.fakes import (
    FakeAgent,
    FakeEnv,
    FakeLearnerComponent,
    HookCall,
    NoOpComponent,
    RecordingComponent,
    fake_scenario,
    fake_tasks,
)
from l2rl.testing.scenario_check import check_scenario

__all__ = [
    "ConformanceError",
    "ConformanceReport",
    "FakeAgent",
    "FakeEnv",
    "FakeLearnerComponent",
    "HookCall",
    "NoOpComponent",
    "RecordingComponent",
    "check_agent",
    "check_component",
    "check_scenario",
    "fake_scenario",
    "fake_tasks",
    "orphan_gradients",
]
