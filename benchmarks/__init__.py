"""loramem benchmarks: a task registry, experiment configs, one runner, committed results.

    python -m benchmarks run --smoke                 # every task x reader at tiny sizes, validated
    python -m benchmarks run axes-phonebook          # a config of benchmarks/configs/
    python -m benchmarks run modules-phonebook       # many modules (kind "modules")
    python -m benchmarks run write-throughput        # loramem's write loop vs Trainer + peft
    python -m benchmarks report benchmarks/results/<run>
"""
