"""Browser tests: the Dagster UI of this project, driven in Chromium by Playwright."""
