"""Side-by-side benchmarks against each incumbent's exact code path (`python -m benchmarks`)."""
