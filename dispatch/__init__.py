"""coop-dispatch: the dispatch backend for driver-owned ride-hailing co-operatives."""
