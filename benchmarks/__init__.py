"""loramem benchmarks: a task registry, readers compared on the same tasks, one runner, committed results.

    python -m benchmarks run benchmarks/configs/smoke.json
    python -m benchmarks report benchmarks/results/<run>
"""
