"""Pickles: writing them as they stream (``dump``), the policy that gates reading them
(``policy``), safe mode's interpreter (``safe``) and reading what one would import without
running it (``inspect``)."""
