"""NeMo manifests: build from synth output, folders or tables; split; validate; stats."""

from medasr_cli.manifest.build import build_manifest
from medasr_cli.manifest.split import parse_split_spec, split_entries
from medasr_cli.manifest.stats import manifest_stats
from medasr_cli.manifest.validate import validate_manifest

__all__ = [
    "build_manifest",
    "manifest_stats",
    "parse_split_spec",
    "split_entries",
    "validate_manifest",
]
