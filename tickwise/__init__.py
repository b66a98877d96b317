"""tickwise: a low-latency trading and decision engine.

ZeroMQ market data drive Numba-compiled strategy kernels over Arrow buffers; a
deterministic backtester replays Parquet history through the same kernels; a
kill switch halts automated orders on abnormal conditions.
"""

__version__ = "0.1.0"
