class TrainingError(Exception):
    """A request that cannot be carried out as given; the message says what to change."""
