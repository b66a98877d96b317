"""Replay of history through the compiled loop, its results, statistics and report."""
