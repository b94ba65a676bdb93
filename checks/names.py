"""Asset-check names, defined once: assets, jobs, sensors and tests refer to these."""

USAGE_EVENTS_SCHEMA = "usage_events_schema"
QUARANTINED_EVENTS_SCHEMA = "quarantined_events_schema"
DUPLICATE_EVENTS_SCHEMA = "duplicate_events_schema"
LINES_ACCOUNTED_FOR = "every_landing_line_accounted_for"
DAILY_USAGE_SCHEMA = "daily_usage_schema"
DAILY_USAGE_TIES_TO_EVENTS = "daily_usage_ties_to_usage_events"
