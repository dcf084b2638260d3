"""A helper whose name clashes with the other package's helper."""

LABEL = "package-a"
