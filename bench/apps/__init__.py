"""Hello-world applications for the app-server comparison (``bench/apps/targets.json``)."""
