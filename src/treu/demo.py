"""Demo programme with realistic data (``treu demo``)."""
