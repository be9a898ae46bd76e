"""Data: the records every stage passes along, and where they come from.

records (Record, Solution, Example, BenchItem), pool sources and loaders (pools, pool_sources,
pool_text), the synthetic generator, the benchmarks, answer-text extraction (answers), the
shared user turn (prompts) and content fingerprints. Imports nothing from the stages.
"""
