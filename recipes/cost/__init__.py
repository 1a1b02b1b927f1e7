"""Cost before launch: the hardware catalog, the estimate and the budget guard."""
