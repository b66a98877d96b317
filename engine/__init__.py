"""The engine: the contracts at the bottom (schemas, instruments, errors, atomic files,
caches), the compiled core beside them, live sessions above both in `engine/live/`."""
