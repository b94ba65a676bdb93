"""Everything that touches the outside world: files, reference data, the control database."""
