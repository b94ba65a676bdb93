"""Pandera schemas and asset checks: the blocking data-quality gates of the pipeline."""
