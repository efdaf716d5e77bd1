"""A load generator for any OpenAI-compatible server: concurrent streamed chat requests, measured.

`localmodel bench URL` runs it against a deployment; `bench/serving_throughput.py` runs it against our
stack and two llama-cpp-python baselines. The parts: `stats` (per-request results, token accounting,
percentiles, summaries), `driver` (closed-loop concurrency levels over any `send` function), `client`
(the `send` over the official AsyncOpenAI client), `report` (rows, ratios, a rich table, JSON).
It imports no component (router, operator, backend): it measures them from the outside.
"""
