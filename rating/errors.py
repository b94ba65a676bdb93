"""Errors a user can act on: each names the file, the key and the offending value."""

from __future__ import annotations


class ReferenceDataError(ValueError):
    """Reference data (meters, customers, plans, contracts …) that cannot be used as given."""

    def __init__(self, origin: str, key: str, value: object, expected: str) -> None:
        self.origin = origin
        self.key = key
        self.value = value
        self.expected = expected
        super().__init__(f"{origin}: {key} = {value!r}: {expected}")


class LandingFileError(RuntimeError):
    """A landing file that cannot be read at all (as opposed to a bad line inside it)."""

    def __init__(self, file: str, problem: str) -> None:
        self.file = file
        super().__init__(f"landing file {file}: {problem}")
