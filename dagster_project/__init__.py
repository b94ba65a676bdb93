"""meterclose: Dagster definitions, partitions, jobs, schedules, sensors and the CLI."""
