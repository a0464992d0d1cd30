"""The Ray executor: worker groups, placement, refit transports, colocation. Imported only when a run asks for it."""
