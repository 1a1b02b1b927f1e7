"""The embedded default backend: training runs as supervised processes on this machine."""
