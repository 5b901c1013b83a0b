"""Infrastructure every layer may use: name registries, the on-disk cache, shipped assets,
accelerator settings, user plugins and the errors that are the user's to fix.

This is the bottom layer: it imports nothing else of ``stakes_core``.
"""
