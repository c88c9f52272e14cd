"""``medasr script``: clinical dictations that use every target term."""

from medasr_cli.script.plan import plan_requests
from medasr_cli.script.run import ScriptRequest, ScriptRunResult, generate_scripts, write_report

__all__ = [
    "ScriptRequest",
    "ScriptRunResult",
    "generate_scripts",
    "plan_requests",
    "write_report",
]
