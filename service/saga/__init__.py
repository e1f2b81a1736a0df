"""The order saga, choreographed: inventory, payments and ordering each react to the
broker's events, read once for all of them in one Redis Streams consumer group."""
