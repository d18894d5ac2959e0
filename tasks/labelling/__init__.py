"""Step labelling: strategies that decide which prefixes to roll out, and the labels they imply."""
