"""``medasr script``: clinical dictations that use every target term."""

from medasr_cli.core.shard import in_shard, parse_shard
from medasr_cli.script.plan import plan_requests
from medasr_cli.script.run import ScriptRequest, ScriptRunResult, generate_scripts, write_report

__all__ = [
    "ScriptRequest",
    "ScriptRunResult",
    "generate_scripts",
    "in_shard",
    "parse_shard",
    "plan_requests",
    "write_report",
]
