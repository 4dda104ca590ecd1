"""Correlation stage: compile Sigma rules, run them over the store, correlate, build incidents."""
