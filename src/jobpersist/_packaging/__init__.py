"""Packaging tools for the command line (``jobpersist bundle``): never imported by the
library itself."""
