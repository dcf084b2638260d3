"""The three scenarios of raw inputs: an uploaded image gets labels, text gets a sentiment, a user gets items."""
