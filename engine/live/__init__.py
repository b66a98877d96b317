"""Live sessions: the live loop, the gateway, the paper exchange, the journal, the control socket
and the demo; above the engine core and the feeds, beside the backtester."""
