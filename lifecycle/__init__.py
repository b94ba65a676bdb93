"""The life of a month: its rules, its facts and its transitions."""
