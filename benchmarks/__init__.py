"""loramem benchmarks: a task registry, readers compared on the same tasks, one runner, committed results.

    python -m benchmarks run --smoke                 # every task x reader at tiny sizes, validated
    python -m benchmarks run axes-phonebook          # a config of benchmarks/configs/
    python -m benchmarks report benchmarks/results/<run>
"""
