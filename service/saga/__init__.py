"""The order saga, choreographed: inventory, payments and ordering each react to the
broker's events through their own Redis Streams consumer group."""
