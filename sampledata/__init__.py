"""meterclose's sample data: reference data, CloudEvents telemetry with injected faults, and
the ground-truth manifest of what the ingest must decide for every line (see
``sampledata.generator``)."""

from sampledata.faults import FAULT_REASONS, FAULTS, LINE_FAULTS, UNKNOWN_CUSTOMERS
from sampledata.generator import ReferenceSet, build_reference, generate
from sampledata.landing import GZIP_LEVEL
from sampledata.manifest import OUTCOMES

__all__ = [
    "FAULTS",
    "FAULT_REASONS",
    "GZIP_LEVEL",
    "LINE_FAULTS",
    "OUTCOMES",
    "UNKNOWN_CUSTOMERS",
    "ReferenceSet",
    "build_reference",
    "generate",
]
